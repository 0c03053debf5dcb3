package wellknown

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Tier is a Temper QoS tier (DESIGN.md §2). The zero value is not a tier.
type Tier string

// The tiers, highest first. System is not assignable by annotation or
// PriorityClass of ours: it is what system-cluster-critical and
// system-node-critical pods get.
const (
	TierSystem     Tier = "system"
	TierCritical   Tier = "critical"
	TierHigh       Tier = "high"
	TierNormal     Tier = "normal"
	TierLow        Tier = "low"
	TierBackground Tier = "background"
)

// Tiers lists every tier, highest first.
var tiers = [...]Tier{TierSystem, TierCritical, TierHigh, TierNormal, TierLow, TierBackground}

// AllTiers returns every tier, highest first.
func AllTiers() []Tier { return append([]Tier(nil), tiers[:]...) }

// WorkloadTiers returns the five tiers a workload can be in, highest first
// (every tier but system).
func WorkloadTiers() []Tier { return append([]Tier(nil), tiers[1:]...) }

// Rank orders tiers: a higher rank is a higher tier. It is -1 for a value
// that is not a tier.
func (t Tier) Rank() int {
	for i, v := range tiers {
		if v == t {
			return len(tiers) - 1 - i
		}
	}
	return -1
}

// Valid reports whether t is one of the tiers.
func (t Tier) Valid() bool { return t.Rank() >= 0 }

// Below reports whether t is strictly lower than o.
func (t Tier) Below(o Tier) bool { return t.Rank() < o.Rank() }

// String returns the tier name.
func (t Tier) String() string { return string(t) }

// ParseTier parses a tier name as written in annotations, configs and APIs:
// exact lower case, surrounding blanks ignored.
func ParseTier(s string) (Tier, error) {
	t := Tier(strings.TrimSpace(s))
	if !t.Valid() {
		return "", fmt.Errorf("unknown tier %q: must be one of %s", shorten(s), tierList())
	}
	return t, nil
}

// maxQuotedInput bounds how much of a rejected value an error repeats: an
// annotation value can be 256 KiB, and errors end up in events, logs and
// metric labels.
const maxQuotedInput = 64

// shorten cuts s to maxQuotedInput bytes on a rune boundary, marking the cut.
func shorten(s string) string {
	if len(s) <= maxQuotedInput {
		return s
	}
	cut := maxQuotedInput
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func tierList() string {
	names := make([]string, len(tiers))
	for i, t := range tiers {
		names[i] = string(t)
	}
	return strings.Join(names, ", ")
}

// PriorityClass is one of the PriorityClasses the chart (and `make run`)
// installs, one per workload tier, at the default thresholds.
type PriorityClass struct {
	Name  string
	Value int32
	Tier  Tier
}

// Default priority thresholds (DESIGN.md §2). A pod is in the highest tier
// whose minimum its priority reaches.
const (
	DefaultSystemMinPriority   int32 = 2_000_000_000
	DefaultCriticalMinPriority int32 = 1_000_000
	DefaultHighMinPriority     int32 = 100_000
	DefaultNormalMinPriority   int32 = 0
	DefaultLowMinPriority      int32 = -100
)

// PriorityClasses returns the PriorityClasses of the contract, highest first.
func PriorityClasses() []PriorityClass {
	return []PriorityClass{
		{Name: "infera-critical", Value: DefaultCriticalMinPriority, Tier: TierCritical},
		{Name: "infera-high", Value: DefaultHighMinPriority, Tier: TierHigh},
		{Name: "infera-normal", Value: DefaultNormalMinPriority, Tier: TierNormal},
		{Name: "infera-low", Value: DefaultLowMinPriority, Tier: TierLow},
		{Name: "infera-background", Value: -1000, Tier: TierBackground},
	}
}
