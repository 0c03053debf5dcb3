// Package telemetry is the node agent's Prometheus metrics: what it
// enforces, how the backends behave, what the pods' cgroups and the kernel
// say about CPU, and what the agent itself costs. Everything is registered
// on the agent's own registry; nothing touches the global one.
//
// Most metrics are read at scrape time from a Snapshot the agent hands
// over (a pull model: no work between scrapes). Per-pod CPU usage,
// throttling and pressure are read from the pods' cgroup files during the
// scrape, bounded by MaxPods.
package telemetry

import (
	"bytes"
	"cmp"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/nodeagent/keptfile"
	"github.com/infera-io/temper/nodeagent/observe"
)

// Namespace prefixes every metric.
const Namespace = "infera"

// MaxPods bounds the per-pod series one scrape emits; a node runs at most a
// few hundred pods, and a bug must not turn into unbounded cardinality.
const MaxPods = 512

// maxLabel bounds a label value (Kubernetes names are at most 253 bytes).
const maxLabel = 253

// States of infera_backend_state: the agent-status annotation without its
// free-text reason, so the label set stays bounded.
const (
	StateEnforcing   = "enforcing"
	StateDegraded    = "degraded"
	StateRefused     = "refused"
	StateObserveOnly = "observe-only"
	StateSafeMode    = "safe-mode"
)

var states = []string{StateEnforcing, StateDegraded, StateRefused, StateObserveOnly, StateSafeMode}

// tierSchedEvents are the event label's values, sorted.
var tierSchedEvents = []struct {
	name  string
	value func(TierSchedCounters) uint64
}{
	{"dispatched", func(c TierSchedCounters) uint64 { return c.Dispatched }},
	{"enqueued", func(c TierSchedCounters) uint64 { return c.Enqueued }},
	{"preempted", func(c TierSchedCounters) uint64 { return c.Preempted }},
	{"starvation_guard", func(c TierSchedCounters) uint64 { return c.StarvationGuard }},
}

// statesByName and tiersByName are the states and tiers sorted as label
// values (the registry's order of series).
var (
	statesByName = slices.Sorted(slices.Values(states))
	tiersByName  = slices.SortedFunc(slices.Values(wellknown.AllTiers()), func(a, b wellknown.Tier) int {
		return strings.Compare(string(a), string(b))
	})
)

// StateOf maps an infera.io/agent-status value to its state.
func StateOf(status string) string {
	switch {
	case status == wellknown.AgentStatusSafeMode:
		return StateSafeMode
	case status == wellknown.AgentStatusObserveOnly:
		return StateObserveOnly
	case strings.HasPrefix(status, wellknown.AgentStatusRefusedPrefix):
		return StateRefused
	case strings.HasPrefix(status, wellknown.AgentStatusDegradedPrefix):
		return StateDegraded
	default:
		return StateEnforcing
	}
}

// TierUsage is one tier's share of the assignment.
type TierUsage struct {
	Pods         int
	RequestMilli int64
}

// Pod is one pod whose cgroup files are read at scrape time.
type Pod struct {
	Namespace, Name string
	Tier            wellknown.Tier
	// CPUDir is the pod's cgroup in the cpu hierarchy (v1) or the unified
	// tree (v2); empty while the cgroup is not found.
	CPUDir string
	// CPUAcctDir is the pod's cgroup in the v1 cpuacct hierarchy when it is
	// not co-mounted with cpu; empty otherwise.
	CPUAcctDir string
}

// TierSchedCounters are one tier's events in the built-in tier scheduler.
type TierSchedCounters struct {
	Enqueued, Dispatched, Preempted, StarvationGuard uint64
}

// Scheduler counts scx_layered events since the agent started.
type Scheduler struct {
	Starts, Exits, Ejections int
}

// Cgroup counts the cgroup writer's work since the agent started.
type Cgroup struct {
	Writes, Drift, Errors, Restored, Gone uint64
	// SuppressBudgetMilli is dynamic CPU suppression's budget for low and
	// background pods (0: the lever is off); SuppressActive says it holds.
	SuppressBudgetMilli int64
	SuppressActive      bool
}

