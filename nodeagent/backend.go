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
}

// Applied says what an Apply did.
type Applied struct {
	Changed     bool
	FencedMilli int64
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
func (o observeOnly) Status() string {
	if o.reason != "" {
		return wellknown.FormatAgentStatus(wellknown.AgentStatusRefusedPrefix, o.reason)
	}
	return wellknown.AgentStatusObserveOnly
}

// selectBackend picks the backend the config asks for and the node can do
// (DESIGN.md §7): auto → scx_layered when the kernel has sched_ext and the
// binary is installed, otherwise the cgroup backend. The cgroup backend is
// not built yet, so today that means observe-only with the reason.
func selectBackend(cfg *configv1alpha1.AgentConfiguration, sysfs scxenf.SysFS, newSCX func() backend, log logr.Logger) backend {
	scxReason := scxUnavailable(cfg, sysfs)
	switch cfg.Backend {
	case configv1alpha1.AgentBackendObserveOnly:
		return observeOnly{}
	case configv1alpha1.AgentBackendSCX:
		if scxReason != "" {
			return observeOnly{reason: "backend scx: " + scxReason}
		}
		return newSCX()
	case configv1alpha1.AgentBackendCgroup:
		return observeOnly{reason: "backend cgroup: not available in this build"}
	default: // auto
		if scxReason == "" {
			return newSCX()
		}
		log.Info("scx_layered backend unavailable; observing only", "reason", scxReason)
		return observeOnly{reason: scxReason + "; cgroup backend not available in this build"}
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
