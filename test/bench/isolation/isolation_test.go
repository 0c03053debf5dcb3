package main

import (
	"encoding/json"
	"encoding/xml"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestHistQuantilesMatchSortedSamples(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var h Hist
	var samples []time.Duration
	for range 100000 {
		// A long-tailed mix: mostly ~80 µs, some ms-scale stalls.
		d := time.Duration(50_000 + rng.IntN(60_000))
		if rng.IntN(100) == 0 {
			d = time.Duration(rng.IntN(5_000_000))
		}
		samples = append(samples, d)
		h.Record(d)
	}
	slices.Sort(samples)
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999, 1} {
		idx := int(float64(len(samples))*q+0.999999) - 1
		want := samples[idx]
		got := h.Quantile(q)
		// Never below the exact value, and at most one bucket (< 1.6 %) above.
		if got < want || float64(got-want) > 0.016*float64(want)+1 {
			t.Errorf("Quantile(%v) = %v, exact %v", q, got, want)
		}
	}
	if h.Count() != uint64(len(samples)) || h.Max() != samples[len(samples)-1] {
		t.Errorf("Count, Max = %d, %v; want %d, %v", h.Count(), h.Max(), len(samples), samples[len(samples)-1])
	}
}

func TestHistBuckets(t *testing.T) {
	// Every value falls in a bucket whose bounds hold it, and buckets are
	// contiguous.
	for _, v := range []int64{0, 1, 127, 128, 129, 255, 256, 1000, 123456, 1 << 40, 1<<63 - 1} {
		i := bucketOf(v)
		if i < 0 || i >= numBuckets || v < lowerBound(i) || v > upperBound(i) {
			t.Errorf("bucketOf(%d) = %d with bounds [%d, %d]", v, i, lowerBound(i), upperBound(i))
		}
	}
	for i := 1; i < numBuckets; i++ {
		if lowerBound(i) != upperBound(i-1)+1 {
			t.Fatalf("bucket %d starts at %d, bucket %d ends at %d", i, lowerBound(i), i-1, upperBound(i-1))
		}
	}
	var empty Hist
	if empty.Quantile(0.99) != 0 {
		t.Errorf("empty Quantile = %v, want 0", empty.Quantile(0.99))
	}
}

func TestHistJSONRoundTripAndMerge(t *testing.T) {
	var a, b Hist
	for i := range 1000 {
		a.Record(time.Duration(i) * time.Microsecond)
		b.Record(time.Duration(i) * time.Millisecond)
	}
	data, err := json.Marshal(&a)
	if err != nil {
		t.Fatal(err)
	}
	var back Hist
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if back != a {
		t.Errorf("round trip changed the histogram: count %d → %d, p99 %v → %v", a.Count(), back.Count(), a.Quantile(0.99), back.Quantile(0.99))
	}
	back.Merge(&b)
	if back.Count() != 2000 || back.Max() != 999*time.Millisecond || back.Quantile(0.5) > time.Millisecond {
		t.Errorf("merged: count %d, max %v, p50 %v", back.Count(), back.Max(), back.Quantile(0.5))
	}
	if err := json.Unmarshal([]byte(`{"buckets":[[999999,1]]}`), &back); err == nil {
		t.Error("Unmarshal accepted a bucket index out of range")
	}
}

func TestSchedule(t *testing.T) {
	start := time.Unix(1000, 0)
	s := newSchedule(start, 2000)
	if s.interval != 500*time.Microsecond {
		t.Fatalf("interval = %v, want 500µs", s.interval)
	}
	// Due times do not depend on when earlier requests were sent.
	if got := s.due(2000); !got.Equal(start.Add(time.Second)) {
		t.Errorf("due(2000) = %v, want start+1s", got.Sub(start))
	}
	if n := s.count(time.Second); n != 2000 {
		t.Errorf("count(1s) = %d, want 2000", n)
	}
	if n := s.count(time.Second + time.Nanosecond); n != 2001 {
		t.Errorf("count(1s+1ns) = %d, want 2001", n)
	}
	per := map[int]int{}
	for i := range int64(4000) {
		per[s.conn(i, 4)]++
	}
	if len(per) != 4 || per[0] != 1000 || per[3] != 1000 {
		t.Errorf("requests per connection = %v, want 1000 on each of 4", per)
	}
}