// Histogram is a cumulative histogram: Buckets maps an upper bound in
// seconds to the count of observations at or below it.
type Histogram struct {
	Count   uint64
	Sum     float64
	Buckets map[float64]uint64
}

// Snapshot is what the agent enforces and observes right now.
type Snapshot struct {
	Generation int64
	Backend    string
	// Status is the infera.io/agent-status value.
	Status   string
	SafeMode bool
	// CgroupV2 selects the v2 file formats for the per-pod files.
	CgroupV2 bool
	Tiers    map[wellknown.Tier]TierUsage
	Pods     []Pod
	// Scheduler is nil unless the scx backend runs; Cgroup is nil unless
	// the cgroup backend runs (or covers); their counters then read 0.
	Scheduler *Scheduler
	Cgroup    *Cgroup
	// TierSched holds the built-in tier scheduler's per-tier counters;
	// nil unless that backend runs (the series then read 0).
	TierSched map[wellknown.Tier]TierSchedCounters
	// RunQueue holds the per-tier run-queue latency; nil when the eBPF
	// programs are not loaded.
	RunQueue map[wellknown.Tier]Histogram
	// Lint counts current violations per placement invariant; nil when
	// the linter does not run.
	Lint map[string]int
}

// Options configure the metrics.
type Options struct {
	// Snapshot is called once per scrape. Required.
	Snapshot func() Snapshot
	// ProcRoot is /proc, for node PSI; default /proc.
	ProcRoot string
	// selfProcRoot is where the agent's own process is read (tests);
	// /proc when empty.
	selfProcRoot string
}

// Metrics is the agent's metrics: the registry path's registry, the text
// path's families (text.go) and the metrics the agent pushes (apply
// latency); everything else is collected at scrape time. It is a
// prometheus.Gatherer of every family; Handler serves the text format
// from the text path.
type Metrics struct {
	reg        *prometheus.Registry
	apply      prometheus.Histogram
	applyFam   *family
	snap       *snapshotCollector
	proc       *processCollector
	goroutines funcGauge

	// textMu serialises text-path scrapes: they write the families'
	// buffers, sorted by name in fams.
	textMu sync.Mutex
	fams   []*family
	scrape textScrape
}

// New registers every metric on a new registry.
func New(o Options) (*Metrics, error) {
	if o.ProcRoot == "" {
		o.ProcRoot = "/proc"
	}
	applyFam := newFamily("apply_duration_seconds", "Time from a coalesced change to the backend having applied the new assignment.", "histogram")
	m := &Metrics{
		reg:      prometheus.NewRegistry(),
		applyFam: applyFam,
		apply: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: applyFam.name, Help: applyFam.help,
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		snap: newSnapshotCollector(o),
		// The agent itself, always from the real /proc (ProcRoot moves
		// only the node-level files).
		proc: newProcessCollector(cmp.Or(o.selfProcRoot, "/proc")),
		// One gauge rather than the whole Go collector: what a leak shows
		// in first (the soak samples it, docs/benchmarks.md).
		goroutines: funcGauge{f: newFamily("agent_goroutines", "Goroutines in the agent process.", "gauge"),
			fn: func() float64 { return float64(runtime.NumGoroutine()) }},
	}
	for _, c := range []prometheus.Collector{m.apply, m.snap, m.proc, m.goroutines} {
		if err := m.reg.Register(c); err != nil {
			return nil, err
		}
	}
	m.fams = append(append(append(m.fams, applyFam, m.goroutines.f), m.snap.fams...), m.proc.fams...)
	slices.SortFunc(m.fams, func(a, b *family) int { return strings.Compare(a.name, b.name) })
	return m, nil
}

// Registry holds every metric family; Handler(m) serves the same.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Gather gathers every metric family (the registry's).
func (m *Metrics) Gather() ([]*dto.MetricFamily, error) { return m.reg.Gather() }

// ObserveApply records one apply's latency.
func (m *Metrics) ObserveApply(d time.Duration) { m.apply.Observe(d.Seconds()) }

