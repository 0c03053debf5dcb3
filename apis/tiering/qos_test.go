package tiering

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func TestQOSClass(t *testing.T) {
	neg := resource.MustParse("-1")
	tests := map[string]struct {
		pod  *corev1.Pod
		want corev1.PodQOSClass
	}{
		"no containers":            {newPod(), corev1.PodQOSBestEffort},
		"no resources":             {newPod(withContainer("a", res("", "", "", ""))), corev1.PodQOSBestEffort},
		"zero requests and limits": {newPod(withContainer("a", res("0", "0", "0", "0"))), corev1.PodQOSBestEffort},
		"only non-CPU/memory resources": {newPod(withContainer("a", corev1.ResourceRequirements{
			Limits: corev1.ResourceList{corev1.ResourceEphemeralStorage: resource.MustParse("1Gi")},
		})), corev1.PodQOSBestEffort},
		"requests equal limits":                  {newPod(withContainer("a", res("1", "1Gi", "1", "1Gi"))), corev1.PodQOSGuaranteed},
		"limits only (requests default to them)": {newPod(withContainer("a", res("", "", "2", "1Gi"))), corev1.PodQOSGuaranteed},
		"equal quantities spelled differently":   {newPod(withContainer("a", res("1000m", "1024Mi", "1", "1Gi"))), corev1.PodQOSGuaranteed},
		"cpu limit missing":                      {newPod(withContainer("a", res("1", "1Gi", "", "1Gi"))), corev1.PodQOSBurstable},
		"memory limit missing":                   {newPod(withContainer("a", res("1", "1Gi", "1", ""))), corev1.PodQOSBurstable},
		"request below limit":                    {newPod(withContainer("a", res("500m", "1Gi", "1", "1Gi"))), corev1.PodQOSBurstable},
		"zero cpu limit":                         {newPod(withContainer("a", res("", "1Gi", "0", "1Gi"))), corev1.PodQOSBurstable},
		"request only":                           {newPod(withContainer("a", res("100m", "", "", ""))), corev1.PodQOSBurstable},
		"one guaranteed, one best-effort container": {newPod(
			withContainer("a", res("1", "1Gi", "1", "1Gi")),
			withContainer("b", res("", "", "", "")),
		), corev1.PodQOSBurstable},
		"init container without limits breaks guaranteed": {newPod(
			withContainer("a", res("1", "1Gi", "1", "1Gi")),
			withInit("i", res("100m", "", "", "")),
		), corev1.PodQOSBurstable},
		"init container with requests makes a pod burstable": {newPod(
			withContainer("a", res("", "", "", "")),
			withInit("i", res("100m", "", "", "")),
		), corev1.PodQOSBurstable},
		"guaranteed init and app containers": {newPod(
			withContainer("a", res("1", "1Gi", "1", "1Gi")),
			withSidecar("s", res("", "", "200m", "64Mi")),
		), corev1.PodQOSGuaranteed},
		"negative request alone counts as unset (kubelet)": {newPod(withRawCPU("a", &neg, nil)), corev1.PodQOSBestEffort},
		"pod-level resources decide alone": {newPod(
			withContainer("a", res("", "", "", "")),
			withPodResources(res("1", "1Gi", "1", "1Gi")),
		), corev1.PodQOSGuaranteed},
		"pod-level requests only": {newPod(
			withContainer("a", res("1", "1Gi", "1", "1Gi")),
			withPodResources(res("1", "1Gi", "", "")),
		), corev1.PodQOSBurstable},
		"status.qosClass is trusted": {newPod(
			withContainer("a", res("", "", "", "")), withStatusQOS(corev1.PodQOSGuaranteed),
		), corev1.PodQOSGuaranteed},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := QOSClass(tc.pod); got != tc.want {
				t.Errorf("QOSClass() = %s, want %s", got, tc.want)
			}
		})
	}
}
