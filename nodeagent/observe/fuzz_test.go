package observe

import (
	"encoding/json"
	"fmt"
	"math"
	"testing"
)

// FuzzParsePSI feeds pressure files to the parser /observe and the metrics
// use. Arbitrary bytes give either a reason or records whose averages are
// percentages and that encode as JSON; a file printed the way the kernel
// prints one (kernel/sched/psi.c, "%lu.%02lu" averages) reads back exactly.
func FuzzParsePSI(f *testing.F) {
	f.Add([]byte("some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"), 1.5, 20.25, 99.99, uint64(123456))
	f.Add([]byte("some avg10=NaN avg60=Inf avg300=-1 total=-1\n"), 0.0, 0.0, 100.0, uint64(1<<64-1))
	f.Add([]byte("some\nfull x\n"), 50.0, 50.0, 50.0, uint64(0))
	f.Fuzz(func(t *testing.T, raw []byte, a10, a60, a300 float64, total uint64) {
		check := func(what string, p PSI) {
			if !p.Available {
				if p.Reason == "" || p.Some != nil {
					t.Fatalf("%s: unavailable without a reason: %+v", what, p)
				}
				return
			}
			if p.Some == nil {
				t.Fatalf("%s: available without a some record", what)
			}
			for _, r := range []*PSIRecord{p.Some, p.Full} {
				if r == nil {
					continue
				}
				for _, v := range []float64{r.Avg10, r.Avg60, r.Avg300} {
					if !(v >= 0 && v <= 100) {
						t.Fatalf("%s: accepted average %v", what, v)
					}
				}
			}
			if _, err := json.Marshal(p); err != nil {
				t.Fatalf("%s: %+v does not encode: %v", what, p, err)
			}
		}
		check(fmt.Sprintf("%q", raw), ParsePSI("cpu.pressure", raw))

		// The kernel's own format, from percentages in [0, 100].
		pct := func(v float64) float64 {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return 0
			}
			return math.Round(math.Mod(math.Abs(v), 100)*100) / 100
		}
		want := PSIRecord{Avg10: pct(a10), Avg60: pct(a60), Avg300: pct(a300), TotalUS: total}
		line := func(kind string) string {
			return fmt.Sprintf("%s avg10=%.2f avg60=%.2f avg300=%.2f total=%d\n", kind, want.Avg10, want.Avg60, want.Avg300, want.TotalUS)
		}
		p := ParsePSI("cpu.pressure", []byte(line("some")+line("full")))
		check("kernel format", p)
		if !p.Available || *p.Some != want || p.Full == nil || *p.Full != want {
			t.Fatalf("kernel-format file %q read as %+v", line("some"), p)
		}
	})
}
