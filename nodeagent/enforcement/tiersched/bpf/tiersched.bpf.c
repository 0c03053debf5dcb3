// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * Temper's built-in tier scheduler (sched_ext struct_ops).
 *
 * One dispatch queue per tier. A CPU that needs work takes it from the
 * queues in rank order: critical, system (tasks outside pods), high,
 * normal, low, background. A waking critical task that finds no idle CPU
 * preempts the CPU running the lowest-ranked task it may run on
 * (SCX_ENQ_PREEMPT + a preempting kick). So background runs only where no
 * higher tier wants the CPU, except for the starvation guard: a queue below
 * critical whose head has not been served for starve_ns is served first
 * once, so no task waits anywhere near the kernel watchdog's timeout and
 * tasks outside pods are never starved. The tier of a task is the one of
 * the nearest cgroup at or above its own in the tiers map, which the agent
 * keeps current: a pod change is a map update, never a reload.
 *
 * Per-tier counters (enqueues, dispatches, preemptions, starvation-guard
 * hits) are per-CPU and read by the agent for its metrics.
 */
#include "tiersched.h"

/* The sched_ext kfuncs, declared weak: which family the kernel has is
 * decided in userspace before load (6.12: dispatch/consume; 6.13 to 6.18:
 * dsq_insert/dsq_move_to_local; 6.19+: the ___v2 variants, which are real
 * kernel function names there). The loader turns the calls and existence
 * checks of the families the kernel lacks into dead code. */
extern void scx_bpf_dispatch(struct task_struct *p, u64 dsq_id, u64 slice, u64 enq_flags) __ksym __weak;
extern bool scx_bpf_consume(u64 dsq_id) __ksym __weak;
extern void scx_bpf_dsq_insert(struct task_struct *p, u64 dsq_id, u64 slice, u64 enq_flags) __ksym __weak;
extern bool scx_bpf_dsq_move_to_local(u64 dsq_id) __ksym __weak;
extern bool scx_bpf_dsq_insert___v2(struct task_struct *p, u64 dsq_id, u64 slice, u64 enq_flags) __ksym __weak;
extern bool scx_bpf_dsq_move_to_local___v2(u64 dsq_id, u64 enq_flags) __ksym __weak;
/* Present on every sched_ext kernel (6.12+). */
extern s32 scx_bpf_create_dsq(u64 dsq_id, s32 node) __ksym;
extern s32 scx_bpf_dsq_nr_queued(u64 dsq_id) __ksym;
extern s32 scx_bpf_select_cpu_dfl(struct task_struct *p, s32 prev_cpu, u64 wake_flags, bool *is_idle) __ksym;
extern void scx_bpf_kick_cpu(s32 cpu, u64 flags) __ksym;
extern s32 scx_bpf_task_cpu(const struct task_struct *p) __ksym;
extern s32 scx_bpf_pick_idle_cpu(const struct cpumask *cpus_allowed, u64 flags) __ksym;
extern u32 scx_bpf_nr_cpu_ids(void) __ksym;

#define ksym_exists(sym) (!!(sym))

/* SCX_* enum values of the running kernel, filled from its BTF by the
 * loader (as libbpf's open step does for the upstream schedulers). */
const volatile u64 scx_dsq_local;
const volatile u64 scx_dsq_local_on;
const volatile u64 scx_enq_preempt;
const volatile u64 scx_kick_idle;
const volatile u64 scx_kick_preempt;

/* Tunables, set by the loader. */
const volatile u64 slice_ns = 5000000ULL;
const volatile u64 starve_ns = 250000000ULL;

#define DSQ_BASE 0x7e4d0000ULL /* custom DSQ ids: DSQ_BASE + tier */
#define RANK_IDLE NR_TIERS
#define MAX_CPUS 256
#define MAX_SCAN 64 /* CPUs scanned for one to preempt */

/* rank[tier]: dispatch order, 0 first. */
static const u32 rank_of[NR_TIERS] = {
	[TIER_CRITICAL] = 0, [TIER_SYSTEM] = 1, [TIER_HIGH] = 2,
	[TIER_NORMAL] = 3, [TIER_LOW] = 4, [TIER_BACKGROUND] = 5,
};
static const u32 tier_at_rank[NR_TIERS] = {
	TIER_CRITICAL, TIER_SYSTEM, TIER_HIGH, TIER_NORMAL, TIER_LOW, TIER_BACKGROUND,
};

struct tier_stats {
	u64 enqueued;
	u64 dispatched;
	u64 preempted;
	u64 starvation_guard;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NR_TIERS);
	__type(key, u32);
	__type(value, struct tier_stats);
} stats SEC(".maps");

