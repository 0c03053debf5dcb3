package lint

import (
	"fmt"
	"testing"
	"time"

	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/nodeagent/cpuset"
	"github.com/infera-io/temper/nodeagent/procscan"
	"github.com/infera-io/temper/nodeagent/procscan/procscantest"
)

// These tests place real spinning processes with sched_setaffinity so that
// they keep or break a promise, sample them from this kernel's /proc with
// procscan, and judge the sample.

// twoCPUs returns two CPUs this test may pin to, or skips.
func twoCPUs(t *testing.T) (a, b int) {
	cpus := procscantest.AllowedCPUs(t)
	if len(cpus) < 2 {
		t.Skipf("needs 2 CPUs to place threads on, this process may use %v", cpus)
	}
	return cpus[0], cpus[1]
}

// placed is one busy pod: its tier and the CPU its spinner is pinned to.
type placed struct {
	tier wellknown.Tier
	cpu  int
}

// sampleReal starts a spinner per pod and samples until every spinner has
// used at least minMilli in one window, returning that sample.
func sampleReal(t *testing.T, pods []placed, minMilli float64) *procscan.Sample {
	t.Helper()
	s, err := procscan.New(procscan.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var targets []procscan.Target
	for i, p := range pods {
		pid := procscantest.StartBusy(t, p.cpu)
		targets = append(targets, procscan.Target{Pod: procscan.PodKey(fmt.Sprintf("ns/%s-%d", p.tier, i)), Tier: p.tier, TGIDs: []int{pid}})
	}
	s.Sample(targets)
	var last *procscan.Sample
	for range 20 {
		time.Sleep(300 * time.Millisecond)
		last = s.Sample(targets)
		busy := 0
		for _, th := range last.Threads {
			if th.MilliCPU >= minMilli {
				busy++
			}
		}
		if busy == len(pods) {
			return last
		}
	}
	t.Fatalf("spinners did not all reach %.0f ms/s; last sample threads %+v", minMilli, last.Threads)
	return nil
}

func verdict(t *testing.T, vs []Verdict, inv string) Verdict {
	t.Helper()
	for _, v := range vs {
		if v.Invariant == inv {
			return v
		}
	}
	t.Fatalf("no verdict for %s in %+v", inv, vs)
	return Verdict{}
}

func set(cpus ...int) cpuset.Set {
	s := cpuset.Set{}
	for _, c := range cpus {
		s[c] = true
	}
	return s
}

// fencePromise is the cgroup backend's promise with a critical fence on
// CPU fenced: critical confined and protected there, the rest elsewhere.
func fencePromise(fenced int) Promise {
	return Promise{Layers: []Layer{
		{Name: "critical", Tiers: []wellknown.Tier{wellknown.TierCritical}, CPUs: set(fenced), Protected: true, Confined: true, QuietSiblings: true},
		{Name: "normal", Tiers: []wellknown.Tier{wellknown.TierNormal}},
		{Name: "low", Tiers: []wellknown.Tier{wellknown.TierLow}, Open: true},
		{Name: "background", Tiers: []wellknown.Tier{wellknown.TierBackground}, Open: true},
	}}
}

func TestProtectedFallbackRealThreads(t *testing.T) {
	shared, fenced := twoCPUs(t)
	m := Machine{CPUs: []int{shared, fenced}, Cores: [][]int{{shared}, {fenced}}}
	t.Run("critical thread outside its fence", func(t *testing.T) {
		s := sampleReal(t, []placed{{wellknown.TierCritical, shared}}, DefaultMinMilli)
		v := verdict(t, Evaluate(fencePromise(fenced), m, s, Options{}), ProtectedFallback)
		if v.OK || v.Violations != 1 || len(v.Examples) != 1 || v.Examples[0].CPU != shared || v.Examples[0].Layer != "critical" {
			t.Errorf("verdict %+v; want one violation on CPU %d by the critical thread", v, shared)
		}
	})
	t.Run("critical thread inside its fence", func(t *testing.T) {
		s := sampleReal(t, []placed{{wellknown.TierCritical, fenced}}, DefaultMinMilli)
		v := verdict(t, Evaluate(fencePromise(fenced), m, s, Options{}), ProtectedFallback)
		if !v.OK || v.Checked != 1 {
			t.Errorf("verdict %+v; want ok with the critical thread checked", v)
		}
	})
}

func TestLayerMismatchRealThreads(t *testing.T) {
	shared, fenced := twoCPUs(t)
	m := Machine{CPUs: []int{shared, fenced}, Cores: [][]int{{shared}, {fenced}}}
	t.Run("normal thread inside the critical fence", func(t *testing.T) {
		s := sampleReal(t, []placed{{wellknown.TierNormal, fenced}}, DefaultMinMilli)
		v := verdict(t, Evaluate(fencePromise(fenced), m, s, Options{}), LayerMismatch)
		if v.OK || v.Violations != 1 || v.Examples[0].Layer != "normal" || v.Examples[0].CPU != fenced {
			t.Errorf("verdict %+v; want the normal thread on CPU %d reported", v, fenced)
		}
	})
	t.Run("normal thread on the shared CPUs", func(t *testing.T) {
		s := sampleReal(t, []placed{{wellknown.TierNormal, shared}, {wellknown.TierCritical, fenced}}, DefaultMinMilli)
		vs := Evaluate(fencePromise(fenced), m, s, Options{})
		for _, inv := range []string{LayerMismatch, ProtectedFallback} {
			if v := verdict(t, vs, inv); !v.OK || v.Checked != 1 {
				t.Errorf("%s verdict %+v; want ok with one thread checked", inv, v)
			}
		}
	})
}

func TestOpenReserveRealThreads(t *testing.T) {
	reserve, other := twoCPUs(t)
	m := Machine{CPUs: []int{reserve, other}, Cores: [][]int{{reserve}, {other}}}
	p := Promise{Reserve: set(reserve), Layers: []Layer{
		{Name: "normal", Tiers: []wellknown.Tier{wellknown.TierNormal}},
		{Name: "background", Tiers: []wellknown.Tier{wellknown.TierBackground}, Open: true},
	}}
	t.Run("background spinning on the reserve", func(t *testing.T) {
		// The spinner must use more than the tolerated 100 ms/s.
		s := sampleReal(t, []placed{{wellknown.TierBackground, reserve}}, 2*DefaultReserveMilli)
		v := verdict(t, Evaluate(p, m, s, Options{}), OpenReserve)
		if v.OK || v.Violations != 1 || v.Examples[0].CPU != reserve {
			t.Errorf("verdict %+v; want the background thread on reserve CPU %d reported", v, reserve)
		}
	})
	t.Run("background off the reserve, normal on it", func(t *testing.T) {
		s := sampleReal(t, []placed{{wellknown.TierBackground, other}, {wellknown.TierNormal, reserve}}, DefaultMinMilli)
		v := verdict(t, Evaluate(p, m, s, Options{}), OpenReserve)
		if !v.OK || v.Checked != 1 {
			t.Errorf("verdict %+v; want ok: only Open work counts against the reserve", v)
		}
	})
}

// TestSMTCollisionRealThreads runs on a machine without SMT (this one has
// one thread per core), so the topology handed to the linter is faked: the
// two real CPUs are declared SMT siblings of one core. The threads, their
// placement and their usage are real.
func TestSMTCollisionRealThreads(t *testing.T) {
	a, b := twoCPUs(t)
	fakeSMT := Machine{CPUs: []int{a, b}, Cores: [][]int{{a, b}}}
	p := Promise{Layers: []Layer{
		{Name: "critical", Tiers: []wellknown.Tier{wellknown.TierCritical}, CPUs: set(a, b), Protected: true, Confined: true, QuietSiblings: true},
		{Name: "background", Tiers: []wellknown.Tier{wellknown.TierBackground}, Open: true},
	}}
	t.Run("background busy on the critical thread's sibling", func(t *testing.T) {
		s := sampleReal(t, []placed{{wellknown.TierCritical, a}, {wellknown.TierBackground, b}}, DefaultNoisyMilli)
		v := verdict(t, Evaluate(p, fakeSMT, s, Options{}), SMTCollision)
		if v.OK || v.Violations != 1 || v.Examples[0].Tier != "critical" || v.Examples[0].CPU != a {
			t.Errorf("verdict %+v; want the critical thread on CPU %d colliding with its sibling %d", v, a, b)
		}
		// The same placement on the real topology (no siblings) is fine.
		real := Machine{CPUs: []int{a, b}, Cores: [][]int{{a}, {b}}}
		if v := verdict(t, Evaluate(p, real, s, Options{}), SMTCollision); !v.OK {
			t.Errorf("verdict without SMT %+v; want ok", v)
		}
	})
	t.Run("background on the same CPU, sibling quiet", func(t *testing.T) {
		s := sampleReal(t, []placed{{wellknown.TierCritical, a}, {wellknown.TierBackground, a}}, DefaultNoisyMilli)
		v := verdict(t, Evaluate(p, fakeSMT, s, Options{}), SMTCollision)
		if !v.OK || v.Checked != 1 {
			t.Errorf("verdict %+v; want ok: nothing ran on the sibling", v)
		}
	})
}