func TestKubeletShares(t *testing.T) {
	for _, c := range []struct{ milli, shares int64 }{{0, 2}, {1, 2}, {50, 51}, {100, 102}, {500, 512}, {1000, 1024}, {2000, 2048}, {1 << 40, 262144}} {
		if got := milliCPUToShares(c.milli); got != c.shares {
			t.Errorf("milliCPUToShares(%d) = %d, want %d", c.milli, got, c.shares)
		}
	}
	for _, c := range []struct{ milli, quota int64 }{{0, -1}, {5, 1000}, {100, 10000}, {1100, 110000}} {
		if got := milliCPUToQuota(c.milli); got != c.quota {
			t.Errorf("milliCPUToQuota(%d) = %d, want %d", c.milli, got, c.quota)
		}
	}
	// The load generator (500m) and four 50m burners: 700m → 716. The
	// kubelet sums requests, then converts; the three 1m pods below tell
	// that apart from summing converted shares (3 vs 6).
	burst, be := qosShares([][]container{{{request: 500}}, {{request: 50}}, {{request: 50}}, {{request: 50}}, {{request: 50}}})
	if burst != 716 || be != 2 {
		t.Errorf("qosShares = %d, %d; want 716, 2", burst, be)
	}
	if burst, _ := qosShares([][]container{{{request: 1}}, {{request: 1}}, {{request: 1}}}); burst != 3 {
		t.Errorf("qosShares of three 1m pods = %d, want 3 (sum then convert)", burst)
	}
	if burst, _ := qosShares(nil); burst != 2 {
		t.Errorf("qosShares of no pods = %d, want 2", burst)
	}
	guaranteed := []container{{request: 1000, limit: 1000}, {request: 100, limit: 100}}
	if podShares(guaranteed) != 1126 || podQuota(guaranteed) != 110000 {
		t.Errorf("Guaranteed pod: shares %d, quota %d; want 1126, 110000", podShares(guaranteed), podQuota(guaranteed))
	}
	if q := podQuota([]container{{request: 100, limit: 100}, {request: 100}}); q != -1 {
		t.Errorf("pod quota with an unlimited container = %d, want -1", q)
	}
}

func testResult() *result {
	r := &result{Arms: map[string][]row{}, armOrder: []string{"stock", "enforced"}}
	r.Machine.Kernel, r.Machine.CPUs, r.Machine.CgroupVersion = "6.18.0", 2, "v1"
	for _, v := range []string{"burstable", "besteffort"} {
		for _, n := range []int{0, 8} {
			st, en := 100.0, 100.0
			if n == 8 {
				st, en = 4000, 140
			}
			r.Arms["stock"] = append(r.Arms["stock"], row{Burners: n, Variant: v, P50: 80, P99: st, P999: 2 * st})
			r.Arms["enforced"] = append(r.Arms["enforced"], row{Burners: n, Variant: v, P50: 80, P99: en, P999: 2 * en})
		}
	}
	return r
}

func TestFinishGoal(t *testing.T) {
	r := testResult()
	r.finish(options{})
	if !r.Goal.Met || len(r.Ratios) != 2 {
		t.Fatalf("goal = %+v, ratios %+v; want met with 2 ratios", r.Goal, r.Ratios)
	}
	q := r.Ratios[0]
	if q.EnforcedP99OverIdle != 1.4 || q.StockOverEnforcedP99 != 28.57 {
		t.Errorf("ratio = %+v; want 1.4 over idle, 28.57 stock/enforced", q)
	}
	// Enforced at the top more than 1.5× its idle p99: not met.
	r = testResult()
	r.Arms["enforced"][1].P99 = 160
	r.finish(options{})
	if r.Goal.Met {
		t.Errorf("goal met with enforced p99 1.6× its idle p99: %+v", r.Goal)
	}
	// Stock not 3× enforced at either percentile: not met.
	r = testResult()
	for i := range r.Arms["stock"] {
		r.Arms["stock"][i].P99, r.Arms["stock"][i].P999 = 200, 400
	}
	r.finish(options{})
	if r.Goal.Met {
		t.Errorf("goal met with stock only 1.4× enforced: %+v", r.Goal)
	}
}

func TestJSONShape(t *testing.T) {
	r := testResult()
	r.finish(options{})
	data, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"machine", "config", "arms", "ratios", "goal"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, data)
		}
	}
	arms := m["arms"].(map[string]any)
	stock := arms["stock"].([]any)[0].(map[string]any)
	for _, k := range []string{"burners", "variant", "p50_us", "p99_us", "p999_us", "wakeup_p99_us", "wakeup_p999_us"} {
		if _, ok := stock[k]; !ok {
			t.Errorf("a stock row lacks %q: %v", k, stock)
		}
	}
	for _, k := range []string{"cpus", "model", "kernel", "cgroup_version"} {
		if _, ok := m["machine"].(map[string]any)[k]; !ok {
			t.Errorf("machine lacks %q", k)
		}
	}
}

func TestSVGWellFormed(t *testing.T) {
	r := testResult()
	out := r.svg()
	d := xml.NewDecoder(strings.NewReader(out))
	polylines, panels := 0, 0
	for {
		tok, err := d.Token()
		if err != nil {
			if err.Error() != "EOF" {
				t.Fatalf("SVG is not well-formed XML: %v", err)
			}
			break
		}
		if se, ok := tok.(xml.StartElement); ok {
			switch se.Name.Local {
			case "polyline":
				polylines++
			case "rect":
				panels++
			}
		}
	}
	// 2 variants × 2 arms × 3 percentiles.
	if polylines != 12 {
		t.Errorf("SVG has %d polylines, want 12", polylines)
	}
	if !strings.Contains(out, "burstable burner pods") || !strings.Contains(out, "besteffort burner pods") {
		t.Error("SVG lacks a panel title per variant")
	}
	if panels != 3 { // background + one frame per variant
		t.Errorf("SVG has %d rects, want 3", panels)
	}
}

