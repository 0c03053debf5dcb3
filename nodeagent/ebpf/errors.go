package ebpf

import "errors"

var (
	// ErrUnavailable: the BPF programs cannot run here (no privilege, no
	// BTF, or the kernel lacks a tracepoint or field). The wrapping error
	// says which.
	ErrUnavailable = errors.New("eBPF run-queue probes unavailable")
	// ErrTooManyCgroups: SetTiers was given more cgroups than the tiers
	// map holds.
	ErrTooManyCgroups = errors.New("too many cgroups for the tiers map")
	// ErrBusy: another trace capture is running.
	ErrBusy = errors.New("another trace capture is running")
	// ErrInvalidCapture: a capture request field is out of range.
	ErrInvalidCapture = errors.New("invalid trace capture request")
	// ErrNoSuchCgroup: a capture names a cgroup that does not exist (a pod
	// that is not on this node).
	ErrNoSuchCgroup = errors.New("no such cgroup")
	// ErrClosed: the probe was closed.
	ErrClosed = errors.New("eBPF probe closed")
)