/* The rank of the task each CPU runs, RANK_IDLE when none. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_CPUS);
	__type(key, u32);
	__type(value, u32);
} cpu_rank SEC(".maps");

/* When each tier's queue was last served or seen empty (ns). */
u64 last_served[NR_TIERS];

/* Why the kernel disabled us, for the agent's log (struct scx_exit_info). */
s64 exit_kind;
char exit_reason[128];

static __always_inline struct tier_stats *tstats(u32 tier)
{
	return bpf_map_lookup_elem(&stats, &tier);
}

static __always_inline void insert(struct task_struct *p, u64 dsq, u64 slice, u64 flags)
{
	if (ksym_exists(scx_bpf_dsq_insert___v2))
		scx_bpf_dsq_insert___v2(p, dsq, slice, flags);
	else if (ksym_exists(scx_bpf_dsq_insert))
		scx_bpf_dsq_insert(p, dsq, slice, flags);
	else
		scx_bpf_dispatch(p, dsq, slice, flags);
}

static __always_inline bool move_to_local(u64 dsq)
{
	if (ksym_exists(scx_bpf_dsq_move_to_local___v2))
		return scx_bpf_dsq_move_to_local___v2(dsq, 0);
	if (ksym_exists(scx_bpf_dsq_move_to_local))
		return scx_bpf_dsq_move_to_local(dsq);
	return scx_bpf_consume(dsq);
}

static __always_inline void set_cpu_rank(u32 rank)
{
	u32 cpu = bpf_get_smp_processor_id();
	u32 *r = bpf_map_lookup_elem(&cpu_rank, &cpu);

	if (r)
		*r = rank;
}

/* allowed reads bit cpu of the task's CPU mask. */
static __always_inline bool allowed(struct task_struct *p, u32 cpu)
{
	const struct cpumask *m = BPF_CORE_READ(p, cpus_ptr);
	unsigned long word = 0;

	if (!m || cpu >= MAX_CPUS)
		return false;
	bpf_core_read(&word, sizeof(word), &m->bits[cpu / 64]);
	return (word >> (cpu % 64)) & 1;
}

static __always_inline u32 rank_on(s32 cpu)
{
	u32 c = cpu;
	u32 *r = bpf_map_lookup_elem(&cpu_rank, &c);

	return r ? *r : RANK_IDLE;
}

SEC("struct_ops/ts_select_cpu")
s32 BPF_PROG(ts_select_cpu, struct task_struct *p, s32 prev_cpu, u64 wake_flags)
{
	bool idle = false;
	s32 cpu = scx_bpf_select_cpu_dfl(p, prev_cpu, wake_flags, &idle);

	if (idle) {
		/* Nobody wants this CPU: run there at once, whatever the tier. */
		u32 tier = task_tier(p);
		struct tier_stats *s = tstats(tier);

		if (s) {
			s->enqueued++;
			s->dispatched++;
		}
		insert(p, scx_dsq_local, slice_ns, 0);
	}
	return cpu;
}

/* preempt_for finds a CPU p may run on whose task is below high (low or
 * background), or -1: this CPU first (the waker's: no IPI needed), then
 * the task's last CPU, then the first such CPU. Tasks of high, normal and
 * system are not preempted; critical waits for them at the head of the
 * dispatch order instead. */
static __always_inline bool preemptible(struct task_struct *p, s32 cpu)
{
	u32 r = rank_on(cpu);

	return r >= rank_of[TIER_LOW] && r != RANK_IDLE && allowed(p, cpu);
}

static __always_inline s32 preempt_for(struct task_struct *p)
{
	s32 here = bpf_get_smp_processor_id();
	s32 prev = scx_bpf_task_cpu(p);
	u32 nr = scx_bpf_nr_cpu_ids();

	if (preemptible(p, here))
		return here;
	if (prev >= 0 && preemptible(p, prev))
		return prev;
	for (u32 cpu = 0; cpu < MAX_SCAN && cpu < nr; cpu++) {
		if (preemptible(p, cpu))
			return cpu;
	}
	return -1;
}

SEC("struct_ops/ts_enqueue")
void BPF_PROG(ts_enqueue, struct task_struct *p, u64 enq_flags)
{
	u32 tier = task_tier(p);
	struct tier_stats *s = tstats(tier);
	s32 cpu;

	if (s)
		s->enqueued++;
	if (tier == TIER_CRITICAL) {
		cpu = preempt_for(p);
		if (cpu >= 0) {
			insert(p, scx_dsq_local_on | (u64)cpu, slice_ns, enq_flags | scx_enq_preempt);
			scx_bpf_kick_cpu(cpu, scx_kick_preempt);
			if (s) {
				s->preempted++;
				s->dispatched++;
			}
			return;
		}
	}
	insert(p, DSQ_BASE + tier, slice_ns, enq_flags);
	cpu = scx_bpf_pick_idle_cpu(p->cpus_ptr, 0);
	if (cpu >= 0)
		scx_bpf_kick_cpu(cpu, scx_kick_idle);
}

