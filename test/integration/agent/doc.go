// Package agent runs the node agent in-process against a real
// kube-apiserver (envtest), a faked cgroup v2 tree, a faked
// /sys/kernel/sched_ext and the scx_layered STAND-IN
// (test/standin/scx_layered): pods in every tier are created bound to the
// node, and the test checks the tiers, the generated config, the node
// annotations, the scheduler restarts, pod deletion and safe mode.
package agent
