package nodeagent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/infera-io/temper/apis/tiering"
	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/nodeagent/cgroupfs"
)

// assignmentFileName is, under the agent's state_dir, the last assignment
// the agent enforced: a restarted agent enforces it at once, before (and
// without) the API server (issue #18, defect 6).
const assignmentFileName = "assignment.json"

const assignmentVersion = 1

type persistedAssignment struct {
	Version  int            `json:"version"`
	SafeMode bool           `json:"safeMode"`
	Pods     []persistedPod `json:"pods"`
}

type persistedPod struct {
	Namespace    string             `json:"namespace"`
	Name         string             `json:"name"`
	UID          types.UID          `json:"uid"`
	Tier         wellknown.Tier     `json:"tier"`
	QOSClass     corev1.PodQOSClass `json:"qosClass"`
	RequestMilli int64              `json:"requestMilli"`
	LimitMilli   int64              `json:"limitMilli"`
	ContainerIDs []string           `json:"containerIDs,omitempty"`
	CgroupPath   string             `json:"cgroupRelPath,omitempty"`
}

// persistAssignment records what was just enforced (or that the node
// stands down), atomically, when it changed. Failing to write it is logged:
// enforcement does not depend on it.
func (a *Agent) persistAssignment(as []Assignment, safe bool) {
	p := persistedAssignment{Version: assignmentVersion, SafeMode: safe, Pods: make([]persistedPod, 0, len(as))}
	for _, x := range as {
		p.Pods = append(p.Pods, persistedPod{Namespace: x.Pod.Namespace, Name: x.Pod.Name, UID: x.UID, Tier: x.Tier, QOSClass: x.QOSClass,
			RequestMilli: x.CPU.RequestMilli, LimitMilli: x.CPU.LimitMilli, ContainerIDs: x.ContainerIDs, CgroupPath: x.CgroupRelPath})
	}
	b, err := json.Marshal(p)
	if err != nil {
		return
	}
	if bytes.Equal(b, a.persisted) {
		return
	}
	if err := writeFileAtomic(filepath.Join(a.o.Config.StateDir, assignmentFileName), b); err != nil {
		a.log.Error(err, "Failed to persist the assignment; a restarted agent waits for the API server before enforcing")
		return
	}
	a.persisted = b
}

// loadAssignment reads the persisted assignment and finds each pod's
// cgroup again. ok is false when there is none or it cannot be read.
func (a *Agent) loadAssignment() (as []Assignment, safe, ok bool) {
	p := filepath.Join(a.o.Config.StateDir, assignmentFileName)
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, false
	}
	var pa persistedAssignment
	if err == nil {
		err = json.Unmarshal(b, &pa)
	}
	if err == nil && pa.Version != assignmentVersion {
		err = fmt.Errorf("unknown version %d", pa.Version)
	}
	if err != nil {
		a.log.Error(err, "Ignoring the persisted assignment", "file", p)
		return nil, false, false
	}
	for _, x := range pa.Pods {
		as = append(as, Assignment{
			Pod: types.NamespacedName{Namespace: x.Namespace, Name: x.Name}, UID: x.UID, Tier: x.Tier, QOSClass: x.QOSClass,
			CPU:          tiering.CPU{RequestMilli: x.RequestMilli, LimitMilli: x.LimitMilli},
			ContainerIDs: x.ContainerIDs, CgroupRelPath: x.CgroupPath,
		})
		if layout := a.layout(); layout != nil {
			last := &as[len(as)-1]
			if cg, err := layout.FindPod(cgroupfs.PodRef{UID: string(x.UID), QOSClass: x.QOSClass, ContainerIDs: x.ContainerIDs}); err == nil {
				last.Cgroup = cg
			}
		}
	}
	a.persisted = b
	return as, pa.SafeMode, true
}

// enforcePersisted enforces the persisted assignment before the informers
// have synced: the control plane may be down, enforcement does not wait.
func (a *Agent) enforcePersisted(ctx context.Context) {
	as, safe, ok := a.loadAssignment()
	if !ok {
		return
	}
	a.mu.Lock()
	a.assignments, a.safeMode = as, safe
	a.mu.Unlock()
	if safe {
		if err := a.backend.StandDown(ctx); err != nil {
			a.mu.Lock()
			a.standDownErr = "stand-down incomplete: " + firstLine(err.Error())
			a.mu.Unlock()
		}
		a.log.Info("Stood down from the persisted assignment (safe mode) before the API server answered")
		return
	}
	applied, err := a.backend.Apply(ctx, enforcementPods(as), a.machine)
	if err != nil {
		a.log.Error(err, "Failed to apply the persisted assignment", "backend", a.backend.Name())
	}
	a.mu.Lock()
	a.fencedMilli, a.notes = applied.FencedMilli, applied.Notes
	// An assignment is applied: /readyz now answers from the backend's
	// verification, as after the first reconcile, instead of "starting"
	// for as long as the API server stays away.
	a.reconciled = a.reconciled || err == nil
	a.mu.Unlock()
	a.log.Info("Enforcing the persisted assignment until the API server answers", "pods", len(as))
}

func writeFileAtomic(p string, b []byte) error {
	dir := filepath.Dir(p)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("failed to create %s: %w", dir, err)
	}
	tmp, err := os.CreateTemp(dir, filepath.Base(p)+".tmp-*")
	if err != nil {
		return fmt.Errorf("failed to write %s: %w", p, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("failed to write %s: %w", p, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("failed to sync %s: %w", p, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("failed to write %s: %w", p, err)
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		return fmt.Errorf("failed to write %s: %w", p, err)
	}
	return nil
}
