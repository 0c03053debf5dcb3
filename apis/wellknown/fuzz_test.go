package wellknown

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// FuzzParseTierLoad feeds arbitrary annotation values to ParseTierLoad.
// Whatever it accepts must be valid, must render with Marshal, and must
// come back unchanged (up to Marshal's second-truncated UTC timestamp);
// whatever it rejects must be rejected with an error naming the annotation.
//
// The seed corpus is in testdata/fuzz/FuzzParseTierLoad and runs with every
// `go test`. To fuzz (about a minute is a useful run):
//
//	go test ./apis/wellknown -run '^$' -fuzz '^FuzzParseTierLoad$' -fuzztime 60s
//
// A crash is written to testdata/fuzz/FuzzParseTierLoad; commit it with the
// fix.
func FuzzParseTierLoad(f *testing.F) {
	f.Add(designExample)
	f.Add(`{"v":1,"ts":"2026-01-01T00:00:00.123456789-07:00","gen":0,"backend":"","allocatableMilli":0,"fencedMilli":0,"tiers":{}}`)
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ParseTierLoad(s)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "annotation "+TierLoadAnnotation+": ") {
				t.Fatalf("error does not name the annotation: %v", err)
			}
			if !cmp.Equal(TierLoad{}, l) {
				t.Fatalf("rejected input returned a value: %+v", l)
			}
			return
		}
		if len(s) > maxTierLoadBytes {
			t.Fatalf("accepted %d bytes", len(s))
		}
		if l.V != TierLoadVersion || l.TS.IsZero() || l.Gen < 0 || l.AllocatableMilli < 0 || l.FencedMilli < 0 {
			t.Fatalf("accepted an invalid document: %+v", l)
		}
		for tier, u := range l.Tiers {
			if !tier.Valid() || u.Pods < 0 || u.RequestMilli < 0 || u.LimitMilli < 0 {
				t.Fatalf("accepted an invalid tier entry %q: %+v", tier, u)
			}
		}
		out, err := l.Marshal()
		if err != nil {
			t.Fatalf("accepted %q but cannot marshal it: %v", s, err)
		}
		back, err := ParseTierLoad(out)
		if err != nil {
			t.Fatalf("cannot parse our own output %q: %v", out, err)
		}
		want := l
		want.TS = l.TS.UTC().Truncate(time.Second)
		if want.Tiers == nil {
			want.Tiers = map[Tier]TierUsage{}
		}
		if d := cmp.Diff(want, back); d != "" {
			t.Fatalf("round trip changed the document (-want +got):\n%s", d)
		}
		if again, _ := back.Marshal(); again != out {
			t.Fatalf("Marshal is not stable: %q then %q", out, again)
		}
		if !l.SameContent(back) {
			t.Fatalf("SameContent is false after a round trip")
		}
	})
}

// FuzzParseSafeMode: any value of infera.io/safe-mode-requested gives an
// answer; a value it cannot read requests safe mode and the error names
// the annotation.
func FuzzParseSafeMode(f *testing.F) {
	for _, s := range []string{"true", "True", " yes ", "1", "on", "false", "0", "", "ture", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		on, err := ParseSafeMode(v)
		if err != nil {
			if !on {
				t.Fatalf("ParseSafeMode(%q) = off with error %v; an unreadable value must stand down", v, err)
			}
			if !strings.Contains(err.Error(), SafeModeRequestedAnnotation) {
				t.Fatalf("error %q does not name the annotation", err)
			}
		}
		if got := IsSafeModeRequested(map[string]string{SafeModeRequestedAnnotation: v}); got != on {
			t.Fatalf("IsSafeModeRequested(%q) = %v, ParseSafeMode %v", v, got, on)
		}
	})
}
