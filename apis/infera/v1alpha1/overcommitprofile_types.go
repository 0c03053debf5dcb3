package v1alpha1

import (
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// OvercommitTier is a tier whose CPU requests the overcommit webhook may
// scale. Critical and system are never scaled, so they are not accepted.
// +kubebuilder:validation:Enum=high;normal;low;background
type OvercommitTier string

// TierRatio is the factor applied to the CPU requests of one tier's pods.
type TierRatio struct {
	// Tier is the tier the ratio applies to.
	// +required
	Tier OvercommitTier `json:"tier"`
	// Ratio multiplies each container's CPU request: a decimal in (0, 1].
	// 1 leaves the tier's requests as they are.
	// +kubebuilder:validation:ExclusiveMinimum=true
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1
	// +required
	Ratio float64 `json:"ratio"`
}

// OvercommitProfileSpec says where and how much CPU requests are deflated.
type OvercommitProfileSpec struct {
	// NamespaceSelector selects the namespaces this profile opts in: the
	// manager labels them infera.io/overcommit=enabled and annotates them
	// with this profile's name. kube-system and the platform's own namespace
	// are never opted in. An empty selector ({}) selects every other
	// namespace.
	// +kubebuilder:validation:XValidation:rule="!has(self.matchExpressions) || self.matchExpressions.all(e, e.operator in ['In', 'NotIn', 'Exists', 'DoesNotExist'])",message="matchExpressions operator must be one of In, NotIn, Exists, DoesNotExist"
	// +required
	NamespaceSelector metav1.LabelSelector `json:"namespaceSelector"`

	// Ratios per tier. A tier that is not listed keeps its requests.
	// +listType=map
	// +listMapKey=tier
	// +kubebuilder:validation:MaxItems=4
	// +kubebuilder:default={{tier:"normal",ratio:0.75},{tier:"low",ratio:0.5},{tier:"background",ratio:0.25}}
	// +optional
	Ratios []TierRatio `json:"ratios"`

	// FloorMilli is the smallest CPU request, in millicores, the webhook
	// leaves on a container; requests already below it are not touched.
	// +kubebuilder:default=25
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000000
	// +optional
	FloorMilli int64 `json:"floorMilli"`

	// DryRun, when true, only records what would change in
	// infera.io/original-cpu-requests and leaves requests as they are.
	// +kubebuilder:default=false
	// +optional
	DryRun bool `json:"dryRun"`

	// BackgroundBestEffort, when true, admits background-tier pods as
	// kube-BestEffort: the webhook removes their CPU requests (recording
	// them in infera.io/original-cpu-requests) instead of scaling them, so
	// the kubelet puts them under the besteffort QoS cgroup, where the
	// kernel weighs all of them together at 2 shares against the node's
	// other pods. Only a pod whose containers set no CPU limit and no
	// memory request or limit is converted (its QoS class then depends on
	// the CPU requests alone); any other background pod is deflated by its
	// ratio as usual and the admission warns why. The scheduler then no
	// longer counts the removed requests. Measured in docs/benchmarks.md
	// ("The kube-BestEffort path").
	// +kubebuilder:default=false
	// +optional
	BackgroundBestEffort bool `json:"backgroundBestEffort,omitempty"`
}

// OvercommitProfileStatus is what the manager observed and did.
type OvercommitProfileStatus struct {
	// ObservedGeneration is the spec generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// MatchedNamespaces counts the namespaces the selector matches (and
	// that may be opted in).
	// +optional
	MatchedNamespaces int32 `json:"matchedNamespaces"`
	// PodsDeflated counts the running pods in those namespaces that carry
	// infera.io/original-cpu-requests.
	// +optional
	PodsDeflated int32 `json:"podsDeflated"`
	// CPUFreed is the sum of original minus current CPU requests over those
	// pods.
	// +optional
	CPUFreed resource.Quantity `json:"cpuFreed,omitempty"`
	// Conditions: Ready.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// OvercommitProfile mirrors the infera.io/overcommit namespace label and the
// infera.io/overcommit-profile annotation, and carries the ratios the
// overcommit webhook applies there.
//
// +genclient
// +genclient:nonNamespaced
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=ocp,categories=infera
// +kubebuilder:printcolumn:name="Dry-Run",type=boolean,JSONPath=`.spec.dryRun`
// +kubebuilder:printcolumn:name="Namespaces",type=integer,JSONPath=`.status.matchedNamespaces`
// +kubebuilder:printcolumn:name="Deflated",type=integer,JSONPath=`.status.podsDeflated`
// +kubebuilder:printcolumn:name="CPU-Freed",type=string,JSONPath=`.status.cpuFreed`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type OvercommitProfile struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec OvercommitProfileSpec `json:"spec"`
	// +optional
	Status OvercommitProfileStatus `json:"status,omitempty"`
}

// OvercommitProfileList is a list of OvercommitProfile.
//
// +kubebuilder:object:root=true
type OvercommitProfileList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []OvercommitProfile `json:"items"`
}
