package tiering

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/infera-io/temper/apis/wellknown"
)

func TestDefaultThresholdsMatchTheContract(t *testing.T) {
	// DESIGN.md §2: the chart's PriorityClasses sit exactly on the
	// thresholds, so each class must land in its own tier.
	th := DefaultThresholds()
	if err := th.Validate(); err != nil {
		t.Fatalf("DefaultThresholds().Validate() = %v", err)
	}
	for _, pc := range wellknown.PriorityClasses() {
		if got := th.ForPriority(pc.Value); got != pc.Tier {
			t.Errorf("PriorityClass %s (value %d) → %s, want %s", pc.Name, pc.Value, got, pc.Tier)
		}
	}
}

func TestForPriorityDefaultBoundaries(t *testing.T) {
	tests := []struct {
		prio int32
		want wellknown.Tier
	}{
		{math.MinInt32, wellknown.TierBackground},
		{-1000, wellknown.TierBackground},
		{-101, wellknown.TierBackground},
		{-100, wellknown.TierLow},
		{-99, wellknown.TierLow},
		{-1, wellknown.TierLow},
		{0, wellknown.TierNormal},
		{1, wellknown.TierNormal},
		{99_999, wellknown.TierNormal},
		{100_000, wellknown.TierHigh},
		{100_001, wellknown.TierHigh},
		{999_999, wellknown.TierHigh},
		{1_000_000, wellknown.TierCritical},
		{1_000_001, wellknown.TierCritical},
		{1_999_999_999, wellknown.TierCritical},
		{2_000_000_000, wellknown.TierSystem}, // system-cluster-critical
		{2_000_001_000, wellknown.TierSystem}, // system-node-critical
		{math.MaxInt32, wellknown.TierSystem},
	}
	th := DefaultThresholds()
	for _, tc := range tests {
		if got := th.ForPriority(tc.prio); got != tc.want {
			t.Errorf("ForPriority(%d) = %s, want %s", tc.prio, got, tc.want)
		}
	}
}

// TestForPriorityCustomBoundaries checks every threshold and the value just
// below it for thresholds that sit at the edges of int32 and of the system
// range.
func TestForPriorityCustomBoundaries(t *testing.T) {
	sets := map[string]Thresholds{
		"defaults": DefaultThresholds(),
		"tight":    {Critical: 3, High: 2, Normal: 1, Low: 0},
		"extremes": {Critical: wellknown.DefaultSystemMinPriority - 1, High: 0, Normal: math.MinInt32 + 2, Low: math.MinInt32 + 1},
		"negative": {Critical: -10, High: -20, Normal: -30, Low: -40},
	}
	for name, th := range sets {
		t.Run(name, func(t *testing.T) {
			if err := th.Validate(); err != nil {
				t.Fatalf("Validate() = %v", err)
			}
			steps := []struct {
				min   int32
				tier  wellknown.Tier
				below wellknown.Tier
			}{
				{wellknown.DefaultSystemMinPriority, wellknown.TierSystem, wellknown.TierCritical},
				{th.Critical, wellknown.TierCritical, wellknown.TierHigh},
				{th.High, wellknown.TierHigh, wellknown.TierNormal},
				{th.Normal, wellknown.TierNormal, wellknown.TierLow},
				{th.Low, wellknown.TierLow, wellknown.TierBackground},
			}
			for _, s := range steps {
				if got := th.ForPriority(s.min); got != s.tier {
					t.Errorf("ForPriority(%d) = %s, want %s", s.min, got, s.tier)
				}
				if got := th.ForPriority(s.min - 1); got != s.below {
					t.Errorf("ForPriority(%d) = %s, want %s", s.min-1, got, s.below)
				}
			}
		})
	}
}

