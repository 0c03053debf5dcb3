package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"

	"github.com/infera-io/temper/apis/wellknown"
	scxenf "github.com/infera-io/temper/nodeagent/enforcement/scx"
)

// scxBackend enforces tiers with scx_layered: it generates the layer config
// from the assignment and hands it to the supervisor. While scx_layered is
// down (crashed, ejected, failing to load: the supervisor is degraded and
// backing off), the cgroup backend covers the gap with the same assignment
// (DESIGN.md §7), and stands down again once scx_layered is attached.
type scxBackend struct {
	sup      *scxenf.Supervisor
	generate func([]Assignment, Machine) ([]byte, Applied, error)
	// cover is the cgroup backend, nil when the node has none.
	cover   *cgroupBackend
	changed chan struct{}

	mu       sync.Mutex
	last     []Assignment // the assignment to cover with; nil in safe mode
	lastM    Machine
	covering bool
	// cfg is the config last handed to the supervisor, and its hash.
	cfg     []byte
	cfgHash string
}

// scxStateSubdir is where, under the agent's state_dir, the supervisor
// records the identity of the scx_layered it started.
const scxStateSubdir = "scx"

func (a *Agent) newSCXBackend() backend {
	cfg := a.o.Config
	b := &scxBackend{generate: generateLayered, changed: make(chan struct{}, 1)}
	b.sup = scxenf.New(scxenf.Options{
		Binary:     cfg.SCX.Binary,
		ExtraArgs:  cfg.SCX.ExtraArgs,
		ConfigPath: cfg.SCX.ConfigPath,
		StateDir:   filepath.Join(cfg.StateDir, scxStateSubdir),
		SysFS:      scxenf.SysFS{Root: a.o.SchedExtRoot},
		ProcRoot:   a.o.ProcRoot,
		Log:        a.log.WithName("scx"),
		OnChange: func(scxenf.Status) {
			select {
			case b.changed <- struct{}{}:
			default:
			}
			a.poke()
		},
	})
	if cb, err := a.newCgroupBackend(); err != nil {
		a.log.Info("No cgroup backend to cover scx_layered outages", "reason", err.Error())
	} else {
		b.cover = cb.(*cgroupBackend)
	}
	return b
}

func (b *scxBackend) Name() string { return wellknown.BackendSCXLayered }

func (b *scxBackend) Run(ctx context.Context) error {
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

// syncCover engages the cgroup backend while the supervisor is degraded
// and stands it down once scx_layered is attached. A restart for a new
// config (starting) is not an outage worth cgroup writes.
func (b *scxBackend) syncCover(ctx context.Context) {
	if b.cover == nil {
		return
	}
	phase := b.sup.Status().Phase
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case phase == scxenf.PhaseDegraded && b.last != nil:
		if !b.covering {
			b.cover.log.Info("scx_layered is down; the cgroup backend covers the gap")
		}
		b.covering = true
		if _, err := b.cover.Apply(ctx, b.last, b.lastM); err != nil {
			b.cover.log.Error(err, "Failed to cover with the cgroup backend")
		}
	case phase == scxenf.PhaseAttached && b.covering:
		b.covering = false
		b.cover.log.Info("scx_layered is attached again; the cgroup backend stands down")
		if err := b.cover.StandDown(ctx); err != nil {
			b.cover.log.Error(err, "Failed to stand the covering cgroup backend down")
		}
	}
}

func (b *scxBackend) Apply(ctx context.Context, as []Assignment, m Machine) (Applied, error) {
	b.mu.Lock()
	b.last, b.lastM = as, m
	b.mu.Unlock()
	defer b.syncCover(ctx)
	cfg, applied, err := b.generate(as, m)
	if err != nil {
		return applied, fmt.Errorf("failed to generate the scx_layered config: %w", err)
	}
	// The supervisor knows which config it runs (or is retrying with
	// backoff after a crash); the same config again is not a change, and
	// re-applying it would skip the backoff.
	if st := b.sup.Status(); st.Phase != scxenf.PhaseStopped && st.ConfigHash == scxenf.ConfigHash(cfg) {
		b.mu.Lock()
		b.cfg, b.cfgHash = cfg, st.ConfigHash // an adopted instance runs it too
		b.mu.Unlock()
		return applied, nil
	}
	applied.Changed = true
	b.mu.Lock()
	b.cfg, b.cfgHash = cfg, scxenf.ConfigHash(cfg)
	b.mu.Unlock()
	if err := b.sup.Apply(ctx, cfg); err != nil && !errors.Is(err, context.Canceled) {
		// The supervisor reports degraded and retries with backoff.
		return applied, err
	}
	return applied, nil
}

func (b *scxBackend) StandDown(ctx context.Context) error {
	b.mu.Lock()
	b.last, b.covering = nil, false
	b.mu.Unlock()
	var errs []error
	if err := b.sup.Stop(ctx); err != nil && !errors.Is(err, scxenf.ErrNotRunning) {
		errs = append(errs, err)
	}
	if b.cover != nil {
		errs = append(errs, b.cover.StandDown(ctx))
	}
	return errors.Join(errs...)
}

// Close leaves scx_layered running: an agent restart adopts it, and safe
// mode or --restore stop it. Cgroup values set while covering go back.
func (b *scxBackend) Close(ctx context.Context) error {
	if b.cover == nil {
		return nil
	}
	return b.cover.Close(ctx)
}

// Release leaves scx_layered running and the covering cgroup values as
// set, for the next agent to adopt.
func (b *scxBackend) Release(ctx context.Context) error {
	if b.cover == nil {
		return nil
	}
	return b.cover.Release(ctx)
}

func (b *scxBackend) Status() string {
	st := b.sup.Status()
	b.mu.Lock()
	covering := b.covering
	b.mu.Unlock()
	cov := ""
	if covering {
		cov = "; cgroup backend covering"
	}
	switch st.Phase {
	case scxenf.PhaseAttached:
		return wellknown.AgentStatusEnforcingSCX
	case scxenf.PhaseStarting:
		return wellknown.FormatAgentStatus(wellknown.AgentStatusDegradedPrefix, "scx_layered starting"+cov)
	case scxenf.PhaseDegraded:
		return wellknown.FormatAgentStatus(wellknown.AgentStatusDegradedPrefix, st.Reason+cov)
	default:
		return wellknown.FormatAgentStatus(wellknown.AgentStatusDegradedPrefix, "scx_layered not running"+cov)
	}
}

// coveringNow reports whether the cgroup backend covers an outage.
func (b *scxBackend) coveringNow() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.covering
}
