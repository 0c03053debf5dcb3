package overcommit

import (
	"math"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	inferav1alpha1 "github.com/infera-io/temper/apis/infera/v1alpha1"
	"github.com/infera-io/temper/apis/tiering"
	"github.com/infera-io/temper/apis/wellknown"
)

func ctr(name, req, lim string) corev1.Container {
	c := corev1.Container{Name: name, Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{}, Limits: corev1.ResourceList{}}}
	if req != "" {
		c.Resources.Requests[corev1.ResourceCPU] = resource.MustParse(req)
	}
	if lim != "" {
		c.Resources.Limits[corev1.ResourceCPU] = resource.MustParse(lim)
	}
	return c
}

func podWith(prioClass string, prio *int32, cs ...corev1.Container) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "batch"},
		Spec:       corev1.PodSpec{PriorityClassName: prioClass, Priority: prio, Containers: cs},
	}
}

func i32(v int32) *int32 { return &v }

// changes renders a plan's changes as "path from→to" for comparison.
func changes(p Plan) []string {
	var out []string
	for _, c := range p.Changes {
		out = append(out, c.Path+" "+c.From.String()+"→"+c.To.String())
	}
	return out
}

func TestCompute(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	withSidecar := podWith("infera-low", i32(-100), ctr("app", "1", ""))
	withSidecar.Spec.InitContainers = []corev1.Container{ctr("setup", "2", ""), ctr("proxy", "400m", "1")}
	withSidecar.Spec.InitContainers[1].RestartPolicy = &always
	podLevel := podWith("infera-low", i32(-100), ctr("app", "1", ""))
	podLevel.Spec.Resources = &corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2")}}
	annotated := podWith("infera-low", i32(-100), ctr("app", "1", ""))
	annotated.Annotations = map[string]string{wellknown.OriginalCPURequestsAnnotation: `{"app":"2"}`}
	garbage := podWith("infera-low", i32(-100), ctr("app", "1", ""))
	garbage.Annotations = map[string]string{wellknown.OriginalCPURequestsAnnotation: `}{not json`}
	volunteer := podWith("infera-critical", i32(1_000_000), ctr("app", "1", ""))
	volunteer.Annotations = map[string]string{wellknown.TierAnnotation: "background"}
	lowered := podWith("infera-high", i32(100_000), ctr("app", "1", ""))
	lowered.Annotations = map[string]string{wellknown.TierAnnotation: "low"}

	tests := map[string]struct {
		pod        *corev1.Pod
		thresholds []tiering.Thresholds
		wantTier   wellknown.Tier
		wantSkip   string
		want       []string
		wantOrig   string
		wantWarn   string
	}{
		"normal tier by QoS default, limits untouched": {
			pod:      podWith("", nil, ctr("app", "1", "2")),
			wantTier: wellknown.TierNormal,
			want:     []string{"/spec/containers/0/resources/requests/cpu 1→750m"},
			wantOrig: `{"app":"1"}`,
		},
		"low tier by PriorityClass, several containers": {
			pod:      podWith("infera-low", i32(-100), ctr("a", "500m", ""), ctr("b", "3", "")),
			wantTier: wellknown.TierLow,
			want: []string{
				"/spec/containers/0/resources/requests/cpu 500m→250m",
				"/spec/containers/1/resources/requests/cpu 3→1500m",
			},
			wantOrig: `{"a":"500m","b":"3"}`,
		},
		"floor keeps a small request up": {
			pod:      podWith("infera-background", i32(-1000), ctr("app", "60m", "")),
			wantTier: wellknown.TierBackground,
			want:     []string{"/spec/containers/0/resources/requests/cpu 60m→25m"},
			wantOrig: `{"app":"60m"}`,
		},
		"request already below the floor is not touched": {
			pod:      podWith("infera-background", i32(-1000), ctr("app", "20m", "")),
			wantTier: wellknown.TierBackground,
			wantSkip: SkipNothingToDeflate,
		},
		"rounding up never goes below a millicore": {
			pod:      podWith("infera-low", i32(-100), ctr("app", "101m", "")),
			wantTier: wellknown.TierLow,
			want:     []string{"/spec/containers/0/resources/requests/cpu 101m→51m"},
			wantOrig: `{"app":"101m"}`,
		},
		"container without a request is left alone, others deflate": {
			pod:      podWith("infera-low", i32(-100), ctr("none", "", ""), ctr("app", "1", "")),
			wantTier: wellknown.TierLow,
			want:     []string{"/spec/containers/1/resources/requests/cpu 1→500m"},
			wantOrig: `{"app":"1"}`,
		},
		"init containers and restartable sidecars are deflated": {
			pod:      withSidecar,
			wantTier: wellknown.TierLow,
			want: []string{
				"/spec/initContainers/0/resources/requests/cpu 2→1",
				"/spec/initContainers/1/resources/requests/cpu 400m→200m",
				"/spec/containers/0/resources/requests/cpu 1→500m",
			},
			wantOrig: `{"app":"1","proxy":"400m","setup":"2"}`,
		},
		"critical tier is never touched": {
			pod:      podWith("infera-critical", i32(1_000_000), ctr("app", "4", "")),
			wantTier: wellknown.TierCritical,
			wantSkip: SkipProtectedTier,
		},
		"system tier is never touched": {
			pod:      podWith("system-node-critical", i32(2_000_001_000), ctr("app", "4", "")),
			wantTier: wellknown.TierSystem,
			wantSkip: SkipProtectedTier,
		},
		"a critical pod that volunteers to be background is still protected": {
			pod:      volunteer,
			wantTier: wellknown.TierBackground,
			wantSkip: SkipProtectedTier,
		},
		"tier annotation lowering high to low uses the low ratio": {
			pod:      lowered,
			wantTier: wellknown.TierLow,
			want:     []string{"/spec/containers/0/resources/requests/cpu 1→500m"},
			wantOrig: `{"app":"1"}`,
		},
		"high tier has no default ratio": {
			pod:      podWith("infera-high", i32(100_000), ctr("app", "1", "")),
			wantTier: wellknown.TierHigh,
			wantSkip: SkipNoRatio,
		},
		"a policy mapping that makes the pod critical protects it": {
			pod:        podWith("team-batch", i32(5000), ctr("app", "1", "")),
			thresholds: []tiering.Thresholds{tiering.DefaultThresholds(), {Critical: 5000, High: 1000, Normal: 0, Low: -100}},
			wantTier:   wellknown.TierCritical,
			wantSkip:   SkipProtectedTier,
		},
		"Guaranteed pods keep their QoS class": {
			pod:      podWith("infera-low", i32(-100), corev1.Container{Name: "app", Resources: guaranteed("1", "1Gi")}),
			wantTier: wellknown.TierLow,
			wantSkip: SkipGuaranteed,
		},
		"pod-level resources are not deflated": {
			pod:      podLevel,
			wantSkip: SkipPodLevelResources,
			wantWarn: "pod-level CPU resources",
		},
		"already carrying the originals: idempotent": {
			pod:      annotated,
			wantSkip: SkipAlreadyDeflated,
		},
		"garbage in the originals annotation: no-op with a warning": {
			pod:      garbage,
			wantSkip: SkipAlreadyDeflated,
			wantWarn: "not a JSON object of container name to CPU quantity",
		},
		"priority class without resolved priority: not guessed": {
			pod:      podWith("infera-low", nil, ctr("app", "1", "")),
			wantSkip: SkipUnresolvedPrio,
		},
		"absurd quantity is skipped with a warning, others deflate": {
			pod:      podWith("infera-low", i32(-100), ctr("huge", "2000000000", ""), ctr("app", "1", "")),
			wantTier: wellknown.TierLow,
			want:     []string{"/spec/containers/1/resources/requests/cpu 1→500m"},
			wantOrig: `{"app":"1"}`,
			wantWarn: "more than 1000000 cores",
		},
		"sub-millicore precision is compared exactly": {
			pod:      podWith("infera-low", i32(-100), ctr("app", "1000500u", "")),
			wantTier: wellknown.TierLow,
			want:     []string{"/spec/containers/0/resources/requests/cpu 1000500u→501m"},
			wantOrig: `{"app":"1000500u"}`,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			before := tc.pod.DeepCopy()
			p := Compute(tc.pod, DefaultSettings(), tc.thresholds)
			if diff := cmp.Diff(before, tc.pod); diff != "" {
				t.Fatalf("Compute mutated the pod (-before +after):\n%s", diff)
			}
			if tc.wantTier != "" && p.Tier != tc.wantTier {
				t.Errorf("tier = %q, want %q", p.Tier, tc.wantTier)
			}
			if p.Skip != tc.wantSkip {
				t.Errorf("skip = %q, want %q", p.Skip, tc.wantSkip)
			}
			if diff := cmp.Diff(tc.want, changes(p)); diff != "" {
				t.Errorf("changes (-want +got):\n%s", diff)
			}
			if p.Originals != tc.wantOrig {
				t.Errorf("originals = %s, want %s", p.Originals, tc.wantOrig)
			}
			joined := strings.Join(p.Warnings, "\n")
			if (tc.wantWarn == "") != (joined == "") || !strings.Contains(joined, tc.wantWarn) {
				t.Errorf("warnings = %q, want one containing %q", p.Warnings, tc.wantWarn)
			}
			for _, c := range p.Changes {
				if c.To.Cmp(c.From) >= 0 {
					t.Errorf("%s: %s is not below %s", c.Path, c.To.String(), c.From.String())
				}
			}
		})
	}
}

