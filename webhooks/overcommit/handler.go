package overcommit

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/go-logr/logr"
	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	inferav1alpha1 "github.com/infera-io/temper/apis/infera/v1alpha1"
	"github.com/infera-io/temper/apis/tiering"
	"github.com/infera-io/temper/apis/wellknown"
)

// Path is where the webhook is served.
const Path = "/mutate-v1-pod-overcommit"

// Name is the webhook's name in the MutatingWebhookConfiguration.
const Name = "overcommit.infera.io"

// TimeoutSeconds is how long the API server waits before it ignores the
// webhook (failurePolicy Ignore).
const TimeoutSeconds int32 = 2

// The markers generate config/webhook/manifests.yaml; the namespaceSelector
// that keeps kube-system and the platform's namespace out is added by
// config/webhook/namespace_selector_patch.yaml (controller-gen has no marker
// for it) and enforced again in code.
//
// +kubebuilder:webhook:path=/mutate-v1-pod-overcommit,mutating=true,failurePolicy=ignore,sideEffects=None,groups="",resources=pods,verbs=create,versions=v1,name=overcommit.infera.io,admissionReviewVersions=v1,timeoutSeconds=2,reinvocationPolicy=Never,matchPolicy=Equivalent
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups=infera.io,resources=overcommitprofiles,verbs=get;list;watch
// +kubebuilder:rbac:groups=infera.io,resources=inferapolicies,verbs=get;list;watch

// Handler is the admission handler. It never denies: a pod it cannot or
// should not deflate is allowed as it is.
type Handler struct {
	// Reader reads Namespaces, OvercommitProfiles and InferaPolicies; the
	// manager's cache in production.
	Reader client.Reader
	// PlatformNamespace is never touched, like kube-system.
	PlatformNamespace string
	// Thresholds is the manager's tier mapping; each InferaPolicy's mapping
	// is considered as well.
	Thresholds tiering.Thresholds
	// Metrics, when set, counts admissions and deflated CPU.
	Metrics *Metrics
}

var _ admission.Handler = &Handler{}

// Exempt reports whether namespace is one the webhook never acts in.
func (h *Handler) Exempt(namespace string) bool {
	return namespace == metav1.NamespaceSystem || namespace == h.PlatformNamespace || namespace == ""
}

// Handle implements admission.Handler. A panic below is turned into an
// unmodified admission: an error response would deny the pod, which
// failurePolicy Ignore does not cover.
func (h *Handler) Handle(ctx context.Context, req admission.Request) (resp admission.Response) {
	defer func() {
		if r := recover(); r != nil {
			logf.FromContext(ctx).Error(fmt.Errorf("panic: %v", r), "Overcommit webhook panicked; admitting the pod unmodified")
			h.Metrics.admitted(ResultInternalErr)
			resp = admission.Allowed("").WithWarnings("overcommit: internal error; pod left as it is")
		}
	}()
	return h.handle(ctx, req)
}

