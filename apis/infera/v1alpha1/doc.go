// Package v1alpha1 holds the infera.io/v1alpha1 API: InferaPolicy,
// NodeQoSReport and OvercommitProfile. They are optional GitOps mirrors of the
// annotation contract in package wellknown; enforcement never depends on them.
//
// Types only: no controller-runtime, no client. Defaults and validation live
// in the schema markers so Argo CD sees no drift and the API server rejects
// nonsense with a message naming the field.
//
// +kubebuilder:object:generate=true
// +groupName=infera.io
package v1alpha1
