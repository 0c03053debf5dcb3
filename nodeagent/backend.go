package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/go-logr/logr"

	configv1alpha1 "github.com/infera-io/temper/apis/config/v1alpha1"
	"github.com/infera-io/temper/apis/wellknown"
	scxenf "github.com/infera-io/temper/nodeagent/enforcement/scx"
	"github.com/infera-io/temper/nodeagent/layered"
)

// backend is one way of enforcing the assignment.
type backend interface {
	// Name is the backend as tier-load reports it (wellknown.Backend*).
	Name() string
	// Apply enforces the assignment; changed reports whether what is
	// enforced changed (gen rises).
	Apply(ctx context.Context, as []Assignment, m Machine) (Applied, error)
	// StandDown returns the node to stock kernel behaviour (safe mode).
	StandDown(ctx context.Context) error
	// Status is the infera.io/agent-status value.
	Status() string
	// Run runs the backend's background work until ctx is done.
	Run(ctx context.Context) error
	// Close is the clean stop of the agent: the cgroup backend restores
	// every original; scx_layered keeps running for the next agent to
	// adopt (DESIGN.md §7).
	Close(ctx context.Context) error
}

// Applied says what an Apply did.
type Applied struct {
	Changed     bool
	FencedMilli int64
	// Layers are the scx_layered layers generated, nil on other backends.
	Layers []layered.LayerSummary
	// Notes are operator-facing remarks (e.g. a demoted critical layer).
	Notes []string
}

// observeOnly enforces nothing and says why.
type observeOnly struct{ reason string }

func (o observeOnly) Name() string { return wellknown.BackendObserveOnly }
func (o observeOnly) Apply(context.Context, []Assignment, Machine) (Applied, error) {
	return Applied{}, nil
}
func (o observeOnly) StandDown(context.Context) error { return nil }
func (o observeOnly) Run(ctx context.Context) error   { <-ctx.Done(); return nil }
func (o observeOnly) Close(context.Context) error     { return nil }
func (o observeOnly) Status() string {
	if o.reason != "" {
		return wellknown.FormatAgentStatus(wellknown.AgentStatusRefusedPrefix, o.reason)
	}
	return wellknown.AgentStatusObserveOnly
}

// selectBackend picks the backend the config asks for and the node can do
// (DESIGN.md §7): auto → scx_layered when the kernel has sched_ext and the
// binary is installed, otherwise the cgroup backend, otherwise observe-only
// with both reasons.
func selectBackend(cfg *configv1alpha1.AgentConfiguration, sysfs scxenf.SysFS, newSCX func() backend, newCgroup func() (backend, error), log logr.Logger) backend {
	cgroupBackend := func() (backend, string) {
		b, err := newCgroup()
		if err != nil {
			return nil, "cgroup backend: " + firstLine(err.Error())
		}
		return b, ""
	}
	switch cfg.Backend {
	case configv1alpha1.AgentBackendObserveOnly:
		return observeOnly{}
	case configv1alpha1.AgentBackendSCX:
		if reason := scxUnavailable(cfg, sysfs); reason != "" {
			return observeOnly{reason: "backend scx: " + reason}
		}
		return newSCX()
	case configv1alpha1.AgentBackendCgroup:
		b, reason := cgroupBackend()
		if b == nil {
			return observeOnly{reason: reason}
		}
		return b
	default: // auto
		scxReason := scxUnavailable(cfg, sysfs)
		if scxReason == "" {
			return newSCX()
		}
		b, reason := cgroupBackend()
		if b != nil {
			log.Info("scx_layered backend unavailable; enforcing with cgroup knobs", "reason", scxReason)
			return b
		}
		log.Info("No enforcement backend available; observing only", "scx", scxReason, "cgroup", reason)
		return observeOnly{reason: scxReason + "; " + reason}
	}
}

func scxUnavailable(cfg *configv1alpha1.AgentConfiguration, sysfs scxenf.SysFS) string {
	if err := sysfs.Available(); err != nil {
		if errors.Is(err, scxenf.ErrNoSchedExt) {
			return "kernel has no sched_ext"
		}
		return err.Error()
	}
	st, err := os.Stat(cfg.SCX.Binary)
	if err != nil {
		return fmt.Sprintf("scx_layered binary %s: %v", cfg.SCX.Binary, errors.Unwrap(err))
	}
	if st.IsDir() || st.Mode().Perm()&0o111 == 0 {
		return fmt.Sprintf("scx_layered binary %s is not executable", filepath.Clean(cfg.SCX.Binary))
	}
	return ""
}
