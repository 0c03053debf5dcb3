/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Shared by runqlat.bpf.c and trace.bpf.c: the few kernel types the programs
 * read, declared by hand instead of a vmlinux.h dumped from one kernel's BTF.
 * preserve_access_index makes every field access a CO-RE relocation, so the
 * loader finds each field by name in the running kernel's BTF: the objects
 * are the same bytes whatever kernel or header package generated them, and
 * they load on any kernel with BTF that has these fields (5.18 or later, for
 * sched_switch's prev_state argument).
 */
#ifndef TEMPER_H
#define TEMPER_H

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef int __s32;
typedef long long __s64;
typedef __u16 __be16;
typedef __u32 __be32;
typedef __u32 __wsum;
typedef _Bool bool;
#define true 1
#define false 0

/* UAPI values (include/uapi/linux/bpf.h); stable ABI. */
enum {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_LRU_HASH = 9,
	BPF_MAP_TYPE_RINGBUF = 27,
};
enum {
	BPF_ANY = 0,
};
enum {
	BPF_F_NO_PREALLOC = 1,
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
	struct cgroup_subsys_state *subsys[1];
	struct cgroup *dfl_cgrp;
};
struct task_struct {
	int pid;
	int tgid;
	int wake_cpu;
	struct css_set *cgroups;
	char comm[16];
};
#pragma clang attribute pop

/* The index of the cpu controller in css_set.subsys; its value depends on
 * the kernel config, so it is relocated (bpf_core_enum_value). */
enum cgroup_subsys_id {
	cpu_cgrp_id = 1,
};

/* Tier indices; userspace (tiers.go) uses the same numbering. 0 is every
 * task whose cgroup and ancestors are not in the tiers map. */
#define TIER_SYSTEM 0
#define NR_TIERS 6

/* How many cgroup levels above a task's own cgroup are searched for a
 * mapped cgroup: a pod cgroup is one level above its containers, more when
 * a container nests cgroups of its own. */
#define MAX_CGROUP_DEPTH 8

/* Upper bound on the tiers map. */
#define MAX_TIER_CGROUPS 4096

/*
 * Which cgroup hierarchy keys the tiers map, set by the loader before load:
 * 0 keys by the task's cgroup v2 (unified) cgroup id (css_set.dfl_cgrp); 1
 * keys by the cgroup id of the task's cgroup in the v1 cpu hierarchy, on a
 * host where cgroup v2 is not the one the agent manages (on such a host every
 * task's unified cgroup is the root, so bpf_get_current_cgroup_id() and
 * dfl_cgrp say nothing). Both ids are the kernfs node id, which is the inode
 * number of the cgroup's directory.
 */
volatile const __u32 cgroup_v1_cpu = 0;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, MAX_TIER_CGROUPS);
	__type(key, __u64);  /* cgroup id */
	__type(value, __u32); /* tier index */
} tiers SEC(".maps");

static __always_inline struct cgroup *task_cgroup(struct task_struct *p)
{
	if (cgroup_v1_cpu) {
		struct css_set *cset = BPF_CORE_READ(p, cgroups);
		struct cgroup_subsys_state *css = 0;
		int idx = bpf_core_enum_value(enum cgroup_subsys_id, cpu_cgrp_id);

		if (!cset || idx < 0 || idx > 63)
			return 0;
		bpf_core_read(&css, sizeof(css), &cset->subsys[idx]);
		if (!css)
			return 0;
		return BPF_CORE_READ(css, cgroup);
	}
	return BPF_CORE_READ(p, cgroups, dfl_cgrp);
}

#endif /* TEMPER_H */
