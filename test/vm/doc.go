// Package vm holds tests that only run inside the VM of `make test-vm`
// (hack/vm): Debian's 7.2 kernel with sched_ext and cgroup v2, booted under
// QEMU with the kernel's example sched_ext schedulers in
// $TEMPER_VM_SCHEDULERS. Outside it they skip.
//
// scx_test.go drives the agent's scx_layered supervisor
// (nodeagent/enforcement/scx) against a real sched_ext scheduler standing
// in for scx_layered: the kernel's scx_simple rebuilt with its ops name set
// to "layered" (hack/vm/vm.sh). It ignores the `f:<config>` argument the
// supervisor passes, keeps it in its argv (which adoption matches on) and
// detaches on SIGTERM, as scx_layered does. What scx_layered itself does
// with our configs is not run anywhere (docs/testing.md).
package vm
