package main

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"
)

// row is one arm at one ladder step; latencies in microseconds.
type row struct {
	Burners  int     `json:"burners"`
	Variant  string  `json:"variant"`
	Requests uint64  `json:"requests"`
	Missing  int64   `json:"missing"` // sent but not answered
	P50      float64 `json:"p50_us"`
	P99      float64 `json:"p99_us"`
	P999     float64 `json:"p999_us"`
	Max      float64 `json:"max_us"`
	Wakeups  uint64  `json:"wakeups"`
	WakeP50  float64 `json:"wakeup_p50_us"`
	WakeP99  float64 `json:"wakeup_p99_us"`
	WakeP999 float64 `json:"wakeup_p999_us"`
	WakeMax  float64 `json:"wakeup_max_us"`
	// LoadAvg1 is the machine's 1-minute load average at the end of the
	// step (every arm's segments): how busy the shared machine was.
	LoadAvg1 float64 `json:"loadavg1"`
	// Throttled counts the CFS periods the critical pod was throttled in
	// (its cpu.stat nr_throttled over the arm's segments): a stall from
	// its own limit rather than from neighbours.
	Throttled int64 `json:"critical_nr_throttled"`
	// BatchCPUs is the CPU the burners ran, in CPUs averaged over the
	// arm's segments: the batch work done.
	BatchCPUs float64 `json:"batch_cpus"`
}

func us(d time.Duration) float64 { return math.Round(float64(d)/float64(time.Microsecond)*10) / 10 }

func newRow(burners int, variant string, lat, wake *Hist) row {
	return row{Burners: burners, Variant: variant, Requests: lat.Count(),
		P50: us(lat.Quantile(0.5)), P99: us(lat.Quantile(0.99)), P999: us(lat.Quantile(0.999)), Max: us(lat.Max()),
		Wakeups: wake.Count(), WakeP50: us(wake.Quantile(0.5)), WakeP99: us(wake.Quantile(0.99)), WakeP999: us(wake.Quantile(0.999)), WakeMax: us(wake.Max())}
}

type machine struct {
	CPUs          int      `json:"cpus"`
	Model         string   `json:"model"`
	Kernel        string   `json:"kernel"`
	CgroupVersion string   `json:"cgroup_version"`
	CgroupDriver  string   `json:"cgroup_driver"`
	SchedExt      bool     `json:"sched_ext"`
	Memcached     string   `json:"memcached"`
	Go            string   `json:"go"`
	When          string   `json:"when"`
	Caveats       []string `json:"caveats"`
}

type config struct {
	RatePerSec         float64     `json:"rate"`
	Connections        int         `json:"connections"`
	SegmentSeconds     float64     `json:"segment_seconds"`
	SecondsPerArm      float64     `json:"seconds_per_arm_per_step"`
	Order              string      `json:"order"`
	Ladder             []int       `json:"ladder"`
	Arms               []armConfig `json:"arms"`
	FenceCPUs          string      `json:"fence_cpus,omitempty"`
	Pods               []string    `json:"pods"`
	BurnerRequestMilli int64       `json:"burstable_burner_request_millicpu"`
}

// ratio compares one enforced arm with stock at the top of the ladder.
type ratio struct {
	Variant string `json:"variant"`
	Arm     string `json:"arm"`
	Burners int    `json:"burners"`
	// EnforcedP99OverIdle is the enforced p99 at the top over its own p99
	// with no burners (goal ≤ 1.5).
	EnforcedP99OverIdle float64 `json:"enforced_p99_over_idle"`
	// StockOverEnforced are stock / enforced at the top (goal ≥ 3 at p99
	// or p99.9).
	StockOverEnforcedP99      float64 `json:"stock_over_enforced_p99"`
	StockOverEnforcedP999     float64 `json:"stock_over_enforced_p999"`
	WakeStockOverEnforcedP999 float64 `json:"wakeup_stock_over_enforced_p999"`
	Met                       bool    `json:"goal_met"`
}

type goal struct {
	Statement string   `json:"statement"`
	Met       bool     `json:"met"`
	Detail    []string `json:"detail"`
}

