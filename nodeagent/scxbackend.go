package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/infera-io/temper/apis/wellknown"
	scxenf "github.com/infera-io/temper/nodeagent/enforcement/scx"
)

// scxBackend enforces tiers with scx_layered: it generates the layer config
// from the assignment and hands it to the supervisor.
type scxBackend struct {
	sup      *scxenf.Supervisor
	generate func([]Assignment, Machine) ([]byte, Applied, error)

	mu   sync.Mutex
	last []byte
}

func (a *Agent) newSCXBackend() backend {
	cfg := a.o.Config
	b := &scxBackend{generate: generateLayered}
	b.sup = scxenf.New(scxenf.Options{
		Binary:     cfg.SCX.Binary,
		ExtraArgs:  cfg.SCX.ExtraArgs,
		ConfigPath: cfg.SCX.ConfigPath,
		SysFS:      scxenf.SysFS{Root: a.o.SchedExtRoot},
		ProcRoot:   a.o.ProcRoot,
		Log:        a.log.WithName("scx"),
		OnChange:   func(scxenf.Status) { a.poke() },
	})
	return b
}

func (b *scxBackend) Name() string { return wellknown.BackendSCXLayered }

func (b *scxBackend) Run(ctx context.Context) error { return b.sup.Run(ctx) }

func (b *scxBackend) Apply(ctx context.Context, as []Assignment, m Machine) (Applied, error) {
	cfg, applied, err := b.generate(as, m)
	if err != nil {
		return applied, fmt.Errorf("failed to generate the scx_layered config: %w", err)
	}
	b.mu.Lock()
	same := string(cfg) == string(b.last)
	b.mu.Unlock()
	st := b.sup.Status()
	if same && st.Phase != scxenf.PhaseStopped {
		return applied, nil
	}
	if err := b.sup.Apply(ctx, cfg); err != nil && !errors.Is(err, context.Canceled) {
		// The supervisor reports degraded and retries with backoff; the
		// config is still what we want enforced.
		b.mu.Lock()
		b.last = cfg
		b.mu.Unlock()
		applied.Changed = !same
		return applied, err
	}
	b.mu.Lock()
	b.last = cfg
	b.mu.Unlock()
	applied.Changed = true
	return applied, nil
}

func (b *scxBackend) StandDown(ctx context.Context) error {
	b.mu.Lock()
	b.last = nil
	b.mu.Unlock()
	if err := b.sup.Stop(ctx); err != nil && !errors.Is(err, scxenf.ErrNotRunning) {
		return err
	}
	return nil
}

func (b *scxBackend) Status() string {
	st := b.sup.Status()
	switch st.Phase {
	case scxenf.PhaseAttached:
		return wellknown.AgentStatusEnforcingSCX
	case scxenf.PhaseStarting:
		return wellknown.FormatAgentStatus(wellknown.AgentStatusDegradedPrefix, "scx_layered starting")
	case scxenf.PhaseDegraded:
		return wellknown.FormatAgentStatus(wellknown.AgentStatusDegradedPrefix, st.Reason)
	default:
		return wellknown.FormatAgentStatus(wellknown.AgentStatusDegradedPrefix, "scx_layered not running")
	}
}

// Supervisor exposes the supervisor's status (for the local API and tests).
func (b *scxBackend) Supervisor() scxenf.Status { return b.sup.Status() }
