package ebpf

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/go-logr/logr"

	"github.com/infera-io/temper/apis/wellknown"
)

// Histogram layout, as in bpf/runqlat.bpf.c.
const (
	histSlots   = 27
	histSumSlot = 31
	histStride  = 32
)

// MaxTierCgroups is how many cgroups SetTiers accepts (the tiers map size,
// MAX_TIER_CGROUPS in bpf/temper.h).
const MaxTierCgroups = 4096

// btfPath is where the kernel exposes its BTF.
const btfPath = "/sys/kernel/btf/vmlinux"

// Options configure Load.
type Options struct {
	// Logger receives load and capture messages.
	Logger logr.Logger
	// Hierarchy says which cgroup ids key the tiers (DetectHierarchy).
	Hierarchy Hierarchy
	// Trace configures Capture; the zero value takes the defaults.
	Trace TraceOptions
}

// Probe is the loaded run-queue latency programs and the trace capture.
// Its methods are safe for concurrent use.
type Probe struct {
	log       logr.Logger
	hierarchy Hierarchy
	trace     TraceOptions

	mu     sync.Mutex // guards objs, links, closed and the hist buffers
	objs   runqlatObjects
	links  []link.Link
	closed bool

	// readHist's buffers, and whether the kernel lacks batch lookups.
	histSums, histPerCPU []uint64
	histKeys             []uint32
	histNoBatch          bool

	capturing     sync.Mutex         // held by the running capture
	cancelCapture context.CancelFunc // ends the running capture; guarded by mu
}

// Load loads and attaches the always-on run-queue latency programs. It
// returns an error wrapping ErrUnavailable, saying why, when this kernel or
// process cannot run them; nothing is left loaded then.
func Load(opts Options) (*Probe, error) {
	if opts.Hierarchy != HierarchyV2 && opts.Hierarchy != HierarchyV1CPU {
		return nil, fmt.Errorf("ebpf options: Hierarchy %d is not v2 or v1-cpu", opts.Hierarchy)
	}
	to, err := opts.Trace.withDefaults()
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(btfPath); err != nil {
		return nil, fmt.Errorf("%w: no kernel BTF at %s (CONFIG_DEBUG_INFO_BTF): %w", ErrUnavailable, btfPath, err)
	}
	spec, err := loadRunqlat()
	if err != nil {
		return nil, fmt.Errorf("failed to parse the embedded runqlat object: %w", err)
	}
	if err := setHierarchy(spec, opts.Hierarchy); err != nil {
		return nil, err
	}
	p := &Probe{log: opts.Logger, hierarchy: opts.Hierarchy, trace: to}
	if err := spec.LoadAndAssign(&p.objs, nil); err != nil {
		return nil, unavailable("load the run-queue latency programs", err)
	}
	for _, prog := range []*ebpf.Program{p.objs.RqWakeup, p.objs.RqWakeupNew, p.objs.RqSwitch} {
		l, err := link.AttachTracing(link.TracingOptions{Program: prog})
		if err != nil {
			return nil, errors.Join(unavailable("attach "+prog.String(), err), p.closeLocked())
		}
		p.links = append(p.links, l)
	}
	p.log.V(1).Info("eBPF run-queue latency programs attached", "hierarchy", opts.Hierarchy.String())
	return p, nil
}

func setHierarchy(spec *ebpf.CollectionSpec, h Hierarchy) error {
	v, ok := spec.Variables["cgroup_v1_cpu"]
	if !ok {
		return errors.New("embedded BPF object has no cgroup_v1_cpu variable")
	}
	val := uint32(0)
	if h == HierarchyV1CPU {
		val = 1
	}
	if err := v.Set(val); err != nil {
		return fmt.Errorf("failed to set cgroup_v1_cpu: %w", err)
	}
	return nil
}

// unavailable wraps a load or attach failure in ErrUnavailable with a reason
// an operator can act on.
func unavailable(what string, err error) error {
	reason := ""
	switch {
	case errors.Is(err, os.ErrPermission):
		reason = " (needs root, or CAP_BPF and CAP_PERFMON)"
	case errors.Is(err, ebpf.ErrNotSupported):
		reason = " (kernel lacks the feature)"
	}
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		return fmt.Errorf("%w: failed to %s: the verifier rejected it: %w", ErrUnavailable, what, err)
	}
	return fmt.Errorf("%w: failed to %s%s: %w", ErrUnavailable, what, reason, err)
}

// Hierarchy returns the cgroup hierarchy the probe keys tiers by.
func (p *Probe) Hierarchy() Hierarchy { return p.hierarchy }

