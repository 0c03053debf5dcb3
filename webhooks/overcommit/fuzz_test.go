package overcommit

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/infera-io/temper/apis/tiering"
	"github.com/infera-io/temper/apis/wellknown"
)

// FuzzCompute feeds the webhook's decision odd pods (any priority, CPU and
// memory quantities, init containers, the tier annotation, an originals
// annotation) under odd settings, and checks what must hold for every pod:
// no panic; a pod of the critical or system tier, or a Guaranteed one, is
// never deflated; a change only lowers a request, never below the floor,
// points at a container that exists and has that request; the originals
// annotation reads back with its one reader and records exactly the changed
// containers' old requests; a skip has no changes.
func FuzzCompute(f *testing.F) {
	f.Add(int32(0), true, "2", "4", "1Gi", "1Gi", "500m", "", "", 0.5, int64(25), false)
	f.Add(int32(1_000_000), true, "1", "", "", "", "", "low", "", 0.1, int64(0), false)
	f.Add(int32(-5), false, "100000", "", "", "", "3", "background", `{"a":"1"}`, 0.25, int64(10), true)
	f.Add(int32(10), true, "1e-3", "1", "", "", "0", "critical", `{nope`, 1.0, int64(1000), false)
	f.Fuzz(func(t *testing.T, prio int32, hasPrio bool, req, lim, reqMem, limMem, initReq, tierAnn, origAnn string,
		ratio float64, floor int64, dryRun bool) {
		if !(ratio > 0 && ratio <= 1) || floor < 0 || floor > tiering.MaxCPUMilli {
			return // SettingsFromProfile refuses these; Compute never sees them
		}
		list := func(cpu, mem string) corev1.ResourceList {
			l := corev1.ResourceList{}
			if q, err := resource.ParseQuantity(cpu); err == nil {
				l[corev1.ResourceCPU] = q
			}
			if q, err := resource.ParseQuantity(mem); err == nil {
				l[corev1.ResourceMemory] = q
			}
			return l
		}
		pod := &corev1.Pod{}
		pod.Namespace, pod.Name = "batch", "p"
		pod.Spec.Containers = []corev1.Container{{Name: "app", Resources: corev1.ResourceRequirements{Requests: list(req, reqMem), Limits: list(lim, limMem)}}}
		if initReq != "" {
			pod.Spec.InitContainers = []corev1.Container{{Name: "init", Resources: corev1.ResourceRequirements{Requests: list(initReq, "")}}}
		}
		if hasPrio {
			pod.Spec.Priority = &prio
		}
		pod.Annotations = map[string]string{}
		if tierAnn != "" {
			pod.Annotations[wellknown.TierAnnotation] = tierAnn
		}
		if origAnn != "" {
			pod.Annotations[wellknown.OriginalCPURequestsAnnotation] = origAnn
		}
		s := Settings{Ratios: map[wellknown.Tier]float64{wellknown.TierHigh: ratio, wellknown.TierNormal: ratio, wellknown.TierLow: ratio, wellknown.TierBackground: ratio}, FloorMilli: floor, DryRun: dryRun}
		th := tiering.DefaultThresholds()
		plan := Compute(pod, s, []tiering.Thresholds{th})

		if plan.Skip != "" {
			if len(plan.Changes) != 0 || plan.Originals != "" {
				t.Fatalf("skip %q with changes %v", plan.Skip, plan.Changes)
			}
			return
		}
		if len(plan.Changes) == 0 {
			t.Fatal("neither a skip nor a change")
		}
		if origAnn != "" {
			t.Fatalf("deflated a pod that already carries %s", wellknown.OriginalCPURequestsAnnotation)
		}
		r := tiering.Classify(pod, th)
		if r.Tier == wellknown.TierCritical || r.Tier == wellknown.TierSystem || r.PriorityTier == wellknown.TierCritical || r.PriorityTier == wellknown.TierSystem {
			t.Fatalf("deflated a pod of tier %s (priority tier %s)", r.Tier, r.PriorityTier)
		}
		if r.QOSClass == corev1.PodQOSGuaranteed {
			t.Fatal("deflated a Guaranteed pod")
		}
		orig, err := wellknown.ParseOriginalCPURequests(plan.Originals)
		if err != nil {
			t.Fatalf("the originals the webhook writes do not read back: %v", err)
		}
		if len(orig) != len(plan.Changes) {
			t.Fatalf("originals %v for changes %v", orig, plan.Changes)
		}
		byPath := map[string]corev1.Container{
			"/spec/containers/0/resources/requests/cpu": pod.Spec.Containers[0],
		}
		if len(pod.Spec.InitContainers) > 0 {
			byPath["/spec/initContainers/0/resources/requests/cpu"] = pod.Spec.InitContainers[0]
		}
		for _, c := range plan.Changes {
			ct, ok := byPath[c.Path]
			if !ok || ct.Name != c.Container {
				t.Fatalf("change %+v points at no container", c)
			}
			cur := ct.Resources.Requests[corev1.ResourceCPU]
			if c.From.Cmp(cur) != 0 {
				t.Fatalf("change from %s, but the request is %s", c.From.String(), cur.String())
			}
			if c.To.Cmp(c.From) >= 0 || c.To.MilliValue() < floor {
				t.Fatalf("change %s → %s with floor %dm", c.From.String(), c.To.String(), floor)
			}
			if o := orig[c.Container]; o.Cmp(c.From) != 0 {
				t.Fatalf("original of %s recorded as %s, want %s", c.Container, o.String(), c.From.String())
			}
		}
		for _, w := range plan.Warnings {
			if !strings.Contains(w, "overcommit") && !strings.Contains(w, "annotation") {
				t.Fatalf("warning %q does not say where it comes from", w)
			}
		}
	})
}
