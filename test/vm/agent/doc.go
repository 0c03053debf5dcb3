// Package agent runs the infera-agent binary end to end inside the VM of
// `make test-vm` (hack/vm): the project's etcd and kube-apiserver in the
// guest on its loopback, pods created through the API server with
// hand-made cgroups on the real cgroup2 tree, and the built-in sched_ext
// tier scheduler selected by backend auto. Outside the VM it skips.
package agent
