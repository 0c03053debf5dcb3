package nodeagent

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/nodeagent/cgroupfs"
	"github.com/infera-io/temper/nodeagent/telemetry"
)

// metricsSnapshot is what the metrics read at scrape time.
func (a *Agent) metricsSnapshot() telemetry.Snapshot {
	a.mu.Lock()
	s := telemetry.Snapshot{
		Generation: a.gen,
		SafeMode:   a.safeMode,
		CgroupV2:   a.layout() != nil && a.layout().Version == cgroupfs.V2,
		Tiers:      map[wellknown.Tier]telemetry.TierUsage{},
		Pods:       make([]telemetry.Pod, 0, len(a.assignments)),
	}
	for t, u := range tierLoad(a.assignments) {
		s.Tiers[t] = telemetry.TierUsage{Pods: int(u.Pods), RequestMilli: u.RequestMilli}
	}
	cg := a.cg.Load()
	for _, as := range a.assignments {
		p := telemetry.Pod{Namespace: as.Pod.Namespace, Name: as.Pod.Name, Tier: as.Tier}
		if as.Cgroup != nil {
			p.CPUDir = as.Cgroup.Dirs[cgroupfs.CPU]
			p.CPUAcctDir = cg.cpuacctDir(p.CPUDir)
		}
		s.Pods = append(s.Pods, p)
	}
	b := a.backend
	obs := a.observation
	a.mu.Unlock()
	s.Lint = obs.lintCounts()
	s.RunQueue = obs.runQueue()
	if b == nil {
		return s
	}
	s.Backend, s.Status = b.Name(), a.Status()
	st := b.Report().Stats
	if sc := st.Scheduler; sc != nil {
		s.Scheduler = &telemetry.Scheduler{Starts: sc.Starts, Exits: sc.Exits, Ejections: sc.Ejections}
	}
	if len(st.Tiers) > 0 {
		s.TierSched = make(map[wellknown.Tier]telemetry.TierSchedCounters, len(st.Tiers))
		for t, c := range st.Tiers {
			s.TierSched[t] = telemetry.TierSchedCounters{Enqueued: c.Enqueued, Dispatched: c.Dispatched, Preempted: c.Preempted, StarvationGuard: c.StarvationGuard}
		}
	}
	if c := st.Cgroup; c != nil {
		w := c.Writer
		s.Cgroup = &telemetry.Cgroup{Writes: w.Writes, Drift: w.Drift, Errors: w.Errors, Restored: w.Restored, Gone: w.Gone,
			SuppressBudgetMilli: c.Suppression.BudgetMilli, SuppressActive: c.Suppression.Active}
	}
	return s
}

// cpuacctHierarchy finds the v1 cpuacct hierarchy when it is mounted apart
// from cpu (CPU usage lives there); "" on v2 or when co-mounted.
func cpuacctHierarchy(l *cgroupfs.Layout) string {
	if l == nil || l.Version != cgroupfs.V1 {
		return ""
	}
	cpu := l.Hierarchies[cgroupfs.CPU]
	if _, err := os.Stat(filepath.Join(cpu, "cpuacct.usage")); err == nil {
		return "" // co-mounted: cpu,cpuacct
	}
	entries, err := os.ReadDir(l.Root)
	if err != nil {
		return ""
	}
	for _, e := range entries {
		for _, c := range strings.Split(e.Name(), ",") {
			if c != "cpuacct" {
				continue
			}
			dir := filepath.Join(l.Root, e.Name())
			if _, err := os.Stat(filepath.Join(dir, "cpuacct.usage")); err == nil {
				return dir
			}
		}
	}
	return ""
}
