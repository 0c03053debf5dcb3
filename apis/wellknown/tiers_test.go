package wellknown

import (
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

func TestParseTier(t *testing.T) {
	const allowed = "must be one of system, critical, high, normal, low, background"
	tests := map[string]struct {
		in      string
		want    Tier
		wantErr string
	}{
		"system":               {in: "system", want: TierSystem},
		"critical":             {in: "critical", want: TierCritical},
		"high":                 {in: "high", want: TierHigh},
		"normal":               {in: "normal", want: TierNormal},
		"low":                  {in: "low", want: TierLow},
		"background":           {in: "background", want: TierBackground},
		"surrounding blanks":   {in: " \tlow\n", want: TierLow},
		"empty":                {in: "", wantErr: `unknown tier "": ` + allowed},
		"blanks only":          {in: "   ", wantErr: `unknown tier "   ": ` + allowed},
		"upper case":           {in: "Critical", wantErr: `unknown tier "Critical": ` + allowed},
		"PriorityClass name":   {in: "infera-critical", wantErr: `unknown tier "infera-critical": ` + allowed},
		"inner blank":          {in: "back ground", wantErr: `unknown tier "back ground": ` + allowed},
		"NUL":                  {in: "low\x00", wantErr: `unknown tier "low\x00": ` + allowed},
		"invalid UTF-8":        {in: "\xff", wantErr: `unknown tier "\xff": ` + allowed},
		"long value is cut":    {in: strings.Repeat("a", 1000), wantErr: `unknown tier "` + strings.Repeat("a", 64) + `…": ` + allowed},
		"cut on rune boundary": {in: "a" + strings.Repeat("é", 100), wantErr: `unknown tier "a` + strings.Repeat("é", 31) + `…": ` + allowed},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := ParseTier(tc.in)
			gotErr := ""
			if err != nil {
				gotErr = err.Error()
			}
			if got != tc.want || gotErr != tc.wantErr {
				t.Errorf("ParseTier(%q) = %q, %q; want %q, %q", tc.in, got, gotErr, tc.want, tc.wantErr)
			}
		})
	}
}

func TestShortenKeepsValidUTF8(t *testing.T) {
	for n := 60; n < 70; n++ {
		s := strings.Repeat("x", n%4) + strings.Repeat("日本", n)
		if got := shorten(s); !utf8.ValidString(got) || len(got) > maxQuotedInput+len("…") {
			t.Errorf("shorten(%d bytes) = %q (%d bytes)", len(s), got, len(got))
		}
	}
}

func TestTierOrder(t *testing.T) {
	order := AllTiers()
	want := []Tier{TierSystem, TierCritical, TierHigh, TierNormal, TierLow, TierBackground}
	if d := cmp.Diff(want, order); d != "" {
		t.Fatalf("AllTiers() mismatch (-want +got):\n%s", d)
	}
	for i, hi := range order {
		if !hi.Valid() {
			t.Errorf("%s is not Valid", hi)
		}
		for _, lo := range order[i+1:] {
			if !lo.Below(hi) || hi.Below(lo) || hi.Rank() <= lo.Rank() {
				t.Errorf("%s (rank %d) must be below %s (rank %d)", lo, lo.Rank(), hi, hi.Rank())
			}
		}
		if hi.Below(hi) {
			t.Errorf("%s is below itself", hi)
		}
	}
	for _, bad := range []Tier{"", "System", "gold"} {
		if bad.Valid() || bad.Rank() != -1 {
			t.Errorf("%q: Valid=%v Rank=%d, want false -1", bad, bad.Valid(), bad.Rank())
		}
		if !bad.Below(TierBackground) {
			t.Errorf("%q must rank below every tier", bad)
		}
	}
}

func TestTierListsAreCopies(t *testing.T) {
	a := AllTiers()
	a[0] = "mutated"
	if AllTiers()[0] != TierSystem {
		t.Error("mutating AllTiers' result changed the package's tier list")
	}
	w := WorkloadTiers()
	if d := cmp.Diff([]Tier{TierCritical, TierHigh, TierNormal, TierLow, TierBackground}, w); d != "" {
		t.Errorf("WorkloadTiers() mismatch (-want +got):\n%s", d)
	}
	w[0] = "mutated"
	if WorkloadTiers()[0] != TierCritical {
		t.Error("mutating WorkloadTiers' result changed the package's tier list")
	}
}

func TestPriorityClasses(t *testing.T) {
	want := []PriorityClass{
		{Name: "infera-critical", Value: 1_000_000, Tier: TierCritical},
		{Name: "infera-high", Value: 100_000, Tier: TierHigh},
		{Name: "infera-normal", Value: 0, Tier: TierNormal},
		{Name: "infera-low", Value: -100, Tier: TierLow},
		{Name: "infera-background", Value: -1000, Tier: TierBackground},
	}
	if d := cmp.Diff(want, PriorityClasses()); d != "" {
		t.Errorf("PriorityClasses() mismatch (-want +got):\n%s", d)
	}
	if DefaultSystemMinPriority != 2_000_000_000 {
		t.Errorf("DefaultSystemMinPriority = %d, want system-cluster-critical's 2000000000", DefaultSystemMinPriority)
	}
}
