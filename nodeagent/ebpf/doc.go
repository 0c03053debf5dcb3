// Package ebpf measures per-tier run-queue latency and captures scheduling
// traces with BPF programs on the scheduler tracepoints (tp_btf
// sched_wakeup, sched_wakeup_new and sched_switch). It loads programs and
// reads their maps; it never writes cgroup files and never decides tiers:
// the agent tells it which cgroup is in which tier (Probe.SetTiers).
//
// # Keying tasks to tiers
//
// The tiers map is keyed by cgroup id, the kernfs node id of a cgroup
// directory, which is its inode number (CgroupID). A task is in the tier of
// the nearest of its cgroup and up to 7 ancestors found in the map, else in
// wellknown.TierSystem. Which hierarchy the id comes from is fixed at load
// (Options.Hierarchy, detected by DetectHierarchy): on cgroup v2 the task's
// unified cgroup (css_set.dfl_cgrp); on a cgroup v1 host the task's cgroup in
// the v1 cpu controller's hierarchy, because there every task's unified
// cgroup is the root and bpf_get_current_cgroup_id says nothing.
//
// # Trace file format
//
// A capture writes JSON lines. Every line but the last is one event:
//
//	{"ts":123456789,"cpu":1,"ev":"wakeup","pid":42,"tgid":40,"comm":"app","cgroup":1234,"tier":"high","target_cpu":0}
//	{"ts":123456999,"cpu":0,"ev":"switch","pid":7,"tgid":7,"comm":"kworker/0:1","cgroup":1,"tier":"system","prev_state":1,"preempt":false,"next_pid":42,"next_tgid":40,"next_comm":"app","next_cgroup":1234,"next_tier":"high","in_scope":"next"}
//
// ts is CLOCK_MONOTONIC in nanoseconds; ev is wakeup, wakeup_new or switch;
// for a switch pid/tgid/comm/cgroup/tier describe the task switched out and
// next_* the task switched in, and in_scope says which of them is in the
// captured pod ("prev", "next" or "both"). The last line is the trailer:
//
//	{"ev":"end","events":1000,"dropped":0,"truncated":false,"duration_ns":5000000000}
package ebpf
