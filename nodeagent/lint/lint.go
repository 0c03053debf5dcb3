package lint

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/utils/clock"

	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/nodeagent/cpuset"
	"github.com/infera-io/temper/nodeagent/procscan"
)

// The invariants (temper-docs §10).
const (
	// SMTCollision: a thread of a layer that needs quiet SMT siblings ran
	// on a CPU whose sibling ran a busy thread of a lower tier in the same
	// sample.
	SMTCollision = "smt_collision"
	// ProtectedFallback: a thread of a protected layer with promised CPUs
	// ran outside them.
	ProtectedFallback = "protected_fallback"
	// OpenReserve: Open-layer threads used the reserve CPUs beyond the
	// tolerated headroom.
	OpenReserve = "open_reserve"
	// LayerMismatch: a thread of any other layer ran on a CPU its layer may
	// not use (outside its CPUs, or inside another layer's confined CPUs).
	LayerMismatch = "layer_mismatch"
)

// Invariants lists the invariants in the order verdicts come in.
func Invariants() []string {
	return []string{SMTCollision, ProtectedFallback, OpenReserve, LayerMismatch}
}

// Layer is what enforcement promises about one layer.
type Layer struct {
	Name string
	// Kind is the layer kind (Confined, Grouped, Open), for display only.
	Kind string
	// Tiers are the tiers whose pods the layer holds.
	Tiers []wellknown.Tier
	// CPUs are the CPUs its threads may run on; empty means every CPU of
	// the machine not confined to another layer.
	CPUs cpuset.Set
	// Protected layers' threads must stay on their CPUs: leaving them is a
	// protected_fallback, not a layer_mismatch.
	Protected bool
	// Confined layers own their CPUs: no other layer's thread may run
	// there.
	Confined bool
	// QuietSiblings asks that no lower-tier thread runs on an SMT sibling
	// of a CPU this layer's thread runs on (scx_layered's exclusive).
	QuietSiblings bool
	// Open marks an Open layer: its work must leave the reserve alone.
	Open bool
}

// Promise is what enforcement promises on the node.
type Promise struct {
	Layers []Layer
	// Reserve are the CPUs Open-layer work must leave free (the headroom
	// the always-on system layer relies on); empty when none is promised.
	Reserve cpuset.Set
}

// Machine is the node's CPU topology.
type Machine struct {
	// CPUs are the online CPUs.
	CPUs []int
	// Cores groups CPUs by physical core: the SMT siblings.
	Cores [][]int
}

// Defaults of Options.
const (
	DefaultMinMilli     = 5
	DefaultNoisyMilli   = 100
	DefaultReserveMilli = 100
	DefaultMaxExamples  = 5
	DefaultWarnInterval = 5 * time.Minute
)

// Options tune the judgement; the zero value takes the defaults.
type Options struct {
	// MinMilli is the CPU use (ms/s) below which a thread's last CPU is not
	// taken as evidence of where it ran (default 5).
	MinMilli float64
	// NoisyMilli is the CPU use (ms/s) from which a lower-tier thread on an
	// SMT sibling is noisy (default 100).
	NoisyMilli float64
	// ReserveMilli is the Open-layer use (ms/s per reserve CPU) the reserve
	// tolerates (default 100: a tenth of it).
	ReserveMilli float64
	// MaxExamples bounds the examples per verdict (default 5).
	MaxExamples int
	// WarnInterval is how often, at most, each invariant logs a warning
	// (default 5 min).
	WarnInterval time.Duration
}

func (o Options) withDefaults() Options {
	if o.MinMilli == 0 {
		o.MinMilli = DefaultMinMilli
	}
	if o.NoisyMilli == 0 {
		o.NoisyMilli = DefaultNoisyMilli
	}
	if o.ReserveMilli == 0 {
		o.ReserveMilli = DefaultReserveMilli
	}
	if o.MaxExamples == 0 {
		o.MaxExamples = DefaultMaxExamples
	}
	if o.WarnInterval == 0 {
		o.WarnInterval = DefaultWarnInterval
	}
	return o
}

// Verdict is the judgement on one invariant for one sample.
type Verdict struct {
	Invariant string `json:"invariant"`
	OK        bool   `json:"ok"`
	// Violations counts the offending threads (for smt_collision, the
	// offending pairs).
	Violations int `json:"violations"`
	// Checked counts the threads the invariant applied to.
	Checked  int       `json:"checked"`
	Examples []Example `json:"examples,omitempty"`
	Message  string    `json:"message"`
}

// Example is one offending thread.
type Example struct {
	Pod      string  `json:"pod"`
	Tier     string  `json:"tier"`
	Layer    string  `json:"layer"`
	TID      int     `json:"tid"`
	PID      int     `json:"pid"`
	Comm     string  `json:"comm"`
	CPU      int     `json:"cpu"`
	MilliCPU float64 `json:"milli_cpu"`
	Detail   string  `json:"detail"`
}

