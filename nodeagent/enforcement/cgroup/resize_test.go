package cgroup

import (
	"testing"

	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/nodeagent/cgroupfs"
	"github.com/infera-io/temper/nodeagent/cgroupfs/cgrouptest"
)

// Issue #18, defect 4: the kubelet resizing a pod in place rewrites its
// weight. That is not drift to revert: the new value becomes the pod's
// baseline, the tier's scaling goes on top of it, and the stand-down
// writes the resized value back, not the pre-resize one. A value put back
// to the original (the kubelet re-asserting its own value) is still drift.
func TestInPlaceResizeBecomesTheBaseline(t *testing.T) {
	for name, viaApply := range map[string]bool{"seen by the drift timer": false, "seen by an apply": true} {
		t.Run(name, func(t *testing.T) {
			n := newNode(t, cgroupfs.V1, cgrouptest.Options{}, "")
			crit, low := n.rel[wellknown.TierCritical], n.rel[wellknown.TierLow]
			if _, err := n.b.Apply(Plan{Pods: n.all()}); err != nil {
				t.Fatal(err)
			}
			if got := n.read(cgroupfs.CPU, crit, "cpu.shares"); got != "4096" {
				t.Fatalf("critical cpu.shares = %s, want 4096", got)
			}
			// The kubelet resizes critical from 1 to 2 CPUs and puts low's
			// own value back.
			n.tree.Set(t, cgroupfs.CPU, crit, "cpu.shares", "2048\n")
			n.tree.Set(t, cgroupfs.CPU, low, "cpu.shares", "512\n")
			if viaApply {
				if _, err := n.b.Apply(Plan{Pods: n.all()}); err != nil {
					t.Fatal(err)
				}
			} else {
				res, err := n.b.Reconcile()
				if err != nil {
					t.Fatal(err)
				}
				if res.Rebased != 1 || res.Drifted != 1 {
					t.Errorf("Reconcile() = %+v, want 1 rebased (critical) and 1 drifted (low)", res)
				}
			}
			if got := n.read(cgroupfs.CPU, crit, "cpu.shares"); got != "8192" {
				t.Errorf("critical cpu.shares after the resize = %s, want 8192 (the resized 2048 × 4)", got)
			}
			if got := n.read(cgroupfs.CPU, low, "cpu.shares"); got != "128" {
				t.Errorf("low cpu.shares after the kubelet's own value came back = %s, want 128 (re-asserted)", got)
			}
			if _, err := n.b.StandDown(); err != nil {
				t.Fatal(err)
			}
			if got := n.read(cgroupfs.CPU, crit, "cpu.shares"); got != "2048" {
				t.Errorf("critical cpu.shares after the stand-down = %s, want the resized 2048", got)
			}
		})
	}
}
