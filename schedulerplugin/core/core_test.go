package core

import (
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/infera-io/temper/apis/wellknown"
)

var now = time.Date(2026, 11, 26, 18, 0, 0, 0, time.UTC)

var params = Params{FenceReserveMilli: 1000}

// load builds a tier-load confirmed `age` before now.
func load(age time.Duration, backend string, allocMilli, fencedMilli int64, tiers map[wellknown.Tier]wellknown.TierUsage) wellknown.TierLoad {
	return wellknown.TierLoad{V: 1, TS: now.Add(-age), Gen: 1, Backend: backend,
		AllocatableMilli: allocMilli, FencedMilli: fencedMilli, Tiers: tiers}
}

func marshal(t *testing.T, l wellknown.TierLoad) string {
	t.Helper()
	s, err := l.Marshal()
	if err != nil {
		t.Fatalf("marshal tier-load: %v", err)
	}
	return s
}

// busy16 is a 16-core scx_layered node: 4 critical cores fenced, 2 cores of
// high, 4 cores of normal requests.
func busy16() wellknown.TierLoad {
	return load(time.Minute, wellknown.BackendSCXLayered, 16000, 4000, map[wellknown.Tier]wellknown.TierUsage{
		wellknown.TierCritical: {Pods: 2, RequestMilli: 4000, LimitMilli: 4000},
		wellknown.TierHigh:     {Pods: 2, RequestMilli: 2000},
		wellknown.TierNormal:   {Pods: 4, RequestMilli: 4000},
	})
}

func TestAssess(t *testing.T) {
	const maxAge = wellknown.TierLoadMaxAge
	tests := map[string]struct {
		value   string
		present bool
		want    Status
		wantErr error // errors.Is target; nil means any non-nil error for Malformed
	}{
		"absent":                 {present: false, want: Missing},
		"empty value":            {value: "", present: true, want: Malformed},
		"not JSON":               {value: "{critical: 2", present: true, want: Malformed},
		"unknown version":        {value: `{"v":2,"ts":"2026-11-26T17:59:00Z","allocatableMilli":8000,"fencedMilli":0,"tiers":{}}`, present: true, want: Malformed},
		"unknown tier":           {value: `{"v":1,"ts":"2026-11-26T17:59:00Z","allocatableMilli":8000,"fencedMilli":0,"tiers":{"gold":{"pods":1,"requestMilli":1,"limitMilli":0}}}`, present: true, want: Malformed},
		"negative fenced":        {value: `{"v":1,"ts":"2026-11-26T17:59:00Z","allocatableMilli":8000,"fencedMilli":-1,"tiers":{}}`, present: true, want: Malformed},
		"fresh":                  {value: `{"v":1,"ts":"2026-11-26T17:59:00Z","gen":3,"backend":"cgroup","allocatableMilli":8000,"fencedMilli":0,"tiers":{}}`, present: true, want: Fresh},
		"exactly max age":        {value: `{"v":1,"ts":"2026-11-26T17:57:00Z","gen":3,"backend":"cgroup","allocatableMilli":8000,"fencedMilli":0,"tiers":{}}`, present: true, want: Fresh},
		"one second too old":     {value: `{"v":1,"ts":"2026-11-26T17:56:59Z","gen":3,"backend":"cgroup","allocatableMilli":8000,"fencedMilli":0,"tiers":{}}`, present: true, want: Stale, wantErr: wellknown.ErrTierLoadStale},
		"dated in the future":    {value: `{"v":1,"ts":"2026-11-26T18:05:00Z","gen":3,"backend":"cgroup","allocatableMilli":8000,"fencedMilli":0,"tiers":{}}`, present: true, want: Stale, wantErr: wellknown.ErrTierLoadStale},
		"slightly in the future": {value: `{"v":1,"ts":"2026-11-26T18:00:10Z","gen":3,"backend":"cgroup","allocatableMilli":8000,"fencedMilli":0,"tiers":{}}`, present: true, want: Fresh},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, got, err := Assess(tc.value, tc.present, now, maxAge)
			if got != tc.want {
				t.Fatalf("Assess() status = %s (err %v), want %s", got, err, tc.want)
			}
			switch {
			case got == Fresh || got == Missing:
				if err != nil {
					t.Errorf("Assess() err = %v, want nil", err)
				}
			case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
				t.Errorf("Assess() err = %v, want %v", err, tc.wantErr)
			case err == nil:
				t.Error("Assess() err = nil, want the reason")
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	recent := []Pod{
		{Tier: wellknown.TierCritical, RequestMilli: 1500},
		{Tier: wellknown.TierSystem, RequestMilli: 100},
		{Tier: wellknown.TierBackground, RequestMilli: 250},
	}
	got := Summarize(busy16(), recent, 99999)
	want := Node{AllocatableMilli: 16000, Protects: true, CriticalMilli: 5500, ProtectedSharedMilli: 2100, BatchMilli: 4250, ThreadsPerCore: 1}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Summarize() mismatch (-want +got):\n%s", d)
	}

	// Allocatable falls back to the node's status; observe-only protects
	// nothing; critical pods with too small a fence mean demoted.
	l := load(0, wellknown.BackendObserveOnly, 0, 1000, map[wellknown.Tier]wellknown.TierUsage{
		wellknown.TierCritical: {Pods: 1, RequestMilli: 1500},
	})
	got = Summarize(l, nil, 8000)
	want = Node{AllocatableMilli: 8000, Protects: false, Demoted: true, CriticalMilli: 1500, ThreadsPerCore: 1}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Summarize(observe-only) mismatch (-want +got):\n%s", d)
	}

	// Absurd quantities saturate instead of overflowing into negatives.
	l = load(0, wellknown.BackendCgroup, 8000, 0, map[wellknown.Tier]wellknown.TierUsage{
		wellknown.TierHigh: {Pods: 1, RequestMilli: 1 << 62},
	})
	got = Summarize(l, []Pod{{Tier: wellknown.TierHigh, RequestMilli: 1 << 62}}, 0)
	if got.ProtectedSharedMilli != maxMilli {
		t.Errorf("Summarize(absurd) ProtectedSharedMilli = %d, want %d", got.ProtectedSharedMilli, maxMilli)
	}
}

