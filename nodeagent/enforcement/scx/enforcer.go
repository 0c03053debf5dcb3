package scx

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/go-logr/logr"

	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/nodeagent/cgroupfs/writer"
	"github.com/infera-io/temper/nodeagent/enforcement"
	"github.com/infera-io/temper/nodeagent/layered"
)

// Enforcer enforces tiers with scx_layered: it generates the layer config
// from the pods and hands it to the supervisor. While scx_layered is down
// (crashed, ejected, failing to load: the supervisor is degraded and
// backing off), the cover backend (the cgroup backend) covers the gap with
// the same pods (DESIGN.md §7), and stands down again once scx_layered is
// attached.
type Enforcer struct {
	sup      *Supervisor
	generate func([]enforcement.Pod, enforcement.Machine) ([]byte, enforcement.Applied, error)
	// cover is the cgroup backend, nil when the node has none.
	cover   enforcement.Backend
	log     logr.Logger
	changed chan struct{}

	mu       sync.Mutex
	last     []enforcement.Pod // the pods to cover with; nil in safe mode
	lastM    enforcement.Machine
	covering bool
	layers   []layered.LayerSummary
	// cfg is the config last handed to the supervisor, and its hash.
	cfg     []byte
	cfgHash string
}

var _ enforcement.Backend = (*Enforcer)(nil)

// EnforcerOptions are the supervisor's options and the cover.
type EnforcerOptions struct {
	Supervisor Options
	// Cover covers scx_layered outages; nil when the node has none.
	Cover enforcement.Backend
	// OnChange is called on every supervisor status change.
	OnChange func()
}

// NewEnforcer builds the scx_layered backend.
func NewEnforcer(o EnforcerOptions) *Enforcer {
	b := &Enforcer{generate: GenerateLayered, changed: make(chan struct{}, 1), cover: o.Cover, log: o.Supervisor.Log}
	so := o.Supervisor
	so.OnChange = func(Status) {
		select {
		case b.changed <- struct{}{}:
		default:
		}
		if o.OnChange != nil {
			o.OnChange()
		}
	}
	b.sup = New(so)
	return b
}

func (b *Enforcer) Name() string { return wellknown.BackendSCXLayered }

func (b *Enforcer) Run(ctx context.Context) error {
	if b.cover != nil {
		go func() { _ = b.cover.Run(ctx) }()
	}
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-b.changed:
				b.syncCover(ctx)
			}
		}
	}()
	return b.sup.Run(ctx)
}

// syncCover engages the cover while the supervisor is degraded and stands
// it down once scx_layered is attached. A restart for a new config
// (starting) is not an outage worth cgroup writes.
func (b *Enforcer) syncCover(ctx context.Context) {
	if b.cover == nil {
		return
	}
	phase := b.sup.Status().Phase
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case phase == PhaseDegraded && b.last != nil:
		if !b.covering {
			b.log.Info("scx_layered is down; the cgroup backend covers the gap")
		}
		b.covering = true
		if _, err := b.cover.Apply(ctx, b.last, b.lastM); err != nil {
			b.log.Error(err, "Failed to cover with the cgroup backend")
		}
	case phase == PhaseAttached && b.covering:
		b.covering = false
		b.log.Info("scx_layered is attached again; the cgroup backend stands down")
		if err := b.cover.StandDown(ctx); err != nil {
			b.log.Error(err, "Failed to stand the covering cgroup backend down")
		}
	}
}

