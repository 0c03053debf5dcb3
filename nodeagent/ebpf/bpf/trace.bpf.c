// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * On-demand trace capture: wakeups and context switches of the tasks in a
 * set of cgroups (or of every task), sent to userspace through a ring
 * buffer. Loaded and attached only for the duration of one capture.
 */
#include "temper.h"

#define EV_WAKEUP 1
#define EV_WAKEUP_NEW 2
#define EV_SWITCH 3

/* Set by the loader: 1 captures every task, 0 only tasks under a cgroup in
 * the scope map. */
volatile const __u32 trace_all = 0;

#define MAX_SCOPE_CGROUPS 256

struct event {
	__u64 ts;        /* bpf_ktime_get_ns (CLOCK_MONOTONIC) */
	__u64 cgroup;    /* wakeup: the woken task's cgroup id; switch: prev's */
	__u64 next_cgroup;
	__u32 type;
	__u32 cpu;       /* the CPU the program ran on */
	__u32 pid;       /* wakeup: the woken task; switch: prev */
	__u32 tgid;
	__u32 next_pid;
	__u32 next_tgid;
	__u32 prev_state;
	__s32 target_cpu; /* wakeup: the CPU the task was woken onto */
	__u8 tier;
	__u8 next_tier;
	__u8 preempt;
	__u8 in_scope;   /* bit 0: pid is in scope; bit 1: next_pid is */
	char comm[16];
	char next_comm[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20); /* resized by the loader */
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_SCOPE_CGROUPS);
	__type(key, __u64);
	__type(value, __u8);
} scope SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} drops SEC(".maps");

/* Force the event type into the object's BTF for bpf2go -type. */
const struct event *unused_event __attribute__((unused));

/* classify walks the task's cgroup and its ancestors once, returning the
 * task's own cgroup id, its tier, and whether it is in scope. */
static __always_inline bool classify(struct task_struct *p, __u64 *cgid, __u8 *tier)
{
	struct cgroup *cg = task_cgroup(p);
	bool in = trace_all;
	bool tiered = false;

	*cgid = 0;
	*tier = TIER_SYSTEM;
	for (int i = 0; i < MAX_CGROUP_DEPTH && cg; i++) {
		__u64 id = BPF_CORE_READ(cg, kn, id);

		if (i == 0)
			*cgid = id;
		if (!tiered) {
			__u32 *t = bpf_map_lookup_elem(&tiers, &id);

			if (t) {
				*tier = *t < NR_TIERS ? *t : TIER_SYSTEM;
				tiered = true;
			}
		}
		if (!in && bpf_map_lookup_elem(&scope, &id))
			in = true;
		if (in && tiered)
			break;
		cg = (struct cgroup *)BPF_CORE_READ(cg, self.parent);
	}
	return in;
}

static __always_inline void count_drop(void)
{
	__u32 zero = 0;
	__u64 *d = bpf_map_lookup_elem(&drops, &zero);

	if (d)
		*d += 1;
}

static __always_inline int wakeup(struct task_struct *p, __u32 type)
{
	struct event *e;
	__u64 cgid;
	__u8 tier;

	if (!BPF_CORE_READ(p, pid) || !classify(p, &cgid, &tier))
		return 0;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_drop();
		return 0;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->ts = bpf_ktime_get_ns();
	e->type = type;
	e->cpu = bpf_get_smp_processor_id();
	e->pid = BPF_CORE_READ(p, pid);
	e->tgid = BPF_CORE_READ(p, tgid);
	e->target_cpu = BPF_CORE_READ(p, wake_cpu);
	e->cgroup = cgid;
	e->tier = tier;
	e->in_scope = 1;
	BPF_CORE_READ_STR_INTO(&e->comm, p, comm);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("tp_btf/sched_wakeup")
int BPF_PROG(tr_wakeup, struct task_struct *p)
{
	return wakeup(p, EV_WAKEUP);
}

SEC("tp_btf/sched_wakeup_new")
int BPF_PROG(tr_wakeup_new, struct task_struct *p)
{
	return wakeup(p, EV_WAKEUP_NEW);
}

SEC("tp_btf/sched_switch")
int BPF_PROG(tr_switch, bool preempt, struct task_struct *prev, struct task_struct *next,
	     unsigned int prev_state)
{
	struct event *e;
	__u64 pcg = 0, ncg = 0;
	__u8 ptier = TIER_SYSTEM, ntier = TIER_SYSTEM;
	bool pin = false, nin = false;

	/* The idle task (pid 0) has no cgroup worth walking. */
	if (BPF_CORE_READ(prev, pid))
		pin = classify(prev, &pcg, &ptier);
	if (BPF_CORE_READ(next, pid))
		nin = classify(next, &ncg, &ntier);
	if (!pin && !nin)
		return 0;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_drop();
		return 0;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->ts = bpf_ktime_get_ns();
	e->type = EV_SWITCH;
	e->cpu = bpf_get_smp_processor_id();
	e->pid = BPF_CORE_READ(prev, pid);
	e->tgid = BPF_CORE_READ(prev, tgid);
	e->next_pid = BPF_CORE_READ(next, pid);
	e->next_tgid = BPF_CORE_READ(next, tgid);
	e->prev_state = prev_state;
	e->preempt = preempt;
	e->cgroup = pcg;
	e->next_cgroup = ncg;
	e->tier = ptier;
	e->next_tier = ntier;
	e->in_scope = (pin ? 1 : 0) | (nin ? 2 : 0);
	BPF_CORE_READ_STR_INTO(&e->comm, prev, comm);
	BPF_CORE_READ_STR_INTO(&e->next_comm, next, comm);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