static __always_inline bool serve(u32 tier, u64 now, bool guard)
{
	struct tier_stats *s;

	if (!move_to_local(DSQ_BASE + tier))
		return false;
	if (tier < NR_TIERS)
		last_served[tier] = now;
	s = tstats(tier);
	if (s) {
		s->dispatched++;
		if (guard)
			s->starvation_guard++;
	}
	return true;
}

SEC("struct_ops/ts_dispatch")
void BPF_PROG(ts_dispatch, s32 cpu, struct task_struct *prev)
{
	u64 now = bpf_ktime_get_ns();

	/* Critical first, always. */
	if (serve(TIER_CRITICAL, now, false))
		return;
	/* The starvation guard, below critical. */
	for (u32 r = 1; r < NR_TIERS; r++) {
		u32 tier = tier_at_rank[r];

		if (scx_bpf_dsq_nr_queued(DSQ_BASE + tier) <= 0) {
			last_served[tier] = now;
			continue;
		}
		if (now - last_served[tier] > starve_ns && serve(tier, now, true))
			return;
	}
	/* A task whose slice ran out is still on this CPU, not yet queued
	 * again, when the kernel asks for work: serve only its own rank or
	 * better, else dispatch nothing and the kernel keeps it running.
	 * Otherwise every slice end of a normal task would hand its CPU to
	 * whatever lower tier is queued. */
	u32 keep = RANK_IDLE;

	if (prev && BPF_CORE_READ(prev, __state) == 0) {
		u32 pt = task_tier(prev);

		keep = pt < NR_TIERS ? rank_of[pt] : rank_of[TIER_SYSTEM];
	}
	for (u32 r = 1; r < NR_TIERS && r <= keep; r++) {
		if (serve(tier_at_rank[r], now, false))
			return;
	}
}

SEC("struct_ops/ts_running")
void BPF_PROG(ts_running, struct task_struct *p)
{
	u32 tier = task_tier(p);

	set_cpu_rank(tier < NR_TIERS ? rank_of[tier] : rank_of[TIER_SYSTEM]);
}

SEC("struct_ops/ts_stopping")
void BPF_PROG(ts_stopping, struct task_struct *p, bool runnable)
{
	set_cpu_rank(RANK_IDLE);
}

SEC("struct_ops.s/ts_init")
s32 BPF_PROG(ts_init)
{
	u64 now = bpf_ktime_get_ns();

	for (u32 t = 0; t < NR_TIERS; t++) {
		s32 err = scx_bpf_create_dsq(DSQ_BASE + t, -1);

		if (err)
			return err;
		last_served[t] = now;
	}
	return 0;
}

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)
enum scx_exit_kind {
	SCX_EXIT_NONE,
};
struct scx_exit_info {
	enum scx_exit_kind kind;
	const char *reason;
};
#pragma clang attribute pop

SEC("struct_ops/ts_exit")
void BPF_PROG(ts_exit, struct scx_exit_info *ei)
{
	exit_kind = BPF_CORE_READ(ei, kind);
	bpf_probe_read_kernel_str(exit_reason, sizeof(exit_reason), BPF_CORE_READ(ei, reason));
}

/* Only the members named here are set; the loader matches them by name
 * against the running kernel's struct sched_ext_ops. */
struct sched_ext_ops {
	s32 (*select_cpu)(struct task_struct *p, s32 prev_cpu, u64 wake_flags);
	void (*enqueue)(struct task_struct *p, u64 enq_flags);
	void (*dispatch)(s32 cpu, struct task_struct *prev);
	void (*running)(struct task_struct *p);
	void (*stopping)(struct task_struct *p, bool runnable);
	s32 (*init)(void);
	void (*exit)(struct scx_exit_info *info);
	u32 timeout_ms;
	char name[128];
};

SEC(".struct_ops.link")
struct sched_ext_ops temper_tiers = {
	.select_cpu = (void *)ts_select_cpu,
	.enqueue = (void *)ts_enqueue,
	.dispatch = (void *)ts_dispatch,
	.running = (void *)ts_running,
	.stopping = (void *)ts_stopping,
	.init = (void *)ts_init,
	.exit = (void *)ts_exit,
	.timeout_ms = 10000,
	.name = "temper_tiers",
};

char LICENSE[] SEC("license") = "Dual BSD/GPL";