func TestThresholdsValidate(t *testing.T) {
	tests := map[string]struct {
		th      Thresholds
		wantErr string
	}{
		"defaults":                   {th: DefaultThresholds()},
		"critical just below system": {th: Thresholds{Critical: 1_999_999_999, High: 0, Normal: -1, Low: -2}},
		"low at min int32":           {th: Thresholds{Critical: 3, High: 2, Normal: 1, Low: math.MinInt32}},
		"critical in system range": {
			th:      Thresholds{Critical: 2_000_000_000, High: 100_000, Normal: 0, Low: -100},
			wantErr: "priority_mapping.critical: 2000000000 is in the system range (>= 2000000000)",
		},
		"critical at max int32": {
			th:      Thresholds{Critical: math.MaxInt32, High: 100_000, Normal: 0, Low: -100},
			wantErr: "priority_mapping.critical: 2147483647 is in the system range (>= 2000000000)",
		},
		"high equal to critical": {
			th:      Thresholds{Critical: 1_000_000, High: 1_000_000, Normal: 0, Low: -100},
			wantErr: "priority_mapping.high: 1000000 must be below critical (1000000)",
		},
		"high above critical": {
			th:      Thresholds{Critical: 10, High: 11, Normal: 0, Low: -100},
			wantErr: "priority_mapping.high: 11 must be below critical (10)",
		},
		"normal equal to high": {
			th:      Thresholds{Critical: 1_000_000, High: 100_000, Normal: 100_000, Low: -100},
			wantErr: "priority_mapping.normal: 100000 must be below high (100000)",
		},
		"low equal to normal": {
			th:      Thresholds{Critical: 1_000_000, High: 100_000, Normal: 0, Low: 0},
			wantErr: "priority_mapping.low: 0 must be below normal (0)",
		},
		"zero value": {
			th:      Thresholds{},
			wantErr: "priority_mapping.high: 0 must be below critical (0)",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := tc.th.Validate()
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tc.wantErr {
				t.Errorf("Validate() = %q, want %q", got, tc.wantErr)
			}
		})
	}
}

var (
	guaranteed = withContainer("app", res("1", "1Gi", "1", "1Gi"))
	burstable  = withContainer("app", res("500m", "", "", ""))
	bestEffort = withContainer("app", res("", "", "", ""))
)

const tierField = "metadata.annotations[infera.io/tier]"

