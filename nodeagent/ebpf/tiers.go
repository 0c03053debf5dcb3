package ebpf

import "github.com/infera-io/temper/apis/wellknown"

// Tier indices shared with bpf/temper.h: 0 is system (every unmapped task).
var tierByIndex = [...]wellknown.Tier{
	wellknown.TierSystem,
	wellknown.TierCritical,
	wellknown.TierHigh,
	wellknown.TierNormal,
	wellknown.TierLow,
	wellknown.TierBackground,
}

const nrTiers = len(tierByIndex)

func tierIndex(t wellknown.Tier) (uint32, bool) {
	for i, v := range tierByIndex {
		if v == t {
			return uint32(i), true
		}
	}
	return 0, false
}

func tierName(i uint8) wellknown.Tier {
	if int(i) < nrTiers {
		return tierByIndex[i]
	}
	return wellknown.TierSystem
}