// TestScoreEveryTierAndStatus pins the score of one busy node for every
// tier and every annotation status: only a fresh annotation gives an
// opinion.
func TestScoreEveryTierAndStatus(t *testing.T) {
	n := Summarize(busy16(), nil, 0)
	// Fresh, 16 cores, reserve 1 → 15 fenceable cores; 4 fenced, 2 high,
	// 4 normal.
	wantFresh := map[wellknown.Tier]int64{
		// 2 more cores → 6 fenced: headroom 9/15, protected (6+2)/16.
		wellknown.TierCritical: 55,
		// (2 high + 1) over the 12 shared cores → 1-0.25.
		wellknown.TierHigh: 75,
		// batch (4+1)/16; everything (4+2+4+1) fits in 16.
		wellknown.TierNormal:     31,
		wellknown.TierLow:        31,
		wellknown.TierBackground: 31,
		// System pods are not placed by tier rules.
		wellknown.TierSystem: NoOpinion,
	}
	request := map[wellknown.Tier]int64{wellknown.TierCritical: 2000}
	for _, status := range []Status{Missing, Malformed, Stale, Fresh} {
		for _, tier := range wellknown.AllTiers() {
			t.Run(status.String()+"/"+tier.String(), func(t *testing.T) {
				req := request[tier]
				if req == 0 {
					req = 1000
				}
				got := Score(params, Pod{Tier: tier, RequestMilli: req}, status, n)
				want := NoOpinion
				if status == Fresh {
					want = wantFresh[tier]
				}
				if got != want {
					t.Errorf("Score() = %d, want %d", got, want)
				}
			})
		}
	}
}

