package telemetry

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/infera-io/temper/apis/wellknown"
)

func write(t testing.TB, dir, file, content string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, file), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func fullSnapshot(v2Dir string) Snapshot {
	return Snapshot{
		Generation: 7, CgroupV2: true, Backend: wellknown.BackendCgroup, Status: wellknown.AgentStatusEnforcingCgroup,
		Tiers: map[wellknown.Tier]TierUsage{wellknown.TierCritical: {Pods: 2, RequestMilli: 1500}, wellknown.TierBackground: {Pods: 1}},
		Pods: []Pod{
			{Namespace: "shop", Name: "web-0", Tier: wellknown.TierCritical, CPUDir: v2Dir},
			{Namespace: "shop", Name: "pending", Tier: wellknown.TierCritical},
		},
		Scheduler: &Scheduler{Starts: 3, Exits: 2, Ejections: 1},
		TierSched: map[wellknown.Tier]TierSchedCounters{wellknown.TierCritical: {Enqueued: 5, Dispatched: 5, Preempted: 2}},
		Cgroup:    &Cgroup{Writes: 10, Drift: 2, Errors: 1, Restored: 4, Gone: 1},
		RunQueue: map[wellknown.Tier]Histogram{
			wellknown.TierCritical: {Count: 3, Sum: 0.003, Buckets: map[float64]uint64{0.0005: 1, 0.001: 2, 0.002: 3}},
		},
		Lint: map[string]int{"smt_collision": 0, "protected_fallback": 2},
	}
}