// appendText appends every family in the text format for one snapshot,
// and returns the collection errors (those series are left out).
func (m *Metrics) appendText(b []byte) ([]byte, []error) {
	m.textMu.Lock()
	defer m.textMu.Unlock()
	t := &m.scrape
	t.errs = t.errs[:0]
	s := sink{text: t}
	m.snap.collect(s, m.snap.o.Snapshot(), true)
	m.proc.collect(s)
	m.goroutines.collect(s)
	var h dto.Metric
	if err := m.apply.Write(&h); err != nil {
		s.invalid(m.applyFam, err)
	} else {
		t.appendDTOHistogram(m.applyFam, h.GetHistogram())
	}
	for _, f := range m.fams {
		if len(f.buf) > 0 {
			b = append(b, f.header...)
			b = append(b, f.buf...)
			f.buf = f.buf[:0]
		}
	}
	return b, slices.Clone(t.errs)
}

// snapshotCollector turns a Snapshot (and the pods' cgroup files) into
// metrics at scrape time.
type snapshotCollector struct {
	o Options

	// mu serialises the per-pod file reads of concurrent scrapes; files
	// keeps the pods' cgroup files open between scrapes.
	mu      sync.Mutex
	files   fileReader
	labels  podLabelCache
	samples []podSample
	seen    map[[2]string]bool

	// nodeMu guards nodeFiles: the node's pressure file, kept open.
	nodeMu    sync.Mutex
	nodeFiles keptfile.Files

	pods, request, gen, backend, safeMode                         *family
	schedStarts, schedExits, schedEjections                       *family
	cgWrites, cgDrift, cgErrors, cgRestored, cgGone               *family
	cgSuppressBudget, cgSuppressActive                            *family
	podUsage, podThrottled, podThrottledPeriods, podPressure, psi *family
	runq, lint, truncated                                         *family
	tierSched                                                     *family
	fams                                                          []*family
}

func newSnapshotCollector(o Options) *snapshotCollector {
	pod := []string{"namespace", "pod", "tier"}
	gauge := func(name, help string, labels ...string) *family { return newFamily(name, help, "gauge", labels...) }
	counter := func(name, help string, labels ...string) *family { return newFamily(name, help, "counter", labels...) }
	c := &snapshotCollector{
		o:         o,
		files:     newFileReader(),
		nodeFiles: keptfile.Files{MaxSize: maxCgroupFile},
		pods:      gauge("tier_pods", "Pods on this node per QoS tier.", "tier"),
		request:   gauge("tier_cpu_request_cores", "CPU requested by the pods of each tier, in cores.", "tier"),
		gen:       gauge("config_generation", "Generation of the enforced assignment; rises whenever what is enforced changes."),
		backend:   gauge("backend_state", "1 for the enforcement backend in use and its state (enforcing, degraded, refused, observe-only, safe-mode), 0 for the other states.", "backend", "state"),
		safeMode:  gauge("safe_mode", "1 while the node is in safe mode (stock kernel behaviour)."),

		schedStarts:    counter("scheduler_starts_total", "scx_layered processes started by the agent."),
		schedExits:     counter("scheduler_exits_total", "scx_layered processes that exited."),
		schedEjections: counter("scheduler_ejections_total", "Times the kernel ejected the sched_ext scheduler."),

		cgWrites:         counter("cgroup_writes_total", "Cgroup files written (set, drift re-assertion and restore)."),
		cgDrift:          counter("cgroup_drift_total", "Cgroup values found changed behind the agent's back and re-asserted."),
		cgErrors:         counter("cgroup_write_errors_total", "Failed cgroup reads and writes, gone cgroups excluded."),
		cgRestored:       counter("cgroup_restored_total", "Original cgroup values written back."),
		cgGone:           counter("cgroup_gone_total", "Cgroup operations on cgroups that had vanished (a pod gone mid-write)."),
		cgSuppressBudget: gauge("cgroup_suppression_budget_millicores", "Dynamic CPU suppression: the CPU low and background pods may use together (0 while the lever is off)."),
		cgSuppressActive: gauge("cgroup_suppression_active", "1 while dynamic CPU suppression holds low and background pods under a CFS quota."),

		podUsage:            counter("pod_cpu_usage_seconds_total", "CPU time used by the pod's cgroup.", pod...),
		podThrottled:        counter("pod_cpu_throttled_seconds_total", "Time the pod's cgroup was throttled by its CPU limit.", pod...),
		podThrottledPeriods: counter("pod_cpu_throttled_periods_total", "CFS periods in which the pod's cgroup was throttled.", pod...),
		podPressure:         counter("pod_cpu_pressure_seconds_total", "Time some or all of the pod's tasks were stalled waiting for CPU (cgroup v2 cpu.pressure).", append(pod, "kind")...),
		psi:                 counter("node_cpu_pressure_seconds_total", "Time some or all tasks of the node were stalled waiting for CPU (/proc/pressure/cpu).", "kind"),

		runq:      newFamily("runqueue_latency_seconds", "Time from a task's wakeup to it running on a CPU, per tier of its pod (eBPF).", "histogram", "tier"),
		lint:      gauge("lint_violation", "Current violations of each placement invariant.", "invariant"),
		truncated: gauge("pod_series_truncated", "1 when the node has more pods than one scrape reports per-pod series for."),
		tierSched: counter("tier_scheduler_events_total", "Events of the built-in sched_ext tier scheduler per tier: enqueued, dispatched, preempted (a critical task preempting a lower tier), starvation_guard (a lower tier served because it waited too long).", "tier", "event"),
	}
	c.fams = []*family{c.pods, c.request, c.gen, c.backend, c.safeMode,
		c.schedStarts, c.schedExits, c.schedEjections, c.cgWrites, c.cgDrift, c.cgErrors, c.cgRestored, c.cgGone, c.cgSuppressBudget, c.cgSuppressActive,
		c.podUsage, c.podThrottled, c.podThrottledPeriods, c.podPressure, c.psi, c.runq, c.lint, c.truncated, c.tierSched}
	return c
}