func (b *Enforcer) Apply(ctx context.Context, pods []enforcement.Pod, m enforcement.Machine) (enforcement.Applied, error) {
	b.mu.Lock()
	b.last, b.lastM = pods, m
	b.mu.Unlock()
	defer b.syncCover(ctx)
	cfg, applied, err := b.generate(pods, m)
	if err != nil {
		return applied, fmt.Errorf("failed to generate the scx_layered config: %w", err)
	}
	b.mu.Lock()
	b.layers = applied.Layers
	b.mu.Unlock()
	// The supervisor knows which config it runs (or is retrying with
	// backoff after a crash); the same config again is not a change, and
	// re-applying it would skip the backoff.
	if st := b.sup.Status(); st.Phase != PhaseStopped && st.ConfigHash == ConfigHash(cfg) {
		b.mu.Lock()
		b.cfg, b.cfgHash = cfg, st.ConfigHash // an adopted instance runs it too
		b.mu.Unlock()
		return applied, nil
	}
	applied.Changed = true
	b.mu.Lock()
	b.cfg, b.cfgHash = cfg, ConfigHash(cfg)
	b.mu.Unlock()
	if err := b.sup.Apply(ctx, cfg); err != nil && !errors.Is(err, context.Canceled) {
		// The supervisor reports degraded and retries with backoff.
		return applied, err
	}
	return applied, nil
}

func (b *Enforcer) StandDown(ctx context.Context) error {
	b.mu.Lock()
	b.last, b.covering = nil, false
	b.mu.Unlock()
	var errs []error
	if err := b.sup.Stop(ctx); err != nil && !errors.Is(err, ErrNotRunning) {
		errs = append(errs, err)
	}
	if b.cover != nil {
		errs = append(errs, b.cover.StandDown(ctx))
	}
	return errors.Join(errs...)
}

// Close leaves scx_layered running: an agent restart adopts it, and safe
// mode or --restore stop it. Cgroup values set while covering go back.
func (b *Enforcer) Close(ctx context.Context) error {
	if b.cover == nil {
		return nil
	}
	return b.cover.Close(ctx)
}

// Release leaves scx_layered running and the covering cgroup values as
// set, for the next agent to adopt.
func (b *Enforcer) Release(ctx context.Context) error {
	if b.cover == nil {
		return nil
	}
	return b.cover.Release(ctx)
}

// Report: verified when scx_layered is attached (kernel sched_ext state
// enabled, ops layered) with the generated config.
func (b *Enforcer) Report() enforcement.Report {
	st := b.sup.Status()
	b.mu.Lock()
	covering, layers := b.covering, b.layers
	var cfg enforcement.Config
	cfg.Hash = st.ConfigHash
	if st.ConfigHash != "" && st.ConfigHash == b.cfgHash {
		cfg.JSON = b.cfg
	}
	b.mu.Unlock()
	r := enforcement.Report{
		Stats:  enforcement.Stats{Scheduler: &enforcement.SchedulerStats{Starts: st.Starts, Exits: st.Exits, Ejections: st.Ejections}},
		Config: cfg,
		Expect: enforcement.Expectation{Kind: enforcement.ExpectLayered, Layers: layers},
	}
	var cover enforcement.Report
	if b.cover != nil {
		cover = b.cover.Report()
		r.Stats.Cgroup = cover.Stats.Cgroup
	}
	if covering {
		r.Expect = cover.Expect
	}
	cov := ""
	if covering {
		cov = "; cgroup backend covering"
	}
	switch st.Phase {
	case PhaseAttached:
		r.Status = wellknown.AgentStatusEnforcingSCX
		r.Verified = true
		r.Reason = "scx_layered attached (kernel sched_ext state enabled, ops layered) with the generated config"
		return r
	case PhaseStarting:
		r.Status = wellknown.FormatAgentStatus(wellknown.AgentStatusDegradedPrefix, "scx_layered starting"+cov)
	case PhaseDegraded:
		r.Status = wellknown.FormatAgentStatus(wellknown.AgentStatusDegradedPrefix, st.Reason+cov)
	default:
		r.Status = wellknown.FormatAgentStatus(wellknown.AgentStatusDegradedPrefix, "scx_layered not running"+cov)
	}
	r.Reason = r.Status
	return r
}

// Audit is the covering cgroup backend's audit ring.
func (b *Enforcer) Audit() []writer.Record {
	if b.cover == nil {
		return nil
	}
	return b.cover.Audit()
}