// Every metric family the observation issue names is exported, with the
// values of the snapshot and of the cgroup and PSI files.
func TestEveryFamilyIsScraped(t *testing.T) {
	dir := t.TempDir()
	pod := filepath.Join(dir, "cg", "kubepods.slice", "pod1")
	write(t, pod, "cpu.stat", "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\nnr_periods 10\nnr_throttled 4\nthrottled_usec 1500000\n")
	write(t, pod, "cpu.pressure", "some avg10=0.00 avg60=0.00 avg300=0.00 total=3000000\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=1000000\n")
	proc := filepath.Join(dir, "proc")
	write(t, filepath.Join(proc, "pressure"), "cpu", "some avg10=1.00 avg60=0.50 avg300=0.10 total=7000000\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")

	m, err := New(Options{Snapshot: func() Snapshot { return fullSnapshot(pod) }, ProcRoot: proc})
	if err != nil {
		t.Fatal(err)
	}
	m.ObserveApply(30 * time.Millisecond)

	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, f := range families {
		got[f.GetName()] = true
	}
	for _, name := range []string{
		"infera_tier_pods", "infera_tier_cpu_request_cores", "infera_config_generation", "infera_backend_state", "infera_safe_mode",
		"infera_scheduler_starts_total", "infera_scheduler_exits_total", "infera_scheduler_ejections_total",
		"infera_tier_scheduler_events_total",
		"infera_apply_duration_seconds",
		"infera_cgroup_writes_total", "infera_cgroup_drift_total", "infera_cgroup_write_errors_total", "infera_cgroup_restored_total",
		"infera_cgroup_suppression_budget_millicores", "infera_cgroup_suppression_active",
		"infera_pod_cpu_usage_seconds_total", "infera_pod_cpu_throttled_seconds_total", "infera_pod_cpu_throttled_periods_total",
		"infera_pod_cpu_pressure_seconds_total", "infera_node_cpu_pressure_seconds_total",
		"infera_runqueue_latency_seconds", "infera_lint_violation",
		"infera_agent_process_cpu_seconds_total", "infera_agent_process_resident_memory_bytes", "infera_agent_goroutines",
	} {
		if !got[name] {
			t.Errorf("metric family %s not scraped", name)
		}
	}

	want := `
# HELP infera_pod_cpu_usage_seconds_total CPU time used by the pod's cgroup.
# TYPE infera_pod_cpu_usage_seconds_total counter
infera_pod_cpu_usage_seconds_total{namespace="shop",pod="web-0",tier="critical"} 2.5
# HELP infera_pod_cpu_throttled_seconds_total Time the pod's cgroup was throttled by its CPU limit.
# TYPE infera_pod_cpu_throttled_seconds_total counter
infera_pod_cpu_throttled_seconds_total{namespace="shop",pod="web-0",tier="critical"} 1.5
# HELP infera_pod_cpu_pressure_seconds_total Time some or all of the pod's tasks were stalled waiting for CPU (cgroup v2 cpu.pressure).
# TYPE infera_pod_cpu_pressure_seconds_total counter
infera_pod_cpu_pressure_seconds_total{kind="full",namespace="shop",pod="web-0",tier="critical"} 1
infera_pod_cpu_pressure_seconds_total{kind="some",namespace="shop",pod="web-0",tier="critical"} 3
# HELP infera_node_cpu_pressure_seconds_total Time some or all tasks of the node were stalled waiting for CPU (/proc/pressure/cpu).
# TYPE infera_node_cpu_pressure_seconds_total counter
infera_node_cpu_pressure_seconds_total{kind="full"} 0
infera_node_cpu_pressure_seconds_total{kind="some"} 7
# HELP infera_tier_cpu_request_cores CPU requested by the pods of each tier, in cores.
# TYPE infera_tier_cpu_request_cores gauge
infera_tier_cpu_request_cores{tier="background"} 0
infera_tier_cpu_request_cores{tier="critical"} 1.5
infera_tier_cpu_request_cores{tier="high"} 0
infera_tier_cpu_request_cores{tier="low"} 0
infera_tier_cpu_request_cores{tier="normal"} 0
infera_tier_cpu_request_cores{tier="system"} 0
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want),
		"infera_pod_cpu_usage_seconds_total", "infera_pod_cpu_throttled_seconds_total", "infera_pod_cpu_pressure_seconds_total",
		"infera_node_cpu_pressure_seconds_total", "infera_tier_cpu_request_cores"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(m.Registry(), "infera_backend_state"); n != len(states) {
		t.Errorf("infera_backend_state has %d series, want one per state (%d)", n, len(states))
	}
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(`
# HELP infera_backend_state 1 for the enforcement backend in use and its state (enforcing, degraded, refused, observe-only, safe-mode), 0 for the other states.
# TYPE infera_backend_state gauge
infera_backend_state{backend="cgroup",state="degraded"} 0
infera_backend_state{backend="cgroup",state="enforcing"} 1
infera_backend_state{backend="cgroup",state="observe-only"} 0
infera_backend_state{backend="cgroup",state="refused"} 0
infera_backend_state{backend="cgroup",state="safe-mode"} 0
`), "infera_backend_state"); err != nil {
		t.Error(err)
	}
}

// cgroup v1: usage from cpuacct (co-mounted or its own hierarchy),
// throttling in nanoseconds.
func TestPodCPUOnV1(t *testing.T) {
	dir := t.TempDir()
	cpu := filepath.Join(dir, "cpu", "kubepods", "pod1")
	acct := filepath.Join(dir, "cpuacct", "kubepods", "pod1")
	write(t, cpu, "cpu.stat", "nr_periods 10\nnr_throttled 3\nthrottled_time 2000000000\n")
	write(t, acct, "cpuacct.usage", "4000000000\n")
	m, err := New(Options{Snapshot: func() Snapshot {
		return Snapshot{Pods: []Pod{{Namespace: "a", Name: "b", Tier: wellknown.TierLow, CPUDir: cpu, CPUAcctDir: acct}}}
	}, ProcRoot: filepath.Join(dir, "noproc")})
	if err != nil {
		t.Fatal(err)
	}
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(`
# HELP infera_pod_cpu_usage_seconds_total CPU time used by the pod's cgroup.
# TYPE infera_pod_cpu_usage_seconds_total counter
infera_pod_cpu_usage_seconds_total{namespace="a",pod="b",tier="low"} 4
# HELP infera_pod_cpu_throttled_periods_total CFS periods in which the pod's cgroup was throttled.
# TYPE infera_pod_cpu_throttled_periods_total counter
infera_pod_cpu_throttled_periods_total{namespace="a",pod="b",tier="low"} 3
`), "infera_pod_cpu_usage_seconds_total", "infera_pod_cpu_throttled_periods_total"); err != nil {
		t.Error(err)
	}
	// No PSI on this kernel: the family is absent, not zero.
	if n := testutil.CollectAndCount(m.Registry(), "infera_node_cpu_pressure_seconds_total"); n != 0 {
		t.Errorf("node PSI series = %d without /proc/pressure, want 0", n)
	}
}

// Hostile input: huge and invalid label values, duplicate names, more pods
// than a scrape reports; the scrape stays valid and bounded.
func TestHostileLabelsAndCardinality(t *testing.T) {
	dir := t.TempDir()
	var pods []Pod
	for i := range MaxPods + 50 {
		pods = append(pods, Pod{Namespace: "ns", Name: "pod-" + strconv.Itoa(i), Tier: wellknown.TierNormal, CPUDir: filepath.Join(dir, "p", strconv.Itoa(i))})
	}
	for _, p := range pods[:3] {
		write(t, p.CPUDir, "cpu.stat", "usage_usec 1\n")
	}
	huge := strings.Repeat("é", 400) + "\xff\xfe"
	pods[0].Name, pods[1].Name = huge, huge // a duplicate after truncation
	m, err := New(Options{Snapshot: func() Snapshot {
		return Snapshot{CgroupV2: true, Backend: huge, Status: "degraded: " + huge, Pods: pods, Lint: map[string]int{huge: 1}}
	}, ProcRoot: filepath.Join(dir, "noproc")})
	if err != nil {
		t.Fatal(err)
	}
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatalf("scrape with hostile labels failed: %v", err)
	}
	for _, f := range families {
		for _, mt := range f.GetMetric() {
			for _, l := range mt.GetLabel() {
				if len(l.GetValue()) > maxLabel+3 {
					t.Errorf("%s label %s is %d bytes", f.GetName(), l.GetName(), len(l.GetValue()))
				}
			}
		}
	}
	if n := testutil.CollectAndCount(m.Registry(), "infera_pod_cpu_usage_seconds_total"); n != 2 {
		t.Errorf("usage series = %d, want 2 (3 pods with files, two sharing a name)", n)
	}
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(`
# HELP infera_pod_series_truncated 1 when the node has more pods than one scrape reports per-pod series for.
# TYPE infera_pod_series_truncated gauge
infera_pod_series_truncated 1
`), "infera_pod_series_truncated"); err != nil {
		t.Error(err)
	}
}

func TestStateOf(t *testing.T) {
	for status, want := range map[string]string{
		wellknown.AgentStatusEnforcingSCX:    StateEnforcing,
		wellknown.AgentStatusEnforcingCgroup: StateEnforcing,
		wellknown.AgentStatusSafeMode:        StateSafeMode,
		wellknown.AgentStatusObserveOnly:     StateObserveOnly,
		"refused: kernel has no sched_ext":   StateRefused,
		"degraded: scx_layered exited":       StateDegraded,
	} {
		if got := StateOf(status); got != want {
			t.Errorf("StateOf(%q) = %q, want %q", status, got, want)
		}
	}
}

// The pods' cgroup files stay open between scrapes and are read anew each
// time; a gone pod's files are closed, a removed cgroup has no series.
func TestScrapeKeepsPodFilesOpen(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	for _, d := range []string{a, b} {
		write(t, d, "cpu.stat", "nr_periods 10\nnr_throttled 1\nthrottled_time 5000000000\n")
		write(t, d, "cpuacct.usage", "1000000000\n")
	}
	pods := []Pod{{Namespace: "ns", Name: "a", Tier: wellknown.TierHigh, CPUDir: a}, {Namespace: "ns", Name: "b", Tier: wellknown.TierLow, CPUDir: b}}
	m, err := New(Options{Snapshot: func() Snapshot { return Snapshot{Pods: pods} }, ProcRoot: dir})
	if err != nil {
		t.Fatal(err)
	}
	usage := func(pod string) (float64, bool) {
		t.Helper()
		fams, err := m.Registry().Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fams {
			if f.GetName() != "infera_pod_cpu_usage_seconds_total" {
				continue
			}
			for _, mt := range f.GetMetric() {
				for _, l := range mt.GetLabel() {
					if l.GetName() == "pod" && l.GetValue() == pod {
						return mt.GetCounter().GetValue(), true
					}
				}
			}
		}
		return 0, false
	}
	if v, ok := usage("a"); !ok || v != 1 {
		t.Fatalf("first scrape: usage of a = %v, %v; want 1", v, ok)
	}
	if n := m.snap.files.Len(); n != 4 {
		t.Errorf("%d files kept open after a scrape of two pods; want 4", n)
	}
	write(t, a, "cpuacct.usage", "2500000000\n")
	if v, ok := usage("a"); !ok || v != 2.5 {
		t.Errorf("second scrape: usage of a = %v, %v; want 2.5 read anew from the kept file", v, ok)
	}
	pods = pods[:1]
	if _, ok := usage("b"); ok {
		t.Error("pod b left the snapshot but still has a series")
	}
	if n := m.snap.files.Len(); n != 2 {
		t.Errorf("%d files kept open after pod b left; want pod a's 2", n)
	}
	if n := len(m.snap.labels.m); n != 1 {
		t.Errorf("label pairs of %d pods kept after pod b left; want pod a's only", n)
	}
	// A pod whose tier changes gets its series under the new tier label
	// (the cached label pairs are per namespace, name and tier).
	pods[0].Tier = wellknown.TierCritical
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var tiers []string
	for _, f := range fams {
		if f.GetName() == "infera_pod_cpu_usage_seconds_total" {
			for _, mt := range f.GetMetric() {
				for _, l := range mt.GetLabel() {
					if l.GetName() == "tier" {
						tiers = append(tiers, l.GetValue())
					}
				}
			}
		}
	}
	if strings.Join(tiers, ",") != "critical" {
		t.Errorf("after a tier change pod a's usage series have tiers %v, want [critical]", tiers)
	}
}
