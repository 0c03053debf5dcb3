package observe

import "github.com/infera-io/temper/apis/wellknown"

// TierMilliCPU sums the last sample's thread CPU use per tier, in
// milli-CPUs; nil before the first sample. It backs the agent's
// GetObservation, which reports per tier what Snapshot reports per layer.
func (o *Observer) TierMilliCPU() map[wellknown.Tier]float64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.sample == nil {
		return nil
	}
	out := map[wellknown.Tier]float64{}
	for _, t := range o.sample.Threads {
		out[t.Tier] += t.MilliCPU
	}
	return out
}