type result struct {
	Machine machine          `json:"machine"`
	Config  config           `json:"config"`
	Command string           `json:"command"`
	Arms    map[string][]row `json:"arms"`
	Ratios  []ratio          `json:"ratios"`
	Goal    goal             `json:"goal"`
	// Summary is the repeated measurement at the top of the ladder for the
	// default enforced arm, by burner variant (issue 16).
	Summary map[string]summary `json:"summary,omitempty"`
	// ArmSummaries is the same for every enforced arm of the run.
	ArmSummaries map[string]map[string]summary `json:"arm_summaries,omitempty"`
	// Rounds are the rows of every measurement at the top of the ladder.
	Rounds []round `json:"rounds,omitempty"`
	// SummaryGoal is issue 16's goal, judged on the summary.
	SummaryGoal *goal `json:"summary_goal,omitempty"`
	armOrder    []string
}

// round is one measurement of every arm at the top of the ladder.
type round struct {
	Variant string         `json:"variant"`
	Arms    map[string]row `json:"arms"`
}

// summary is the spread of the stock/enforced ratios over the rounds.
type summary struct {
	Runs            int     `json:"runs"`
	RatioP99Median  float64 `json:"ratio_p99_median"`
	RatioP99Min     float64 `json:"ratio_p99_min"`
	RatioP99Max     float64 `json:"ratio_p99_max"`
	RatioP999Median float64 `json:"ratio_p999_median"`
	RatioP999Min    float64 `json:"ratio_p999_min"`
	RatioP999Max    float64 `json:"ratio_p999_max"`
	// WakeRatioP999Median is the wakeup probe's stock/enforced at p99.9.
	WakeRatioP999Median float64 `json:"wakeup_ratio_p999_median"`
	// EnforcedP999OverIdle is the median enforced p99.9 over the enforced
	// p99.9 with no burners (goal ≤ 2).
	EnforcedP999OverIdle float64 `json:"enforced_p999_over_idle"`
	// BatchShare is the burners' CPU enforced / stock (median over rounds).
	BatchShare float64 `json:"batch_share"`
	LoadAvgMin float64 `json:"loadavg1_min"`
	LoadAvgMax float64 `json:"loadavg1_max"`
}

func (r *result) addRound(variant string, rows map[string]row) {
	r.Rounds = append(r.Rounds, round{Variant: variant, Arms: rows})
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + m) / 2
	}
	return math.Round(m*100) / 100
}

// summarise computes the summaries from the rounds.
func (r *result) summarise() {
	r.ArmSummaries = map[string]map[string]summary{}
	for _, arm := range r.armOrder {
		if arm == "stock" {
			continue
		}
		for _, v := range variantsOf(r.Arms["stock"]) {
			var p99, p999, wake, batch, loads []float64
			for _, rd := range r.Rounds {
				st, en, ok := rd.Arms["stock"], rd.Arms[arm], rd.Variant == v
				if _, has := rd.Arms[arm]; !ok || !has {
					continue
				}
				p99 = append(p99, div(st.P99, en.P99))
				p999 = append(p999, div(st.P999, en.P999))
				wake = append(wake, div(st.WakeP999, en.WakeP999))
				if st.BatchCPUs > 0 {
					batch = append(batch, div(en.BatchCPUs, st.BatchCPUs))
				}
				loads = append(loads, en.LoadAvg1)
			}
			if len(p999) == 0 {
				continue
			}
			var tops []float64
			for _, rd := range r.Rounds {
				if rd.Variant == v {
					tops = append(tops, rd.Arms[arm].P999)
				}
			}
			s := summary{Runs: len(p999),
				RatioP99Median: median(p99), RatioP99Min: slices.Min(p99), RatioP99Max: slices.Max(p99),
				RatioP999Median: median(p999), RatioP999Min: slices.Min(p999), RatioP999Max: slices.Max(p999),
				WakeRatioP999Median: median(wake), BatchShare: median(batch),
				LoadAvgMin: slices.Min(loads), LoadAvgMax: slices.Max(loads)}
			if idle := findRow(r.Arms[arm], v, 0); idle != nil {
				s.EnforcedP999OverIdle = div(median(tops), idle.P999)
			}
			if r.ArmSummaries[arm] == nil {
				r.ArmSummaries[arm] = map[string]summary{}
			}
			r.ArmSummaries[arm][v] = s
		}
	}
	r.Summary = r.ArmSummaries[defaultEnforced]
	if len(r.Summary) == 0 {
		return
	}
	g := &goal{Statement: "issue 16, over the repeated runs at the top of the ladder: with Burstable burners median stock/enforced ≥ 3 at p99.9 and the enforced p99.9 ≤ 2 × its own p99.9 with no burners; with BestEffort burners median stock/enforced ≥ 1 at p99.9 (no worse than stock)", Met: true}
	if s, ok := r.Summary["burstable"]; ok {
		met := s.RatioP999Median >= 3 && s.EnforcedP999OverIdle > 0 && s.EnforcedP999OverIdle <= 2
		g.Met = g.Met && met
		g.Detail = append(g.Detail, fmt.Sprintf("burstable: %d runs, stock/enforced p99.9 median %.2f (%.2f–%.2f), p99 median %.2f; enforced p99.9 %.2f× its idle; batch share %.2f: %s",
			s.Runs, s.RatioP999Median, s.RatioP999Min, s.RatioP999Max, s.RatioP99Median, s.EnforcedP999OverIdle, s.BatchShare, metWord(met)))
	} else {
		g.Met = false
		g.Detail = append(g.Detail, "no burstable runs")
	}
	if s, ok := r.Summary["besteffort"]; ok {
		met := s.RatioP999Median >= 1
		g.Met = g.Met && met
		g.Detail = append(g.Detail, fmt.Sprintf("besteffort: %d runs, stock/enforced p99.9 median %.2f (%.2f–%.2f), p99 median %.2f; batch share %.2f: %s",
			s.Runs, s.RatioP999Median, s.RatioP999Min, s.RatioP999Max, s.RatioP99Median, s.BatchShare, metWord(met)))
	}
	r.SummaryGoal = g
}

