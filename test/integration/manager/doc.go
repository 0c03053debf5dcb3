// Package manager proves infera-manager against a real kube-apiserver
// (envtest): the manager runs in-process through cmd/infera-manager/app.Run, the
// API server calls the overcommit webhook over TLS with the self-managed
// certificate, and the controllers act on real Nodes, Namespaces and CRDs.
// Deployment-created pods need bin/kube-controller-manager; without it
// those cases skip and say so.
package manager
