package nodeagent

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/go-logr/logr"

	configv1alpha1 "github.com/infera-io/temper/apis/config/v1alpha1"
	"github.com/infera-io/temper/nodeagent/cgroupfs/writer"
	scxenf "github.com/infera-io/temper/nodeagent/enforcement/scx"
)

// RestoreOptions are what `infera-agent --restore` needs: no API server,
// no node name, only the host.
type RestoreOptions struct {
	ConfigPath string
	// Out receives a human summary.
	Out io.Writer
	Log logr.Logger
	// ProcRoot and BootIDFile are for tests; empty means the host's.
	ProcRoot, BootIDFile string
}

// Restore undoes everything an agent did on this node, for uninstall or
// after an agent that will not come back: it stops an unsupervised
// scx_layered started on the configured config path and writes every
// recorded cgroup original back. It refuses while an agent runs (that agent
// holds the state directory); set safe mode or delete the DaemonSet first.
// Running it twice is harmless.
func Restore(ro RestoreOptions) error {
	cfg := configv1alpha1.DefaultAgentConfiguration()
	if ro.ConfigPath != "" {
		var err error
		if cfg, err = configv1alpha1.LoadAgentConfiguration(ro.ConfigPath); err != nil {
			return err
		}
	}
	if ro.Out == nil {
		ro.Out = io.Discard
	}
	stateDir := filepath.Join(cfg.StateDir, cgroupStateSubdir)
	w, err := writer.New(writer.Options{Root: cfg.Cgroup.Root, StateDir: stateDir, BootIDFile: ro.BootIDFile, Log: ro.Log})
	if errors.Is(err, writer.ErrLocked) {
		return fmt.Errorf("an infera-agent is running on this node (it holds %s): stop it first (delete the DaemonSet, or set safe mode and let it stand down)", stateDir)
	}
	if err != nil {
		return err
	}
	defer w.Close()

	var errs []error
	sup := scxenf.New(scxenf.Options{
		Binary:     cfg.SCX.Binary,
		ConfigPath: cfg.SCX.ConfigPath,
		SysFS:      scxenf.SysFS{Root: filepath.Join(cfg.SysRoot, "kernel", "sched_ext")},
		ProcRoot:   ro.ProcRoot,
		Log:        ro.Log.WithName("scx"),
	})
	switch pid, err := sup.StopOrphan(); {
	case err != nil:
		errs = append(errs, fmt.Errorf("failed to stop scx_layered (pid %d): %w", pid, err))
	case pid != 0:
		fmt.Fprintf(ro.Out, "stopped scx_layered (pid %d); sched_ext is disabled\n", pid)
	default:
		fmt.Fprintln(ro.Out, "no scx_layered of this agent is running")
	}

	rep := w.StateReport()
	if rep.SetAside != "" {
		fmt.Fprintf(ro.Out, "the state file was set aside (%s): %s; its values cannot be restored\n", rep.Reason, rep.SetAside)
	}
	res, err := w.RestoreAll()
	fmt.Fprintf(ro.Out, "cgroup values: %d restored, %d already original, %d in cgroups that are gone, %d failed\n",
		res.Restored, res.Unchanged, res.Gone, len(res.Failed))
	if err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