func TestScorePreferences(t *testing.T) {
	tiers := func(crit, high, batch int64) map[wellknown.Tier]wellknown.TierUsage {
		return map[wellknown.Tier]wellknown.TierUsage{
			wellknown.TierCritical: {Pods: 1, RequestMilli: crit},
			wellknown.TierHigh:     {Pods: 1, RequestMilli: high},
			wellknown.TierNormal:   {Pods: 1, RequestMilli: batch},
		}
	}
	node := func(backend string, crit, high, batch int64) Node {
		return Summarize(load(0, backend, 16000, wellknown.FenceCores(crit, 1, true)*1000, tiers(crit, high, batch)), nil, 0)
	}
	quiet := node(wellknown.BackendSCXLayered, 1000, 0, 0)
	protectedHeavy := node(wellknown.BackendSCXLayered, 8000, 4000, 0)
	batchHeavy := node(wellknown.BackendSCXLayered, 1000, 0, 12000)
	nearlyFull := node(wellknown.BackendSCXLayered, 1000, 0, 14500)
	observeOnly := node(wellknown.BackendObserveOnly, 1000, 0, 0)

	tests := map[string]struct {
		pod           Pod
		better, worse Node
	}{
		"critical prefers fence headroom and low protected load": {
			pod: Pod{Tier: wellknown.TierCritical, RequestMilli: 2000}, better: quiet, worse: protectedHeavy,
		},
		"critical prefers batch load over protected load": {
			// Same fence headroom, but batch is not protected load.
			pod: Pod{Tier: wellknown.TierCritical, RequestMilli: 2000}, better: batchHeavy, worse: node(wellknown.BackendSCXLayered, 1000, 12000, 0),
		},
		"critical prefers an enforcing agent": {
			pod: Pod{Tier: wellknown.TierCritical, RequestMilli: 2000}, better: protectedHeavy, worse: observeOnly,
		},
		"high avoids protected load": {
			pod: Pod{Tier: wellknown.TierHigh, RequestMilli: 1000}, better: batchHeavy, worse: protectedHeavy,
		},
		"high prefers an enforcing agent": {
			pod: Pod{Tier: wellknown.TierHigh, RequestMilli: 1000}, better: protectedHeavy, worse: observeOnly,
		},
		"normal packs onto the fuller node": {
			pod: Pod{Tier: wellknown.TierNormal, RequestMilli: 1000}, better: batchHeavy, worse: quiet,
		},
		"normal joins batch work rather than protected work": {
			pod: Pod{Tier: wellknown.TierNormal, RequestMilli: 1000}, better: batchHeavy, worse: protectedHeavy,
		},
		"low packs onto the fuller node": {
			pod: Pod{Tier: wellknown.TierLow, RequestMilli: 1000}, better: batchHeavy, worse: quiet,
		},
		"background prefers any headroom over none": {
			// 1000+14500+2000 > 16000: no idle headroom left for it.
			pod: Pod{Tier: wellknown.TierBackground, RequestMilli: 2000}, better: quiet, worse: nearlyFull,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			b := Score(params, tc.pod, Fresh, tc.better)
			w := Score(params, tc.pod, Fresh, tc.worse)
			if b <= w {
				t.Errorf("Score(better) = %d, Score(worse) = %d; want better > worse", b, w)
			}
		})
	}
	if got := Score(params, Pod{Tier: wellknown.TierBackground, RequestMilli: 2000}, Fresh, nearlyFull); got != 0 {
		t.Errorf("Score(no idle headroom) = %d, want 0", got)
	}
}

// smt is an enforcing node of allocMilli CPUs in two-thread cores whose
// agent fences fencedMilli of CPUs for critical requests of critMilli.
func smt(allocMilli, fencedMilli, critMilli int64) wellknown.TierLoad {
	l := load(0, wellknown.BackendSCXLayered, allocMilli, fencedMilli, map[wellknown.Tier]wellknown.TierUsage{
		wellknown.TierCritical: {Pods: 3, RequestMilli: critMilli},
	})
	l.ThreadsPerCore = 2
	return l
}

func TestCanFence(t *testing.T) {
	critical := func(milli int64) Pod { return Pod{Tier: wellknown.TierCritical, RequestMilli: milli} }
	// 8 cores, reserve 1 → 7 fenceable; 5 critical cores in use.
	eight := load(0, wellknown.BackendSCXLayered, 8000, 5000, map[wellknown.Tier]wellknown.TierUsage{
		wellknown.TierCritical: {Pods: 3, RequestMilli: 4200},
	})
	tests := map[string]struct {
		pod    Pod
		status Status
		node   Node
		want   bool
	}{
		"fits the remaining fence":          {pod: critical(2800), status: Fresh, node: Summarize(eight, nil, 0), want: true},
		"one millicore too many":            {pod: critical(2801), status: Fresh, node: Summarize(eight, nil, 0), want: false},
		"pods bound since ts count":         {pod: critical(1000), status: Fresh, node: Summarize(eight, []Pod{critical(1900)}, 0), want: false},
		"recent batch pods do not fence":    {pod: critical(2800), status: Fresh, node: Summarize(eight, []Pod{{Tier: wellknown.TierNormal, RequestMilli: 4000}}, 0), want: true},
		"high is never filtered":            {pod: Pod{Tier: wellknown.TierHigh, RequestMilli: 64000}, status: Fresh, node: Summarize(eight, nil, 0), want: true},
		"normal is never filtered":          {pod: Pod{Tier: wellknown.TierNormal, RequestMilli: 64000}, status: Fresh, node: Summarize(eight, nil, 0), want: true},
		"stale never filters":               {pod: critical(64000), status: Stale, node: Summarize(eight, nil, 0), want: true},
		"missing never filters":             {pod: critical(64000), status: Missing, node: Node{}, want: true},
		"malformed never filters":           {pod: critical(64000), status: Malformed, node: Node{}, want: true},
		"observe-only never filters":        {pod: critical(64000), status: Fresh, node: Summarize(load(0, wellknown.BackendObserveOnly, 8000, 0, nil), nil, 0), want: true},
		"unknown allocatable never filters": {pod: critical(64000), status: Fresh, node: Summarize(load(0, wellknown.BackendCgroup, 0, 0, nil), nil, 0), want: true},
		"demoted node cannot fence": {
			pod: critical(100), status: Fresh,
			node: Summarize(load(0, wellknown.BackendCgroup, 64000, 1000, map[wellknown.Tier]wellknown.TierUsage{
				wellknown.TierCritical: {Pods: 1, RequestMilli: 2000},
			}), nil, 0),
			want: false,
		},
		"node smaller than the reserve": {pod: critical(1), status: Fresh, node: Summarize(load(0, wellknown.BackendCgroup, 1500, 0, nil), nil, 0), want: false},
		"zero request on a full fence":  {pod: critical(0), status: Fresh, node: Summarize(load(0, wellknown.BackendCgroup, 1500, 0, nil), nil, 0), want: true},
		// 16 CPUs as 8 two-thread cores, reserve 1 core: 7 fenceable
		// physical cores. 4200m already fence 5 of them (10 CPUs).
		"SMT: fits in whole physical cores":  {pod: critical(2000), status: Fresh, node: Summarize(smt(16000, 10000, 4200), nil, 0), want: true},
		"SMT: a started core is a whole one": {pod: critical(2801), status: Fresh, node: Summarize(smt(16000, 10000, 4200), nil, 0), want: false},
		// Logical CPUs would say 16 - 1 = 15 fenceable: SMT must not.
		"SMT: not counted in logical CPUs":  {pod: critical(4000), status: Fresh, node: Summarize(smt(16000, 10000, 4200), nil, 0), want: false},
		"SMT: fence in CPUs is not demoted": {pod: critical(100), status: Fresh, node: Summarize(smt(16000, 10000, 4200), nil, 0), want: true},
		"SMT: fence in cores is demoted":    {pod: critical(100), status: Fresh, node: Summarize(smt(16000, 5000, 4200), nil, 0), want: false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, reason := CanFence(params, tc.pod, tc.status, tc.node)
			if got != tc.want {
				t.Fatalf("CanFence() = %v (%q), want %v", got, reason, tc.want)
			}
			if !got && reason == "" {
				t.Error("CanFence() = false without a reason")
			}
			if !got {
				if s := Score(params, tc.pod, tc.status, tc.node); s != 0 {
					t.Errorf("Score() of an unfenceable critical pod = %d, want 0", s)
				}
			}
		})
	}
}