func guaranteed(cpu, mem string) corev1.ResourceRequirements {
	l := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse(mem)}
	return corev1.ResourceRequirements{Requests: l.DeepCopy(), Limits: l}
}

func TestComputeFloorAndRatioFromProfile(t *testing.T) {
	p := &inferav1alpha1.OvercommitProfile{ObjectMeta: metav1.ObjectMeta{Name: "x"}, Spec: inferav1alpha1.OvercommitProfileSpec{
		Ratios:     []inferav1alpha1.TierRatio{{Tier: "high", Ratio: 0.9}, {Tier: "low", Ratio: 0.1}},
		FloorMilli: 300,
	}}
	s, err := SettingsFromProfile(p)
	if err != nil {
		t.Fatal(err)
	}
	high := Compute(podWith("infera-high", i32(100_000), ctr("app", "1", "")), s, nil)
	if diff := cmp.Diff([]string{"/spec/containers/0/resources/requests/cpu 1→900m"}, changes(high)); diff != "" {
		t.Errorf("high (-want +got):\n%s", diff)
	}
	low := Compute(podWith("infera-low", i32(-100), ctr("app", "1", "")), s, nil)
	if diff := cmp.Diff([]string{"/spec/containers/0/resources/requests/cpu 1→300m"}, changes(low)); diff != "" {
		t.Errorf("low clamps to the floor (-want +got):\n%s", diff)
	}
	normal := Compute(podWith("", nil, ctr("app", "1", "")), s, nil)
	if normal.Skip != SkipNoRatio {
		t.Errorf("normal is not listed in the profile, skip = %q", normal.Skip)
	}
}

