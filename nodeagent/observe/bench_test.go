package observe

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"testing"

	"github.com/go-logr/logr"

	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/nodeagent/cpuset"
	"github.com/infera-io/temper/nodeagent/lint"
	"github.com/infera-io/temper/nodeagent/procscan"
)

// The cost of one tick (sample + lint) and one snapshot at 110 pods:
//
//	go test -run '^$' -bench . -benchmem ./nodeagent/observe/
//
// cpu-ns/op is the thread CPU time the observer itself measured, the
// number its overhead.cpu_seconds adds up.

var tiers = []wellknown.Tier{wellknown.TierCritical, wellknown.TierHigh, wellknown.TierNormal, wellknown.TierLow, wellknown.TierBackground}

func benchPromise() lint.Promise {
	return lint.Promise{Reserve: cpuset.Set{0: true}, Layers: []lint.Layer{
		{Name: "critical", Kind: "Confined", Tiers: []wellknown.Tier{wellknown.TierCritical}, CPUs: cpuset.Set{1: true}, Protected: true, Confined: true, QuietSiblings: true},
		{Name: "high", Kind: "Grouped", Tiers: []wellknown.Tier{wellknown.TierHigh}, Protected: true},
		{Name: "normal", Kind: "Grouped", Tiers: []wellknown.Tier{wellknown.TierNormal}},
		{Name: "low", Kind: "Open", Tiers: []wellknown.Tier{wellknown.TierLow}, Open: true},
		{Name: "background", Kind: "Open", Tiers: []wellknown.Tier{wellknown.TierBackground}, Open: true},
	}}
}

func idleTargets(b *testing.B) []procscan.Target {
	targets := make([]procscan.Target, 110)
	for i := range targets {
		cmd := exec.Command("sleep", "3600")
		if err := cmd.Start(); err != nil {
			b.Skipf("cannot start a process: %v", err)
		}
		b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		targets[i] = procscan.Target{Pod: procscan.PodKey(fmt.Sprintf("ns/pod-%d", i)), Tier: tiers[i%len(tiers)], TGIDs: []int{cmd.Process.Pid}}
	}
	return targets
}

// busyTargets point every pod at this benchmark's own, always busy,
// process: every tick reads all its threads once per pod.
func busyTargets() []procscan.Target {
	targets := make([]procscan.Target, 110)
	for i := range targets {
		targets[i] = procscan.Target{Pod: procscan.PodKey(fmt.Sprintf("ns/pod-%d", i)), Tier: tiers[i%len(tiers)], TGIDs: []int{os.Getpid()}}
	}
	return targets
}

func benchTick(b *testing.B, targets []procscan.Target) {
	o, err := New(Options{Node: "bench", Log: logr.Discard()})
	if err != nil {
		b.Fatal(err)
	}
	in := Input{Targets: targets, Promise: benchPromise(), Enforcement: Enforcement{Backend: "cgroup", Status: "enforcing"}}
	o.Tick(in)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		o.Tick(in)
	}
	b.StopTimer()
	ov := o.Snapshot().Overhead
	b.ReportMetric(ov.LastTickCPUSeconds*1e9, "last-cpu-ns")
	b.ReportMetric(ov.CPUSeconds*1e9/float64(ov.Ticks), "cpu-ns/op")
}

func BenchmarkTick110PodsIdle(b *testing.B) { benchTick(b, idleTargets(b)) }
func BenchmarkTick110PodsBusy(b *testing.B) { benchTick(b, busyTargets()) }

func BenchmarkSnapshot110PodsBusy(b *testing.B) {
	o, err := New(Options{Node: "bench", Log: logr.Discard()})
	if err != nil {
		b.Fatal(err)
	}
	in := Input{Targets: busyTargets(), Promise: benchPromise()}
	o.Tick(in)
	o.Tick(in)
	b.ReportAllocs()
	var size int
	for b.Loop() {
		buf, err := json.Marshal(o.Snapshot())
		if err != nil {
			b.Fatal(err)
		}
		size = len(buf)
	}
	b.ReportMetric(float64(size), "bytes")
}
