package tiering

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func TestPodCPU(t *testing.T) {
	q := func(s string) *resource.Quantity { v := resource.MustParse(s); return &v }
	tests := map[string]struct {
		pod  *corev1.Pod
		want CPU
	}{
		"no containers": {pod: newPod(), want: CPU{}},
		"no resources":  {pod: newPod(withContainer("a", res("", "", "", ""))), want: CPU{}},
		"request and limit": {
			pod:  newPod(withContainer("a", res("500m", "", "2", ""))),
			want: CPU{RequestMilli: 500, LimitMilli: 2000},
		},
		"only limits: the request defaults to the limit": {
			pod:  newPod(withContainer("a", res("", "", "1500m", ""))),
			want: CPU{RequestMilli: 1500, LimitMilli: 1500},
		},
		"sub-millicore rounds up": {
			pod:  newPod(withContainer("a", res("0.0001", "", "", ""))),
			want: CPU{RequestMilli: 1},
		},
		"containers add up": {
			pod: newPod(
				withContainer("a", res("250m", "", "1", "")),
				withContainer("b", res("750m", "", "1", "")),
			),
			want: CPU{RequestMilli: 1000, LimitMilli: 2000},
		},
		"one container without a limit makes the pod unlimited": {
			pod: newPod(
				withContainer("a", res("250m", "", "1", "")),
				withContainer("b", res("750m", "", "", "")),
			),
			want: CPU{RequestMilli: 1000},
		},
		"a zero limit is no limit (kubelet)": {
			pod:  newPod(withContainer("a", res("0", "", "0", ""))),
			want: CPU{},
		},
		"a large plain init container dominates": {
			pod: newPod(
				withInit("i", res("3", "", "3", "")),
				withContainer("a", res("1", "", "1", "")),
			),
			want: CPU{RequestMilli: 3000, LimitMilli: 3000},
		},
		"a plain init container without a limit makes the pod unlimited": {
			pod: newPod(
				withInit("i", res("100m", "", "", "")),
				withContainer("a", res("1", "", "1", "")),
			),
			want: CPU{RequestMilli: 1000},
		},
		"a sidecar adds to the app containers": {
			pod: newPod(
				withSidecar("s", res("500m", "", "500m", "")),
				withContainer("a", res("1", "", "1", "")),
			),
			want: CPU{RequestMilli: 1500, LimitMilli: 1500},
		},
		"a plain init container after a sidecar runs next to it": {
			pod: newPod(
				withSidecar("s", res("500m", "", "500m", "")),
				withInit("i", res("2", "", "2", "")),
				withContainer("a", res("1", "", "1", "")),
			),
			want: CPU{RequestMilli: 2500, LimitMilli: 2500},
		},
		"a plain init container before a sidecar does not": {
			pod: newPod(
				withInit("i", res("2", "", "2", "")),
				withSidecar("s", res("500m", "", "500m", "")),
				withContainer("a", res("1", "", "1", "")),
			),
			want: CPU{RequestMilli: 2000, LimitMilli: 2000},
		},
		"a sidecar without a limit makes the pod unlimited": {
			pod: newPod(
				withSidecar("s", res("100m", "", "", "")),
				withContainer("a", res("1", "", "1", "")),
			),
			want: CPU{RequestMilli: 1100},
		},
		"overhead adds to request and limit": {
			pod: newPod(
				withContainer("a", res("1", "", "2", "")),
				withOverhead("250m"),
			),
			want: CPU{RequestMilli: 1250, LimitMilli: 2250},
		},
		"overhead does not limit an unlimited pod": {
			pod: newPod(
				withContainer("a", res("1", "", "", "")),
				withOverhead("250m"),
			),
			want: CPU{RequestMilli: 1250},
		},
		"pod-level request and limit replace the containers": {
			pod: newPod(
				withContainer("a", res("100m", "", "", "")),
				withPodResources(res("2", "", "4", "")),
				withOverhead("100m"),
			),
			want: CPU{RequestMilli: 2100, LimitMilli: 4100},
		},
		"pod-level limit only: the request defaults to it": {
			pod: newPod(
				withContainer("a", res("100m", "", "", "")),
				withPodResources(res("", "", "3", "")),
			),
			want: CPU{RequestMilli: 3000, LimitMilli: 3000},
		},
		"pod-level request only: the limit comes from the containers": {
			pod: newPod(
				withContainer("a", res("100m", "", "1", "")),
				withPodResources(res("500m", "", "", "")),
			),
			want: CPU{RequestMilli: 500, LimitMilli: 1000},
		},
		"pod-level memory only: CPU comes from the containers": {
			pod: newPod(
				withContainer("a", res("300m", "", "600m", "")),
				withPodResources(res("", "1Gi", "", "2Gi")),
			),
			want: CPU{RequestMilli: 300, LimitMilli: 600},
		},
		"negative request: reported and treated as unset": {
			pod: newPod(withRawCPU("a", q("-1"), q("2"))),
			want: CPU{RequestMilli: 2000, LimitMilli: 2000, Findings: []Finding{
				{Field: "spec.containers[0](a).resources.requests.cpu", Message: "negative quantity -1; treated as unset"},
			}},
		},
		"absurd limit: reported and treated as no limit": {
			pod: newPod(withRawCPU("a", q("1"), q("2000000"))),
			want: CPU{RequestMilli: 1000, Findings: []Finding{
				{Field: "spec.containers[0](a).resources.limits.cpu", Message: "quantity 2M is more than 1000000 cores; treated as unset"},
			}},
		},
		"exponent quantity beyond int64": {
			pod: newPod(withRawCPU("a", q("1e30"), nil)),
			want: CPU{Findings: []Finding{
				{Field: "spec.containers[0](a).resources.requests.cpu", Message: "quantity 1e30 is more than 1000000 cores; treated as unset"},
			}},
		},
		"exactly the maximum is accepted": {
			pod:  newPod(withRawCPU("a", q("1000000"), nil)),
			want: CPU{RequestMilli: MaxCPUMilli},
		},
		"sums saturate instead of overflowing": {
			pod: newPod(
				withRawCPU("a", q("900000"), q("900000")),
				withRawCPU("b", q("900000"), q("900000")),
				withRawCPU("c", q("900000"), q("900000")),
			),
			want: CPU{RequestMilli: MaxCPUMilli, LimitMilli: MaxCPUMilli},
		},
		"negative overhead and pod-level values are reported": {
			pod: newPod(
				withContainer("a", res("1", "", "1", "")),
				func(p *corev1.Pod) {
					p.Spec.Overhead = corev1.ResourceList{corev1.ResourceCPU: *q("-100m")}
					p.Spec.Resources = &corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceCPU: *q("-2")}}
				},
			),
			want: CPU{RequestMilli: 1000, LimitMilli: 1000, Findings: []Finding{
				{Field: "spec.resources.limits.cpu", Message: "negative quantity -2; treated as unset"},
				{Field: "spec.overhead.cpu", Message: "negative quantity -100m; treated as unset"},
			}},
		},
		"init container findings name the init container": {
			pod: newPod(
				func(p *corev1.Pod) {
					p.Spec.InitContainers = []corev1.Container{{Name: "setup", Resources: corev1.ResourceRequirements{
						Requests: corev1.ResourceList{corev1.ResourceCPU: *q("-5")},
					}}}
				},
				withContainer("a", res("1", "", "1", "")),
			),
			want: CPU{RequestMilli: 1000, Findings: []Finding{
				{Field: "spec.initContainers[0](setup).resources.requests.cpu", Message: "negative quantity -5; treated as unset"},
			}},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := PodCPU(tc.pod)
			if d := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); d != "" {
				t.Errorf("PodCPU() mismatch (-want +got):\n%s", d)
			}
		})
	}
}
