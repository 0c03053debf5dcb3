package nodeagent

import (
	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/nodeagent/cgroup"
	"github.com/infera-io/temper/nodeagent/telemetry"
)

// metricsSnapshot is what the metrics read at scrape time.
func (a *Agent) metricsSnapshot() telemetry.Snapshot {
	a.mu.Lock()
	s := telemetry.Snapshot{
		Generation: a.gen,
		SafeMode:   a.safeMode,
		CgroupV2:   a.layout != nil && a.layout.Version == cgroup.V2,
		Tiers:      map[wellknown.Tier]telemetry.TierUsage{},
		Pods:       make([]telemetry.Pod, 0, len(a.assignments)),
	}
	for t, u := range tierLoad(a.assignments) {
		s.Tiers[t] = telemetry.TierUsage{Pods: int(u.Pods), RequestMilli: u.RequestMilli}
	}
	for _, as := range a.assignments {
		p := telemetry.Pod{Namespace: as.Pod.Namespace, Name: as.Pod.Name, Tier: as.Tier}
		if as.Cgroup != nil {
			p.CPUDir = as.Cgroup.Dirs[cgroup.CPU]
		}
		s.Pods = append(s.Pods, p)
	}
	b := a.backend
	a.mu.Unlock()
	if b == nil {
		return s
	}
	s.Backend, s.Status = b.Name(), a.Status()
	switch b := b.(type) {
	case *scxBackend:
		st := b.sup.Status()
		s.Scheduler = &telemetry.Scheduler{Starts: st.Starts, Exits: st.Exits, Ejections: st.Ejections}
	case *cgroupBackend:
		st := b.Stats()
		s.Cgroup = &telemetry.Cgroup{Writes: st.Writer.Writes, Drift: st.Writer.Drift, Errors: st.Writer.Errors, Restored: st.Writer.Restored, Gone: st.Writer.Gone}
	}
	return s
}
