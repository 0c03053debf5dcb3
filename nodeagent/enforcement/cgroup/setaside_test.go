package cgroup

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-logr/logr/testr"

	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/nodeagent/cgroupfs"
	"github.com/infera-io/temper/nodeagent/cgroupfs/cgrouptest"
	"github.com/infera-io/temper/nodeagent/cgroupfs/writer"
)

// requests are the faked pods' CPU requests in millicores, as the kubelet
// sized their cgroups (Guaranteed 1 CPU → 1024 shares, Burstable 500m →
// 512, BestEffort → 2).
var requests = map[wellknown.Tier]int64{
	wellknown.TierSystem: 500, wellknown.TierCritical: 1000, wellknown.TierHigh: 500,
	wellknown.TierNormal: 500, wellknown.TierLow: 500, wellknown.TierBackground: 0,
}

// restart is a new agent on the node, in the same boot: a new writer on the
// same state directory and a new backend.
func (n *node) restart() {
	n.t.Helper()
	_ = n.w.Close()
	var err error
	if n.w, err = writer.New(writer.Options{Root: n.tree.Root, StateDir: n.stateDir, BootIDFile: n.bootFile, Log: testr.New(n.t)}); err != nil {
		n.t.Fatal(err)
	}
	if n.b, err = New(Options{Layout: n.layout, Writer: n.w, CPUManagerStateFile: n.cpuManagerStateFile, Log: testr.New(n.t)}); err != nil {
		n.t.Fatal(err)
	}
}

func (n *node) withRequests() []Pod {
	pods := n.all()
	for i := range pods {
		pods[i].RequestMilli = requests[pods[i].Tier]
		pods[i].RequestKnown = true
	}
	return pods
}

// Issue #18, defect 3: a state file set aside in the same boot (corrupt, or
// a version this agent does not know) must not make the backend scale
// values it already scaled, and the stand-down must write the kubelet's
// values back, derived from the pod spec with the kubelet's formula.
func TestSetAsideStateNeverCompounds(t *testing.T) {
	for name, spoil := range map[string]string{
		"corrupt":         "{not json",
		"unknown version": `{"version": 99, "minReaderVersion": 99, "bootID": "b1", "originals": []}`,
	} {
		t.Run(name, func(t *testing.T) {
			n := newNode(t, cgroupfs.V1, cgrouptest.Options{}, "")
			crit, high, low, bg := n.rel[wellknown.TierCritical], n.rel[wellknown.TierHigh], n.rel[wellknown.TierLow], n.rel[wellknown.TierBackground]
			if _, err := n.b.Apply(Plan{Pods: n.withRequests()}); err != nil {
				t.Fatal(err)
			}
			if got := n.read(cgroupfs.CPU, crit, "cpu.shares"); got != "4096" {
				t.Fatalf("critical cpu.shares = %s, want 4096", got)
			}
			// The agent crashes; its state file is spoilt; a new agent starts.
			if err := os.WriteFile(filepath.Join(n.stateDir, "cgroup-originals.json"), []byte(spoil), 0o600); err != nil {
				t.Fatal(err)
			}
			n.restart()
			if rep := n.w.StateReport(); rep.SetAside == "" || !rep.OriginalsUnknown {
				t.Errorf("state report %+v: want the file set aside and the originals unknown", rep)
			}
			for range 2 {
				n.find()
				if _, err := n.b.Apply(Plan{Pods: n.withRequests()}); err != nil {
					t.Fatal(err)
				}
			}
			for _, c := range []struct{ rel, want string }{{crit, "4096"}, {high, "1024"}, {low, "128"}} {
				if got := n.read(cgroupfs.CPU, c.rel, "cpu.shares"); got != c.want {
					t.Errorf("%s cpu.shares = %s after the restart, want %s (never compounded)", c.rel, got, c.want)
				}
			}
			// A second restart in the same boot keeps the derived originals.
			n.restart()
			n.find()
			if _, err := n.b.Apply(Plan{Pods: n.withRequests()}); err != nil {
				t.Fatal(err)
			}
			if got := n.read(cgroupfs.CPU, crit, "cpu.shares"); got != "4096" {
				t.Errorf("critical cpu.shares = %s after a second restart, want 4096", got)
			}
			if _, err := n.b.StandDown(); err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct{ rel, file, want string }{
				{crit, "cpu.shares", "1024"}, {high, "cpu.shares", "512"}, {low, "cpu.shares", "512"}, {bg, "cpu.shares", "2"}, {bg, "cpu.idle", "0"},
			} {
				if got := n.read(cgroupfs.CPU, c.rel, c.file); got != c.want {
					t.Errorf("after the stand-down %s/%s = %s, want the kubelet's %s", c.rel, c.file, got, c.want)
				}
			}
		})
	}
}

// Without the pod's request the stock value cannot be derived: the backend
// fails closed for that pod (no write, an error naming it) instead of
// scaling a value that may already be scaled.
func TestSetAsideStateFailsClosedWithoutRequest(t *testing.T) {
	n := newNode(t, cgroupfs.V1, cgrouptest.Options{}, "")
	crit := n.rel[wellknown.TierCritical]
	if _, err := n.b.Apply(Plan{Pods: n.withRequests()}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(n.stateDir, "cgroup-originals.json"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	n.restart()
	n.find()
	_, err := n.b.Apply(Plan{Pods: n.all()}) // no requests known
	if err == nil || !strings.Contains(err.Error(), "ns/critical") || !strings.Contains(err.Error(), "original") {
		t.Fatalf("Apply error = %v, want one naming pod ns/critical and its unknown original", err)
	}
	if got := n.read(cgroupfs.CPU, crit, "cpu.shares"); got != "4096" {
		t.Errorf("critical cpu.shares = %s, want 4096 left alone (fail closed)", got)
	}
}
