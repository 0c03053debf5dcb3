package observe

import (
	"os/exec"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/nodeagent/procscan"
	"github.com/infera-io/temper/nodeagent/procscan/procscantest"
)

// TestUsageRealProcesses: a spinning pod's samples are near a core, a
// sleeping pod's near zero, each tier sums its pods, and the window keeps
// only the newest UsageSamples samples.
func TestUsageRealProcesses(t *testing.T) {
	cpus := procscantest.AllowedCPUs(t)
	busy := procscantest.StartBusy(t, cpus...)
	sleeper := exec.Command("sleep", "600")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sleeper.Process.Kill(); _ = sleeper.Wait() })

	o, err := New(Options{Node: "this-host", Log: logr.Discard(), UsageSamples: 3})
	if err != nil {
		t.Fatal(err)
	}
	if u := o.Usage(nil); u.Samples != 0 || len(u.Pods) != 0 {
		t.Fatalf("Usage before any sample = %+v, want empty", u)
	}
	in := Input{Targets: []procscan.Target{
		{Pod: "ns/spinner", Tier: wellknown.TierBackground, TGIDs: []int{busy}},
		{Pod: "ns/sleeper", Tier: wellknown.TierBackground, TGIDs: []int{sleeper.Process.Pid}},
		{Pod: "other/sleeper", Tier: wellknown.TierCritical, TGIDs: []int{sleeper.Process.Pid}},
	}}
	o.Tick(in) // the first sample has no interval: no usage
	if u := o.Usage(nil); u.Samples != 0 {
		t.Fatalf("Usage after one sample = %+v, want none: the first has no interval", u)
	}
	for range 5 {
		time.Sleep(400 * time.Millisecond)
		o.Tick(in)
	}
	u := o.Usage(func(p procscan.PodKey) bool { return p != "other/sleeper" })
	if u.Samples != 3 || !u.To.After(u.From) || u.Interval <= 0 {
		t.Fatalf("window = %d samples %s..%s every %s, want the newest 3", u.Samples, u.From, u.To, u.Interval)
	}
	if len(u.Pods) != 2 || u.Pods[0].Pod != "ns/sleeper" || u.Pods[1].Pod != "ns/spinner" {
		t.Fatalf("pods = %+v, want ns/sleeper and ns/spinner (other/sleeper filtered out), sorted", u.Pods)
	}
	// The spinner gets what the (shared, loaded) machine leaves it, at
	// most one core; the sleeper nothing.
	spin, sleep := u.Pods[1], u.Pods[0]
	total := 0.0
	for i, m := range spin.Milli {
		total += m
		if m > 1100 {
			t.Errorf("spinner sample %d = %.0fm, want at most a core", i, m)
		}
		if sleep.Milli[i] > 20 {
			t.Errorf("sleeper sample %d = %.0fm, want near 0", i, sleep.Milli[i])
		}
	}
	if total == 0 {
		t.Errorf("spinner samples %v, want some usage", spin.Milli)
	}
	if len(u.Tiers) != 2 || u.Tiers[0].Tier != wellknown.TierCritical || u.Tiers[1].Tier != wellknown.TierBackground || u.Tiers[1].Pods != 2 {
		t.Fatalf("tiers = %+v, want critical then background (2 pods)", u.Tiers)
	}
	for i, m := range u.Tiers[1].Milli {
		if want := spin.Milli[i] + sleep.Milli[i]; m != want {
			t.Errorf("background tier sample %d = %.1fm, want the sum of its pods %.1fm", i, m, want)
		}
	}
}
