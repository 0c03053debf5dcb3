// Package inferactl tests the inferactl command line against envtest (a
// real kube-apiserver and etcd) and an in-process infera-gateway: golden
// tables and YAML, every documented error path with its exit code, a
// safe-mode action end to end, and one run as a kubectl plugin through the
// real kubectl binary.
package inferactl
