package wellknown

import (
	"testing"
)

func TestAgentStatusRoundTrip(t *testing.T) {
	tests := map[string]struct {
		value string
		want  AgentStatus
	}{
		"scx":          {value: "enforcing/scx_layered", want: AgentStatus{State: AgentStatusEnforcingSCX}},
		"cgroup":       {value: "enforcing/cgroup", want: AgentStatus{State: AgentStatusEnforcingCgroup}},
		"observe-only": {value: "observe-only", want: AgentStatus{State: AgentStatusObserveOnly}},
		"safe-mode":    {value: "safe-mode", want: AgentStatus{State: AgentStatusSafeMode}},
		"refused":      {value: "refused: no cgroup v2", want: AgentStatus{State: "refused", Reason: "no cgroup v2"}},
		"degraded":     {value: "degraded: scx_layered exited 1", want: AgentStatus{State: "degraded", Reason: "scx_layered exited 1"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := ParseAgentStatus(tc.value)
			if err != nil {
				t.Fatalf("ParseAgentStatus(%q) = %v", tc.value, err)
			}
			if got != tc.want {
				t.Errorf("ParseAgentStatus(%q) = %+v, want %+v", tc.value, got, tc.want)
			}
			if s := FormatAgentStatus(got.State, got.Reason); s != tc.value {
				t.Errorf("FormatAgentStatus round trip = %q, want %q", s, tc.value)
			}
		})
	}
}

func TestParseAgentStatusRejects(t *testing.T) {
	for _, v := range []string{"", "enforcing", "ENFORCING/cgroup", "refused", "paused: x"} {
		if _, err := ParseAgentStatus(v); err == nil {
			t.Errorf("ParseAgentStatus(%q) succeeded, want an error", v)
		}
	}
}

func TestIsSafeModeRequested(t *testing.T) {
	tests := map[string]struct {
		annotations map[string]string
		want        bool
	}{
		"nil":    {nil, false},
		"absent": {map[string]string{"other": "true"}, false},
		"true":   {map[string]string{SafeModeRequestedAnnotation: "true"}, true},
		"True":   {map[string]string{SafeModeRequestedAnnotation: "True"}, false},
		"padded": {map[string]string{SafeModeRequestedAnnotation: " true"}, false},
		"false":  {map[string]string{SafeModeRequestedAnnotation: "false"}, false},
		"empty":  {map[string]string{SafeModeRequestedAnnotation: ""}, false},
	}
	for name, tc := range tests {
		if got := IsSafeModeRequested(tc.annotations); got != tc.want {
			t.Errorf("%s: IsSafeModeRequested = %v, want %v", name, got, tc.want)
		}
	}
}