func TestTable(t *testing.T) {
	r := testResult()
	r.finish(options{})
	tab := r.table()
	if !strings.Contains(tab, "| 8 | burstable | stock | 80 | 4000 | 8000 |") || !strings.Contains(tab, "| 8 | burstable | enforced | 80 | 140 | 280 |") {
		t.Errorf("table lacks the expected rows:\n%s", tab)
	}
	if !strings.Contains(tab, "Goal (") || !strings.Contains(tab, ": met") {
		t.Errorf("table lacks the goal verdict:\n%s", tab)
	}
}

func TestDiffSnapshots(t *testing.T) {
	before := map[string]string{"/a/cpu.shares": "1024\n", "/a/cpu.idle": "0\n"}
	if d := diffSnapshots(before, map[string]string{"/a/cpu.shares": "1024\n", "/a/cpu.idle": "0\n"}); len(d) != 0 {
		t.Errorf("equal snapshots differ: %v", d)
	}
	d := diffSnapshots(before, map[string]string{"/a/cpu.shares": "4096\n", "/b/x": "1"})
	if len(d) != 3 {
		t.Errorf("diff = %v, want a changed, a missing and an extra file", d)
	}
}

func TestParseFlags(t *testing.T) {
	if l, err := parseLadder("0, 1,2,4,8"); err != nil || !slices.Equal(l, []int{0, 1, 2, 4, 8}) {
		t.Errorf("parseLadder = %v, %v", l, err)
	}
	for _, bad := range []string{"", "x", "-1", "65"} {
		if _, err := parseLadder(bad); err == nil {
			t.Errorf("parseLadder(%q) accepted", bad)
		}
	}
	if _, err := parseVariants("burstable,guaranteed"); err == nil {
		t.Error("parseVariants accepted guaranteed")
	}
}

func TestSummary(t *testing.T) {
	r := testResult()
	// Three rounds at the top: stock/enforced p99.9 of 2, 4 and 10, batch
	// share 0.5, 0.9 and 1.
	for i, k := range []float64{2, 4, 10} {
		for _, v := range []string{"burstable", "besteffort"} {
			r.addRound(v, map[string]row{
				"stock":    {Burners: 8, Variant: v, P99: 100 * k, P999: 100 * k, WakeP999: 50, BatchCPUs: 1, LoadAvg1: float64(i)},
				"enforced": {Burners: 8, Variant: v, P99: 100, P999: 100, WakeP999: 50, BatchCPUs: []float64{0.5, 0.9, 1}[i], LoadAvg1: float64(i)},
			})
		}
	}
	r.finish(options{})
	s := r.Summary["burstable"]
	want := summary{Runs: 3, RatioP99Median: 4, RatioP99Min: 2, RatioP99Max: 10, RatioP999Median: 4, RatioP999Min: 2, RatioP999Max: 10,
		WakeRatioP999Median: 1, BatchShare: 0.9, LoadAvgMin: 0, LoadAvgMax: 2, EnforcedP999OverIdle: s.EnforcedP999OverIdle}
	if s != want {
		t.Errorf("summary = %+v\nwant %+v", s, want)
	}
	if r.SummaryGoal == nil || r.SummaryGoal.Met != (s.EnforcedP999OverIdle <= 2) {
		t.Errorf("summary goal = %+v with enforced %.2f× its idle", r.SummaryGoal, s.EnforcedP999OverIdle)
	}
	data, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]map[string]map[string]any
	var shape struct {
		Summary json.RawMessage `json:"summary"`
	}
	if err := json.Unmarshal(data, &shape); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(`{"s":`+string(shape.Summary)+`}`), &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"runs", "ratio_p99_median", "ratio_p999_median", "ratio_p999_min", "ratio_p999_max", "batch_share"} {
		if _, ok := m["s"]["burstable"][k]; !ok {
			t.Errorf("summary.burstable lacks %q: %s", k, shape.Summary)
		}
	}
	// The median over rounds drops a low outlier: 2 runs out of 3 at ≥ 4.
	r.Rounds[0].Arms["enforced"] = row{Burners: 8, Variant: "burstable", P99: 1000, P999: 1000, BatchCPUs: 1}
	r.finish(options{})
	if got := r.Summary["burstable"].RatioP999Median; got != 4 {
		t.Errorf("median with an outlier = %v, want 4", got)
	}
	if !strings.Contains(r.table(), "| enforced | burstable | 3 |") {
		t.Errorf("table lacks the summary row:\n%s", r.table())
	}
	if _, err := armsByName("slice500,nosuch"); err == nil {
		t.Error("armsByName accepted an unknown arm")
	}
	if a, err := armsByName("slice500,slice500"); err != nil || len(a) != 2 || a[0].Name != "stock" {
		t.Errorf("armsByName = %+v, %v; want stock and slice500", a, err)
	}
}