func (h *Handler) handle(ctx context.Context, req admission.Request) admission.Response {
	if req.Operation != admissionv1.Create || req.Kind.Kind != "Pod" || req.SubResource != "" {
		return admission.Allowed("")
	}
	if h.Exempt(req.Namespace) {
		h.Metrics.admitted(ResultExempt)
		return admission.Allowed("namespace is exempt from overcommit")
	}
	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		h.Metrics.admitted(ResultUnreadable)
		return admission.Allowed("").WithWarnings(fmt.Sprintf("overcommit: cannot decode the pod (%v); left as it is", err))
	}
	name := pod.Name
	if name == "" {
		name = pod.GenerateName // controllers' pods have no name yet
	}
	log := logf.FromContext(ctx).WithValues("Pod", klog.KRef(req.Namespace, name))

	settings, ok, warn := h.settings(ctx, req.Namespace)
	if !ok {
		h.Metrics.admitted(ResultNotOptedIn)
		r := admission.Allowed("namespace is not opted in")
		if warn != "" {
			log.Info("Leaving pod as it is", "detail", warn)
			r = r.WithWarnings(warn)
		}
		return r
	}
	plan := Compute(&pod, settings, h.thresholds(ctx))
	if plan.Skip != "" {
		h.Metrics.admitted(ResultSkipped)
		return admission.Allowed(plan.Skip).WithWarnings(plan.Warnings...)
	}
	patches := make([]jsonpatch.JsonPatchOperation, 0, len(plan.Changes)+1)
	if !settings.DryRun {
		for _, c := range plan.Changes {
			if c.Remove {
				patches = append(patches, jsonpatch.NewOperation("remove", c.Path, nil))
				continue
			}
			patches = append(patches, jsonpatch.NewOperation("replace", c.Path, c.To.String()))
		}
	}
	if pod.Annotations == nil {
		patches = append(patches, jsonpatch.NewOperation("add", "/metadata/annotations",
			map[string]string{wellknown.OriginalCPURequestsAnnotation: plan.Originals}))
	} else {
		patches = append(patches, jsonpatch.NewOperation("add",
			"/metadata/annotations/"+escapePointer(wellknown.OriginalCPURequestsAnnotation), plan.Originals))
	}
	log.V(2).Info("Deflating CPU requests", "tier", plan.Tier, "containers", len(plan.Changes), "bestEffort", plan.BestEffort, "dryRun", settings.DryRun)
	if settings.DryRun {
		h.Metrics.admitted(ResultDryRun)
	} else {
		h.Metrics.admitted(ResultDeflated)
		h.Metrics.freed(req.Namespace, plan)
	}
	return admission.Patched("", patches...).WithWarnings(plan.Warnings...)
}

// settings returns the namespace's deflation settings, or ok=false when the
// namespace is not opted in (or its profile cannot be used; warn says why).
func (h *Handler) settings(ctx context.Context, namespace string) (s Settings, ok bool, warn string) {
	var ns corev1.Namespace
	if err := h.Reader.Get(ctx, client.ObjectKey{Name: namespace}, &ns); err != nil {
		if apierrors.IsNotFound(err) {
			return s, false, ""
		}
		return s, false, fmt.Sprintf("overcommit: cannot read namespace %s (%v); pod left as it is", namespace, err)
	}
	// The API server's namespaceSelector already filtered on the label; this
	// second look makes a namespace relabelled in between a no-op rather
	// than a half-applied one.
	if ns.Labels[wellknown.OvercommitLabel] != wellknown.OvercommitEnabledValue {
		return s, false, ""
	}
	name := ns.Annotations[wellknown.OvercommitProfileAnnotation]
	if name == "" {
		return DefaultSettings(), true, ""
	}
	var p inferav1alpha1.OvercommitProfile
	if err := h.Reader.Get(ctx, client.ObjectKey{Name: name}, &p); err != nil {
		return s, false, fmt.Sprintf("overcommit: OvercommitProfile %s named by namespace %s cannot be read (%v); pod left as it is", name, namespace, err)
	}
	if !p.DeletionTimestamp.IsZero() {
		return s, false, ""
	}
	s, err := SettingsFromProfile(&p)
	if err != nil {
		return s, false, "overcommit: " + err.Error() + "; pod left as it is"
	}
	return s, true, ""
}

// thresholds returns the manager's mapping plus each InferaPolicy's.
func (h *Handler) thresholds(ctx context.Context) []tiering.Thresholds {
	out := []tiering.Thresholds{h.Thresholds}
	var list inferav1alpha1.InferaPolicyList
	if err := h.Reader.List(ctx, &list); err != nil {
		return out
	}
	for i := range list.Items {
		if m := list.Items[i].Spec.PriorityMapping; m != nil {
			t := tiering.Thresholds{Critical: m.Critical, High: m.High, Normal: m.Normal, Low: m.Low}
			if t.Validate() == nil {
				out = append(out, t)
			}
		}
	}
	return out
}

// escapePointer escapes a JSON-pointer reference token (RFC 6901).
func escapePointer(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// Webhook wraps h for registration on a webhook server at Path; log is the
// base of each request's logger.
func Webhook(h *Handler, log logr.Logger) http.Handler {
	return &admission.Webhook{
		Handler: h,
		LogConstructor: func(_ logr.Logger, req *admission.Request) logr.Logger {
			return admission.DefaultLogConstructor(log, req)
		},
	}
}
