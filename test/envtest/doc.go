// Package envtest is the one bootstrap every envtest suite uses: it starts a
// real etcd and kube-apiserver built from source into bin/ (make
// controlplane), installs the project's CRDs, and hands out a rest.Config,
// clients and an admin kubeconfig file. It never falls back to a fake: a
// missing binary is an error that says how to build it.
package envtest
