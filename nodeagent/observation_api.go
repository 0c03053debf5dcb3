package nodeagent

import (
	"context"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/nodeagent/cgroupfs"
	"github.com/infera-io/temper/nodeagent/cgroupfs/writer"
	"github.com/infera-io/temper/nodeagent/observe"
	"github.com/infera-io/temper/nodeagent/server"
	"github.com/infera-io/temper/nodeagent/telemetry"
)

// knobReporter is a backend that keeps cgroup values asserted (the cgroup
// backend).
type knobReporter interface {
	Knobs() []writer.Desired
}

// podCgroup is one pod's cgroup directory, for reading its counters and
// naming the knobs under it.
type podCgroup struct {
	pod, acct string   // the cpu (or unified) dir, and the v1 cpuacct dir when apart
	dirs      []string // the pod's cgroup in every hierarchy
	name      string
	tier      wellknown.Tier
}

// Observation implements server.Observer: GetObservation.
func (api agentAPI) Observation(ctx context.Context) (server.Observation, error) {
	a := api.a
	a.mu.Lock()
	safe := a.safeMode
	st := a.cg.Load()
	v2 := st != nil && st.layout != nil && st.layout.Version == cgroupfs.V2
	load := tierLoad(a.assignments)
	var pods []podCgroup
	for _, as := range a.assignments {
		if as.Cgroup == nil {
			continue
		}
		dir := as.Cgroup.Dirs[cgroupfs.CPU]
		if dir == "" {
			continue
		}
		pc := podCgroup{pod: dir, name: as.Pod.String(), tier: as.Tier}
		for _, d := range as.Cgroup.Dirs {
			pc.dirs = append(pc.dirs, d)
		}
		pc.acct = st.cpuacctDir(dir)
		pods = append(pods, pc)
	}
	obs := a.observation
	b := a.backend
	a.mu.Unlock()

	out := server.Observation{NodeName: a.o.NodeName, Time: a.o.Clock.Now(), Backend: b.Name(), CgroupV2: v2}
	if safe {
		out.Backend = wellknown.BackendNone
	}
	byTier := map[wellknown.Tier]*server.TierPerformance{}
	for _, t := range wellknown.AllTiers() {
		u := load[t]
		out.Tiers = append(out.Tiers, server.TierPerformance{Tier: string(t), Pods: int(u.Pods)})
	}
	for i := range out.Tiers {
		byTier[wellknown.Tier(out.Tiers[i].Tier)] = &out.Tiers[i]
	}
	for _, p := range pods {
		if ctx.Err() != nil {
			return server.Observation{}, ctx.Err()
		}
		tp := byTier[p.tier]
		if tp == nil {
			continue
		}
		if readPodCounters(tp, p, v2) {
			tp.PodsRead++
		}
	}

	// The observation layer: thread sample, PSI, run-queue latency.
	if obs == nil {
		why := "the observation layer is disabled or could not start (see the agent's log)"
		out.ThreadsUnavailable, out.RunQueueUnavailable = why, why
		out.Pressure = pressure(observe.ReadPSI(a.o.ProcRoot))
	} else {
		snap := obs.obs.Snapshot()
		out.Pressure = pressure(snap.PSI)
		if snap.Sample.Time.IsZero() {
			out.ThreadsUnavailable = "no thread sample yet"
		} else {
			out.SampleTime = snap.Sample.Time
			out.SampleInterval = secondsDuration(snap.Sample.IntervalSeconds)
		}
		for _, t := range snap.TopThreads {
			out.TopThreads = append(out.TopThreads, server.BusyThread{TID: t.TID, PID: t.PID, CPU: t.CPU, Comm: t.Comm,
				Pod: t.Pod, Tier: t.Tier, Layer: t.Layer, MilliCPU: t.MilliCPU})
		}
		for t, m := range obs.obs.TierMilliCPU() {
			if tp := byTier[t]; tp != nil {
				tp.SampledMilliCPU = float64(int64(m*10+0.5)) / 10
			}
		}
		if rq := obs.runQueue(); rq != nil {
			for t, h := range rq {
				if tp := byTier[t]; tp != nil {
					tp.RunQueue = &server.RunQueueLatency{Count: h.Count, SumSeconds: h.Sum, Buckets: h.Buckets}
				}
			}
		} else {
			out.RunQueueUnavailable = obs.probeErr
			if out.RunQueueUnavailable == "" {
				out.RunQueueUnavailable = "the eBPF run-queue programs are not loaded"
			}
		}
	}

	// The placement linter's verdicts on the last sample.
	switch vs := obs.placement(); {
	case obs == nil:
		out.PlacementUnavailable = "the observation layer is disabled or could not start (see the agent's log)"
	case vs == nil:
		out.PlacementUnavailable = "the placement linter has not judged a thread sample yet"
	default:
		for _, v := range vs {
			pv := server.PlacementVerdict{Invariant: v.Invariant, OK: v.OK, Violations: v.Violations, Checked: v.Checked, Message: v.Message}
			for _, e := range v.Examples {
				pv.Examples = append(pv.Examples, server.PlacementExample{Pod: e.Pod, Tier: e.Tier, Layer: e.Layer, Comm: e.Comm,
					Detail: e.Detail, TID: e.TID, PID: e.PID, CPU: e.CPU, MilliCPU: e.MilliCPU})
			}
			out.Placement = append(out.Placement, pv)
		}
		slices.SortFunc(out.Placement, func(x, y server.PlacementVerdict) int { return strings.Compare(x.Invariant, y.Invariant) })
	}
	if cg := b.Report().Stats.Cgroup; cg != nil {
		w := cg.Writer
		out.CgroupWrites = &server.CgroupWriteCounters{Writes: w.Writes, Drift: w.Drift, Errors: w.Errors, Gone: w.Gone, Unchanged: w.Unchanged}
	}

	// The cgroup knobs in force.
	kr, ok := b.(knobReporter)
	switch {
	case safe:
		out.CgroupKnobsUnavailable = "safe mode: the kubelet's values are restored and nothing is asserted"
	case !ok:
		out.CgroupKnobsUnavailable = "the " + b.Name() + " backend sets no cgroup knobs"
	default:
		out.CgroupKnobs = cgroupKnobs(kr.Knobs(), pods, a.o.Config.Cgroup.Root)
	}
	return out, nil
}

