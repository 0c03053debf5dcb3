package manager

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	inferav1alpha1 "github.com/infera-io/temper/apis/infera/v1alpha1"
)

// The opt-in kube-BestEffort path (issue 16): in a namespace whose profile
// sets backgroundBestEffort, the webhook removes a background pod's CPU
// requests, and the real API server then classes the pod BestEffort (so
// the kubelet puts it under the besteffort QoS cgroup). A background pod
// whose memory or CPU limits would keep it Burstable is deflated by its
// ratio instead, with a warning that says why; other tiers are untouched by
// the option.
func TestWebhookBackgroundBestEffort(t *testing.T) {
	startManager(t, nil)
	wc, warnings := warningClient(t)
	createProfile(t, &inferav1alpha1.OvercommitProfile{
		ObjectMeta: metav1.ObjectMeta{Name: "be-path"},
		Spec: inferav1alpha1.OvercommitProfileSpec{
			NamespaceSelector:    metav1.LabelSelector{MatchLabels: map[string]string{"team": "be-path"}},
			Ratios:               []inferav1alpha1.TierRatio{{Tier: "low", Ratio: 0.5}, {Tier: "background", Ratio: 0.25}},
			FloorMilli:           25,
			BackgroundBestEffort: true,
		},
	})
	ensureNamespace(t, "be-path", map[string]string{"team": "be-path"}, nil)
	waitOptedIn(t, "be-path", "be-path")

	withMemory := podIn("be-path", "bg-memory", "infera-background", cpuContainer("app", "400m", ""))
	withMemory.Spec.Containers[0].Resources.Requests[corev1.ResourceMemory] = resource.MustParse("64Mi")
	initToo := podIn("be-path", "bg-init", "infera-background", cpuContainer("app", "300m", ""))
	initToo.Spec.InitContainers = []corev1.Container{cpuContainer("setup", "1", "")}

	tests := []struct {
		name     string
		pod      *corev1.Pod
		want     []wantContainer
		wantOrig map[string]string
		wantQOS  corev1.PodQOSClass
		wantWarn string
	}{
		{"background with CPU requests only becomes BestEffort", podIn("be-path", "bg", "infera-background", cpuContainer("a", "500m", ""), cpuContainer("b", "", "")),
			[]wantContainer{{"a", "", ""}, {"b", "", ""}}, map[string]string{"a": "500m"}, corev1.PodQOSBestEffort, ""},
		{"init containers lose their requests too", initToo,
			[]wantContainer{{"setup", "", ""}, {"app", "", ""}}, map[string]string{"setup": "1", "app": "300m"}, corev1.PodQOSBestEffort, ""},
		{"a CPU limit keeps it Burstable: deflated by ratio", podIn("be-path", "bg-limit", "infera-background", cpuContainer("app", "400m", "1")),
			[]wantContainer{{"app", "100m", "1"}}, map[string]string{"app": "400m"}, corev1.PodQOSBurstable, "containers[0](app) sets a CPU limit"},
		{"a memory request keeps it Burstable: deflated by ratio", withMemory,
			[]wantContainer{{"app", "100m", ""}}, map[string]string{"app": "400m"}, corev1.PodQOSBurstable, "sets a memory request or limit"},
		{"low is scaled, not made BestEffort", podIn("be-path", "low", "infera-low", cpuContainer("app", "400m", "")),
			[]wantContainer{{"app", "200m", ""}}, map[string]string{"app": "400m"}, corev1.PodQOSBurstable, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ws := admit(t, wc, warnings, tc.pod)
			checkPod(t, got, tc.want, tc.wantOrig)
			if got.Status.QOSClass != tc.wantQOS {
				t.Errorf("the API server classes the pod %q, want %q", got.Status.QOSClass, tc.wantQOS)
			}
			checkWarnings(t, ws, tc.wantWarn)
		})
	}
}
