package lint

import (
	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/nodeagent/cpuset"
	"github.com/infera-io/temper/nodeagent/layered"
)

// protected reports whether a tier's layer is protected (temper-docs §3:
// critical and high; the system layer too).
func protected(t wellknown.Tier) bool {
	return t == wellknown.TierSystem || t == wellknown.TierCritical || t == wellknown.TierHigh
}

// CgroupPromise is what the cgroup backend promises (docs/observe.md):
// one layer per tier of tiers, highest first; critical confined to fence
// with quiet siblings when fence is not empty; low and background Open; no
// reserve.
func CgroupPromise(fence cpuset.Set, tiers []wellknown.Tier) Promise {
	var p Promise
	for _, t := range wellknown.AllTiers() {
		present := false
		for _, u := range tiers {
			present = present || u == t
		}
		if !present {
			continue
		}
		l := Layer{Name: string(t), Kind: string(layered.KindGrouped), Tiers: []wellknown.Tier{t}, Protected: protected(t)}
		switch {
		case t == wellknown.TierCritical && len(fence) > 0:
			l.Kind, l.CPUs, l.Confined, l.QuietSiblings = string(layered.KindConfined), fence, true, true
		case t == wellknown.TierLow || t == wellknown.TierBackground:
			l.Kind, l.Open = string(layered.KindOpen), true
		}
		p.Layers = append(p.Layers, l)
	}
	return p
}

// ScxPromise is what a generated scx_layered config promises, from its
// layer summaries. scx_layered picks a layer's cores at run time, so the
// layers carry no CPUs unless cpus gives the ones it currently owns (by
// layer name, from scx_layered's statistics); reserve is the system
// layer's CPUs when known.
func ScxPromise(layers []layered.LayerSummary, cpus map[string]cpuset.Set, reserve cpuset.Set) Promise {
	p := Promise{Reserve: reserve}
	for _, s := range layers {
		l := Layer{Name: s.Name, Kind: string(s.Kind), CPUs: cpus[s.Name], Open: s.Kind == layered.KindOpen}
		if s.Tier != "" {
			l.Tiers = []wellknown.Tier{s.Tier}
			l.Protected = protected(s.Tier)
		}
		if s.Kind == layered.KindConfined {
			l.Confined, l.QuietSiblings = true, true
		}
		p.Layers = append(p.Layers, l)
	}
	return p
}
