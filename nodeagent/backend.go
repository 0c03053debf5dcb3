package nodeagent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/go-logr/logr"

	configv1alpha1 "github.com/infera-io/temper/apis/config/v1alpha1"
	"github.com/infera-io/temper/nodeagent/enforcement"
	cgroupenf "github.com/infera-io/temper/nodeagent/enforcement/cgroup"
	scxenf "github.com/infera-io/temper/nodeagent/enforcement/scx"
)

// backend is one way of enforcing the assignment; every backend lives in
// its own folder under nodeagent/enforcement, and the agent sees only this
// interface (adding a backend touches that folder and selectBackend).
type backend = enforcement.Backend

// Applied says what an Apply did.
type Applied = enforcement.Applied

// observeOnly enforces nothing and says why.
type observeOnly = enforcement.ObserveOnly

func firstLine(s string) string { return enforcement.FirstLine(s) }

// enforcementPods is the assignment as the backends see it.
func enforcementPods(as []Assignment) []enforcement.Pod {
	out := make([]enforcement.Pod, 0, len(as))
	for _, a := range as {
		out = append(out, enforcement.Pod{
			Name: a.Pod.String(), Tier: a.Tier, Cgroup: a.Cgroup, CgroupRelPath: a.CgroupRelPath,
			RequestMilli: a.CPU.RequestMilli, LimitMilli: a.CPU.LimitMilli,
		})
	}
	return out
}

// scxStateSubdir is where, under the agent's state_dir, the supervisor
// records the identity of the scx_layered it started.
const scxStateSubdir = "scx"

// cgroupStateSubdir is where, under the agent's state_dir, the cgroup
// writer keeps its originals and lock.
const cgroupStateSubdir = "cgroup"

// newCgroupBackend builds the cgroup backend, or says why the node cannot
// have one.
func (a *Agent) newCgroupBackend() (backend, error) {
	if a.layout == nil && a.layoutErr != nil {
		return nil, a.layoutErr
	}
	cfg := a.o.Config
	b, err := cgroupenf.NewEnforcer(cgroupenf.EnforcerOptions{
		Layout:              a.layout,
		StateDir:            filepath.Join(cfg.StateDir, cgroupStateSubdir),
		BootIDFile:          a.o.BootIDFile,
		CPUManagerStateFile: cfg.Cgroup.CPUManagerState,
		FenceCritical:       cfg.Cgroup.FenceCritical,
		ReconcileInterval:   cfg.Cgroup.ReconcileInterval.Duration,
		Clock:               a.o.Clock,
		Log:                 a.log.WithName("cgroup"),
		OnChange:            a.poke,
		OnDrift:             a.driftEvents,
	})
	if err != nil {
		return nil, err
	}
	return b, nil
}

// newSCXBackend builds the scx_layered backend, covered by the cgroup
// backend when the node has one.
func (a *Agent) newSCXBackend() backend {
	cfg := a.o.Config
	o := scxenf.EnforcerOptions{
		Supervisor: scxenf.Options{
			Binary:     cfg.SCX.Binary,
			ExtraArgs:  cfg.SCX.ExtraArgs,
			ConfigPath: cfg.SCX.ConfigPath,
			StateDir:   filepath.Join(cfg.StateDir, scxStateSubdir),
			SysFS:      scxenf.SysFS{Root: a.o.SchedExtRoot},
			ProcRoot:   a.o.ProcRoot,
			Log:        a.log.WithName("scx"),
		},
		OnChange: a.poke,
	}
	if cb, err := a.newCgroupBackend(); err != nil {
		a.log.Info("No cgroup backend to cover scx_layered outages", "reason", err.Error())
	} else {
		o.Cover = cb
	}
	return scxenf.NewEnforcer(o)
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
			return observeOnly{Why: "backend scx: " + reason}
		}
		return newSCX()
	case configv1alpha1.AgentBackendCgroup:
		b, reason := cgroupBackend()
		if b == nil {
			return observeOnly{Why: reason}
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
		return observeOnly{Why: scxReason + "; " + reason}
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
