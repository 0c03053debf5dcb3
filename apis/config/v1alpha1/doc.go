// Package v1alpha1 holds the versioned configuration file types of Temper's
// binaries (agent, manager, scheduler plugin args), with their defaults and
// validation. Types only: no I/O beyond decoding, no client.
//
// +kubebuilder:object:generate=true
package v1alpha1
