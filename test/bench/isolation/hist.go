package main

import (
	"encoding/json"
	"fmt"
	"math"
	"math/bits"
	"time"
)

// subBits sets the histogram's precision: 2^subBits linear sub-buckets per
// power of two, so a recorded value is off by less than 1/2^(subBits-1)
// (under 1.6 % with 7).
const subBits = 7

const (
	subCount = 1 << subBits
	// numBuckets: subCount exact buckets below subCount, then subCount/2
	// per shift from 1 to 64-subBits.
	numBuckets = subCount + (64-subBits)*(subCount/2)
)

// Hist is an HDR-like log-linear histogram of durations in nanoseconds:
// fixed memory whatever is recorded.
type Hist struct {
	counts [numBuckets]uint64
	total  uint64
	max    int64
}

func bucketOf(v int64) int {
	u := uint64(max(v, 0))
	if u < subCount {
		return int(u)
	}
	// u>>shift has exactly subBits bits: it is in [subCount/2, subCount).
	shift := bits.Len64(u) - subBits
	return subCount + (shift-1)*(subCount/2) + int(u>>uint(shift)) - subCount/2
}

// lowerBound is the smallest value of bucket i.
func lowerBound(i int) int64 {
	if i < subCount {
		return int64(i)
	}
	shift := (i-subCount)/(subCount/2) + 1
	sub := (i-subCount)%(subCount/2) + subCount/2
	return int64(sub) << uint(shift)
}

// upperBound is the largest value of bucket i.
func upperBound(i int) int64 {
	if i < subCount {
		return int64(i)
	}
	shift := (i-subCount)/(subCount/2) + 1
	return lowerBound(i) + (int64(1) << uint(shift)) - 1
}

// Record adds one duration.
func (h *Hist) Record(d time.Duration) {
	v := int64(d)
	if v < 0 {
		v = 0
	}
	h.counts[bucketOf(v)]++
	h.total++
	h.max = max(h.max, v)
}

// Count is how many values were recorded.
func (h *Hist) Count() uint64 { return h.total }

// Max is the largest value recorded.
func (h *Hist) Max() time.Duration { return time.Duration(h.max) }

// Quantile returns the value at quantile q (0 < q ≤ 1): the highest value
// equivalent to the ceil(q·n)-th smallest recorded one (never below it by
// more than the bucket width), capped at the recorded maximum. An empty
// histogram gives 0.
func (h *Hist) Quantile(q float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.total)))
	rank = min(max(rank, 1), h.total)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return time.Duration(min(upperBound(i), h.max))
		}
	}
	return time.Duration(h.max)
}

// Merge adds every value of o.
func (h *Hist) Merge(o *Hist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.total += o.total
	h.max = max(h.max, o.max)
}

// histJSON is the wire form between the measuring child processes and the
// bench: non-empty buckets only.
type histJSON struct {
	Buckets [][2]uint64 `json:"buckets"` // bucket index, count
	Max     int64       `json:"max_ns"`
}

// MarshalJSON encodes the non-empty buckets.
func (h *Hist) MarshalJSON() ([]byte, error) {
	out := histJSON{Max: h.max, Buckets: [][2]uint64{}}
	for i, c := range h.counts {
		if c != 0 {
			out.Buckets = append(out.Buckets, [2]uint64{uint64(i), c})
		}
	}
	return json.Marshal(out)
}

// UnmarshalJSON decodes what MarshalJSON wrote, refusing bucket indexes
// out of range.
func (h *Hist) UnmarshalJSON(b []byte) error {
	var in histJSON
	if err := json.Unmarshal(b, &in); err != nil {
		return err
	}
	*h = Hist{max: in.Max}
	for _, bc := range in.Buckets {
		if bc[0] >= numBuckets {
			return fmt.Errorf("histogram bucket %d out of range (0..%d)", bc[0], numBuckets-1)
		}
		h.counts[bc[0]] += bc[1]
		h.total += bc[1]
	}
	return nil
}
