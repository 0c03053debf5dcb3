// Package faults proves rows of the failure matrix (docs/design.md) with
// real components where they can run here: the infera-agent binary on this
// machine's real cgroup v1 kernel (test/realnode) against envtest's real
// kube-apiserver and etcd, which the tests freeze, stop and restart; a
// state directory on a real, full tmpfs. The tests need root and a cgroup
// v1 host and skip cleanly elsewhere.
package faults
