package lint

import (
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	"github.com/google/go-cmp/cmp"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/nodeagent/procscan"
)

func thread(tid int, tier wellknown.Tier, cpu int, milli float64) procscan.Thread {
	return procscan.Thread{TID: tid, PID: tid, Comm: "t", Pod: procscan.PodKey("ns/" + string(tier)), Tier: tier, CPU: cpu, MilliCPU: milli}
}

func TestEvaluateSynthetic(t *testing.T) {
	m := Machine{CPUs: []int{0, 1, 2, 3}, Cores: [][]int{{0, 2}, {1, 3}}}
	p := fencePromise(3)
	p.Reserve = set(0)
	for _, tc := range []struct {
		name    string
		threads []procscan.Thread
		want    map[string]int // violations per invariant
	}{
		{name: "no sample", want: map[string]int{}},
		{
			name:    "below MinMilli is not evidence",
			threads: []procscan.Thread{thread(1, wellknown.TierCritical, 0, 4), thread(2, wellknown.TierNormal, 3, 4.9)},
			want:    map[string]int{},
		},
		{
			name:    "unknown tier is not judged",
			threads: []procscan.Thread{thread(1, wellknown.TierHigh, 3, 900)},
			want:    map[string]int{},
		},
		{
			name: "Open work on the reserve within the headroom",
			threads: []procscan.Thread{
				thread(1, wellknown.TierLow, 0, 60), thread(2, wellknown.TierBackground, 0, 39),
			},
			want: map[string]int{},
		},
		{
			name: "Open work on the reserve beyond the headroom",
			threads: []procscan.Thread{
				thread(1, wellknown.TierLow, 0, 60), thread(2, wellknown.TierBackground, 0, 41), thread(3, wellknown.TierLow, 1, 900),
			},
			want: map[string]int{OpenReserve: 2},
		},
		{
			name: "SMT sibling of the fence busy with low, quiet with critical",
			threads: []procscan.Thread{
				thread(1, wellknown.TierCritical, 3, 500), thread(2, wellknown.TierLow, 1, 100), thread(3, wellknown.TierLow, 1, 99),
			},
			want: map[string]int{SMTCollision: 1},
		},
		{
			name: "a higher tier on the sibling is no collision",
			threads: []procscan.Thread{
				thread(1, wellknown.TierNormal, 2, 500), thread(2, wellknown.TierCritical, 3, 500), thread(3, wellknown.TierSystem, 1, 500),
			},
			want: map[string]int{},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s *procscan.Sample
			if tc.threads != nil {
				s = &procscan.Sample{Threads: tc.threads}
			}
			vs := Evaluate(p, m, s, Options{})
			got := map[string]int{}
			for i, v := range vs {
				if v.Invariant != Invariants()[i] {
					t.Errorf("verdict %d is %s, want %s", i, v.Invariant, Invariants()[i])
				}
				if v.OK != (v.Violations == 0) {
					t.Errorf("%s: ok %v with %d violations", v.Invariant, v.OK, v.Violations)
				}
				if v.Violations > 0 {
					got[v.Invariant] = v.Violations
				}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("violations mismatch (-want +got):\n%s\nverdicts %+v", diff, vs)
			}
		})
	}
}

func TestEvaluateBoundsExamples(t *testing.T) {
	var threads []procscan.Thread
	for i := range 1000 {
		threads = append(threads, thread(i, wellknown.TierNormal, 1, 50))
	}
	v := verdict(t, Evaluate(fencePromise(1), Machine{CPUs: []int{0, 1}}, &procscan.Sample{Threads: threads}, Options{MaxExamples: 3}), LayerMismatch)
	if v.Violations != 1000 || len(v.Examples) != 3 {
		t.Errorf("violations %d with %d examples; want 1000 with 3", v.Violations, len(v.Examples))
	}
}

func TestLinterRateLimitsWarningsAndCounts(t *testing.T) {
	var lines []string
	log := funcr.New(func(prefix, args string) { lines = append(lines, args) }, funcr.Options{})
	clk := clocktesting.NewFakePassiveClock(time.Unix(1000, 0))
	l, err := New(log, clk, Options{WarnInterval: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	m := Machine{CPUs: []int{0, 1}, Cores: [][]int{{0}, {1}}}
	bad := &procscan.Sample{Threads: []procscan.Thread{thread(7, wellknown.TierNormal, 1, 300), thread(8, wellknown.TierNormal, 1, 300)}}
	good := &procscan.Sample{Threads: []procscan.Thread{thread(7, wellknown.TierNormal, 0, 300)}}
	for range 5 {
		l.Check(fencePromise(1), m, bad)
		clk.SetTime(clk.Now().Add(10 * time.Second))
	}
	l.Check(fencePromise(1), m, good)
	if len(lines) != 1 || !strings.Contains(lines[0], `"invariant"="layer_mismatch"`) || !strings.Contains(lines[0], `"violations"=2`) {
		t.Fatalf("warnings %q; want one layer_mismatch warning with 2 violations", lines)
	}
	clk.SetTime(clk.Now().Add(time.Minute))
	l.Check(fencePromise(1), m, good)
	if len(lines) != 2 || !strings.Contains(lines[1], `"violations"=8`) {
		t.Fatalf("warnings %q; want a second one counting the 8 suppressed violations", lines)
	}
	clk.SetTime(clk.Now().Add(time.Hour))
	l.Check(fencePromise(1), m, good)
	if len(lines) != 2 {
		t.Errorf("warnings %q; want none while compliant", lines)
	}
	want := map[string]uint64{SMTCollision: 0, ProtectedFallback: 0, OpenReserve: 0, LayerMismatch: 10}
	if diff := cmp.Diff(want, l.Violations()); diff != "" {
		t.Errorf("counts mismatch (-want +got):\n%s", diff)
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(time.Unix(0, 0))
	for _, o := range []Options{{MinMilli: -1}, {MaxExamples: -1}, {WarnInterval: -time.Second}} {
		if _, err := New(funcr.New(func(string, string) {}, funcr.Options{}), clk, o); err == nil {
			t.Errorf("New(%+v) succeeded; want an error", o)
		}
	}
	if _, err := New(funcr.New(func(string, string) {}, funcr.Options{}), nil, Options{}); err == nil {
		t.Error("New without a clock succeeded; want an error")
	}
}
