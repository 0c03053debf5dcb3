package observe

import (
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/sys/unix"
	"k8s.io/utils/clock"

	"github.com/infera-io/temper/nodeagent/keptfile"
	"github.com/infera-io/temper/nodeagent/lint"
	"github.com/infera-io/temper/nodeagent/procscan"
)

// DefaultInterval is how often the agent should tick: at 110 pods a tick
// costs well under a millisecond of CPU when most pods are idle (see
// docs/observe.md), so 10 s keeps the layer far below 0.1% of a core while
// resolving usage to 1 ms/s.
const DefaultInterval = 10 * time.Second

// Options configure an Observer.
type Options struct {
	// Node is the node's name.
	Node string
	// ProcRoot and SysRoot are where procfs and sysfs are mounted (default
	// /proc and /sys).
	ProcRoot, SysRoot string
	Clock             clock.WithTicker
	Log               logr.Logger
	// Sampler and Lint tune the sampler and the linter; Sampler's
	// ProcRoot and Clock default to the ones above.
	Sampler procscan.Options
	Lint    lint.Options
	// UsageSamples is how many samples of per-pod usage Usage returns
	// (DefaultUsageSamples when 0).
	UsageSamples int
}

// Input is what the agent knows at a tick.
type Input struct {
	// Targets are the node's pods with their processes and tier.
	Targets []procscan.Target
	// Promise is what enforcement promises (see docs/observe.md for how to
	// build it on each backend).
	Promise     lint.Promise
	Enforcement Enforcement
}

// Observer samples, lints and serves snapshots. Tick and Snapshot may be
// called concurrently.
type Observer struct {
	opts    Options
	clock   clock.WithTicker
	machine Machine
	linter  *lint.Linter
	start   time.Time
	pageSz  int64

	tickMu  sync.Mutex // serialises ticks: the sampler is not concurrent
	sampler *procscan.Sampler

	// filesMu guards files: the node's pressure file and the agent's own
	// stat, which every snapshot reads, kept open between snapshots.
	filesMu sync.Mutex
	files   keptfile.Files

	mu       sync.Mutex
	last     Input
	sample   *procscan.Sample
	verdicts []lint.Verdict
	overhead Overhead
	usage    []usageTick // oldest first, at most opts.UsageSamples
}

// New reads the machine shape and returns an Observer.
func New(opts Options) (*Observer, error) {
	if opts.ProcRoot == "" {
		opts.ProcRoot = "/proc"
	}
	if opts.SysRoot == "" {
		opts.SysRoot = "/sys"
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.UsageSamples <= 0 {
		opts.UsageSamples = DefaultUsageSamples
	}
	if opts.Sampler.ProcRoot == "" {
		opts.Sampler.ProcRoot = opts.ProcRoot
	}
	if opts.Sampler.Clock == nil {
		opts.Sampler.Clock = opts.Clock
	}
	m, err := ReadMachine(opts.SysRoot)
	if err != nil {
		return nil, err
	}
	s, err := procscan.New(opts.Sampler)
	if err != nil {
		return nil, err
	}
	l, err := lint.New(opts.Log.WithName("lint"), opts.Clock, opts.Lint)
	if err != nil {
		return nil, err
	}
	return &Observer{opts: opts, clock: opts.Clock, machine: m, linter: l, sampler: s, start: opts.Clock.Now(), pageSz: int64(os.Getpagesize())}, nil
}

// Machine returns the machine shape read at New.
func (o *Observer) Machine() Machine { return o.machine }

// Tick samples the targets' threads and judges them against the promise.
// The agent's observation loop (nodeagent/observation.go) calls it every
// sample interval; the agent serves Snapshot as GET /observe.
func (o *Observer) Tick(in Input) []lint.Verdict {
	o.tickMu.Lock()
	defer o.tickMu.Unlock()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cpu0, t0 := threadCPU(), o.clock.Now()
	s := o.sampler.Sample(in.Targets)
	vs := o.linter.Check(in.Promise, LintMachine(o.machine), s)
	wall, cpu := o.clock.Since(t0), threadCPU()-cpu0

	o.mu.Lock()
	defer o.mu.Unlock()
	o.last, o.sample, o.verdicts = in, s, vs
	o.recordUsage(in.Targets, s)
	o.overhead.Ticks++
	o.overhead.CPUSeconds += cpu.Seconds()
	o.overhead.LastTickSeconds = wall.Seconds()
	o.overhead.LastTickCPUSeconds = cpu.Seconds()
	o.overhead.MaxTickSeconds = max(o.overhead.MaxTickSeconds, wall.Seconds())
	return vs
}

// LintViolations returns the cumulative violations per invariant, for
// infera_lint_violation{invariant}.
func (o *Observer) LintViolations() map[string]uint64 { return o.linter.Violations() }

// Snapshot builds the current snapshot: the last tick's sample and
// verdicts, PSI and the agent's own usage read now.
func (o *Observer) Snapshot() Snapshot {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cpu0 := threadCPU()
	now := o.clock.Now()
	o.filesMu.Lock()
	psi := ReadPSIWith(o.files.ReadPath, filepath.Join(o.opts.ProcRoot, "pressure", "cpu"))
	agentCPU, rss := o.self()
	o.filesMu.Unlock()

	o.mu.Lock()
	defer o.mu.Unlock()
	ov := o.overhead
	ov.ObservedSeconds = now.Sub(o.start).Seconds()
	ov.AgentCPUSeconds, ov.AgentRSSBytes = agentCPU, rss
	snap := Assemble(Parts{
		Node: o.opts.Node, Time: now, Machine: o.machine, Enforcement: o.last.Enforcement,
		Promise: o.last.Promise, Targets: o.last.Targets, Sample: o.sample, Verdicts: o.verdicts,
		PSI: psi,
	})
	// The snapshot's own cost counts as observation.
	o.overhead.CPUSeconds += (threadCPU() - cpu0).Seconds()
	ov.CPUSeconds = o.overhead.CPUSeconds
	if ov.ObservedSeconds > 0 {
		ov.CoreFraction = ov.CPUSeconds / ov.ObservedSeconds
	}
	snap.Overhead = ov
	return snap
}

// self reads the agent's own CPU seconds and RSS from /proc/self/stat;
// o.filesMu is held.
func (o *Observer) self() (cpuSeconds float64, rss int64) {
	b, err := o.files.ReadPath(filepath.Join(o.opts.ProcRoot, "self", "stat"))
	if err != nil {
		return 0, 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3; utime 14, stime 15, rss 24 (pages).
	if len(f) < 22 {
		return 0, 0
	}
	ut, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	pages, _ := strconv.ParseInt(f[21], 10, 64)
	ticks := o.opts.Sampler.ClockTicks
	if ticks <= 0 {
		ticks = 100
	}
	return float64(ut+st) / float64(ticks), pages * o.pageSz
}

// threadCPU is the CPU time of the calling OS thread.
func threadCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}