func TestClassify(t *testing.T) {
	type want struct {
		Tier         wellknown.Tier
		PriorityTier wellknown.Tier
		Source       Source
		QOSClass     corev1.PodQOSClass
		Findings     []string // Finding.String()
	}
	tests := map[string]struct {
		pod  *corev1.Pod
		want want
	}{
		// QoS defaults: no PriorityClass, priority 0 or unset.
		"no class, nil priority, guaranteed": {
			pod:  newPod(guaranteed),
			want: want{Tier: "normal", PriorityTier: "normal", Source: SourceQoSDefault, QOSClass: corev1.PodQOSGuaranteed},
		},
		"no class, priority 0, burstable": {
			pod:  newPod(withPriority("", 0), burstable),
			want: want{Tier: "normal", PriorityTier: "normal", Source: SourceQoSDefault, QOSClass: corev1.PodQOSBurstable},
		},
		"no class, nil priority, best effort": {
			pod:  newPod(bestEffort),
			want: want{Tier: "background", PriorityTier: "background", Source: SourceQoSDefault, QOSClass: corev1.PodQOSBestEffort},
		},
		"no containers is best effort": {
			pod:  newPod(),
			want: want{Tier: "background", PriorityTier: "background", Source: SourceQoSDefault, QOSClass: corev1.PodQOSBestEffort},
		},
		"status.qosClass wins over the spec": {
			pod:  newPod(bestEffort, withStatusQOS(corev1.PodQOSBurstable)),
			want: want{Tier: "normal", PriorityTier: "normal", Source: SourceQoSDefault, QOSClass: corev1.PodQOSBurstable},
		},
		"status.qosClass BestEffort wins over a guaranteed spec": {
			pod:  newPod(guaranteed, withStatusQOS(corev1.PodQOSBestEffort)),
			want: want{Tier: "background", PriorityTier: "background", Source: SourceQoSDefault, QOSClass: corev1.PodQOSBestEffort},
		},
		"pod-level resources decide the QoS class": {
			pod:  newPod(bestEffort, withPodResources(res("1", "1Gi", "1", "1Gi"))),
			want: want{Tier: "normal", PriorityTier: "normal", Source: SourceQoSDefault, QOSClass: corev1.PodQOSGuaranteed},
		},
		"empty pod-level resources are best effort": {
			pod:  newPod(guaranteed, withPodResources(res("", "", "", ""))),
			want: want{Tier: "background", PriorityTier: "background", Source: SourceQoSDefault, QOSClass: corev1.PodQOSBestEffort},
		},

		// Priority decides once a class is named or the priority is not 0.
		"infera-normal class on a best-effort pod is normal": {
			pod:  newPod(withPriority("infera-normal", 0), bestEffort),
			want: want{Tier: "normal", PriorityTier: "normal", Source: SourcePriority, QOSClass: corev1.PodQOSBestEffort},
		},
		"class named but priority not yet resolved (nil) counts as 0": {
			pod:  newPod(withClassOnly("infera-critical"), bestEffort),
			want: want{Tier: "normal", PriorityTier: "normal", Source: SourcePriority, QOSClass: corev1.PodQOSBestEffort},
		},
		"no class but a non-zero priority uses the thresholds": {
			pod:  newPod(withPriority("", -5), guaranteed),
			want: want{Tier: "low", PriorityTier: "low", Source: SourcePriority, QOSClass: corev1.PodQOSGuaranteed},
		},
		"critical": {
			pod:  newPod(withPriority("infera-critical", 1_000_000), guaranteed),
			want: want{Tier: "critical", PriorityTier: "critical", Source: SourcePriority, QOSClass: corev1.PodQOSGuaranteed},
		},
		"high": {
			pod:  newPod(withPriority("infera-high", 100_000), burstable),
			want: want{Tier: "high", PriorityTier: "high", Source: SourcePriority, QOSClass: corev1.PodQOSBurstable},
		},
		"low": {
			pod:  newPod(withPriority("infera-low", -100), burstable),
			want: want{Tier: "low", PriorityTier: "low", Source: SourcePriority, QOSClass: corev1.PodQOSBurstable},
		},
		"background at min int32": {
			pod:  newPod(withPriority("weird", math.MinInt32), burstable),
			want: want{Tier: "background", PriorityTier: "background", Source: SourcePriority, QOSClass: corev1.PodQOSBurstable},
		},
		"system-node-critical": {
			pod:  newPod(withPriority("system-node-critical", 2_000_001_000), burstable),
			want: want{Tier: "system", PriorityTier: "system", Source: SourcePriority, QOSClass: corev1.PodQOSBurstable},
		},
		"system range without a class name": {
			pod:  newPod(withPriority("", math.MaxInt32), bestEffort),
			want: want{Tier: "system", PriorityTier: "system", Source: SourcePriority, QOSClass: corev1.PodQOSBestEffort},
		},

		// infera.io/tier may only lower.
		"annotation lowers critical to background": {
			pod:  newPod(withPriority("infera-critical", 1_000_000), guaranteed, withAnnotation("background")),
			want: want{Tier: "background", PriorityTier: "critical", Source: SourceAnnotation, QOSClass: corev1.PodQOSGuaranteed},
		},
		"annotation lowers a QoS-default pod": {
			pod:  newPod(burstable, withAnnotation("low")),
			want: want{Tier: "low", PriorityTier: "normal", Source: SourceAnnotation, QOSClass: corev1.PodQOSBurstable},
		},
		"annotation lowers a system pod": {
			pod:  newPod(withPriority("system-cluster-critical", 2_000_000_000), burstable, withAnnotation("normal")),
			want: want{Tier: "normal", PriorityTier: "system", Source: SourceAnnotation, QOSClass: corev1.PodQOSBurstable},
		},
		"annotation with surrounding blanks still lowers": {
			pod:  newPod(burstable, withAnnotation("  background\n")),
			want: want{Tier: "background", PriorityTier: "normal", Source: SourceAnnotation, QOSClass: corev1.PodQOSBurstable},
		},
		"annotation equal to the priority tier is a no-op": {
			pod:  newPod(withPriority("infera-high", 100_000), burstable, withAnnotation("high")),
			want: want{Tier: "high", PriorityTier: "high", Source: SourcePriority, QOSClass: corev1.PodQOSBurstable},
		},
		"raising annotation is ignored and reported": {
			pod: newPod(bestEffort, withAnnotation("critical")),
			want: want{Tier: "background", PriorityTier: "background", Source: SourceQoSDefault, QOSClass: corev1.PodQOSBestEffort,
				Findings: []string{tierField + `: "critical" would raise the pod above its background tier; the annotation may only lower a tier (use a PriorityClass to raise it); annotation ignored`}},
		},
		"system annotation on a normal pod is raising": {
			pod: newPod(withPriority("infera-normal", 0), burstable, withAnnotation("system")),
			want: want{Tier: "normal", PriorityTier: "normal", Source: SourcePriority, QOSClass: corev1.PodQOSBurstable,
				Findings: []string{tierField + `: "system" would raise the pod above its normal tier; the annotation may only lower a tier (use a PriorityClass to raise it); annotation ignored`}},
		},
		"unknown annotation": {
			pod: newPod(withPriority("infera-high", 100_000), burstable, withAnnotation("gold")),
			want: want{Tier: "high", PriorityTier: "high", Source: SourcePriority, QOSClass: corev1.PodQOSBurstable,
				Findings: []string{tierField + `: unknown tier "gold": must be one of system, critical, high, normal, low, background; annotation ignored`}},
		},
		"upper-case annotation is unknown": {
			pod: newPod(withPriority("infera-high", 100_000), burstable, withAnnotation("LOW")),
			want: want{Tier: "high", PriorityTier: "high", Source: SourcePriority, QOSClass: corev1.PodQOSBurstable,
				Findings: []string{tierField + `: unknown tier "LOW": must be one of system, critical, high, normal, low, background; annotation ignored`}},
		},
		"empty annotation": {
			pod: newPod(burstable, withAnnotation("")),
			want: want{Tier: "normal", PriorityTier: "normal", Source: SourceQoSDefault, QOSClass: corev1.PodQOSBurstable,
				Findings: []string{tierField + `: unknown tier "": must be one of system, critical, high, normal, low, background; annotation ignored`}},
		},
		"whitespace-only annotation": {
			pod: newPod(burstable, withAnnotation(" \t ")),
			want: want{Tier: "normal", PriorityTier: "normal", Source: SourceQoSDefault, QOSClass: corev1.PodQOSBurstable,
				Findings: []string{tierField + `: unknown tier " \t ": must be one of system, critical, high, normal, low, background; annotation ignored`}},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := Classify(tc.pod, DefaultThresholds())
			got := want{Tier: r.Tier, PriorityTier: r.PriorityTier, Source: r.Source, QOSClass: r.QOSClass}
			for _, f := range r.Findings {
				got.Findings = append(got.Findings, f.String())
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("Classify() mismatch (-want +got):\n%s", d)
			}
		})
	}
}

