package nodeagent

import (
	"context"
	"maps"
	"slices"
	"sort"
	"sync"

	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/nodeagent/cgroupfs"
	"github.com/infera-io/temper/nodeagent/ebpf"
	"github.com/infera-io/temper/nodeagent/enforcement"
	"github.com/infera-io/temper/nodeagent/lint"
	"github.com/infera-io/temper/nodeagent/observe"
	"github.com/infera-io/temper/nodeagent/procscan"
	"github.com/infera-io/temper/nodeagent/telemetry"
)

// maxProcsPerPod bounds the processes read from one pod's cgroup.procs.
const maxProcsPerPod = 256

// observation is the always-on observation layer: where the pods' threads
// run, linted against what enforcement promises.
type observation struct {
	obs *observe.Observer
	// probe is the eBPF run-queue latency and trace capture, nil when it
	// could not load (probeErr says why).
	probe    *ebpf.Probe
	probeErr string

	mu       sync.Mutex
	verdicts []lint.Verdict
	tiers    map[uint64]wellknown.Tier // what the probe was last told

	// Owned by the sampling goroutine: the cgroup.procs reader and its
	// buffers, and the cgroup IDs of the pods' cgroups by directory,
	// looked up again every cgroupIDRefresh ticks (a directory removed and
	// made again has a new ID).
	procs     procscan.CgroupReader
	cgroupIDs map[string]uint64
	idTicks   int
}

// cgroupIDRefresh is how many ticks a cached cgroup ID is trusted.
const cgroupIDRefresh = 6

// startObservation starts sampling when the config enables it. A failure
// leaves the agent enforcing without it, with the reason logged.
func (a *Agent) startObservation(ctx context.Context) {
	cfg := a.o.Config.Observation
	if !cfg.Enabled {
		a.log.Info("Observation layer disabled by config")
		return
	}
	obs, err := observe.New(observe.Options{
		Node: a.o.NodeName, ProcRoot: a.o.ProcRoot, SysRoot: a.o.Config.SysRoot,
		Clock: a.o.Clock, Log: a.log.WithName("observe"),
	})
	if err != nil {
		a.log.Error(err, "Observation layer unavailable; enforcing without it")
		return
	}
	o := &observation{obs: obs}
	if cfg.EBPF {
		o.probe, o.probeErr = a.loadProbe()
	} else {
		o.probeErr = "disabled by config ([observation] ebpf = false)"
	}
	a.mu.Lock()
	a.observation = o
	a.mu.Unlock()
	a.setProbeTiers(o)
	go func() {
		<-ctx.Done()
		if o.probe != nil {
			if err := o.probe.Close(); err != nil {
				a.log.Error(err, "Failed to unload the eBPF programs")
			}
		}
	}()
	go func() {
		t := a.o.Clock.NewTicker(cfg.SampleInterval.Duration)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C():
				a.setProbeTiers(o)
				vs := obs.Tick(a.observeInput(o))
				o.mu.Lock()
				prev := o.verdicts
				o.verdicts = vs
				o.mu.Unlock()
				a.lintEvents(prev, vs)
			}
		}
	}()
}