func newResult(opts options, b *bench) *result {
	r := &result{Arms: map[string][]row{}, Command: strings.Join(os.Args, " ")}
	r.Machine = machine{CPUs: runtime.NumCPU(), Model: cpuModel(), Kernel: readTrimmed("/proc/sys/kernel/osrelease"),
		CgroupVersion: "v1", CgroupDriver: "cgroupfs", Go: runtime.Version(), When: time.Now().UTC().Format(time.RFC3339),
		SchedExt: readTrimmed("/sys/kernel/sched_ext/state") != ""}
	if out, err := exec.Command("memcached", "-V").Output(); err == nil {
		r.Machine.Memcached = strings.TrimSpace(string(out))
	}
	r.Machine.Caveats = []string{
		"shared VM with noisy neighbours; 2 vCPUs",
		"other engineers were compiling and testing on this machine during the run (processes outside the bench tree)",
		"no sched_ext on this kernel: the cgroup backend is the only enforcement",
		"the bench's pod tree is a private subtree (temper-bench-*) of the real v1 hierarchies, not the kubelet's own kubepods",
	}
	r.Config = config{RatePerSec: opts.rate, Connections: opts.conns, SegmentSeconds: opts.segment.Seconds(),
		SecondsPerArm: 2 * opts.segment.Seconds(), Order: "ABBA per ladder step, arm order rotated each step",
		Ladder: opts.ladder, Arms: opts.arms, FenceCPUs: b.fence.String(), BurnerRequestMilli: 50,
		Pods: []string{
			"memcached + wakeup probe: Guaranteed, tier critical, requests=limits 1000m + 100m",
			"load generator: Burstable, tier high, request 500m, no limit",
			"burners: tier background, BestEffort or Burstable with a 50m request, no limit; one CPU-bound process each",
		}}
	for _, a := range opts.arms {
		r.armOrder = append(r.armOrder, a.Name)
	}
	return r
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	for l := range strings.SplitSeq(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func div(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return math.Round(a/b*100) / 100
}

// finish computes the ratios, the summaries and the goal from the rows.
func (r *result) finish(opts options) {
	r.summarise()
	stock := r.Arms["stock"]
	r.Goal = goal{Statement: "at the top of the ladder: enforced p99 ≤ 1.5 × enforced p99 with no burners, and stock ≥ 3 × enforced at p99 or p99.9", Met: true}
	any := false
	for _, arm := range r.armOrder {
		if arm == "stock" {
			continue
		}
		for _, v := range variantsOf(stock) {
			top, idle, st := findTop(r.Arms[arm], v), findRow(r.Arms[arm], v, 0), findTop(stock, v)
			if top == nil || idle == nil || st == nil || top.Burners == 0 {
				continue
			}
			q := ratio{Variant: v, Arm: arm, Burners: top.Burners,
				EnforcedP99OverIdle:       div(top.P99, idle.P99),
				StockOverEnforcedP99:      div(st.P99, top.P99),
				StockOverEnforcedP999:     div(st.P999, top.P999),
				WakeStockOverEnforcedP999: div(st.WakeP999, top.WakeP999)}
			q.Met = q.EnforcedP99OverIdle <= 1.5 && (q.StockOverEnforcedP99 >= 3 || q.StockOverEnforcedP999 >= 3)
			r.Ratios = append(r.Ratios, q)
			if arm == defaultEnforced {
				any = true
				r.Goal.Met = r.Goal.Met && q.Met
				r.Goal.Detail = append(r.Goal.Detail, fmt.Sprintf("%s burners ×%d: enforced p99 %.2f× its idle p99 (goal ≤ 1.5); stock/enforced %.2f× at p99, %.2f× at p99.9 (goal ≥ 3 at either): %s",
					v, top.Burners, q.EnforcedP99OverIdle, q.StockOverEnforcedP99, q.StockOverEnforcedP999, metWord(q.Met)))
			}
		}
	}
	if !any {
		r.Goal.Met = false
		r.Goal.Detail = append(r.Goal.Detail, "no default enforced arm with a ladder from 0 burners in this run")
	}
}

func metWord(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

func variantsOf(rows []row) []string {
	var out []string
	for _, r := range rows {
		if !slices.Contains(out, r.Variant) {
			out = append(out, r.Variant)
		}
	}
	return out
}

func findRow(rows []row, variant string, burners int) *row {
	for i := range rows {
		if rows[i].Variant == variant && rows[i].Burners == burners {
			return &rows[i]
		}
	}
	return nil
}

func findTop(rows []row, variant string) *row {
	var top *row
	for i := range rows {
		if rows[i].Variant == variant && (top == nil || rows[i].Burners > top.Burners) {
			top = &rows[i]
		}
	}
	return top
}

// table renders the rows as a markdown table, then the ratios and goal.
func (r *result) table() string {
	var sb strings.Builder
	sb.WriteString("| burners | variant | arm | p50 µs | p99 µs | p99.9 µs | max µs | wakeup p99 µs | wakeup p99.9 µs | requests | load avg |\n")
	sb.WriteString("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	stock := r.Arms["stock"]
	for _, v := range variantsOf(stock) {
		for _, s := range stock {
			if s.Variant != v {
				continue
			}
			for _, arm := range r.armOrder {
				x := findRow(r.Arms[arm], v, s.Burners)
				if x == nil {
					continue
				}
				fmt.Fprintf(&sb, "| %d | %s | %s | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | %d | %.1f |\n",
					x.Burners, x.Variant, arm, x.P50, x.P99, x.P999, x.Max, x.WakeP99, x.WakeP999, x.Requests, x.LoadAvg1)
			}
		}
	}
	sb.WriteString("\n")
	for _, q := range r.Ratios {
		fmt.Fprintf(&sb, "- %s, %s burners ×%d: enforced p99 / idle p99 = %.2f; stock / enforced = %.2f at p99, %.2f at p99.9; wakeup p99.9 stock / enforced = %.2f; goal %s\n",
			q.Arm, q.Variant, q.Burners, q.EnforcedP99OverIdle, q.StockOverEnforcedP99, q.StockOverEnforcedP999, q.WakeStockOverEnforcedP999, metWord(q.Met))
	}
	fmt.Fprintf(&sb, "\nGoal (%s): %s\n", r.Goal.Statement, metWord(r.Goal.Met))
	if len(r.ArmSummaries) > 0 {
		sb.WriteString("\nRepeated runs at the top of the ladder (ratio = stock / enforced; median (min–max)):\n\n")
		sb.WriteString("| arm | variant | runs | p99 ratio | p99.9 ratio | wakeup p99.9 ratio | enforced p99.9 / idle | batch share | load avg |\n")
		sb.WriteString("|---|---|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, arm := range r.armOrder {
			for _, v := range variantsOf(r.Arms["stock"]) {
				s, ok := r.ArmSummaries[arm][v]
				if !ok {
					continue
				}
				fmt.Fprintf(&sb, "| %s | %s | %d | %.2f (%.2f–%.2f) | %.2f (%.2f–%.2f) | %.2f | %.2f | %.2f | %.1f–%.1f |\n",
					arm, v, s.Runs, s.RatioP99Median, s.RatioP99Min, s.RatioP99Max, s.RatioP999Median, s.RatioP999Min, s.RatioP999Max,
					s.WakeRatioP999Median, s.EnforcedP999OverIdle, s.BatchShare, s.LoadAvgMin, s.LoadAvgMax)
			}
		}
	}
	if g := r.SummaryGoal; g != nil {
		fmt.Fprintf(&sb, "\nGoal (%s): %s\n", g.Statement, metWord(g.Met))
		for _, d := range g.Detail {
			fmt.Fprintf(&sb, "- %s\n", d)
		}
	}
	return sb.String()
}
