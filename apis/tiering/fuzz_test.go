package tiering

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/infera-io/temper/apis/wellknown"
)

// FuzzClassify feeds odd pods to Classify and PodCPU and checks the rules
// that must hold for every input: no panic, a valid tier, the annotation
// only ever lowers, findings exactly when the annotation is ignored, and
// CPU sums inside [0, MaxCPUMilli].
//
// The seed corpus is in testdata/fuzz/FuzzClassify and runs with every
// `go test`. To fuzz (about a minute is a useful run):
//
//	go test ./apis/tiering -run '^$' -fuzz '^FuzzClassify$' -fuzztime 60s
//
// A crash is written to testdata/fuzz/FuzzClassify; commit it with the fix.
func FuzzClassify(f *testing.F) {
	f.Add(int32(1_000_000), true, "infera-critical", "background", true, "1", "1", "1Gi", "1Gi", "", false, "", "", "")
	f.Add(int32(0), false, "", "critical", true, "", "", "", "", "100m", true, "", "10m", "BestEffort")
	f.Add(int32(-2147483648), true, "x", " low ", true, "-1", "1e30", "", "", "", false, "2", "", "")
	f.Fuzz(func(t *testing.T, prio int32, hasPrio bool, class, annotation string, hasAnnotation bool,
		reqCPU, limCPU, reqMem, limMem, initCPU string, sidecar bool, podCPU, overhead, statusQOS string) {
		pod := &corev1.Pod{}
		pod.Spec.PriorityClassName = class
		if hasPrio {
			pod.Spec.Priority = &prio
		}
		if hasAnnotation {
			pod.Annotations = map[string]string{wellknown.TierAnnotation: annotation}
		}
		pod.Status.QOSClass = corev1.PodQOSClass(statusQOS)
		set := func(l *corev1.ResourceList, name corev1.ResourceName, s string) {
			q, err := resource.ParseQuantity(s)
			if err != nil {
				return
			}
			if *l == nil {
				*l = corev1.ResourceList{}
			}
			(*l)[name] = q
		}
		var app corev1.Container
		set(&app.Resources.Requests, corev1.ResourceCPU, reqCPU)
		set(&app.Resources.Limits, corev1.ResourceCPU, limCPU)
		set(&app.Resources.Requests, corev1.ResourceMemory, reqMem)
		set(&app.Resources.Limits, corev1.ResourceMemory, limMem)
		pod.Spec.Containers = []corev1.Container{app}
		if initCPU != "" {
			var ic corev1.Container
			set(&ic.Resources.Requests, corev1.ResourceCPU, initCPU)
			set(&ic.Resources.Limits, corev1.ResourceCPU, initCPU)
			if sidecar {
				always := corev1.ContainerRestartPolicyAlways
				ic.RestartPolicy = &always
			}
			pod.Spec.InitContainers = []corev1.Container{ic}
		}
		if podCPU != "" {
			pod.Spec.Resources = &corev1.ResourceRequirements{}
			set(&pod.Spec.Resources.Limits, corev1.ResourceCPU, podCPU)
		}
		set(&pod.Spec.Overhead, corev1.ResourceCPU, overhead)

		th := DefaultThresholds()
		r := Classify(pod, th)

		if !r.Tier.Valid() || !r.PriorityTier.Valid() {
			t.Fatalf("invalid tier: %+v", r)
		}
		if r.PriorityTier.Below(r.Tier) {
			t.Fatalf("tier %s is above the priority tier %s", r.Tier, r.PriorityTier)
		}
		if (r.Source == SourceAnnotation) != (r.Tier != r.PriorityTier) {
			t.Fatalf("source %s with tier %s and priority tier %s", r.Source, r.Tier, r.PriorityTier)
		}
		qosDefault := class == "" && (!hasPrio || prio == 0)
		switch {
		case qosDefault && r.QOSClass == corev1.PodQOSBestEffort:
			if r.PriorityTier != wellknown.TierBackground {
				t.Fatalf("best-effort QoS default gave %s", r.PriorityTier)
			}
		case qosDefault:
			if r.PriorityTier != wellknown.TierNormal {
				t.Fatalf("%s QoS default gave %s", r.QOSClass, r.PriorityTier)
			}
		default:
			if r.Source == SourceQoSDefault {
				t.Fatalf("QoS default used with class %q and priority %d", class, prio)
			}
			p := int32(0)
			if hasPrio {
				p = prio
			}
			if want := th.ForPriority(p); r.PriorityTier != want {
				t.Fatalf("priority tier %s, want %s", r.PriorityTier, want)
			}
		}
		ignored := false
		if hasAnnotation {
			want, err := wellknown.ParseTier(annotation)
			ignored = err != nil || r.PriorityTier.Below(want)
		}
		if ignored != (len(r.Findings) > 0) {
			t.Fatalf("annotation %q ignored=%v but findings %v", annotation, ignored, r.Findings)
		}
		for _, fd := range r.Findings {
			if fd.Field != tierField || fd.Message == "" || len(fd.Message) > 400 {
				t.Fatalf("bad finding %q", fd.String())
			}
		}
		if again := Classify(pod, th); !cmp.Equal(r, again) {
			t.Fatalf("Classify is not deterministic: %+v vs %+v", r, again)
		}
		if prio < 1<<31-1 {
			if hi, lo := th.ForPriority(prio+1), th.ForPriority(prio); hi.Below(lo) {
				t.Fatalf("ForPriority(%d)=%s is below ForPriority(%d)=%s", prio+1, hi, prio, lo)
			}
		}

		cpu := PodCPU(pod)
		if cpu.RequestMilli < 0 || cpu.RequestMilli > MaxCPUMilli || cpu.LimitMilli < 0 || cpu.LimitMilli > MaxCPUMilli {
			t.Fatalf("CPU out of range: %+v", cpu)
		}
		for _, fd := range cpu.Findings {
			if fd.Field == "" || fd.Message == "" {
				t.Fatalf("bad finding %+v", fd)
			}
		}
	})
}

