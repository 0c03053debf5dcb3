package usage

import (
	"fmt"
	"math"
	"slices"
)

// Stats summarises CPU usage samples, in cores.
type Stats struct {
	// Samples is how many samples the summary covers.
	Samples int
	// Current is the newest sample; Mean, P50, P95 and Max are over all.
	Current, Mean, P50, P95, Max float64
}

// Summarize returns the statistics of samples (oldest first). Negative and
// NaN samples are not usage and are left out.
func Summarize(samples []float64) Stats {
	v := make([]float64, 0, len(samples))
	for _, s := range samples {
		if s >= 0 && !math.IsInf(s, 0) {
			v = append(v, s)
		}
	}
	if len(v) == 0 {
		return Stats{}
	}
	st := Stats{Samples: len(v), Current: v[len(v)-1]}
	sum := 0.0
	for _, s := range v {
		sum += s
	}
	st.Mean = sum / float64(len(v))
	slices.Sort(v)
	st.P50, st.P95, st.Max = Quantile(v, 0.50), Quantile(v, 0.95), v[len(v)-1]
	return st
}

// Quantile is the nearest-rank q-quantile (0 < q ≤ 1) of sorted, ascending
// samples: the smallest sample at least q of the samples do not exceed.
// It is a sample that was observed, never an interpolation. 0 when empty.
func Quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	r := int(math.Ceil(q * float64(len(sorted))))
	r = min(max(r, 1), len(sorted))
	return sorted[r-1]
}

// Policy is the rightsizing rule.
type Policy struct {
	// Headroom multiplies the p95 usage (1.2: 20% above it).
	Headroom float64
	// RoundMilli rounds the suggestion up to a multiple of it.
	RoundMilli int64
	// FloorMilli is the least suggestion.
	FloorMilli int64
	// MinSamples is how many samples a suggestion needs to be made with
	// confidence; below it the suggestion is still computed, flagged.
	MinSamples int
	// Tolerance is the relative difference between the suggestion and the
	// request under which the request is called right (0.1: within 10%).
	Tolerance float64
}

// DefaultPolicy is the gateway's rule: p95 × 1.2, rounded up to 10m, at
// least 10m, from at least 30 samples (5 minutes at the agent's default
// 10 s sample interval); within 10% is right-sized.
func DefaultPolicy() Policy {
	return Policy{Headroom: 1.2, RoundMilli: 10, FloorMilli: 10, MinSamples: 30, Tolerance: 0.1}
}

// Validate says which field of p is out of range.
func (p Policy) Validate() error {
	switch {
	case math.IsNaN(p.Headroom) || p.Headroom < 1 || p.Headroom > 10:
		return fmt.Errorf("headroom: %v is out of range [1, 10]", p.Headroom)
	case p.RoundMilli < 1 || p.RoundMilli > 1000:
		return fmt.Errorf("round_milli: %d is out of range [1, 1000]", p.RoundMilli)
	case p.FloorMilli < 1 || p.FloorMilli > 1_000_000:
		return fmt.Errorf("floor_milli: %d is out of range [1, 1000000]", p.FloorMilli)
	case p.MinSamples < 1:
		return fmt.Errorf("min_samples: %d must be at least 1", p.MinSamples)
	case math.IsNaN(p.Tolerance) || p.Tolerance < 0 || p.Tolerance >= 1:
		return fmt.Errorf("tolerance: %v is out of range [0, 1)", p.Tolerance)
	}
	return nil
}

// Verdicts of a suggestion.
const (
	// VerdictOver: the request is above the suggestion by more than the
	// tolerance (CPU reserved and not used).
	VerdictOver = "over-requested"
	// VerdictUnder: the request is below it (usage above the request).
	VerdictUnder = "under-requested"
	// VerdictRight: within the tolerance.
	VerdictRight = "right-sized"
	// VerdictNoRequest: the pods request no CPU (BestEffort).
	VerdictNoRequest = "no-request"
	// VerdictInsufficient: fewer samples than the policy asks for.
	VerdictInsufficient = "insufficient-data"
)

// Suggestion is a per-pod CPU request suggested from usage.
type Suggestion struct {
	// RequestMilli is the suggested per-pod request.
	RequestMilli int64
	// Verdict compares it with the current request (see the Verdict
	// constants).
	Verdict string
	// Evidence says how it was computed, in one line.
	Evidence string
}

// Suggest applies p to the per-pod usage statistics s of a workload whose
// pods request requestMilli each.
func Suggest(p Policy, s Stats, requestMilli int64) Suggestion {
	raw := s.P95 * 1000 * p.Headroom
	m := int64(math.Ceil(raw/float64(p.RoundMilli)-1e-9)) * p.RoundMilli
	m = max(m, p.FloorMilli)
	out := Suggestion{RequestMilli: m}
	out.Evidence = fmt.Sprintf("p95 %.0fm × %.2f = %.0fm, rounded up to %dm (floor %dm), from %d samples",
		s.P95*1000, p.Headroom, raw, p.RoundMilli, p.FloorMilli, s.Samples)
	switch {
	case s.Samples < p.MinSamples:
		out.Verdict = VerdictInsufficient
		out.Evidence += fmt.Sprintf("; fewer than the %d a confident suggestion needs", p.MinSamples)
	case requestMilli <= 0:
		out.Verdict = VerdictNoRequest
	case math.Abs(float64(m-requestMilli)) <= p.Tolerance*float64(requestMilli):
		out.Verdict = VerdictRight
	case m < requestMilli:
		out.Verdict = VerdictOver
	default:
		out.Verdict = VerdictUnder
	}
	return out
}
