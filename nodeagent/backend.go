package nodeagent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/go-logr/logr"

	configv1alpha1 "github.com/infera-io/temper/apis/config/v1alpha1"
	"github.com/infera-io/temper/nodeagent/cgroupfs"
	"github.com/infera-io/temper/nodeagent/enforcement"
	cgroupenf "github.com/infera-io/temper/nodeagent/enforcement/cgroup"
	scxenf "github.com/infera-io/temper/nodeagent/enforcement/scx"
	"github.com/infera-io/temper/nodeagent/enforcement/tiersched"
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
	layout, layoutErr := a.layoutAndErr()
	if layout == nil && layoutErr != nil {
		return nil, layoutErr
	}
	cfg := a.o.Config
	b, err := cgroupenf.NewEnforcer(cgroupenf.EnforcerOptions{
		Layout:              layout,
		StateDir:            filepath.Join(cfg.StateDir, cgroupStateSubdir),
		BootIDFile:          a.o.BootIDFile,
		CPUManagerStateFile: cfg.Cgroup.CPUManagerState,
		FenceCritical:       cfg.Cgroup.FenceCritical,
		ReconcileInterval:   cfg.Cgroup.ReconcileInterval.Duration,
		Levers:              leversFromConfig(cfg.Cgroup.Levers),
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

// leversFromConfig turns [cgroup.levers] into the cgroup backend's
// Levers: every value explicit, so the config file, not the backend's
// zero-value defaults, decides.
func leversFromConfig(c configv1alpha1.AgentCgroupLevers) cgroupenf.Levers {
	sw := func(on bool) cgroupenf.Switch {
		if on {
			return cgroupenf.SwitchOn
		}
		return cgroupenf.SwitchOff
	}
	l := cgroupenf.Levers{
		CriticalWeightFactor:  c.CriticalWeightFactor,
		HighWeightFactor:      c.HighWeightFactor,
		LowWeightDivisor:      c.LowWeightDivisor,
		NoBackgroundIdle:      !c.BackgroundIdle,
		CriticalSlice:         c.CriticalSlice.Duration,
		HighSlice:             c.HighSlice.Duration,
		BackgroundSchedIdle:   sw(c.BackgroundSchedIdle),
		BestEffortIdle:        sw(c.BestEffortQoSIdle),
		Suppress:              sw(c.Suppress),
		SuppressHeadroomMilli: c.SuppressHeadroomMilli,
		SuppressFloorMilli:    c.SuppressFloorMilli,
		SuppressStepMilli:     c.SuppressStepMilli,
	}
	if l.CriticalSlice == 0 {
		l.CriticalSlice = -1 // "0s": leave the threads' slice alone
	}
	return l
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

// newTiersBackend builds the built-in tier scheduler's backend.
func (a *Agent) newTiersBackend(cover backend) backend {
	return tiersched.NewEnforcer(tiersched.EnforcerOptions{
		Cover:    cover,
		Log:      a.log.WithName("tiersched"),
		OnChange: a.poke,
	})
}

// podsOnCgroupV2 says why the pods' cgroups are not on cgroup v2.
func podsOnCgroupV2(l *cgroupfs.Layout, err error) string {
	switch {
	case l == nil && err != nil:
		return "no cgroup layout: " + firstLine(err.Error())
	case l == nil:
		return "no cgroup layout"
	case l.Version != cgroupfs.V2:
		return "pods are on cgroup " + l.Version.String() + ", the tier scheduler keys by cgroup v2 ids"
	}
	return ""
}

// selectors are the ways to build each backend the selection rule knows.
type selectors struct {
	scx    func() backend
	tiers  func(cover backend) backend
	cgroup func() (backend, error)
	// cgroupV2 says why the node's pod cgroups are not on cgroup v2, ""
	// when they are (the built-in scheduler keys its map by v2 ids).
	cgroupV2 func() string
}

// selectBackend picks the backend the config asks for and the node can do
// (DESIGN.md §7): auto → scx_layered when the kernel has sched_ext and the
// binary is installed; else the built-in tier scheduler when the kernel
// has sched_ext and BTF and the pods are on cgroup v2 (covered by the
// cgroup backend while it is not attached); else the cgroup backend; else
// observe-only with every reason. why says which and why, for --probe and
// the log.
func selectBackend(cfg *configv1alpha1.AgentConfiguration, sysfs scxenf.SysFS, sel selectors, log logr.Logger) (b backend, why string) {
	cgroupBackend := func() (backend, string) {
		b, err := sel.cgroup()
		if err != nil {
			return nil, "cgroup backend: " + firstLine(err.Error())
		}
		return b, ""
	}
	tiers := func() backend {
		cover, reason := cgroupBackend()
		if cover == nil {
			log.Info("No cgroup backend to cover tier scheduler outages", "reason", reason)
		}
		return sel.tiers(cover)
	}
	switch cfg.Backend {
	case configv1alpha1.AgentBackendObserveOnly:
		return observeOnly{}, "observe-only, as configured"
	case configv1alpha1.AgentBackendSCX:
		if reason := scxUnavailable(cfg, sysfs); reason != "" {
			return observeOnly{Why: "backend scx: " + reason}, "scx asked for but " + reason
		}
		return sel.scx(), "scx asked for, and the kernel has sched_ext and scx_layered is installed"
	case configv1alpha1.AgentBackendTierSched:
		if reason := tiersUnavailable(cfg, sysfs, sel.cgroupV2); reason != "" {
			return observeOnly{Why: "backend temper-tiers: " + reason}, "temper-tiers asked for but " + reason
		}
		return tiers(), "temper-tiers asked for, and the kernel has sched_ext and BTF with pods on cgroup v2"
	case configv1alpha1.AgentBackendCgroup:
		b, reason := cgroupBackend()
		if b == nil {
			return observeOnly{Why: reason}, "cgroup asked for but " + reason
		}
		return b, "cgroup asked for"
	default: // auto
		scxReason := scxUnavailable(cfg, sysfs)
		if scxReason == "" {
			return sel.scx(), "auto: the kernel has sched_ext and scx_layered is installed"
		}
		tiersReason := tiersUnavailable(cfg, sysfs, sel.cgroupV2)
		if tiersReason == "" {
			log.Info("scx_layered unavailable; enforcing with the built-in tier scheduler", "reason", scxReason)
			return tiers(), "auto: scx_layered unavailable (" + scxReason + "); the kernel has sched_ext and BTF with pods on cgroup v2"
		}
		b, reason := cgroupBackend()
		if b != nil {
			log.Info("sched_ext backends unavailable; enforcing with cgroup knobs", "scx", scxReason, "temper-tiers", tiersReason)
			return b, "auto: scx_layered unavailable (" + scxReason + "), temper-tiers unavailable (" + tiersReason + ")"
		}
		log.Info("No enforcement backend available; observing only", "scx", scxReason, "temper-tiers", tiersReason, "cgroup", reason)
		return observeOnly{Why: scxReason + "; " + reason}, "auto: nothing available: " + scxReason + "; " + tiersReason + "; " + reason
	}
}

// tiersUnavailable says why the built-in tier scheduler cannot run here,
// "" when it can (whether it then loads is for its backend to report).
func tiersUnavailable(cfg *configv1alpha1.AgentConfiguration, sysfs scxenf.SysFS, cgroupV2 func() string) string {
	if err := sysfs.Available(); err != nil {
		if errors.Is(err, scxenf.ErrNoSchedExt) {
			return "kernel has no sched_ext"
		}
		return err.Error()
	}
	if _, err := os.Stat(filepath.Join(cfg.SysRoot, "kernel", "btf", "vmlinux")); err != nil {
		return "kernel has no BTF (" + firstLine(err.Error()) + ")"
	}
	if reason := cgroupV2(); reason != "" {
		return reason
	}
	return ""
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