// FuzzParseNodeMapping feeds arbitrary infera.io/priority-mapping values to
// the reader the agent and the scheduler plugin share. Whatever it accepts
// has valid thresholds and survives Marshal and a second parse unchanged;
// whatever it rejects names the annotation and yields the zero mapping, and
// ForNode then falls back.
func FuzzParseNodeMapping(f *testing.F) {
	f.Add(NodeMapping{Policy: "gpu-fleet", Thresholds: DefaultThresholds()}.Marshal())
	f.Add(`{"v":1,"critical":10,"high":5,"normal":0,"low":-5}`)
	f.Add(`{"v":2,"critical":10,"high":5,"normal":0,"low":-5}`)
	f.Add(`{"v":1,"critical":1,"high":5,"normal":0,"low":-5,"extra":1}`)
	f.Add(`{"v":1} {}`)
	f.Fuzz(func(t *testing.T, v string) {
		fallback := DefaultThresholds()
		m, err := ParseNodeMapping(v)
		got, ferr := ForNode(map[string]string{wellknown.PriorityMappingAnnotation: v}, fallback)
		if err != nil {
			if !strings.HasPrefix(err.Error(), wellknown.PriorityMappingAnnotation+": ") {
				t.Fatalf("error does not name the annotation: %v", err)
			}
			if m != (NodeMapping{}) || ferr == nil || got != fallback {
				t.Fatalf("rejected %q but returned %+v; ForNode = %+v, %v", v, m, got, ferr)
			}
			return
		}
		if verr := m.Thresholds.Validate(); verr != nil {
			t.Fatalf("accepted %q with invalid thresholds: %v", v, verr)
		}
		if ferr != nil || got != m.Thresholds {
			t.Fatalf("ForNode = %+v, %v; want the parsed thresholds %+v", got, ferr, m.Thresholds)
		}
		out := m.Marshal()
		back, err := ParseNodeMapping(out)
		if err != nil || back != m {
			t.Fatalf("round trip of %q: %q gives %+v, %v", v, out, back, err)
		}
	})
}