func TestSettingsFromProfileRejectsOutOfRange(t *testing.T) {
	for name, r := range map[string]inferav1alpha1.TierRatio{
		"zero":     {Tier: "low", Ratio: 0},
		"negative": {Tier: "low", Ratio: -0.5},
		"above 1":  {Tier: "low", Ratio: 1.5},
		"NaN":      {Tier: "low", Ratio: math.NaN()},
		"critical": {Tier: "critical", Ratio: 0.5},
		"unknown":  {Tier: "gold", Ratio: 0.5},
	} {
		t.Run(name, func(t *testing.T) {
			p := &inferav1alpha1.OvercommitProfile{ObjectMeta: metav1.ObjectMeta{Name: "bad"},
				Spec: inferav1alpha1.OvercommitProfileSpec{Ratios: []inferav1alpha1.TierRatio{r}, FloorMilli: 25}}
			if _, err := SettingsFromProfile(p); err == nil || !strings.Contains(err.Error(), "spec.ratios[0]") {
				t.Fatalf("err = %v, want one naming spec.ratios[0]", err)
			}
		})
	}
}

func TestComputeBackgroundBestEffort(t *testing.T) {
	s := DefaultSettings()
	s.BackgroundBestEffort = true
	bg := podWith("infera-background", i32(-1_000_000), ctr("a", "500m", ""), ctr("b", "", ""))
	p := Compute(bg, s, nil)
	if !p.BestEffort || p.Skip != "" {
		t.Fatalf("Compute() = %+v, want the BestEffort path", p)
	}
	if len(p.Changes) != 1 || !p.Changes[0].Remove || p.Changes[0].Path != "/spec/containers/0/resources/requests/cpu" {
		t.Errorf("changes = %+v, want the removal of containers[0]'s CPU request", p.Changes)
	}
	if p.Originals != `{"a":"500m"}` {
		t.Errorf("originals = %s", p.Originals)
	}

	limited := podWith("infera-background", i32(-1_000_000), ctr("a", "400m", "1"))
	p = Compute(limited, s, nil)
	if p.BestEffort || len(p.Changes) != 1 || p.Changes[0].Remove || p.Changes[0].To.String() != "100m" {
		t.Errorf("a CPU limit: Compute() = %+v, want the ratio path (400m -> 100m)", p)
	}
	if w := strings.Join(p.Warnings, "\n"); !strings.Contains(w, "containers[0](a) sets a CPU limit") {
		t.Errorf("warnings %q do not say why the pod is not made BestEffort", w)
	}

	memory := podWith("infera-background", i32(-1_000_000), ctr("a", "400m", ""))
	memory.Spec.Containers[0].Resources.Limits[corev1.ResourceMemory] = resource.MustParse("1Gi")
	if p = Compute(memory, s, nil); p.BestEffort {
		t.Errorf("a memory limit: Compute() = %+v, want no BestEffort", p)
	}

	low := podWith("infera-low", i32(-100), ctr("a", "400m", ""))
	if p = Compute(low, s, nil); p.BestEffort || len(p.Changes) != 1 || p.Changes[0].To.String() != "200m" {
		t.Errorf("low: Compute() = %+v, want 400m -> 200m", p)
	}

	s.BackgroundBestEffort = false
	if p = Compute(bg, s, nil); p.BestEffort || len(p.Changes) != 1 || p.Changes[0].To.String() != "125m" {
		t.Errorf("option off: Compute() = %+v, want 500m -> 125m", p)
	}
}
