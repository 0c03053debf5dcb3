package lint

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/nodeagent/cpuset"
	"github.com/infera-io/temper/nodeagent/layered"
)

func TestCgroupPromise(t *testing.T) {
	got := CgroupPromise(set(3), []wellknown.Tier{wellknown.TierBackground, wellknown.TierCritical, wellknown.TierNormal})
	want := Promise{Layers: []Layer{
		{Name: "critical", Kind: "Confined", Tiers: []wellknown.Tier{wellknown.TierCritical}, CPUs: set(3), Protected: true, Confined: true, QuietSiblings: true},
		{Name: "normal", Kind: "Grouped", Tiers: []wellknown.Tier{wellknown.TierNormal}},
		{Name: "background", Kind: "Open", Tiers: []wellknown.Tier{wellknown.TierBackground}, Open: true},
	}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("promise mismatch (-want +got):\n%s", diff)
	}
	// Without a fence, critical promises no CPUs: protected_fallback
	// cannot fire, and says so with checked 0.
	p := CgroupPromise(nil, []wellknown.Tier{wellknown.TierCritical})
	if p.Layers[0].Confined || len(p.Layers[0].CPUs) != 0 || !p.Layers[0].Protected {
		t.Errorf("unfenced critical layer %+v; want protected, not confined, no CPUs", p.Layers[0])
	}
}

func TestScxPromise(t *testing.T) {
	layers := []layered.LayerSummary{
		{Name: "system", Tier: wellknown.TierSystem, Kind: layered.KindGrouped},
		{Name: "critical", Tier: wellknown.TierCritical, Kind: layered.KindConfined},
		{Name: "low", Tier: wellknown.TierLow, Kind: layered.KindOpen},
		{Name: "catch-all", Kind: layered.KindOpen},
	}
	got := ScxPromise(layers, map[string]cpuset.Set{"critical": set(2, 3)}, set(0))
	want := Promise{Reserve: set(0), Layers: []Layer{
		{Name: "system", Kind: "Grouped", Tiers: []wellknown.Tier{wellknown.TierSystem}, Protected: true},
		{Name: "critical", Kind: "Confined", Tiers: []wellknown.Tier{wellknown.TierCritical}, CPUs: set(2, 3), Protected: true, Confined: true, QuietSiblings: true},
		{Name: "low", Kind: "Open", Tiers: []wellknown.Tier{wellknown.TierLow}, Open: true},
		{Name: "catch-all", Kind: "Open", Open: true},
	}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("promise mismatch (-want +got):\n%s", diff)
	}
}
