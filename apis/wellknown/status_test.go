package wellknown

import (
	"strings"
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
		// The obvious spellings of yes stand the node down (issue #18):
		// a typo must never silently keep enforcing.
		"True":      {map[string]string{SafeModeRequestedAnnotation: "True"}, true},
		"TRUE":      {map[string]string{SafeModeRequestedAnnotation: "TRUE"}, true},
		"yes":       {map[string]string{SafeModeRequestedAnnotation: "yes"}, true},
		"1":         {map[string]string{SafeModeRequestedAnnotation: "1"}, true},
		"on":        {map[string]string{SafeModeRequestedAnnotation: "on"}, true},
		"padded":    {map[string]string{SafeModeRequestedAnnotation: " true\n"}, true},
		"false":     {map[string]string{SafeModeRequestedAnnotation: "false"}, false},
		"FALSE":     {map[string]string{SafeModeRequestedAnnotation: "FALSE"}, false},
		"no":        {map[string]string{SafeModeRequestedAnnotation: "no"}, false},
		"0":         {map[string]string{SafeModeRequestedAnnotation: "0"}, false},
		"off":       {map[string]string{SafeModeRequestedAnnotation: "off"}, false},
		"empty":     {map[string]string{SafeModeRequestedAnnotation: ""}, false},
		"typo":      {map[string]string{SafeModeRequestedAnnotation: "ture"}, true},
		"garbage":   {map[string]string{SafeModeRequestedAnnotation: "please"}, true},
		"not false": {map[string]string{SafeModeRequestedAnnotation: "flase"}, true},
	}
	for name, tc := range tests {
		if got := IsSafeModeRequested(tc.annotations); got != tc.want {
			t.Errorf("%s: IsSafeModeRequested = %v, want %v", name, got, tc.want)
		}
	}
}

func TestParseSafeModeNamesTheKey(t *testing.T) {
	for _, v := range []string{"true", "Yes", " ON ", "1", "false", "No", "0", "off", ""} {
		if _, err := ParseSafeMode(v); err != nil {
			t.Errorf("ParseSafeMode(%q) = %v, want no error", v, err)
		}
	}
	on, err := ParseSafeMode("ture")
	if !on || err == nil {
		t.Fatalf("ParseSafeMode(\"ture\") = %v, %v; want true (stand down) and an error", on, err)
	}
	for _, want := range []string{SafeModeRequestedAnnotation, `"ture"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}
