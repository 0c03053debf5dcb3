// Package writer is the one writer of cgroup files on a node. Every cgroup
// value Temper changes goes through a Writer, which
//
//   - writes only when the current value differs, and reads the value back
//     after writing: the kernel clamps and normalises (cpu.shares 1 reads
//     back 2, cpuset "0,1" reads back "0-1"), and runtimes changed the
//     shares→weight formula, so weights are read, never computed;
//   - records the value it found before its first write to each file, in
//     memory and in a JSON state file (written to a temporary file, fsynced,
//     renamed) tagged with the boot ID, so a restarted agent still knows the
//     originals; a state file from another boot, or a corrupt one, is set
//     aside with a reason and not trusted;
//   - keeps a bounded audit ring of writes (path, file, old, new, reason,
//     time) and counters of writes, drift and errors;
//   - re-asserts the desired values on demand (Reassert) and counts a value
//     changed behind its back as drift;
//   - restores every original (RestoreAll), after which the tree is what it
//     found, skipping cgroups that vanished in one aggregated result.
//
// Kernel couplings it knows: writing cpu.idle also rewrites the group's
// weight (cpu.shares on v1, cpu.weight and cpu.weight.nice on v2; clearing
// cpu.idle resets the weight to the default, not to the previous value),
// and cpu.weight and cpu.weight.nice rewrite each other, so those files'
// originals are recorded too and restored after cpu.idle. While cpu.idle=1
// the kernel rejects weight writes with EINVAL. A v1 cpuset cannot be
// narrowed below a child's (EBUSY) nor widened beyond its parent's (EACCES,
// which here means a rejected value, not a missing privilege), so restores
// go parents first and retry children first what the kernel rejected.
// TestPrivilegedV1 in nodeagent/cgroup checks all of this on a real kernel.
//
// It decides nothing about tiers: the enforcement backend says which value
// goes where and why. It touches only paths under the cgroup root it is
// given, never creates or removes cgroups, and never writes a file whose
// original it could not persist first.
package writer
