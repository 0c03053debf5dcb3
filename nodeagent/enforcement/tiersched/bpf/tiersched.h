/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Our own declarations for the built-in tier scheduler and its inversion
 * probe: the few kernel types they read (CO-RE relocates every field access
 * by name at load time) and the sched_ext kfuncs, declared weak so that the
 * loader picks, per kernel, which of them the object calls (tiersched.go).
 * No kernel header is copied; the values of the SCX_* enums are not
 * compiled in but filled from the running kernel's BTF before load.
 */
#ifndef TIERSCHED_H
#define TIERSCHED_H

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef int __s32;
typedef long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef __u64 u64;
typedef __u8 u8;
typedef __u32 u32;
typedef __s32 s32;
typedef __s64 s64;
typedef _Bool bool;
#define true 1
#define false 0

/* UAPI values (include/uapi/linux/bpf.h); stable ABI. */
enum {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
};
enum {
	BPF_ANY = 0,
	BPF_NOEXIST = 1,
};

#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)
struct kernfs_node {
	__u64 id;
};
struct cgroup;
struct cgroup_subsys_state {
	struct cgroup *cgroup;
	struct cgroup_subsys_state *parent;
};
struct cgroup {
	struct cgroup_subsys_state self;
	struct kernfs_node *kn;
};
struct css_set {
	struct cgroup *dfl_cgrp;
};
struct cpumask {
	unsigned long bits[1];
};
struct task_struct {
	int pid;
	unsigned int __state;
	int nr_cpus_allowed;
	const struct cpumask *cpus_ptr;
	struct css_set *cgroups;
};
#pragma clang attribute pop

/* Tier indices, shared with tiers.go: 0 is every task outside a pod. The
 * dispatch order is the rank (rank 0 first). */
#define TIER_SYSTEM 0
#define TIER_CRITICAL 1
#define TIER_HIGH 2
#define TIER_NORMAL 3
#define TIER_LOW 4
#define TIER_BACKGROUND 5
#define NR_TIERS 6

#define MAX_CGROUP_DEPTH 8
#define MAX_TIER_CGROUPS 4096

/* cgroup id (kernfs id of the cgroup v2 directory) -> tier index. The agent
 * keeps it current; a task's tier is the one of the nearest mapped cgroup
 * at or above its own. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_TIER_CGROUPS);
	__type(key, __u64);
	__type(value, __u32);
} tiers SEC(".maps");

static __always_inline __u32 task_tier(struct task_struct *p)
{
	struct cgroup *cg = BPF_CORE_READ(p, cgroups, dfl_cgrp);

	for (int i = 0; i < MAX_CGROUP_DEPTH && cg; i++) {
		__u64 id = BPF_CORE_READ(cg, kn, id);
		__u32 *tier = bpf_map_lookup_elem(&tiers, &id);

		if (tier)
			return *tier < NR_TIERS ? *tier : TIER_SYSTEM;
		cg = (struct cgroup *)BPF_CORE_READ(cg, self.parent, cgroup);
	}
	return TIER_SYSTEM;
}

#endif /* TIERSCHED_H */
