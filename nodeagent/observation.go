package nodeagent

import (
	"context"
	"sort"
	"sync"

	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/nodeagent/cgroup"
	"github.com/infera-io/temper/nodeagent/cpuset"
	"github.com/infera-io/temper/nodeagent/lint"
	"github.com/infera-io/temper/nodeagent/observe"
	"github.com/infera-io/temper/nodeagent/procscan"
)

// maxProcsPerPod bounds the processes read from one pod's cgroup.procs.
const maxProcsPerPod = 256

// observation is the always-on observation layer: where the pods' threads
// run, linted against what enforcement promises.
type observation struct {
	obs *observe.Observer

	mu       sync.Mutex
	verdicts []lint.Verdict
}

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
	a.mu.Lock()
	a.observation = o
	a.mu.Unlock()
	go func() {
		t := a.o.Clock.NewTicker(cfg.SampleInterval.Duration)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C():
				vs := obs.Tick(a.observeInput())
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

// observeInput is what the observation layer samples and judges: every pod
// with a cgroup, its processes, and what the backend in use promises.
func (a *Agent) observeInput() observe.Input {
	a.mu.Lock()
	as := a.assignments
	applied := a.applied
	safe := a.safeMode
	a.mu.Unlock()

	in := observe.Input{Enforcement: observe.Enforcement{Backend: a.backend.Name(), Status: a.Status()}}
	tiers := map[wellknown.Tier]bool{}
	for _, p := range as {
		if p.Cgroup == nil {
			continue
		}
		dir, ok := p.Cgroup.Dirs[cgroup.CPU]
		if !ok {
			continue
		}
		pids, err := procscan.ReadCgroupProcs(dir, maxProcsPerPod, nil)
		if err != nil || len(pids) == 0 {
			continue // gone, or not started yet
		}
		in.Targets = append(in.Targets, procscan.Target{Pod: procscan.PodKey(p.Pod.String()), Tier: p.Tier, TGIDs: pids})
		tiers[p.Tier] = true
	}
	if safe {
		// Stock behaviour promises nothing.
		return in
	}
	present := make([]wellknown.Tier, 0, len(tiers))
	for t := range tiers {
		present = append(present, t)
	}
	sort.Slice(present, func(i, j int) bool { return present[i] < present[j] })
	switch b := a.backend.(type) {
	case *cgroupBackend:
		in.Promise = lint.CgroupPromise(parseSet(applied.FencedCPUs), present)
	case *scxBackend:
		if b.coveringNow() {
			in.Promise = lint.CgroupPromise(parseSet(b.cover.Stats().FencedCPUs), present)
		} else {
			in.Promise = lint.ScxPromise(applied.Layers, nil, nil)
		}
	}
	return in
}

func parseSet(s string) cpuset.Set {
	set, err := cpuset.Parse(s)
	if err != nil {
		return nil
	}
	return set
}
