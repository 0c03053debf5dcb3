package nodeagent

import (
	"context"
	"errors"
	"fmt"

	"github.com/infera-io/temper/apis/wellknown"
	scxenf "github.com/infera-io/temper/nodeagent/enforcement/scx"
)

// scxBackend enforces tiers with scx_layered: it generates the layer config
// from the assignment and hands it to the supervisor.
type scxBackend struct {
	sup      *scxenf.Supervisor
	generate func([]Assignment, Machine) ([]byte, Applied, error)
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
	// The supervisor knows which config it runs (or is retrying with
	// backoff after a crash); the same config again is not a change, and
	// re-applying it would skip the backoff.
	if st := b.sup.Status(); st.Phase != scxenf.PhaseStopped && st.ConfigHash == scxenf.ConfigHash(cfg) {
		return applied, nil
	}
	applied.Changed = true
	if err := b.sup.Apply(ctx, cfg); err != nil && !errors.Is(err, context.Canceled) {
		// The supervisor reports degraded and retries with backoff.
		return applied, err
	}
	return applied, nil
}

func (b *scxBackend) StandDown(ctx context.Context) error {
	if err := b.sup.Stop(ctx); err != nil && !errors.Is(err, scxenf.ErrNotRunning) {
		return err
	}
	return nil
}

// Close leaves scx_layered running: an agent restart adopts it, and safe
// mode or --restore stop it.
func (b *scxBackend) Close(context.Context) error { return nil }

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
