package wellknown

import (
	"fmt"
	"strings"
)

// Domain is the prefix of every key Temper owns.
const Domain = "infera.io"

// Node annotations.
const (
	// SafeModeRequestedAnnotation on a Node: "true" (or another yes, see
	// ParseSafeMode) makes the agent stand down to stock kernel behaviour.
	// Absent or a no means enforce; an unreadable value stands down too and
	// is reported. Written by operators, the dashboard and the manager.
	SafeModeRequestedAnnotation = Domain + "/safe-mode-requested"

	// AgentStatusAnnotation on a Node: what the agent enforces right now. See
	// the AgentStatus* values and FormatAgentStatus.
	AgentStatusAnnotation = Domain + "/agent-status"

	// TierLoadAnnotation on a Node: the compact JSON TierLoad document.
	TierLoadAnnotation = Domain + "/tier-load"

	// SafeModeOwnerAnnotation on a Node records which InferaPolicy objects
	// set SafeModeRequestedAnnotation, so the manager never removes a value an
	// operator set by hand. Written and read by the manager only.
	SafeModeOwnerAnnotation = Domain + "/safe-mode-requested-by"

	// PriorityMappingAnnotation on a Node: the tier thresholds in force on
	// that node, as compact JSON (apis/tiering.NodeMapping). The manager
	// writes it from InferaPolicy.spec.priorityMapping; the agent, the
	// scheduler plugin and the manager read it. Absent means the reader's
	// configured thresholds (the defaults of DESIGN.md §2 unless changed).
	PriorityMappingAnnotation = Domain + "/priority-mapping"
)

// SafeModeRequestedValue is the only value of SafeModeRequestedAnnotation that
// requests safe mode.
const SafeModeRequestedValue = "true"

// Pod annotations.
const (
	// TierAnnotation on a Pod: a tier name. It may only lower the tier the
	// pod's priority gives it; a raising value is ignored and linted.
	TierAnnotation = Domain + "/tier"

	// WorkloadProfileAnnotation on a Pod: a thread-profile id (reserved).
	WorkloadProfileAnnotation = Domain + "/workload-profile"

	// OriginalCPURequestsAnnotation on a Pod: JSON map of container name to
	// the CPU request quantity the overcommit webhook replaced.
	OriginalCPURequestsAnnotation = Domain + "/original-cpu-requests"
)

// Namespace label and annotation of the overcommit contract.
const (
	// OvercommitLabel on a Namespace: OvercommitEnabledValue opts it in.
	OvercommitLabel = Domain + "/overcommit"
	// OvercommitEnabledValue is the only value of OvercommitLabel that opts in.
	OvercommitEnabledValue = "enabled"
	// OvercommitProfileAnnotation on a Namespace names the OvercommitProfile
	// whose ratios apply there.
	OvercommitProfileAnnotation = Domain + "/overcommit-profile"
)

// Agent status values (AgentStatusAnnotation). Refused and degraded carry a
// reason: "refused: <reason>", "degraded: <reason>".
const (
	AgentStatusEnforcingSCX    = "enforcing/scx_layered"
	AgentStatusEnforcingCgroup = "enforcing/cgroup"
	AgentStatusObserveOnly     = "observe-only"
	AgentStatusSafeMode        = "safe-mode"
	AgentStatusRefusedPrefix   = "refused"
	AgentStatusDegradedPrefix  = "degraded"
)

// Backend names as they appear in TierLoad.Backend and in status columns.
const (
	BackendSCXLayered  = "scx_layered"
	BackendCgroup      = "cgroup"
	BackendObserveOnly = "observe-only"
	BackendNone        = "none"
)

// AgentSilentTaintKey is the NoSchedule taint the manager's silent-agent
// backstop may put on a node whose agent stopped reporting (off by default).
const AgentSilentTaintKey = Domain + "/agent-silent"

// Finalizers and field managers.
const (
	// PolicyFinalizer lets the manager remove the safe-mode annotations an
	// InferaPolicy set before the policy goes.
	PolicyFinalizer = Domain + "/policy-cleanup"
	// OvercommitProfileFinalizer lets the manager remove the namespace label
	// and annotation an OvercommitProfile set before the profile goes.
	OvercommitProfileFinalizer = Domain + "/overcommit-cleanup"
)

// IsSafeModeRequested reports whether a Node's annotations request safe mode.
// An unreadable value requests it (ParseSafeMode).
func IsSafeModeRequested(annotations map[string]string) bool {
	v, ok := annotations[SafeModeRequestedAnnotation]
	if !ok {
		return false
	}
	on, _ := ParseSafeMode(v)
	return on
}

// ParseSafeMode reads a value of infera.io/safe-mode-requested. Case and
// surrounding space do not matter; true, yes, y, on, 1, enable(d) request
// safe mode, and false, no, n, off, 0, disable(d) and the empty value do
// not. Any other value also requests safe mode (the key exists only to ask
// for stock behaviour, so a typo must not keep the node enforcing), and the
// error says so, naming the key and the value for a lint finding.
func ParseSafeMode(v string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "true", "yes", "y", "on", "1", "enable", "enabled":
		return true, nil
	case "false", "no", "n", "off", "0", "disable", "disabled", "":
		return false, nil
	}
	return true, fmt.Errorf("annotation %s: value %q is neither a yes (true, yes, on, 1) nor a no (false, no, off, 0); standing down to safe mode as the safe reading", SafeModeRequestedAnnotation, v)
}

// The agent's built-in sched_ext tier scheduler (nodeagent/enforcement/tiersched):
// its agent-status while attached and its backend name.
const (
	AgentStatusEnforcingTiers = "enforcing/temper-tiers"
	BackendTierSched          = "temper-tiers"
)
