// Package localcluster brings up the embedded local control plane of
// `make run` (etcd and kube-apiserver built from source) and seeds it the way
// a Temper cluster looks: the CRDs, the five tier PriorityClasses, and this
// machine registered as a Node. It is a development tool; nothing in the
// product's runtime path imports it.
package localcluster
