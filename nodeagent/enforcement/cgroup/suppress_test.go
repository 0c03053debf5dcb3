package cgroup

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/nodeagent/cgroupfs"
	"github.com/infera-io/temper/nodeagent/cgroupfs/cgrouptest"
)

// TestSuppressV2 drives dynamic CPU suppression on a faked cgroup v2 node
// (2 CPUs) from the critical and high pods' cpu.stat: the low and
// background pods' cpu.max follows capacity − protected use − headroom in
// bounded steps, never below the floor, and goes back to the kubelet's
// value when the protected pods go quiet and on StandDown.
func TestSuppressV2(t *testing.T) {
	n := newNode(t, cgroupfs.V2, cgrouptest.Options{}, "")
	before := cgrouptest.Snapshot(t, n.tree.Root)
	n.b.levers.Suppress = SwitchOn
	if _, err := n.b.Apply(Plan{Pods: n.all(), CapacityMilli: 2000}); err != nil {
		t.Fatal(err)
	}
	usage := map[wellknown.Tier]int64{} // cumulative µs
	use := func(tier wellknown.Tier, milli int64) {
		usage[tier] += milli * 1000 // over one second
		n.tree.Set(t, cgroupfs.CPU, n.rel[tier], "cpu.stat", fmt.Sprintf("usage_usec %d\nuser_usec 0\nsystem_usec 0\n", usage[tier]))
	}
	now := time.Unix(1000, 0)
	tick := func() Suppression {
		t.Helper()
		now = now.Add(time.Second)
		s, err := n.b.Suppress(now)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	cpuMax := func(tier wellknown.Tier) string { return n.read(cgroupfs.CPU, n.rel[tier], "cpu.max") }
	tick() // the first tick only takes the baseline
	// Critical and high use 1.2 CPUs: target 2000 − 1200 − 500 = 300m,
	// reached in steps of 250m: 1750, 1500, … 300.
	var got []int64
	for range 8 {
		use(wellknown.TierCritical, 1000)
		use(wellknown.TierHigh, 200)
		got = append(got, tick().BudgetMilli)
	}
	if diff := cmp.Diff([]int64{1750, 1500, 1250, 1000, 750, 500, 300, 300}, got); diff != "" {
		t.Errorf("budgets (-want +got):\n%s", diff)
	}
	// Two held pods (low, background) share 300m: 150m each, 15 ms of a
	// 100 ms period.
	for _, tier := range []wellknown.Tier{wellknown.TierLow, wellknown.TierBackground} {
		if v := cpuMax(tier); v != "15000 100000" {
			t.Errorf("%s cpu.max = %q, want 15000 100000", tier, v)
		}
	}
	for _, tier := range []wellknown.Tier{wellknown.TierCritical, wellknown.TierHigh, wellknown.TierNormal} {
		if v := cpuMax(tier); v != "max 100000" && tier != wellknown.TierCritical {
			t.Errorf("%s cpu.max = %q, want untouched", tier, v)
		}
	}
	// Protected pods at 1.9 CPUs: the floor (100m per held pod) holds.
	var s Suppression
	for range 3 {
		use(wellknown.TierCritical, 1900)
		s = tick()
	}
	if s.BudgetMilli != 200 || !s.Active || s.Pods != 2 || s.ProtectedMilli != 1900 {
		t.Errorf("at the floor: %+v, want 200m over 2 pods, 1900m protected", s)
	}
	// Quiet: back up in steps to capacity − headroom (the idle CPU a
	// critical wake-up finds).
	for range 10 {
		s = tick()
	}
	if !s.Active || s.BudgetMilli != 1500 {
		t.Errorf("quiet: %+v, want 1500m", s)
	}
	// The low pod leaves the suppressed tiers: its cpu.max goes back.
	pods := n.all()
	for i := range pods {
		if pods[i].Tier == wellknown.TierLow {
			pods[i].Tier = wellknown.TierNormal
		}
	}
	if _, err := n.b.Apply(Plan{Pods: pods, CapacityMilli: 2000}); err != nil {
		t.Fatal(err)
	}
	if s = tick(); s.Pods != 1 {
		t.Errorf("after the low pod left: %+v, want 1 pod held", s)
	}
	if v := cpuMax(wellknown.TierLow); v != "max 100000" {
		t.Errorf("cpu.max of the pod that left = %q, want the kubelet's max 100000", v)
	}
	if _, err := n.b.Apply(Plan{Pods: n.all(), CapacityMilli: 2000}); err != nil {
		t.Fatal(err)
	}
	// Busy again, then stand down: every file as found.
	for range 3 {
		use(wellknown.TierCritical, 1500)
		tick()
	}
	if v := cpuMax(wellknown.TierLow); v == "max 100000" {
		t.Error("low pod not held after the protected pods got busy again")
	}
	if _, err := n.b.StandDown(); err != nil {
		t.Fatal(err)
	}
	after := cgrouptest.Snapshot(t, n.tree.Root)
	// cpu.stat is our fake usage, not configuration.
	for k := range after {
		if len(k) > 8 && k[len(k)-8:] == "cpu.stat" {
			delete(after, k)
			delete(before, k)
		}
	}
	if diff := cmp.Diff(before, after); diff != "" {
		t.Errorf("after StandDown (-before +after):\n%s", diff)
	}
	// Off by default: no tick does anything.
	n.b.levers.Suppress = SwitchDefault
	if _, err := n.b.Apply(Plan{Pods: n.all(), CapacityMilli: 2000}); err != nil {
		t.Fatal(err)
	}
	if s, err := n.b.Suppress(now.Add(time.Second)); err != nil || s != (Suppression{}) {
		t.Errorf("lever off: %+v, %v", s, err)
	}
}
