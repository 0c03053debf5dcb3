// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Always-on per-tier run-queue latency: the time from a task becoming
 * runnable (woken, newly forked, or preempted while still runnable) to it
 * being switched in, folded in kernel space into one log2 histogram per tier.
 */
#include "temper.h"

/* Histogram layout in the per-CPU array: tier * HIST_STRIDE + slot. Slot 0
 * counts latencies under 1 µs; slot k (1..HIST_SLOTS-2) counts
 * [2^(k-1), 2^k) µs; slot HIST_SLOTS-1 counts everything from 2^(HIST_SLOTS-2)
 * µs up. Slot HIST_SUM_SLOT holds the sum of the latencies in nanoseconds. */
#define HIST_SLOTS 27
#define HIST_SUM_SLOT 31
#define HIST_STRIDE 32

/* Runnable tasks not yet switched in. LRU, so entries of tasks that exit
 * while runnable, or that were woken before a migration we never see, age
 * out instead of filling the map. */
#define MAX_RUNNABLE 32768

struct runnable {
	__u64 ts;
	__u32 tier;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, MAX_RUNNABLE);
	__type(key, __u32); /* pid (thread id) */
	__type(value, struct runnable);
} runnable SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NR_TIERS * HIST_STRIDE);
	__type(key, __u32);
	__type(value, __u64);
} hist SEC(".maps");

/* task_tier walks from the task's cgroup up at most MAX_CGROUP_DEPTH levels
 * and returns the tier of the first cgroup found in the tiers map. */
static __always_inline __u32 task_tier(struct task_struct *p)
{
	struct cgroup *cg = task_cgroup(p);

	for (int i = 0; i < MAX_CGROUP_DEPTH && cg; i++) {
		__u64 id = BPF_CORE_READ(cg, kn, id);
		__u32 *tier = bpf_map_lookup_elem(&tiers, &id);

		if (tier)
			return *tier < NR_TIERS ? *tier : TIER_SYSTEM;
		cg = (struct cgroup *)BPF_CORE_READ(cg, self.parent);
	}
	return TIER_SYSTEM;
}

static __always_inline int mark_runnable(struct task_struct *p)
{
	__u32 pid = BPF_CORE_READ(p, pid);
	struct runnable r = {};

	if (!pid)
		return 0;
	r.ts = bpf_ktime_get_ns();
	r.tier = task_tier(p);
	bpf_map_update_elem(&runnable, &pid, &r, BPF_ANY);
	return 0;
}

static __always_inline __u32 log2_u64(__u64 v)
{
	__u32 r = 0;

	if (v >> 32) { v >>= 32; r += 32; }
	if (v >> 16) { v >>= 16; r += 16; }
	if (v >> 8) { v >>= 8; r += 8; }
	if (v >> 4) { v >>= 4; r += 4; }
	if (v >> 2) { v >>= 2; r += 2; }
	if (v >> 1) { r += 1; }
	return r;
}

SEC("tp_btf/sched_wakeup")
int BPF_PROG(rq_wakeup, struct task_struct *p)
{
	return mark_runnable(p);
}

SEC("tp_btf/sched_wakeup_new")
int BPF_PROG(rq_wakeup_new, struct task_struct *p)
{
	return mark_runnable(p);
}

SEC("tp_btf/sched_switch")
int BPF_PROG(rq_switch, bool preempt, struct task_struct *prev, struct task_struct *next,
	     unsigned int prev_state)
{
	struct runnable *r;
	__u64 delta, us, *v;
	__u32 pid, tier, slot, idx;

	/* A preempted task, or one switched out in TASK_RUNNING (a yield),
	 * stays on the run queue: it waits again from now. */
	if (preempt || prev_state == 0)
		mark_runnable(prev);

	pid = BPF_CORE_READ(next, pid);
	if (!pid)
		return 0;
	r = bpf_map_lookup_elem(&runnable, &pid);
	if (!r)
		return 0;
	delta = bpf_ktime_get_ns() - r->ts;
	tier = r->tier;
	bpf_map_delete_elem(&runnable, &pid);
	if ((__s64)delta < 0)
		return 0;
	if (tier >= NR_TIERS)
		tier = TIER_SYSTEM;

	us = delta / 1000;
	slot = us ? log2_u64(us) + 1 : 0;
	if (slot > HIST_SLOTS - 1)
		slot = HIST_SLOTS - 1;

	idx = tier * HIST_STRIDE + slot;
	v = bpf_map_lookup_elem(&hist, &idx);
	if (v)
		*v += 1;
	idx = tier * HIST_STRIDE + HIST_SUM_SLOT;
	v = bpf_map_lookup_elem(&hist, &idx);
	if (v)
		*v += delta;
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
