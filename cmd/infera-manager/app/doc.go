// Package app composes infera-manager: one controller-runtime manager
// with leader election, metrics, health probes, the controllers of package
// controllers, and the overcommit webhook with its serving certificate.
// Run is the whole binary; cmd/infera-manager only turns flags into Options.
// LoadConfig reads the versioned configuration file.
//
// It wires and starts; it holds no reconcile or admission logic, and it
// never mutates a global scheme.
package app
