// Package scx supervises the scx_layered sched_ext scheduler: it writes the
// generated layer config, starts exactly one scx_layered on it, watches the
// kernel's /sys/kernel/sched_ext files to confirm the attach and to notice an
// ejection within a poll period, restarts it with backoff after a crash,
// adopts an instance a previous agent process left running with the same
// config instead of detaching it, and detaches it on request (safe mode).
//
// scx_layered has no reload: a config change is stop, wait for the kernel to
// report "disabled", start (FORMAT.md §11.4). The package never runs two
// instances and never fights another sched_ext scheduler it did not start.
//
// It does not generate configs (package nodeagent/scx does) and does not
// decide when to apply them (the agent coalesces pod events).
package scx