func (c *snapshotCollector) Describe(ch chan<- *prometheus.Desc) { describe(ch, c.fams...) }

func (c *snapshotCollector) Collect(ch chan<- prometheus.Metric) {
	c.collect(sink{ch: ch}, c.o.Snapshot(), false)
}

// collect sends the snapshot's metrics and the pods'. On the text path
// (text) the pods' lines are written straight into their families.
func (c *snapshotCollector) collect(sk sink, s Snapshot, text bool) {
	// Series go out in the order the registry sorts them (by label values,
	// labels by name), so both paths write the same bytes.
	gauge, counter := sk.gauge, sk.counter
	for _, t := range tiersByName {
		gauge(c.request, float64(s.Tiers[t].RequestMilli)/1000, string(t))
	}
	for _, t := range tiersByName {
		gauge(c.pods, float64(s.Tiers[t].Pods), string(t))
	}
	gauge(c.gen, float64(s.Generation))
	state := StateOf(s.Status)
	backend := label(s.Backend)
	for _, st := range statesByName {
		gauge(c.backend, b2f(st == state), backend, st)
	}
	gauge(c.safeMode, b2f(s.SafeMode))
	// The counters exist (at zero) whichever backend runs, so dashboards
	// and alerts need no absent() special cases.
	sc := Scheduler{}
	if s.Scheduler != nil {
		sc = *s.Scheduler
	}
	counter(c.schedStarts, float64(sc.Starts))
	counter(c.schedExits, float64(sc.Exits))
	counter(c.schedEjections, float64(sc.Ejections))
	cg := Cgroup{}
	if s.Cgroup != nil {
		cg = *s.Cgroup
	}
	counter(c.cgWrites, float64(cg.Writes))
	counter(c.cgDrift, float64(cg.Drift))
	counter(c.cgErrors, float64(cg.Errors))
	counter(c.cgRestored, float64(cg.Restored))
	counter(c.cgGone, float64(cg.Gone))
	gauge(c.cgSuppressBudget, float64(cg.SuppressBudgetMilli))
	gauge(c.cgSuppressActive, b2f(cg.SuppressActive))
	// Labelled event, tier: by event first.
	for _, ev := range tierSchedEvents {
		for _, t := range tiersByName {
			counter(c.tierSched, float64(ev.value(s.TierSched[t])), string(t), ev.name)
		}
	}
	gauge(c.truncated, b2f(len(s.Pods) > MaxPods))
	c.mu.Lock()
	samples := c.readPods(s)
	if text {
		c.appendPodLines(samples)
	} else {
		for _, ps := range samples {
			c.collectPod(sk.ch, ps)
		}
	}
	c.mu.Unlock()
	if psi := c.nodePSI(); psi.Available {
		if psi.Full != nil {
			counter(c.psi, float64(psi.Full.TotalUS)/1e6, "full")
		}
		counter(c.psi, float64(psi.Some.TotalUS)/1e6, "some")
	}
	for _, t := range slices.Sorted(maps.Keys(s.RunQueue)) {
		h := s.RunQueue[t]
		sk.histogram(c.runq, h.Count, h.Sum, h.Buckets, string(t))
	}
	for _, inv := range slices.Sorted(maps.Keys(s.Lint)) {
		gauge(c.lint, float64(s.Lint[inv]), label(inv))
	}
}

