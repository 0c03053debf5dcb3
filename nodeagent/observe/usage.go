package observe

import (
	"slices"
	"time"

	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/nodeagent/procscan"
)

// DefaultUsageSamples is how many samples of per-pod usage the Observer
// keeps: an hour at the default 10 s interval. Each holds one float32 per
// sampled pod, about 0.5 MiB at 110 pods.
const DefaultUsageSamples = 360

// usageTick is one sample's per-pod usage.
type usageTick struct {
	time     time.Time
	interval time.Duration
	pods     []podMilli
	capped   int
}

type podMilli struct {
	pod   procscan.PodKey
	tier  wellknown.Tier
	milli float32
}

// Usage is the CPU usage the Observer holds: the last samples of each pod
// and tier, oldest first.
type Usage struct {
	// Samples is how many samples the window holds; From and To are the
	// times of the oldest and the newest, Interval the newest's interval.
	Samples  int
	From, To time.Time
	Interval time.Duration
	// Capped is how many pods the newest sample did not read every thread
	// of (their usage is a lower bound).
	Capped int
	Pods   []PodSeries
	Tiers  []TierSeries
}

// PodSeries is one pod's usage per sample, in millicores, oldest first; a
// pod is in a sample when it had processes then.
type PodSeries struct {
	Pod   procscan.PodKey
	Tier  wellknown.Tier
	Milli []float64
}

// TierSeries is one tier's usage per sample (the sum of its pods), in
// millicores, oldest first, one value per sample of the window.
type TierSeries struct {
	Tier  wellknown.Tier
	Pods  int // in the newest sample
	Milli []float64
}

// recordUsage adds the per-pod usage of s (which must have an interval) to
// the history. Called under o.mu.
func (o *Observer) recordUsage(targets []procscan.Target, s *procscan.Sample) {
	if s == nil || s.Interval <= 0 {
		return // the first sample has no usage
	}
	byPod := make(map[procscan.PodKey]float64, len(targets))
	for _, th := range s.Threads {
		byPod[th.Pod] += th.MilliCPU
	}
	tk := usageTick{time: s.Time, interval: s.Interval, pods: make([]podMilli, 0, len(targets)), capped: len(s.Capped)}
	for _, t := range targets {
		tk.pods = append(tk.pods, podMilli{pod: t.Pod, tier: t.Tier, milli: float32(byPod[t.Pod])})
	}
	n := o.opts.UsageSamples
	if len(o.usage) >= n {
		copy(o.usage, o.usage[len(o.usage)-n+1:])
		o.usage = o.usage[:n-1]
	}
	o.usage = append(o.usage, tk)
}

// Usage returns the per-pod and per-tier usage of the samples held. keep,
// when not nil, selects the pods returned (tiers always cover every pod).
func (o *Observer) Usage(keep func(procscan.PodKey) bool) Usage {
	o.mu.Lock()
	defer o.mu.Unlock()
	u := Usage{Samples: len(o.usage)}
	if u.Samples == 0 {
		return u
	}
	first, last := o.usage[0], o.usage[len(o.usage)-1]
	u.From, u.To, u.Interval, u.Capped = first.time.Add(-first.interval), last.time, last.interval, last.capped
	pods := map[procscan.PodKey]*PodSeries{}
	tiers := map[wellknown.Tier]*TierSeries{}
	for i, tk := range o.usage {
		for _, p := range tk.pods {
			ts := tiers[p.tier]
			if ts == nil {
				ts = &TierSeries{Tier: p.tier, Milli: make([]float64, len(o.usage))}
				tiers[p.tier] = ts
			}
			ts.Milli[i] += float64(p.milli)
			if i == len(o.usage)-1 {
				ts.Pods++
			}
			if keep != nil && !keep(p.pod) {
				continue
			}
			ps := pods[p.pod]
			if ps == nil {
				ps = &PodSeries{Pod: p.pod}
				pods[p.pod] = ps
			}
			ps.Tier = p.tier // the newest
			ps.Milli = append(ps.Milli, float64(p.milli))
		}
	}
	for _, p := range pods {
		u.Pods = append(u.Pods, *p)
	}
	slices.SortFunc(u.Pods, func(a, b PodSeries) int {
		if a.Pod < b.Pod {
			return -1
		}
		if a.Pod > b.Pod {
			return 1
		}
		return 0
	})
	for _, t := range wellknown.AllTiers() {
		if ts := tiers[t]; ts != nil {
			u.Tiers = append(u.Tiers, *ts)
		}
	}
	return u
}
