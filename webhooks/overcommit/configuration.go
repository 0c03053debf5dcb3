package overcommit

import (
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/infera-io/temper/apis/wellknown"
)

// NamespaceSelector is the webhook's namespaceSelector: opted-in namespaces
// only, never kube-system or the platform's namespace. The same selector is
// in config/webhook/namespace_selector_patch.yaml for the default platform
// namespace; a test keeps the two equal.
func NamespaceSelector(platformNamespace string) *metav1.LabelSelector {
	return &metav1.LabelSelector{
		MatchLabels: map[string]string{wellknown.OvercommitLabel: wellknown.OvercommitEnabledValue},
		MatchExpressions: []metav1.LabelSelectorRequirement{{
			Key:      corev1.LabelMetadataName,
			Operator: metav1.LabelSelectorOpNotIn,
			Values:   []string{metav1.NamespaceSystem, platformNamespace},
		}},
	}
}

// MutatingWebhook returns the webhook's registration: what the markers in
// handler.go generate plus the namespaceSelector. The manager installs it
// itself only when it is given a URL (make run); in a cluster the kustomize
// manifests under config/ install it and the manager keeps its CA bundle.
func MutatingWebhook(cc admissionregistrationv1.WebhookClientConfig, platformNamespace string) admissionregistrationv1.MutatingWebhook {
	ignore := admissionregistrationv1.Ignore
	none := admissionregistrationv1.SideEffectClassNone
	never := admissionregistrationv1.NeverReinvocationPolicy
	equivalent := admissionregistrationv1.Equivalent
	timeout := TimeoutSeconds
	return admissionregistrationv1.MutatingWebhook{
		Name:         Name,
		ClientConfig: cc,
		Rules: []admissionregistrationv1.RuleWithOperations{{
			Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
			Rule: admissionregistrationv1.Rule{
				APIGroups:   []string{""},
				APIVersions: []string{"v1"},
				Resources:   []string{"pods"},
			},
		}},
		FailurePolicy:           &ignore,
		MatchPolicy:             &equivalent,
		NamespaceSelector:       NamespaceSelector(platformNamespace),
		ObjectSelector:          &metav1.LabelSelector{},
		SideEffects:             &none,
		TimeoutSeconds:          &timeout,
		AdmissionReviewVersions: []string{"v1"},
		ReinvocationPolicy:      &never,
	}
}