// Evaluate judges one sample against the promise: one verdict per
// invariant, in Invariants order. Threads of a tier no layer holds are not
// judged.
func Evaluate(p Promise, m Machine, s *procscan.Sample, opts Options) []Verdict {
	opts = opts.withDefaults()
	e := newEval(p, m, opts)
	var threads []procscan.Thread
	if s != nil {
		threads = s.Threads
	}
	return []Verdict{
		e.smtCollision(threads),
		e.placement(threads, true),
		e.openReserve(threads),
		e.placement(threads, false),
	}
}

type eval struct {
	p       Promise
	opts    Options
	all     cpuset.Set
	layerOf map[wellknown.Tier]int
	allowed []cpuset.Set
	owner   map[int]int // confined CPU -> layer index
	sibling map[int][]int
}

func newEval(p Promise, m Machine, opts Options) *eval {
	e := &eval{p: p, opts: opts, all: cpuset.Set{}, layerOf: map[wellknown.Tier]int{}, owner: map[int]int{}, sibling: map[int][]int{}}
	for _, c := range m.CPUs {
		e.all[c] = true
	}
	for _, core := range m.Cores {
		for _, c := range core {
			for _, s := range core {
				if s != c {
					e.sibling[c] = append(e.sibling[c], s)
				}
			}
		}
	}
	for i, l := range p.Layers {
		for _, t := range l.Tiers {
			if _, dup := e.layerOf[t]; !dup {
				e.layerOf[t] = i
			}
		}
		if l.Confined {
			for c := range l.CPUs {
				if _, taken := e.owner[c]; !taken {
					e.owner[c] = i
				}
			}
		}
	}
	for i, l := range p.Layers {
		a := l.CPUs
		if len(a) == 0 {
			a = e.all
		}
		out := cpuset.Set{}
		for c := range a {
			if o, confined := e.owner[c]; !confined || o == i {
				out[c] = true
			}
		}
		e.allowed = append(e.allowed, out)
	}
	return e
}

// AllowedCPUs returns, per layer of p in order, the CPUs its threads may
// run on: its CPUs (every CPU of m when it has none) minus the CPUs
// confined to another layer.
func AllowedCPUs(p Promise, m Machine) []cpuset.Set {
	return newEval(p, m, Options{}.withDefaults()).allowed
}

// LayerOf returns the index of the layer of p holding tier t: the first
// that lists it.
func LayerOf(p Promise, t wellknown.Tier) (int, bool) {
	for i, l := range p.Layers {
		if slices.Contains(l.Tiers, t) {
			return i, true
		}
	}
	return 0, false
}

func (e *eval) layer(t procscan.Thread) (int, bool) {
	i, ok := e.layerOf[t.Tier]
	return i, ok
}

func (e *eval) example(t procscan.Thread, detail string) Example {
	name := ""
	if i, ok := e.layer(t); ok {
		name = e.p.Layers[i].Name
	}
	return Example{Pod: string(t.Pod), Tier: string(t.Tier), Layer: name, TID: t.TID, PID: t.PID, Comm: t.Comm, CPU: t.CPU, MilliCPU: round(t.MilliCPU), Detail: detail}
}

func round(v float64) float64 { return float64(int64(v*10+0.5)) / 10 }

func (e *eval) add(v *Verdict, ex Example) {
	v.Violations++
	if len(v.Examples) < e.opts.MaxExamples {
		v.Examples = append(v.Examples, ex)
	}
}

// placement judges protected_fallback (protected layers with promised CPUs)
// or layer_mismatch (every other layer).
func (e *eval) placement(threads []procscan.Thread, protected bool) Verdict {
	v := Verdict{Invariant: LayerMismatch}
	if protected {
		v.Invariant = ProtectedFallback
	}
	for _, t := range threads {
		i, ok := e.layer(t)
		if !ok || t.MilliCPU < e.opts.MinMilli {
			continue
		}
		l := e.p.Layers[i]
		if protected != (l.Protected && len(l.CPUs) > 0) {
			continue
		}
		v.Checked++
		if e.allowed[i][t.CPU] {
			continue
		}
		detail := fmt.Sprintf("ran on CPU %d, outside layer %s's CPUs %s", t.CPU, l.Name, e.allowed[i])
		if o, confined := e.owner[t.CPU]; confined && o != i {
			detail = fmt.Sprintf("ran on CPU %d, confined to layer %s", t.CPU, e.p.Layers[o].Name)
		}
		e.add(&v, e.example(t, detail))
	}
	what := "threads of protected layers with promised CPUs"
	if !protected {
		what = "threads of the other layers"
	}
	v.OK = v.Violations == 0
	v.Message = fmt.Sprintf("%d of %d %s ran outside the CPUs their layer may use", v.Violations, v.Checked, what)
	return v
}

