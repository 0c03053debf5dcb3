package v1alpha1

import (
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TierStatus is one tier's share of a node.
type TierStatus struct {
	// Pods counts the pods of the tier on the node.
	Pods int32 `json:"pods"`
	// RequestCPU is the sum of the tier's CPU requests.
	// +optional
	RequestCPU resource.Quantity `json:"requestCPU,omitempty"`
	// LimitCPU is the sum of the tier's CPU limits (pods without a limit add
	// nothing).
	// +optional
	LimitCPU resource.Quantity `json:"limitCPU,omitempty"`
}

// TierStatuses holds every tier by name, so that each is a printer column.
type TierStatuses struct {
	// +optional
	System TierStatus `json:"system"`
	// +optional
	Critical TierStatus `json:"critical"`
	// +optional
	High TierStatus `json:"high"`
	// +optional
	Normal TierStatus `json:"normal"`
	// +optional
	Low TierStatus `json:"low"`
	// +optional
	Background TierStatus `json:"background"`
}

// NodeQoSPhase is the agent status in one word.
// +kubebuilder:validation:Enum=Enforcing;ObserveOnly;SafeMode;Degraded;Refused;Unknown
type NodeQoSPhase string

// The NodeQoSPhase values.
const (
	PhaseEnforcing   NodeQoSPhase = "Enforcing"
	PhaseObserveOnly NodeQoSPhase = "ObserveOnly"
	PhaseSafeMode    NodeQoSPhase = "SafeMode"
	PhaseDegraded    NodeQoSPhase = "Degraded"
	PhaseRefused     NodeQoSPhase = "Refused"
	PhaseUnknown     NodeQoSPhase = "Unknown"
)

// NodeQoSReportStatus mirrors infera.io/agent-status and infera.io/tier-load
// of one node.
type NodeQoSReportStatus struct {
	// ObservedGeneration is the generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Backend is the enforcement backend from tier-load (scx_layered,
	// cgroup, observe-only), or none when the agent has not reported.
	// +optional
	Backend string `json:"backend,omitempty"`
	// Phase is the agent status in one word, for the default table:
	// Enforcing, ObserveOnly, SafeMode, Degraded, Refused, or Unknown when
	// the agent has not reported or its status does not parse. The full
	// sentence is AgentStatus and the Enforcing condition's message.
	// +optional
	Phase NodeQoSPhase `json:"phase,omitempty"`
	// AgentStatus is the node's infera.io/agent-status value.
	// +optional
	AgentStatus string `json:"agentStatus,omitempty"`
	// SafeModeRequested mirrors infera.io/safe-mode-requested=true.
	// +optional
	SafeModeRequested bool `json:"safeModeRequested"`
	// EnforcementGeneration is tier-load's gen: it rises with every applied
	// enforcement change.
	// +optional
	EnforcementGeneration int64 `json:"enforcementGeneration,omitempty"`
	// AllocatableCPU is the node's allocatable CPU as the agent saw it.
	// +optional
	AllocatableCPU resource.Quantity `json:"allocatableCPU,omitempty"`
	// FencedCPU is the CPU fenced on whole cores for the critical tier.
	// +optional
	FencedCPU resource.Quantity `json:"fencedCPU,omitempty"`
	// Tiers is the per-tier load.
	// +optional
	Tiers TierStatuses `json:"tiers"`
	// LastHeartbeatTime is tier-load's ts: when the agent last confirmed it.
	// +optional
	LastHeartbeatTime *metav1.Time `json:"lastHeartbeatTime,omitempty"`
	// Conditions: AgentHeartbeat, AnnotationsValid, Enforcing, Ready.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// NodeQoSReport is the status-only mirror of one node's agent annotations.
// Its name is the node's name and the Node owns it. It has no spec: it is
// written by the manager, never by users.
//
// +genclient
// +genclient:nonNamespaced
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=nqr,categories=infera
// +kubebuilder:printcolumn:name="Backend",type=string,JSONPath=`.status.backend`
// +kubebuilder:printcolumn:name="Status",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Critical",type=integer,JSONPath=`.status.tiers.critical.pods`
// +kubebuilder:printcolumn:name="High",type=integer,JSONPath=`.status.tiers.high.pods`
// +kubebuilder:printcolumn:name="Normal",type=integer,JSONPath=`.status.tiers.normal.pods`
// +kubebuilder:printcolumn:name="Low",type=integer,JSONPath=`.status.tiers.low.pods`
// +kubebuilder:printcolumn:name="Background",type=integer,JSONPath=`.status.tiers.background.pods`
// +kubebuilder:printcolumn:name="Fenced",type=string,JSONPath=`.status.fencedCPU`
// +kubebuilder:printcolumn:name="Heartbeat",type=string,priority=1,JSONPath=`.status.conditions[?(@.type=="AgentHeartbeat")].status`
// +kubebuilder:printcolumn:name="Agent-Status",type=string,priority=1,JSONPath=`.status.agentStatus`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type NodeQoSReport struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +optional
	Status NodeQoSReportStatus `json:"status,omitempty"`
}

// NodeQoSReportList is a list of NodeQoSReport.
//
// +kubebuilder:object:root=true
type NodeQoSReportList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []NodeQoSReport `json:"items"`
}
