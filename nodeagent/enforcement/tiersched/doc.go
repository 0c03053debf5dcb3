// Package tiersched is Temper's built-in sched_ext tier scheduler: BPF C
// (bpf/tiersched.bpf.c, with our own header bpf/tiersched.h) compiled by
// bpf2go with the pinned clang and committed, loaded and attached by the
// agent itself through cilium/ebpf's struct_ops support. One dispatch
// queue per tier; critical first and preempting low and background;
// background only where no higher tier wants the CPU, with a starvation
// guard far below the watchdog timeout; tasks outside pods never starved.
// The tier of a task comes from a cgroup-id map the agent keeps current, so
// a pod change is a map update, never a reload.
//
// One object serves kernels 6.12 to 7.2: the kfuncs whose names changed
// are declared weak, and the loader picks one per family from the exact
// names in the running kernel's BTF (kernel.go, which also says why that
// cannot be left to cilium/ebpf v0.22). The SCX_* enum values are filled
// from the kernel's BTF before load.
//
// bpf/inversion.bpf.c is a separate probe that counts priority inversions
// on any scheduler, for the VM tests (test/vm) and benchmarks.
package tiersched