func TestAssessRoundTrip(t *testing.T) {
	// A document the agent writes is fresh when just written and stale one
	// second past the maximum age.
	v := marshal(t, busy16())
	if _, s, err := Assess(v, true, now, wellknown.TierLoadMaxAge); s != Fresh {
		t.Fatalf("Assess(written a minute ago) = %s (%v), want fresh", s, err)
	}
	later := now.Add(wellknown.TierLoadMaxAge - time.Minute + time.Second)
	if _, s, _ := Assess(v, true, later, wellknown.TierLoadMaxAge); s != Stale {
		t.Fatalf("Assess(one second past max age) = %s, want stale", s)
	}
}

func TestNormalize(t *testing.T) {
	const x = NoOpinion
	tests := map[string]struct {
		in, want []int64
	}{
		"all judged: unchanged":          {in: []int64{0, 37, 100}, want: []int64{0, 37, 100}},
		"none judged: all neutral":       {in: []int64{x, x, x}, want: []int64{50, 50, 50}},
		"median of an odd count":         {in: []int64{10, x, 90, 30, x}, want: []int64{10, 30, 90, 30, 30}},
		"median of an even count":        {in: []int64{10, x, 90, 31, 60}, want: []int64{10, 46, 90, 31, 60}},
		"half-loaded fleet: not a sink":  {in: []int64{20, 25, 30, x}, want: []int64{20, 25, 30, 25}},
		"one judged node: a tie with it": {in: []int64{x, 9}, want: []int64{9, 9}},
		"empty":                          {in: []int64{}, want: []int64{}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := make([]int64, len(tc.in))
			copy(got, tc.in)
			Normalize(got)
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("Normalize(%v) mismatch (-want +got):\n%s", tc.in, d)
			}
		})
	}
}

// TestNormalizeIsTheSortedMedian checks the histogram median against the
// textbook one on random cycles.
func TestNormalizeIsTheSortedMedian(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		n := rng.IntN(40) + 1
		in := make([]int64, n)
		var judged []int64
		for i := range in {
			if rng.IntN(4) == 0 {
				in[i] = NoOpinion
				continue
			}
			in[i] = rng.Int64N(MaxScore + 1)
			judged = append(judged, in[i])
		}
		want := NeutralScore
		if len(judged) > 0 {
			slices.Sort(judged)
			m := len(judged) / 2
			want = judged[m]
			if len(judged)%2 == 0 {
				want = (judged[m-1] + judged[m] + 1) / 2
			}
		}
		got := slices.Clone(in)
		Normalize(got)
		for i := range in {
			if in[i] == NoOpinion && got[i] != want || in[i] != NoOpinion && got[i] != in[i] {
				t.Fatalf("Normalize(%v) = %v, want unjudged = %d and judged unchanged", in, got, want)
			}
		}
	}
}
