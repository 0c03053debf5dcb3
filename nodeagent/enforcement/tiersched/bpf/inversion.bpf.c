// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Priority-inversion counter, independent of the scheduler in force (it
 * runs on stock CFS as well as under the tier scheduler). A critical task
 * waits from the moment it becomes runnable (woken, or preempted while
 * runnable) until it is switched in on some CPU. Its switch-in counts as
 * an inversion when, on that CPU, during its wait, a background task was
 * switched in, or the background task it replaces had kept the CPU for
 * longer than bound_ns of the wait (a preemption is quicker than that; a
 * background task running out its slice is not). The first condition is
 * about the order of events only, so emulation (TCG) latencies do not
 * skew it; the bound only tells a prompt preemption from none.
 */
#include "tiersched.h"

#define MAX_CPUS 256

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, u32);  /* pid of a waiting critical task */
	__type(value, u64); /* when it became runnable (ns) */
} waiting SEC(".maps");

/* When a background task was last switched in, per CPU (ns). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_CPUS);
	__type(key, u32);
	__type(value, u64);
} bg_in SEC(".maps");

const volatile u64 bound_ns = 1000000ULL;

u64 inversions;
u64 inversions_bg_came;
u64 background_switch_ins;
u64 critical_switch_ins;

static __always_inline void start_wait(struct task_struct *p, u64 now)
{
	u32 pid = BPF_CORE_READ(p, pid);

	if (task_tier(p) != TIER_CRITICAL)
		return;
	bpf_map_update_elem(&waiting, &pid, &now, BPF_NOEXIST);
}

SEC("tp_btf/sched_wakeup")
int BPF_PROG(inv_wakeup, struct task_struct *p)
{
	start_wait(p, bpf_ktime_get_ns());
	return 0;
}

SEC("tp_btf/sched_wakeup_new")
int BPF_PROG(inv_wakeup_new, struct task_struct *p)
{
	start_wait(p, bpf_ktime_get_ns());
	return 0;
}

SEC("tp_btf/sched_switch")
int BPF_PROG(inv_switch, bool preempt, struct task_struct *prev, struct task_struct *next, unsigned int prev_state)
{
	u64 now = bpf_ktime_get_ns();
	u32 cpu = bpf_get_smp_processor_id();
	u32 tier;

	if (prev_state == 0) /* TASK_RUNNING: preempted, still runnable */
		start_wait(prev, now);
	tier = task_tier(next);
	if (tier == TIER_BACKGROUND) {
		u64 *at = bpf_map_lookup_elem(&bg_in, &cpu);

		if (at)
			*at = now;
		__sync_fetch_and_add(&background_switch_ins, 1);
	} else if (tier == TIER_CRITICAL) {
		u32 pid = BPF_CORE_READ(next, pid);
		u64 *since = bpf_map_lookup_elem(&waiting, &pid);
		u64 *at = bpf_map_lookup_elem(&bg_in, &cpu);

		__sync_fetch_and_add(&critical_switch_ins, 1);
		if (since && at) {
			bool bg_came = *at > *since;
			bool bg_kept = task_tier(prev) == TIER_BACKGROUND && now - *since > bound_ns;

			if (bg_came || bg_kept)
				__sync_fetch_and_add(&inversions, 1);
			if (bg_came)
				__sync_fetch_and_add(&inversions_bg_came, 1);
		}
		bpf_map_delete_elem(&waiting, &pid);
	}
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(inv_exit, struct task_struct *p)
{
	u32 pid = BPF_CORE_READ(p, pid);

	bpf_map_delete_elem(&waiting, &pid);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