// readPodCounters adds one pod's CPU, throttling and pressure counters to
// its tier, read as the metrics are (telemetry.ReadPodCounters); false when
// its cgroup could not be read (gone).
func readPodCounters(tp *server.TierPerformance, p podCgroup, v2 bool) bool {
	pc := telemetry.ReadPodCounters(telemetry.Pod{CPUDir: p.pod, CPUAcctDir: p.acct}, v2)
	if !pc.Read {
		return false
	}
	tp.CPUSeconds += pc.UsageSeconds
	tp.ThrottledPeriods += uint64(pc.ThrottledPeriods)
	tp.ThrottledSeconds += pc.ThrottledSeconds
	tp.PressureSomeSeconds += pc.PressureSomeSeconds
	return true
}

func pressure(p observe.PSI) server.NodePressure {
	out := server.NodePressure{Available: p.Available, Reason: p.Reason}
	if p.Some != nil {
		out.SomeAvg10, out.SomeAvg60, out.SomeTotalSeconds = p.Some.Avg10, p.Some.Avg60, float64(p.Some.TotalUS)/1e6
	}
	if p.Full != nil {
		out.FullAvg10 = p.Full.Avg10
	}
	return out
}

// cgroupKnobs names each asserted value's pod (the pod whose cgroup holds
// the path, the deepest match) and makes its path relative to root.
func cgroupKnobs(ds []writer.Desired, pods []podCgroup, root string) []server.CgroupKnob {
	// The deepest directory first: a container's cgroup is inside its pod's.
	sort.Slice(pods, func(i, j int) bool { return len(pods[i].pod) > len(pods[j].pod) })
	out := make([]server.CgroupKnob, 0, len(ds))
	for _, d := range ds {
		k := server.CgroupKnob{Path: d.Path, File: d.File, Value: d.Value, Applied: d.Applied, Reason: d.Reason}
		for _, p := range pods {
			if slices.ContainsFunc(p.dirs, func(dir string) bool { return under(d.Path, dir) }) {
				k.Pod, k.Tier = p.name, string(p.tier)
				break
			}
		}
		if rel, err := filepath.Rel(root, d.Path); err == nil && !strings.HasPrefix(rel, "..") {
			k.Path = rel
		}
		out = append(out, k)
	}
	return out
}

// under reports whether path is dir or inside it.
func under(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, dir+string(filepath.Separator))
}

func secondsDuration(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