// lintCounts is the current violations per invariant, nil before the
// first sample.
func (o *observation) lintCounts() map[string]int {
	if o == nil {
		return nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.verdicts == nil {
		return nil
	}
	out := make(map[string]int, len(o.verdicts))
	for _, v := range o.verdicts {
		out[v.Invariant] = v.Violations
	}
	return out
}

// placement is a copy of the current verdicts; nil before the first
// sample.
func (o *observation) placement() []lint.Verdict {
	if o == nil {
		return nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.verdicts)
}

// observeInput is what the observation layer samples and judges: every pod
// with a cgroup, its processes, and what the backend in use promises.
func (a *Agent) observeInput(o *observation) observe.Input {
	a.mu.Lock()
	as := a.assignments
	safe := a.safeMode
	a.mu.Unlock()

	in := observe.Input{Enforcement: observe.Enforcement{Backend: a.backend.Name(), Status: a.Status()}}
	if cg := a.backend.Report().Stats.Cgroup; cg != nil && cg.Suppression.BudgetMilli > 0 {
		s := cg.Suppression
		in.Enforcement.Suppression = &observe.Suppression{Active: s.Active, BudgetMilliCPU: s.BudgetMilli, ProtectedMilliCPU: s.ProtectedMilli, Pods: s.Pods}
	}
	tiers := map[wellknown.Tier]bool{}
	for _, p := range as {
		if p.Cgroup == nil {
			continue
		}
		dir, ok := p.Cgroup.Dirs[cgroupfs.CPU]
		if !ok {
			continue
		}
		pids, err := o.procs.Read(dir, maxProcsPerPod, nil)
		if err != nil || len(pids) == 0 {
			continue // gone, or not started yet
		}
		in.Targets = append(in.Targets, procscan.Target{Pod: procscan.PodKey(p.Pod.String()), Tier: p.Tier, TGIDs: pids})
		tiers[p.Tier] = true
	}
	o.procs.Sweep() // close the cgroup files of pods gone since the last tick
	if safe {
		// Stock behaviour promises nothing.
		return in
	}
	present := make([]wellknown.Tier, 0, len(tiers))
	for t := range tiers {
		present = append(present, t)
	}
	sort.Slice(present, func(i, j int) bool { return present[i] < present[j] })
	switch e := a.backend.Report().Expect; e.Kind {
	case enforcement.ExpectTierLayers:
		in.Promise = lint.CgroupPromise(e.FencedCPUs, present)
	case enforcement.ExpectLayered:
		in.Promise = lint.ScxPromise(e.Layers, nil, nil)
	}
	return in
}

// loadProbe loads the eBPF run-queue latency programs. Without the
// privilege, BTF or the tracepoints the run-queue metrics are absent, trace
// capture answers unavailable, and the reason is logged; nothing else
// changes.
func (a *Agent) loadProbe() (*ebpf.Probe, string) {
	cfg := a.o.Config
	h, err := ebpf.DetectHierarchy(cfg.Cgroup.Root)
	if err != nil {
		a.log.Error(err, "eBPF run-queue latency unavailable")
		return nil, err.Error()
	}
	p, err := ebpf.Load(ebpf.Options{
		Logger: a.log.WithName("ebpf"), Hierarchy: h,
		Trace: ebpf.TraceOptions{Dir: cfg.Observation.TraceDir, MaxBytes: cfg.Observation.TraceMaxBytes, MaxDuration: maxTraceDuration},
	})
	if err != nil {
		a.log.Info("eBPF run-queue latency unavailable; its metrics are absent", "reason", err.Error())
		return nil, err.Error()
	}
	a.log.Info("eBPF run-queue latency programs loaded", "hierarchy", h.String())
	return p, ""
}

// setProbeTiers tells the eBPF programs which pod cgroup is in which tier
// (when it changed). Pods whose cgroup appeared since the last tick count
// as system until the next one.
func (a *Agent) setProbeTiers(o *observation) {
	if o == nil || o.probe == nil {
		return
	}
	dir := cgroupfs.CPU // the v1 cpu hierarchy, or the unified tree
	a.mu.Lock()
	as := a.assignments
	a.mu.Unlock()
	m := make(map[uint64]wellknown.Tier, len(as))
	// Only the cgroups not seen before are looked up (a stat each), and
	// every cgroup again every cgroupIDRefresh ticks.
	if o.idTicks++; o.idTicks >= cgroupIDRefresh || o.cgroupIDs == nil {
		o.cgroupIDs, o.idTicks = map[string]uint64{}, 0
	}
	live := make(map[string]bool, len(as))
	for _, p := range as {
		if p.Cgroup == nil {
			continue
		}
		d, ok := p.Cgroup.Dirs[dir]
		if !ok {
			continue
		}
		live[d] = true
		id, ok := o.cgroupIDs[d]
		if !ok {
			var err error
			if id, err = ebpf.CgroupID(d); err != nil {
				continue // gone, or not made yet
			}
			o.cgroupIDs[d] = id
		}
		m[id] = p.Tier
		if len(m) == ebpf.MaxTierCgroups {
			break
		}
	}
	for d := range o.cgroupIDs {
		if !live[d] {
			delete(o.cgroupIDs, d) // the pod is gone
		}
	}
	o.mu.Lock()
	same := maps.Equal(m, o.tiers)
	o.mu.Unlock()
	if same {
		return
	}
	if err := o.probe.SetTiers(m); err != nil {
		a.log.Error(err, "Failed to update the eBPF tier map")
		return
	}
	o.mu.Lock()
	o.tiers = m
	o.mu.Unlock()
}

// runQueue is the per-tier run-queue latency for the metrics, nil when the
// probe is not loaded.
func (o *observation) runQueue() map[wellknown.Tier]telemetry.Histogram {
	if o == nil || o.probe == nil {
		return nil
	}
	hs, err := o.probe.Histograms()
	if err != nil {
		return nil
	}
	out := make(map[wellknown.Tier]telemetry.Histogram, len(hs))
	for t, h := range hs {
		out[t] = telemetry.Histogram{Count: h.Count, Sum: h.SumSeconds, Buckets: h.Buckets()}
	}
	return out
}
