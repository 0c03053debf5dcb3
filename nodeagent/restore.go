package nodeagent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/go-logr/logr"

	configv1alpha1 "github.com/infera-io/temper/apis/config/v1alpha1"
	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/nodeagent/cgroupfs"
	"github.com/infera-io/temper/nodeagent/cgroupfs/writer"
	cgroupenf "github.com/infera-io/temper/nodeagent/enforcement/cgroup"
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
	// NodeName and Kubeconfig (empty: in-cluster) reach the API server to
	// remove the agent's annotations from the Node, so the manager's
	// silent-agent backstop sees a node without an agent, not a silent one.
	// Without NodeName the annotations are left and the summary says so.
	NodeName, Kubeconfig string
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
		StateDir:   filepath.Join(cfg.StateDir, scxStateSubdir),
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
	// Thread slices (the short-slice lever) live on the threads, not in the
	// state file: every thread under the pods' cpu cgroups that holds
	// exactly a lever's slice (the configured critical and high slices,
	// and the default one in case the configuration changed) gets the
	// default back.
	if layout, lerr := cgroupfs.Detect(cfg.Cgroup.Root, cgroupfs.DetectOptions{Driver: cgroupDriver(cfg.Cgroup.Driver), KubepodsDir: cfg.Cgroup.KubepodsPath}); lerr == nil {
		if h, ok := layout.Hierarchies[cgroupfs.CPU]; ok {
			leverSlices := []time.Duration{cgroupenf.DefaultCriticalSlice}
			for _, d := range []time.Duration{cfg.Cgroup.Levers.CriticalSlice.Duration, cfg.Cgroup.Levers.HighSlice.Duration} {
				if d > 0 && !slices.Contains(leverSlices, d) {
					leverSlices = append(leverSlices, d)
				}
			}
			total := 0
			for _, d := range leverSlices {
				n, serr := cgroupenf.ResetSlices(filepath.Join(h, layout.KubepodsDir), uint64(d.Nanoseconds()))
				total += n
				if serr != nil {
					errs = append(errs, serr)
				}
			}
			fmt.Fprintf(ro.Out, "thread slices: %d reset to the default\n", total)
		}
	}
	if err := removeAgentAnnotations(ro); err != nil {
		errs = append(errs, err)
	} else if ro.NodeName != "" {
		fmt.Fprintf(ro.Out, "removed %s and %s from Node %s\n", wellknown.AgentStatusAnnotation, wellknown.TierLoadAnnotation, ro.NodeName)
	} else {
		fmt.Fprintln(ro.Out, "NODE_NAME is not set: the agent's annotations stay on the Node")
	}
	return errors.Join(errs...)
}

// removeAgentAnnotations deletes infera.io/agent-status and
// infera.io/tier-load from the Node (a merge patch: other annotations and
// safe-mode-requested stay). A Node that is gone is fine.
func removeAgentAnnotations(ro RestoreOptions) error {
	if ro.NodeName == "" {
		return nil
	}
	rc, err := restConfig(ro.Kubeconfig)
	if err != nil {
		return fmt.Errorf("failed to remove the agent's annotations from Node %s: %w", ro.NodeName, err)
	}
	rc.UserAgent = "infera-agent-restore/" + ro.NodeName
	rc.Timeout = 10 * time.Second
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("failed to remove the agent's annotations from Node %s: %w", ro.NodeName, err)
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]any{
		wellknown.AgentStatusAnnotation: nil, wellknown.TierLoadAnnotation: nil}}})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	_, err = cs.CoreV1().Nodes().Patch(ctx, ro.NodeName, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "infera-agent"})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("failed to remove the agent's annotations from Node %s: %w", ro.NodeName, err)
	}
	return nil
}
