package observe

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/sys/unix"

	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/nodeagent/cpuset"
	"github.com/infera-io/temper/nodeagent/lint"
	"github.com/infera-io/temper/nodeagent/procscan"
	"github.com/infera-io/temper/nodeagent/procscan/procscantest"
)

// TestObserverRealNode ticks over a real spinning process on this host's
// /proc and /sys, and serves the snapshot over HTTP.
func TestObserverRealNode(t *testing.T) {
	cpus := procscantest.AllowedCPUs(t)
	if len(cpus) < 2 {
		t.Skipf("needs 2 CPUs, this process may use %v", cpus)
	}
	shared, fenced := cpus[0], cpus[1]
	// A normal pod spinning inside the critical fence: a layer_mismatch.
	pid := procscantest.StartBusy(t, fenced)
	o, err := New(Options{Node: "this-host", Log: logr.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	in := Input{
		Targets: []procscan.Target{{Pod: "ns/spinner", Tier: wellknown.TierNormal, TGIDs: []int{pid}}},
		Promise: lint.Promise{Layers: []lint.Layer{
			{Name: "critical", Kind: "Confined", Tiers: []wellknown.Tier{wellknown.TierCritical}, CPUs: cpuset.Set{fenced: true}, Protected: true, Confined: true},
			{Name: "normal", Kind: "Grouped", Tiers: []wellknown.Tier{wellknown.TierNormal}},
		}},
		Enforcement: Enforcement{Backend: "cgroup", Status: "enforcing"},
	}
	o.Tick(in)
	var snap Snapshot
	for range 20 {
		time.Sleep(300 * time.Millisecond)
		o.Tick(in)
		snap = o.Snapshot()
		if len(snap.TopThreads) > 0 {
			break
		}
	}
	if len(snap.TopThreads) == 0 || snap.TopThreads[0].TID != pid || snap.TopThreads[0].CPU != fenced || snap.TopThreads[0].Layer != "normal" {
		t.Fatalf("top threads %+v; want the spinner %d on CPU %d in layer normal", snap.TopThreads, pid, fenced)
	}
	normal := snap.Layers[1]
	if want := (cpuset.Set{shared: true}).String(); normal.Name != "normal" || normal.Pods != 1 || normal.Util <= 0 || normal.CPUs != want {
		t.Errorf("normal layer %+v; want 1 pod, some util, CPUs %d", normal, shared)
	}
	mismatch := snap.Lint[3]
	if mismatch.Invariant != lint.LayerMismatch || mismatch.OK {
		t.Errorf("layer_mismatch verdict %+v; want the spinner in the fence reported", mismatch)
	}
	if got := o.LintViolations()[lint.LayerMismatch]; got == 0 {
		t.Errorf("layer_mismatch count is 0; want the violations counted")
	}
	// Make the agent (this test process) use at least 50 ms of CPU, as
	// getrusage says, so that /proc/self/stat's 10 ms ticks must show it.
	for rusageCPU(t) < 50*time.Millisecond {
		for i := 0; i < 1e6; i++ {
			_ = i * i
		}
	}
	snap = o.Snapshot()
	ov := snap.Overhead
	if ov.AgentCPUSeconds < 0.04 {
		t.Errorf("agent CPU %.3f s; want at least the 50 ms getrusage counted (less one tick)", ov.AgentCPUSeconds)
	}
	if ov.Ticks < 2 || ov.CPUSeconds <= 0 || ov.AgentRSSBytes <= 0 || ov.ObservedSeconds <= 0 || ov.CoreFraction <= 0 {
		t.Errorf("overhead %+v; want ticks, measured CPU, the agent's CPU and RSS", ov)
	}
	if snap.Machine.CPUCount == 0 || snap.SchemaVersion != SchemaVersion || snap.Node != "this-host" {
		t.Errorf("snapshot header %+v %d %q", snap.Machine, snap.SchemaVersion, snap.Node)
	}

	// The snapshot is what GET /observe serves: it must encode as JSON
	// with the schema version at the top.
	b, err := json.Marshal(snap)
	if err != nil {
		t.Fatalf("the snapshot does not encode as JSON: %v", err)
	}
	var decoded map[string]any
	if err := json.Unmarshal(b, &decoded); err != nil {
		t.Fatal(err)
	}
	if decoded["schema_version"] != float64(SchemaVersion) {
		t.Errorf("schema_version = %v", decoded["schema_version"])
	}
}

func rusageCPU(t *testing.T) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		t.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func TestNewFailsWithoutSysfs(t *testing.T) {
	if _, err := New(Options{SysRoot: t.TempDir(), Log: logr.Discard()}); err == nil || !strings.Contains(err.Error(), "machine shape") {
		t.Errorf("New on an empty sysfs: err %v; want one about the machine shape", err)
	}
}
