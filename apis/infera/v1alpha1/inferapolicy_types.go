package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// PriorityMapping holds the minimum pod priority of each tier (DESIGN.md §2).
// A pod is in the highest tier whose minimum its priority reaches; below the
// low minimum it is background. Priorities of 2,000,000,000 and more are the
// system tier and cannot be remapped.
//
// +kubebuilder:validation:XValidation:rule="self.critical > self.high && self.high > self.normal && self.normal > self.low",message="thresholds must be strictly decreasing: critical > high > normal > low"
type PriorityMapping struct {
	// Critical is the minimum priority of the critical tier.
	// +kubebuilder:default=1000000
	// +kubebuilder:validation:Maximum=1999999999
	// +optional
	Critical int32 `json:"critical"`
	// High is the minimum priority of the high tier.
	// +kubebuilder:default=100000
	// +optional
	High int32 `json:"high"`
	// Normal is the minimum priority of the normal tier.
	// +kubebuilder:default=0
	// +optional
	Normal int32 `json:"normal"`
	// Low is the minimum priority of the low tier; anything below is
	// background.
	// +kubebuilder:default=-100
	// +optional
	Low int32 `json:"low"`
}

// InferaPolicySpec is the desired policy for the nodes it selects.
type InferaPolicySpec struct {
	// NodeSelector selects the nodes this policy applies to. An empty
	// selector ({}) selects every node.
	// +kubebuilder:validation:XValidation:rule="!has(self.matchExpressions) || self.matchExpressions.all(e, e.operator in ['In', 'NotIn', 'Exists', 'DoesNotExist'])",message="matchExpressions operator must be one of In, NotIn, Exists, DoesNotExist"
	// +required
	NodeSelector metav1.LabelSelector `json:"nodeSelector"`

	// SafeMode, when true, sets infera.io/safe-mode-requested=true on every
	// selected node: their agents stand down to stock kernel behaviour. A node
	// is in safe mode when any policy selecting it asks for it.
	// +kubebuilder:default=false
	// +optional
	SafeMode bool `json:"safeMode"`

	// PriorityMapping sets the tier thresholds for the selected nodes. Absent
	// means the defaults of DESIGN.md §2.
	// +optional
	PriorityMapping *PriorityMapping `json:"priorityMapping,omitempty"`
}

// InferaPolicyStatus is what the manager observed and did.
type InferaPolicyStatus struct {
	// ObservedGeneration is the spec generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// MatchedNodes counts the nodes the selector matches.
	// +optional
	MatchedNodes int32 `json:"matchedNodes"`
	// SafeModeNodes counts the matched nodes that carry
	// infera.io/safe-mode-requested=true, whoever set it.
	// +optional
	SafeModeNodes int32 `json:"safeModeNodes"`
	// Conditions: Ready.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// InferaPolicy mirrors infera.io/safe-mode-requested and the tier thresholds
// onto the nodes it selects, so that safe mode and policy can be synced from
// Git.
//
// +genclient
// +genclient:nonNamespaced
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=ipol,categories=infera
// +kubebuilder:printcolumn:name="Safe-Mode",type=boolean,JSONPath=`.spec.safeMode`
// +kubebuilder:printcolumn:name="Matched",type=integer,JSONPath=`.status.matchedNodes`
// +kubebuilder:printcolumn:name="In-Safe-Mode",type=integer,JSONPath=`.status.safeModeNodes`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type InferaPolicy struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec InferaPolicySpec `json:"spec"`
	// +optional
	Status InferaPolicyStatus `json:"status,omitempty"`
}

// InferaPolicyList is a list of InferaPolicy.
//
// +kubebuilder:object:root=true
type InferaPolicyList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []InferaPolicy `json:"items"`
}
