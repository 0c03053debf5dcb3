package tiering

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/infera-io/temper/apis/wellknown"
)

func TestNodeMappingRoundTrip(t *testing.T) {
	m := NodeMapping{Policy: "gpu-nodes", Thresholds: Thresholds{Critical: 500_000, High: 50_000, Normal: 0, Low: -100}}
	v := m.Marshal()
	if want := `{"v":1,"policy":"gpu-nodes","critical":500000,"high":50000,"normal":0,"low":-100}`; v != want {
		t.Errorf("Marshal() = %s, want %s", v, want)
	}
	got, err := ParseNodeMapping(v)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(m, got); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	// A hand-set value names no policy.
	hand := NodeMapping{Thresholds: DefaultThresholds()}
	if v := hand.Marshal(); strings.Contains(v, "policy") {
		t.Errorf("hand-set value carries a policy: %s", v)
	}
}

func TestParseNodeMappingRejects(t *testing.T) {
	tests := map[string]struct{ value, want string }{
		"not json":         {`critical=5`, "not a mapping document"},
		"unknown field":    {`{"v":1,"critical":5,"high":4,"normal":3,"low":2,"system":9}`, `unknown field "system"`},
		"no version":       {`{"critical":5,"high":4,"normal":3,"low":2}`, "v: missing"},
		"other version":    {`{"v":2,"critical":5,"high":4,"normal":3,"low":2}`, "v: unsupported version 2"},
		"missing low":      {`{"v":1,"critical":5,"high":4,"normal":3}`, "low: missing"},
		"not decreasing":   {`{"v":1,"critical":5,"high":5,"normal":3,"low":2}`, "high: 5 must be below critical (5)"},
		"system range":     {`{"v":1,"critical":2000000000,"high":5,"normal":3,"low":2}`, "critical: 2000000000 is in the system range"},
		"low above normal": {`{"v":1,"critical":5,"high":4,"normal":3,"low":3}`, "low: 3 must be below normal (3)"},
		"string number":    {`{"v":1,"critical":"5","high":4,"normal":3,"low":2}`, "not a mapping document"},
		"trailing data":    {`{"v":1,"critical":5,"high":4,"normal":3,"low":2} x`, "trailing data"},
		"too large":        {`{"v":1,"policy":"` + strings.Repeat("a", 2000) + `"}`, "more than 1024"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := ParseNodeMapping(tc.value)
			if err == nil {
				t.Fatalf("ParseNodeMapping(%s) succeeded", tc.value)
			}
			if !strings.HasPrefix(err.Error(), wellknown.PriorityMappingAnnotation+": ") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not name the annotation and %q", err, tc.want)
			}
		})
	}
}

func TestForNode(t *testing.T) {
	fallback := Thresholds{Critical: 40, High: 30, Normal: 20, Low: 10}
	custom := Thresholds{Critical: 500_000, High: 50_000, Normal: 0, Low: -100}
	tests := map[string]struct {
		annotations map[string]string
		want        Thresholds
		wantErr     bool
	}{
		"absent":    {nil, fallback, false},
		"valid":     {map[string]string{wellknown.PriorityMappingAnnotation: NodeMapping{Thresholds: custom, Policy: "p"}.Marshal()}, custom, false},
		"malformed": {map[string]string{wellknown.PriorityMappingAnnotation: `{"v":1}`}, fallback, true},
		"empty":     {map[string]string{wellknown.PriorityMappingAnnotation: ""}, fallback, true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := ForNode(tc.annotations, fallback)
			if (err != nil) != tc.wantErr {
				t.Errorf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("ForNode = %+v, want %+v", got, tc.want)
			}
		})
	}
	// The mapping moves a pod: priority 600000 is high by default and
	// critical under the custom mapping.
	if a, b := DefaultThresholds().ForPriority(600_000), custom.ForPriority(600_000); a != wellknown.TierHigh || b != wellknown.TierCritical {
		t.Errorf("600000: default %s, custom %s", a, b)
	}
}
