package tiersched

import "github.com/infera-io/temper/apis/wellknown"

// Tier indices shared with bpf/tiersched.h: 0 is system (every task whose
// cgroup and ancestors are not in the tiers map).
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