// SetTiers replaces the cgroup → tier mapping with m (cgroup ids from
// CgroupID). Cgroups not in m afterwards count as system. It fails without
// changing anything when m has more than MaxTierCgroups entries or a tier
// that is not a tier.
func (p *Probe) SetTiers(m map[uint64]wellknown.Tier) error {
	if len(m) > MaxTierCgroups {
		return fmt.Errorf("tiers: %d cgroups, the map holds %d: %w", len(m), MaxTierCgroups, ErrTooManyCgroups)
	}
	want := make(map[uint64]uint32, len(m))
	for id, t := range m {
		i, ok := tierIndex(t)
		if !ok {
			return fmt.Errorf("tiers: cgroup %d: unknown tier %q", id, t)
		}
		want[id] = i
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	tiers := p.objs.Tiers
	// Delete what is stale first, so the map never needs more than
	// MaxTierCgroups entries.
	var (
		key   uint64
		val   uint32
		stale []uint64
	)
	it := tiers.Iterate()
	for it.Next(&key, &val) {
		if w, ok := want[key]; !ok || w != val {
			stale = append(stale, key)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("failed to iterate the tiers map: %w", err)
	}
	for _, k := range stale {
		if err := tiers.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("failed to delete cgroup %d from the tiers map: %w", k, err)
		}
	}
	for id, i := range want {
		if err := tiers.Update(id, i, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("failed to set cgroup %d to tier %s in the tiers map: %w", id, tierByIndex[i], err)
		}
	}
	return nil
}

// Histogram is one tier's run-queue latency distribution, in the shape of a
// Prometheus histogram.
type Histogram struct {
	// Bounds are the buckets' upper bounds in seconds, ascending; the
	// implicit last bucket is +Inf.
	Bounds []float64
	// Cumulative[i] counts the samples ≤ Bounds[i].
	Cumulative []uint64
	// Count counts every sample (the +Inf bucket).
	Count uint64
	// SumSeconds is the sum of the samples.
	SumSeconds float64
}

// Buckets returns the cumulative counts keyed by upper bound, as
// prometheus.MustNewConstHistogram takes them.
func (h Histogram) Buckets() map[float64]uint64 {
	b := make(map[float64]uint64, len(h.Bounds))
	for i, le := range h.Bounds {
		b[le] = h.Cumulative[i]
	}
	return b
}

// histBounds are the finite upper bounds: 2^k µs for slots 0..histSlots-2.
func histBounds() []float64 {
	b := make([]float64, histSlots-1)
	for k := range b {
		b[k] = math.Ldexp(1e-6, k)
	}
	return b
}

// Histograms returns every tier's histogram since Load.
func (p *Probe) Histograms() (map[wellknown.Tier]Histogram, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrClosed
	}
	slots, err := p.readHist()
	if err != nil {
		return nil, err
	}
	out := make(map[wellknown.Tier]Histogram, nrTiers)
	for ti, tier := range tierByIndex {
		h := Histogram{Bounds: histBounds(), Cumulative: make([]uint64, histSlots-1)}
		var running uint64
		for slot := range histSlots {
			running += slots[ti*histStride+slot]
			if slot < histSlots-1 {
				h.Cumulative[slot] = running
			}
		}
		h.Count = running
		h.SumSeconds = time.Duration(slots[ti*histStride+histSumSlot]).Seconds()
		out[tier] = h
	}
	return out, nil
}

// readHist returns every entry of the histogram map summed over the CPUs,
// valid until the next call; p.mu is held. One batch lookup reads the
// whole map (a scrape used to make 140 lookups, a tenth of its CPU);
// kernels without batch operations on arrays (before 5.6) are read entry
// by entry.
func (p *Probe) readHist() ([]uint64, error) {
	const n = nrTiers * histStride
	if p.histSums == nil {
		cpus, err := ebpf.PossibleCPU()
		if err != nil {
			return nil, fmt.Errorf("failed to count the possible CPUs: %w", err)
		}
		p.histSums, p.histKeys, p.histPerCPU = make([]uint64, n), make([]uint32, n), make([]uint64, n*cpus)
	}
	clear(p.histSums)
	if !p.histNoBatch {
		var cursor ebpf.MapBatchCursor
		got, err := p.objs.Hist.BatchLookup(&cursor, p.histKeys, p.histPerCPU, nil)
		switch {
		case (err == nil || errors.Is(err, ebpf.ErrKeyNotExist)) && got == n:
			cpus := len(p.histPerCPU) / n
			for i, k := range p.histKeys {
				if int(k) >= n {
					return nil, fmt.Errorf("histogram batch lookup returned key %d of a %d-entry map", k, n)
				}
				for _, v := range p.histPerCPU[i*cpus : (i+1)*cpus] {
					p.histSums[k] += v
				}
			}
			return p.histSums, nil
		case errors.Is(err, ebpf.ErrNotSupported):
			p.histNoBatch = true
		case err != nil:
			return nil, fmt.Errorf("failed to read the histograms: %w", err)
		default:
			return nil, fmt.Errorf("histogram batch lookup returned %d of %d entries", got, n)
		}
	}
	var percpu []uint64
	for idx := range uint32(n) {
		if err := p.objs.Hist.Lookup(idx, &percpu); err != nil {
			return nil, fmt.Errorf("failed to read histogram slot %d: %w", idx, err)
		}
		for _, v := range percpu {
			p.histSums[idx] += v
		}
	}
	return p.histSums, nil
}

// ProgramStats is the kernel's accounting of one BPF program, collected
// while kernel.bpf_stats_enabled is on (EnableStats).
type ProgramStats struct {
	Name     string
	RunCount uint64
	RunTime  time.Duration
}

// Stats returns the run counts and run times of the always-on programs.
func (p *Probe) Stats() ([]ProgramStats, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, ErrClosed
	}
	var out []ProgramStats
	for name, prog := range map[string]*ebpf.Program{
		"rq_wakeup": p.objs.RqWakeup, "rq_wakeup_new": p.objs.RqWakeupNew, "rq_switch": p.objs.RqSwitch,
	} {
		s, err := prog.Stats()
		if err != nil {
			return nil, fmt.Errorf("failed to read the stats of program %s: %w", name, err)
		}
		out = append(out, ProgramStats{Name: name, RunCount: s.RunCount, RunTime: s.Runtime})
	}
	return out, nil
}

// Close ends a running capture (which still writes its file), then detaches
// and unloads the programs.
func (p *Probe) Close() error {
	p.mu.Lock()
	if p.cancelCapture != nil {
		p.cancelCapture()
	}
	p.mu.Unlock()
	p.capturing.Lock()
	defer p.capturing.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closeLocked()
}

func (p *Probe) closeLocked() error {
	if p.closed {
		return nil
	}
	p.closed = true
	var errs []error
	for _, l := range p.links {
		errs = append(errs, l.Close())
	}
	p.links = nil
	errs = append(errs, p.objs.Close())
	return errors.Join(errs...)
}
