package usage

import (
	"math"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSummarize(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []float64
		want Stats
	}{
		{"empty", nil, Stats{}},
		{"one", []float64{0.25}, Stats{Samples: 1, Current: 0.25, Mean: 0.25, P50: 0.25, P95: 0.25, Max: 0.25}},
		// 20 samples 0.01..0.20, newest first is the last one given.
		{"twenty", seq(20, 0.01), Stats{Samples: 20, Current: 0.20, Mean: 0.105, P50: 0.10, P95: 0.19, Max: 0.20}},
		{"not usage left out", []float64{0.5, -1, math.NaN(), math.Inf(1), 0.1}, Stats{Samples: 2, Current: 0.1, Mean: 0.3, P50: 0.1, P95: 0.5, Max: 0.5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Summarize(tc.in)
			if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b float64) bool { return math.Abs(a-b) < 1e-9 })); diff != "" {
				t.Errorf("Summarize(%v) (-want +got):\n%s", tc.in, diff)
			}
		})
	}
}

func seq(n int, step float64) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = float64(i+1) * step
	}
	return out
}

func TestSuggest(t *testing.T) {
	p := DefaultPolicy()
	for _, tc := range []struct {
		name        string
		s           Stats
		request     int64
		wantMilli   int64
		wantVerdict string
	}{
		{"over", Stats{Samples: 60, P95: 0.101}, 1000, 130, VerdictOver},          // 121.2m → 130m
		{"under", Stats{Samples: 60, P95: 0.9}, 500, 1080, VerdictUnder},          // 1080m exactly
		{"right", Stats{Samples: 60, P95: 0.41}, 500, 500, VerdictRight},          // 492m → 500m
		{"floor", Stats{Samples: 60, P95: 0}, 100, 10, VerdictOver},               // idle: the floor
		{"best effort", Stats{Samples: 60, P95: 0.05}, 0, 60, VerdictNoRequest},   // nothing to compare
		{"too few", Stats{Samples: 29, P95: 0.05}, 1000, 60, VerdictInsufficient}, // flagged, still computed
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Suggest(p, tc.s, tc.request)
			if got.RequestMilli != tc.wantMilli || got.Verdict != tc.wantVerdict || got.Evidence == "" {
				t.Errorf("Suggest(%+v, %d) = %+v, want %dm %s with evidence", tc.s, tc.request, got, tc.wantMilli, tc.wantVerdict)
			}
		})
	}
}

func TestPolicyValidate(t *testing.T) {
	if err := DefaultPolicy().Validate(); err != nil {
		t.Fatalf("DefaultPolicy: %v", err)
	}
	p := DefaultPolicy()
	p.Headroom = 0.5
	if err := p.Validate(); err == nil || err.Error() != "headroom: 0.5 is out of range [1, 10]" {
		t.Errorf("headroom 0.5: %v, want an error naming headroom", err)
	}
}