// podSample is one pod's counters in one scrape.
type podSample struct {
	l  *podLabels
	pc PodCounters
}

// readPods reads the counters of the snapshot's pods (at most MaxPods, one
// per namespace and name) into c.samples, valid until the next call; c.mu
// is held. A pod whose cgroup is not found, or vanished between the
// snapshot and the read, has no series in this scrape.
func (c *snapshotCollector) readPods(s Snapshot) []podSample {
	pods := s.Pods
	if len(pods) > MaxPods {
		pods = pods[:MaxPods]
	}
	if c.seen == nil {
		c.seen = map[[2]string]bool{}
	}
	clear(c.seen)
	c.samples = c.samples[:0]
	c.files.Begin()
	c.labels.begin()
	for _, p := range pods {
		k := [2]string{label(p.Namespace), label(p.Name)}
		if c.seen[k] {
			continue // a recreated pod's predecessor; one series per name
		}
		c.seen[k] = true
		if p.CPUDir == "" {
			continue
		}
		l := c.labels.get(c.podPressure.desc, k[0], k[1], string(p.Tier))
		c.samples = append(c.samples, podSample{l: l, pc: readPodCounters(c.files.read, p, s.CgroupV2)})
	}
	c.files.End()
	c.labels.end()
	return c.samples
}

// collectPod sends one pod's series.
func (c *snapshotCollector) collectPod(ch chan<- prometheus.Metric, ps podSample) {
	l, pc := ps.l, ps.pc
	counter := func(f *family, v float64, labels []*dto.LabelPair) {
		ch <- podCounter{desc: f.desc, labels: labels, value: v}
	}
	if pc.HasUsage {
		counter(c.podUsage, pc.UsageSeconds, l.base)
	}
	if pc.HasThrottled {
		counter(c.podThrottled, pc.ThrottledSeconds, l.base)
	}
	if pc.HasPeriods {
		counter(c.podThrottledPeriods, pc.ThrottledPeriods, l.base)
	}
	if pc.HasPressure {
		counter(c.podPressure, pc.PressureSomeSeconds, l.some)
		if pc.HasPressureFull {
			counter(c.podPressure, pc.PressureFullSeconds, l.full)
		}
	}
}

// PodCounters are a pod's cumulative CPU counters from its cgroup files
// (cgroup v2: cpu.stat and cpu.pressure; v1: cpuacct.usage and cpu.stat).
// Each Has* says whether the kernel gave that value.
type PodCounters struct {
	// Read is true when the file holding the pod's CPU usage could be
	// read (v2 cpu.stat, v1 cpuacct.usage): false means the cgroup is gone.
	Read                                     bool
	UsageSeconds, ThrottledSeconds           float64
	ThrottledPeriods                         float64
	PressureSomeSeconds, PressureFullSeconds float64
	HasUsage, HasThrottled, HasPeriods       bool
	HasPressure, HasPressureFull             bool
}

