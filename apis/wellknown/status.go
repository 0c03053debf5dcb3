package wellknown

import (
	"fmt"
	"strings"
)

// AgentStatus is the parsed form of the AgentStatusAnnotation value.
type AgentStatus struct {
	// State is one of the AgentStatus* constants (for refused and degraded,
	// the prefix without the reason).
	State string
	// Reason is set for refused and degraded.
	Reason string
}

// String renders the annotation value.
func (s AgentStatus) String() string {
	if s.Reason != "" {
		return s.State + ": " + s.Reason
	}
	return s.State
}

// FormatAgentStatus renders state (and reason, for refused or degraded).
func FormatAgentStatus(state, reason string) string {
	return AgentStatus{State: state, Reason: reason}.String()
}

// ParseAgentStatus parses an AgentStatusAnnotation value. Unknown values are
// an error naming the annotation, so readers can report them and carry on.
func ParseAgentStatus(v string) (AgentStatus, error) {
	switch v {
	case AgentStatusEnforcingSCX, AgentStatusEnforcingCgroup, AgentStatusEnforcingTiers, AgentStatusObserveOnly, AgentStatusSafeMode:
		return AgentStatus{State: v}, nil
	}
	for _, p := range []string{AgentStatusRefusedPrefix, AgentStatusDegradedPrefix} {
		if rest, ok := strings.CutPrefix(v, p+":"); ok {
			return AgentStatus{State: p, Reason: strings.TrimSpace(rest)}, nil
		}
	}
	return AgentStatus{}, fmt.Errorf("annotation %s: unknown agent status %q", AgentStatusAnnotation, v)
}
