// Package cgroup enforces Temper's tiers with cgroup knobs, for kernels
// without sched_ext (issue 4). Per pod, from its tier:
//
//   - background: an idle-class group (cpu.idle=1; on a kernel without
//     cpu.idle, the minimal weight);
//   - low: the weight the kubelet set, divided (default by 4);
//   - normal, system: untouched;
//   - high, critical: the kubelet's weight multiplied (default 2 and 4);
//   - critical, when the caller passes a fence: the pod's and its
//     containers' cpusets are the fenced CPUs, every other pod's cpusets
//     exclude them.
//
// It works on pod and container cgroups, and on the scheduling attributes
// of pods' threads (issue 16: an EEVDF custom slice for critical threads,
// on by default; SCHED_IDLE for background threads, opt-in); of the
// QoS-level cgroups the kubelet owns it writes only besteffort's cpu.idle,
// and only with the opt-in BestEffortIdle lever. Dynamic CPU suppression
// (opt-in) sizes a CFS quota on low and background pods every second. It
// does not fence when the kubelet's static CPU manager owns the cpusets. Derived weights start from the value the
// kubelet set (writer.Found), so re-applying never compounds. A pod whose
// tier or fence changes is first handed back (its originals restored) and
// then enforced anew; a pod that leaves is handed back.
//
// Caveat: CPU weights and cpu.idle act between siblings only. A pod's knob
// competes with the other pods of its QoS cgroup (and Guaranteed pods with
// the burstable and besteffort QoS cgroups), not across QoS classes; which
// levers give the tiers enough teeth across branches is for the isolation
// benchmark to decide (issue 4), and the Levers are configurable for it.
//
// Every write goes through nodeagent/cgroup/writer. This package decides
// values; it never opens a cgroup file for writing itself, and it does not
// size the fence (the caller does, from the critical tier's requests).
package cgroup