func TestClassifyCustomThresholds(t *testing.T) {
	th := Thresholds{Critical: 500, High: 400, Normal: 300, Low: 200}
	tests := []struct {
		prio int32
		want wellknown.Tier
	}{
		{500, wellknown.TierCritical},
		{499, wellknown.TierHigh},
		{300, wellknown.TierNormal},
		{299, wellknown.TierLow},
		{199, wellknown.TierBackground},
		{1_000_000, wellknown.TierCritical},
	}
	for _, tc := range tests {
		r := Classify(newPod(withPriority("c", tc.prio), guaranteed), th)
		if r.Tier != tc.want {
			t.Errorf("priority %d: tier %s, want %s", tc.prio, r.Tier, tc.want)
		}
	}
	// The QoS default does not consult the thresholds: priority 0 with no
	// class is normal even though 0 is below this Normal.
	if r := Classify(newPod(guaranteed), th); r.Tier != wellknown.TierNormal || r.Source != SourceQoSDefault {
		t.Errorf("QoS default under custom thresholds = %s/%s, want normal/%s", r.Tier, r.Source, SourceQoSDefault)
	}
}

func TestClassifyHugeAnnotationIsShortened(t *testing.T) {
	for name, v := range map[string]string{
		"unknown":          strings.Repeat("x", 256<<10),
		"raising, padded":  "critical" + strings.Repeat(" ", 256<<10),
		"multi-byte runes": strings.Repeat("é", 100<<10),
	} {
		t.Run(name, func(t *testing.T) {
			r := Classify(newPod(bestEffort, withAnnotation(v)), DefaultThresholds())
			if r.Tier != wellknown.TierBackground {
				t.Errorf("tier = %s, want background", r.Tier)
			}
			if len(r.Findings) != 1 {
				t.Fatalf("findings = %v, want one", r.Findings)
			}
			if msg := r.Findings[0].Message; len(msg) > 300 {
				t.Errorf("finding repeats %d bytes of the annotation; want a short message: %.120s…", len(msg), msg)
			}
		})
	}
}

func TestClassifyDoesNotMutateThePod(t *testing.T) {
	p := newPod(withPriority("infera-critical", 1_000_000), guaranteed, withAnnotation("low"))
	before := p.DeepCopy()
	_ = Classify(p, DefaultThresholds())
	_ = PodCPU(p)
	if d := cmp.Diff(before, p); d != "" {
		t.Errorf("the pod changed (-before +after):\n%s", d)
	}
}

func ExampleClassify() {
	prio := int32(1_000_000)
	pod := &corev1.Pod{}
	pod.Spec.PriorityClassName = "infera-critical"
	pod.Spec.Priority = &prio
	pod.Annotations = map[string]string{wellknown.TierAnnotation: "background"}
	r := Classify(pod, DefaultThresholds())
	fmt.Println(r.Tier, r.PriorityTier, r.Source)
	// Output: background critical annotation
}