func (e *eval) openReserve(threads []procscan.Thread) Verdict {
	v := Verdict{Invariant: OpenReserve, OK: true}
	if len(e.p.Reserve) == 0 {
		v.Message = "no reserve is promised on this node"
		return v
	}
	var used float64
	var offenders []procscan.Thread
	for _, t := range threads {
		i, ok := e.layer(t)
		if !ok || !e.p.Layers[i].Open || t.MilliCPU < e.opts.MinMilli {
			continue
		}
		v.Checked++
		if e.p.Reserve[t.CPU] {
			used += t.MilliCPU
			offenders = append(offenders, t)
		}
	}
	limit := e.opts.ReserveMilli * float64(len(e.p.Reserve))
	if used > limit {
		for _, t := range offenders {
			e.add(&v, e.example(t, fmt.Sprintf("Open-layer thread on reserve CPU %d", t.CPU)))
		}
		v.OK = false
	}
	v.Message = fmt.Sprintf("Open-layer threads used %.0f ms/s of the reserve CPUs %s (tolerated %.0f)", used, e.p.Reserve, limit)
	return v
}

func (e *eval) smtCollision(threads []procscan.Thread) Verdict {
	v := Verdict{Invariant: SMTCollision}
	onCPU := map[int][]procscan.Thread{}
	for _, t := range threads {
		if t.MilliCPU >= e.opts.NoisyMilli {
			onCPU[t.CPU] = append(onCPU[t.CPU], t)
		}
	}
	smt := false
	for _, s := range e.sibling {
		smt = smt || len(s) > 0
	}
	for _, t := range threads {
		i, ok := e.layer(t)
		if !ok || !e.p.Layers[i].QuietSiblings || t.MilliCPU < e.opts.MinMilli {
			continue
		}
		v.Checked++
		for _, s := range e.sibling[t.CPU] {
			for _, u := range onCPU[s] {
				if u.Tier.Below(t.Tier) {
					e.add(&v, e.example(t, fmt.Sprintf("SMT sibling CPU %d ran %s thread %d (%s, pod %s) at %.0f ms/s", s, u.Tier, u.TID, u.Comm, u.Pod, u.MilliCPU)))
				}
			}
		}
	}
	v.OK = v.Violations == 0
	switch {
	case !smt:
		v.Message = "the machine has no SMT siblings"
	default:
		v.Message = fmt.Sprintf("%d collisions of %d threads that need quiet siblings with busy lower-tier threads", v.Violations, v.Checked)
	}
	return v
}

// Linter evaluates samples, counts violations and logs rate-limited
// warnings. It is safe for concurrent use.
type Linter struct {
	log   logr.Logger
	clock clock.PassiveClock
	opts  Options

	mu       sync.Mutex
	total    map[string]uint64
	pending  map[string]int
	lastWarn map[string]time.Time
}

// New returns a Linter logging to log.
func New(log logr.Logger, clk clock.PassiveClock, opts Options) (*Linter, error) {
	if clk == nil {
		return nil, fmt.Errorf("invalid lint options: no clock")
	}
	if opts.MinMilli < 0 || opts.NoisyMilli < 0 || opts.ReserveMilli < 0 || opts.MaxExamples < 0 || opts.WarnInterval < 0 {
		return nil, fmt.Errorf("invalid lint options %+v: negative value", opts)
	}
	return &Linter{log: log, clock: clk, opts: opts.withDefaults(), total: map[string]uint64{}, pending: map[string]int{}, lastWarn: map[string]time.Time{}}, nil
}

// Check evaluates one sample (call it after each procscan sample), adds
// the violations to the counts and warns at most once per invariant per
// WarnInterval, with the count since the last warning.
func (l *Linter) Check(p Promise, m Machine, s *procscan.Sample) []Verdict {
	vs := Evaluate(p, m, s, l.opts)
	now := l.clock.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, v := range vs {
		l.total[v.Invariant] += uint64(v.Violations)
		l.pending[v.Invariant] += v.Violations
		if l.pending[v.Invariant] == 0 {
			continue
		}
		if last, ok := l.lastWarn[v.Invariant]; ok && now.Sub(last) < l.opts.WarnInterval {
			continue
		}
		kv := []any{"invariant", v.Invariant, "violations", l.pending[v.Invariant], "message", v.Message}
		if len(v.Examples) > 0 {
			ex := v.Examples[0]
			kv = append(kv, "pod", ex.Pod, "tier", ex.Tier, "tid", ex.TID, "comm", ex.Comm, "cpu", ex.CPU, "detail", ex.Detail)
		}
		if last, ok := l.lastWarn[v.Invariant]; ok {
			kv = append(kv, "since", last)
		}
		l.log.Info("Placement lint violation", kv...)
		l.lastWarn[v.Invariant] = now
		l.pending[v.Invariant] = 0
	}
	return vs
}

// Violations returns the cumulative violation count per invariant, every
// invariant present: the value of infera_lint_violation{invariant}.
func (l *Linter) Violations() map[string]uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string]uint64, 4)
	for _, inv := range Invariants() {
		out[inv] = l.total[inv]
	}
	return out
}
