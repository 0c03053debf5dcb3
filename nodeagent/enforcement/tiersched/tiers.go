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

// TierIndex is the value the tiers map holds for tier t (the index of
// bpf/tiersched.h); false for a name that is not a tier. The VM's end-to-end
// test reads the map from outside the agent with it.
func TierIndex(t wellknown.Tier) (uint32, bool) { return tierIndex(t) }

// TiersMapName is the kernel name of the cgroup id -> tier map, by which
// a test outside the agent finds it (bpftool map show name tiers).
const TiersMapName = tierschedMapTiers