// ReadPodCounters reads a pod's counters now, opening each file.
func ReadPodCounters(p Pod, v2 bool) PodCounters {
	return readPodCounters(func(dir, file string) ([]byte, bool) {
		b, err := os.ReadFile(filepath.Join(dir, file))
		return b, err == nil
	}, p, v2)
}

// readPodCounters reads a pod's counters with read, whose result may be
// valid only until its next call (fileReader's is).
func readPodCounters(read func(dir, file string) ([]byte, bool), p Pod, v2 bool) PodCounters {
	var pc PodCounters
	stat, statOK := read(p.CPUDir, "cpu.stat")
	if v2 {
		pc.Read = statOK
		pc.UsageSeconds, pc.HasUsage = kv(stat, statOK, "usage_usec")
		pc.UsageSeconds /= 1e6
		pc.ThrottledSeconds, pc.HasThrottled = kv(stat, statOK, "throttled_usec")
		pc.ThrottledSeconds /= 1e6
		pc.ThrottledPeriods, pc.HasPeriods = kv(stat, statOK, "nr_throttled")
		// Through read as well: kept open between scrapes like cpu.stat
		// (whose values are taken above, before the buffer is reused).
		if b, ok := read(p.CPUDir, "cpu.pressure"); ok {
			if psi := observe.ParsePSI("cpu.pressure", b); psi.Available {
				pc.PressureSomeSeconds, pc.HasPressure = float64(psi.Some.TotalUS)/1e6, true
				if psi.Full != nil {
					pc.PressureFullSeconds, pc.HasPressureFull = float64(psi.Full.TotalUS)/1e6, true
				}
			}
		}
		return pc
	}
	// Both values of cpu.stat first: read's buffer may be reused below.
	pc.ThrottledSeconds, pc.HasThrottled = kv(stat, statOK, "throttled_time")
	pc.ThrottledSeconds /= 1e9
	pc.ThrottledPeriods, pc.HasPeriods = kv(stat, statOK, "nr_throttled")
	acct := p.CPUAcctDir
	if acct == "" {
		acct = p.CPUDir
	}
	if b, ok := read(acct, "cpuacct.usage"); ok {
		pc.Read = true
		if v, err := strconv.ParseUint(string(bytes.TrimSpace(b)), 10, 64); err == nil {
			pc.UsageSeconds, pc.HasUsage = float64(v)/1e9, true
		}
	}
	return pc
}

// fileReader reads the pods' small cgroup files at scrape time and keeps
// each open from one scrape to the next (keptfile): at 110 pods a scrape
// reads 220 files. The files of pods no longer scraped are closed at the
// end of the scrape (End). One scrape at a time uses it
// (snapshotCollector.mu).
type fileReader struct{ keptfile.Files }

// maxCgroupFile bounds what is read of one cgroup file (cpu.stat is a few
// hundred bytes).
const maxCgroupFile = 16 << 10

func newFileReader() fileReader { return fileReader{keptfile.Files{MaxSize: maxCgroupFile}} }

// read returns the contents of dir/file, valid until the next read.
func (r *fileReader) read(dir, file string) ([]byte, bool) {
	b, err := r.Read(dir, file)
	return b, err == nil
}

// kv finds key in a flat-keyed cgroup file ("key value" lines).
func kv(b []byte, ok bool, key string) (float64, bool) {
	if !ok {
		return 0, false
	}
	for line := range bytes.Lines(b) {
		k, v, found := bytes.Cut(line, []byte{' '})
		if !found || string(k) != key {
			continue
		}
		f, err := strconv.ParseFloat(string(bytes.TrimSpace(v)), 64)
		return f, err == nil
	}
	return 0, false
}

// nodePSI reads the node's CPU pressure (/proc/pressure/cpu), kept open
// from one scrape to the next.
func (c *snapshotCollector) nodePSI() observe.PSI {
	p := filepath.Join(c.o.ProcRoot, "pressure", "cpu")
	c.nodeMu.Lock()
	defer c.nodeMu.Unlock()
	return observe.ReadPSIWith(c.nodeFiles.ReadPath, p)
}

// label bounds a label value and keeps it valid UTF-8.
func label(s string) string {
	if len(s) > maxLabel {
		s = s[:maxLabel]
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
