package cgroup

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/infera-io/temper/nodeagent/cpuset"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"

	configv1alpha1 "github.com/infera-io/temper/apis/config/v1alpha1"
	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/nodeagent/cgroupfs"
	"github.com/infera-io/temper/nodeagent/cgroupfs/writer"
)

// DefaultCPUManagerStateFile is where the kubelet keeps its CPU manager
// state, including the policy name.
const DefaultCPUManagerStateFile = "/var/lib/kubelet/cpu_manager_state"

// Levers tune the knobs per tier. Zero values mean the defaults.
type Levers struct {
	// LowWeightDivisor divides the kubelet's weight of low pods; default 4.
	LowWeightDivisor int64
	// HighWeightFactor and CriticalWeightFactor multiply the kubelet's
	// weight of high and critical pods; defaults 2 and 4.
	HighWeightFactor, CriticalWeightFactor int64
	// NoBackgroundIdle gives background pods the minimal weight instead of
	// cpu.idle=1.
	NoBackgroundIdle bool
	// CriticalSlice is the EEVDF custom slice (sched_setattr's
	// sched_runtime, Linux ≥ 6.12) given to every thread of critical pods
	// (lever 1 of issue 16): 0 means DefaultCriticalSlice, a negative value
	// leaves the slice alone. The kernel propagates the shortest queued
	// slice up to the group entities, so the pod's entity wins wake-up
	// preemption at the kubepods level against the whole burstable group,
	// where weights and cpu.idle of pods are invisible.
	CriticalSlice time.Duration
	// HighSlice is the same for high pods; 0 (the default) or negative
	// leaves their slice alone.
	HighSlice time.Duration
	// BackgroundSchedIdle moves every thread of background pods to the
	// SCHED_IDLE policy (lever 2 on nodes where background pods are
	// Burstable): a running SCHED_IDLE thread is preempted at once by any
	// waking non-idle thread, whatever cgroups they are in.
	BackgroundSchedIdle Switch
	// BestEffortIdle sets cpu.idle=1 on the kubelet's besteffort QoS
	// cgroup while every BestEffort pod with a cgroup is background (lever
	// 2 of issue 16): the whole class then yields at the kubepods level.
	// Off by default: the kernel rejects weight writes to an idle group,
	// and the kubelet writes the besteffort weight on every QoS update
	// (docs/design.md).
	BestEffortIdle Switch
	// Suppress turns on dynamic CPU suppression (lever 3 of issue 16): a
	// CFS quota on low and background pods sized every tick (Suppress)
	// from the node's capacity minus what critical and high pods use
	// minus SuppressHeadroomMilli, moved by at most SuppressStepMilli per
	// tick and never below SuppressFloorMilli per pod. Zero values of the
	// three mean the Default* constants.
	Suppress                                                     Switch
	SuppressHeadroomMilli, SuppressFloorMilli, SuppressStepMilli int64
}

// Switch is an on/off lever whose zero value means the default.
type Switch string

const (
	SwitchDefault Switch = ""
	SwitchOn      Switch = "on"
	SwitchOff     Switch = "off"
)

func (s Switch) on(def bool) bool {
	switch s {
	case SwitchOn:
		return true
	case SwitchOff:
		return false
	}
	return def
}

// Defaults of the thread levers, chosen by the isolation bench
// (docs/benchmarks.md, issue 16); the agent config's defaults are the one
// place they are written.
const (
	DefaultCriticalSlice       = configv1alpha1.DefaultCriticalSlice
	defaultBackgroundSchedIdle = false
)

// DefaultLevers are the Levers a zero value stands for, with every field
// filled in.
func DefaultLevers() Levers { return Levers{}.withDefaults() }

func (l Levers) withDefaults() Levers {
	if l.LowWeightDivisor <= 0 {
		l.LowWeightDivisor = configv1alpha1.DefaultLowWeightDivisor
	}
	if l.HighWeightFactor <= 0 {
		l.HighWeightFactor = configv1alpha1.DefaultHighWeightFactor
	}
	if l.CriticalWeightFactor <= 0 {
		l.CriticalWeightFactor = configv1alpha1.DefaultCriticalWeightFactor
	}
	if l.CriticalSlice == 0 {
		l.CriticalSlice = DefaultCriticalSlice
	}
	if l.SuppressHeadroomMilli <= 0 {
		l.SuppressHeadroomMilli = DefaultSuppressHeadroomMilli
	}
	if l.SuppressFloorMilli <= 0 {
		l.SuppressFloorMilli = DefaultSuppressFloorMilli
	}
	if l.SuppressStepMilli <= 0 {
		l.SuppressStepMilli = DefaultSuppressStepMilli
	}
	return l
}

// Options are the dependencies of a Backend.
type Options struct {
	Layout *cgroupfs.Layout
	Writer *writer.Writer
	Levers Levers
	// CPUManagerStateFile is read to detect the kubelet's static CPU
	// manager; default DefaultCPUManagerStateFile. A missing file means the
	// default policy (none).
	CPUManagerStateFile string
	Log                 logr.Logger
}

// Pod is one pod to enforce.
type Pod struct {
	// Name is namespace/name, for reports.
	Name string
	Tier wellknown.Tier
	// Cgroup is the pod's cgroup (cgroupfs.Layout.FindPod); nil while it does not
	// exist yet.
	Cgroup *cgroupfs.Pod
	// RequestMilli is the pod's effective CPU request (tiering.PodCPU),
	// from which the kubelet sized the pod's cgroup; RequestKnown says it
	// was computed. The backend derives the kubelet's value from it when
	// the writer does not know a file's original (a set-aside state file).
	RequestMilli int64
	RequestKnown bool
}

// Plan is what to enforce on the node: the pods with their tiers and the
// critical fence. (nodeagent.Assignment is one pod's tier; a Plan is the
// whole node as this backend sees it.)
type Plan struct {
	Pods []Pod
	// FenceCPUs are the CPUs reserved for critical pods, sized by the
	// caller; empty means no fence.
	FenceCPUs cpuset.Set
	// NodeCPUs are every CPU pods may use (the cpuset of the kubelet's pod
	// root). Required with FenceCPUs.
	NodeCPUs cpuset.Set
	// CapacityMilli is the CPU pods may use, in millicores, for dynamic
	// suppression; 0 turns it off.
	CapacityMilli int64
}

// Report says what an Apply did.
type Report struct {
	// Enforced pods had every knob of their tier applied.
	Enforced int
	// Pending pods have no cgroup yet; apply again later.
	Pending []string
	// Fenced are the CPUs critical pods are fenced on, empty when none.
	Fenced cpuset.Set
	// Notes are operator-facing remarks: why there is no fence, which pods
	// lack cpu.idle.
	Notes []string
	// Changed reports whether any cgroup file was written.
	Changed bool
	// Restored counts originals written back because no pod asks for their
	// file any more.
	Restored int
	// SlicedThreads and IdleThreads count the threads holding a custom
	// slice and SCHED_IDLE from this backend after the apply.
	SlicedThreads, IdleThreads int
	// NoSlice is why critical threads keep the default slice: the kernel
	// takes no custom EEVDF slice. "" when it does or no lever asks.
	NoSlice string
}

// Backend enforces tiers with cgroup knobs. It is not safe for concurrent
// use; the agent applies from one goroutine.
type Backend struct {
	layout *cgroupfs.Layout
	w      *writer.Writer
	levers Levers
	log    logr.Logger
	// fenceBlocked is why cpusets are not ours to write, "" when they are.
	fenceBlocked string
	// pods is what was last enforced, by pod UID.
	pods map[string]enforced
	// last is the last assignment applied, re-applied after a rebase.
	last *Plan
	// threads sets the thread levers; nil until a lever first needs it.
	threads *threadSetter
	// noSlice is why the kernel takes no custom EEVDF slice, "" when it
	// does or was not asked yet.
	noSlice string
	// probeSlice finds the kernel's default slice (probeSlice; tests
	// replace it).
	probeSlice func() (uint64, error)
	// sup is dynamic suppression's state; nil until its first tick.
	sup *suppressor
}

type enforced struct {
	tier  wellknown.Tier
	fence string
	dirs  []string // every cgroup directory the pod's knobs were written in
}

// New creates the backend. It fails when the node has no cpu controller
// for pods (the agent then reports observe-only with the reason).
func New(opts Options) (*Backend, error) {
	if opts.Layout == nil || opts.Writer == nil {
		return nil, errors.New("failed to create the cgroup backend: a layout and a writer are required")
	}
	if _, ok := opts.Layout.Hierarchies[cgroupfs.CPU]; !ok {
		return nil, fmt.Errorf("failed to create the cgroup backend: no cpu controller in the %s tree at %s", opts.Layout.Version, opts.Layout.Root)
	}
	if opts.CPUManagerStateFile == "" {
		opts.CPUManagerStateFile = DefaultCPUManagerStateFile
	}
	b := &Backend{layout: opts.Layout, w: opts.Writer, levers: opts.Levers.withDefaults(), log: opts.Log, pods: map[string]enforced{},
		probeSlice: probeSlice}
	static, err := staticCPUManager(opts.CPUManagerStateFile)
	switch {
	case err != nil:
		b.fenceBlocked = fmt.Sprintf("cannot tell the kubelet's CPU manager policy (%v); not fencing", err)
	case static:
		b.fenceBlocked = "the kubelet's static CPU manager owns the cpusets; not fencing"
	}
	if _, ok := opts.Layout.Hierarchies[cgroupfs.CPUSet]; !ok && b.fenceBlocked == "" {
		b.fenceBlocked = "no cpuset controller for pods; not fencing"
	}
	return b, nil
}

// staticCPUManager reads the kubelet's CPU manager state file.
func staticCPUManager(p string) (bool, error) {
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("failed to read %s: %w", p, err)
	}
	var st struct {
		PolicyName string `json:"policyName"`
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return false, fmt.Errorf("failed to parse %s: %w", p, err)
	}
	return st.PolicyName == "static", nil
}

// Apply enforces a plan. Pods without a cgroup are reported
// pending. A failure on one pod does not stop the others; the failures come
// back joined in one error.
func (b *Backend) Apply(a Plan) (Report, error) {
	b.last = &a
	var rep Report
	before := b.w.Stats().Writes
	fence, shared, note := b.fence(a)
	if note != "" {
		rep.Notes = append(rep.Notes, note)
	}
	rep.Fenced = fence
	var errs []error
	seen := map[string]bool{}
	var noIdle []string
	for _, p := range a.Pods {
		if p.Cgroup == nil {
			rep.Pending = append(rep.Pending, p.Name)
			continue
		}
		uid := p.Cgroup.UID
		seen[uid] = true
		want := enforced{tier: p.Tier, dirs: podDirs(p.Cgroup)}
		if fence != nil {
			want.fence = fence.String()
		}
		if prev, ok := b.pods[uid]; ok && needsHandBack(prev, want) {
			if err := b.handBack(prev); err != nil {
				errs = append(errs, fmt.Errorf("failed to hand back pod %s: %w", p.Name, err))
				continue
			}
		}
		ops, idleMissing, err := b.ops(p, fence, shared)
		if idleMissing {
			noIdle = append(noIdle, p.Name)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("failed to enforce tier %s on pod %s: %w", p.Tier, p.Name, err))
			continue
		}
		ok := true
		for _, r := range b.w.Apply(ops...) {
			if r.Err != nil && !errors.Is(r.Err, writer.ErrGone) {
				errs = append(errs, fmt.Errorf("failed to enforce tier %s on pod %s: %w", p.Tier, p.Name, r.Err))
				ok = false
			}
		}
		b.pods[uid] = want
		if ok {
			rep.Enforced++
		}
	}
	for uid, prev := range b.pods {
		if !seen[uid] {
			if err := b.handBack(prev); err != nil {
				errs = append(errs, fmt.Errorf("failed to hand back departed pod %s: %w", uid, err))
			}
			delete(b.pods, uid)
		}
	}
	if note, err := b.qosIdle(a); err != nil {
		errs = append(errs, err)
	} else if note != "" {
		rep.Notes = append(rep.Notes, note)
	}
	// What no pod asks for any more goes back: values a previous agent
	// run set (adopted from the state file) on pods that left a tier or the
	// node while no agent was watching.
	if res, err := b.w.RestoreUndesired(); err != nil {
		errs = append(errs, fmt.Errorf("failed to restore values no pod asks for any more: %w", err))
	} else {
		rep.Restored = res.Restored
	}
	if err := b.applyThreads(a, &rep); err != nil {
		errs = append(errs, err)
	}
	if len(noIdle) > 0 {
		sort.Strings(noIdle)
		rep.Notes = append(rep.Notes, fmt.Sprintf("no cpu.idle for %s; gave them the minimal weight", strings.Join(noIdle, ", ")))
	}
	rep.Changed = b.w.Stats().Writes != before
	return rep, errors.Join(errs...)
}

// fence works out the fenced and shared CPU sets, or why there is none.
func (b *Backend) fence(a Plan) (fence, shared cpuset.Set, note string) {
	if len(a.FenceCPUs) == 0 {
		return nil, nil, ""
	}
	if b.fenceBlocked != "" {
		return nil, nil, b.fenceBlocked
	}
	f, node := a.FenceCPUs, a.NodeCPUs
	if !f.SubsetOf(node) {
		return nil, nil, fmt.Sprintf("not fencing: fence %q is not a non-empty subset of the node's CPUs %q", f, node)
	}
	shared = node.Minus(f)
	if len(shared) == 0 {
		return nil, nil, fmt.Sprintf("not fencing: fence %q leaves no CPU for the other pods", f)
	}
	return f, shared, ""
}

// podDirs lists the pod's and its containers' directories in every
// hierarchy.
func podDirs(p *cgroupfs.Pod) []string {
	var dirs []string
	for _, d := range p.Dirs {
		dirs = append(dirs, d)
	}
	for _, c := range p.Containers {
		for _, d := range c.Dirs {
			dirs = append(dirs, d)
		}
	}
	sort.Strings(dirs)
	return dirs
}

// needsHandBack says whether a pod enforced as prev must be handed back
// before it is enforced as want: when its tier changes (the files written
// differ), and when a fence appears or goes (the cpuset files start or stop
// being asserted). A fence that only moves, as it does when the critical
// pods' requests grow past a whole CPU, is written over in place: the
// cpuset ops step from the current value to the new one, the originals
// stay recorded, and nothing is persisted. Handing every pod back for it
// (each a restore and a fresh record of its originals, every record a
// rewrite of the whole state file) made one reconcile of 100 pods take
// 130 ms.
func needsHandBack(prev, want enforced) bool {
	if prev.tier != want.tier {
		return true
	}
	return prev.fence != want.fence && (prev.fence == "" || want.fence == "")
}

// handBack restores the originals of a pod's cgroups (a vanished pod is
// simply forgotten by the writer).
func (b *Backend) handBack(e enforced) error {
	var errs []error
	for _, d := range e.dirs {
		if _, err := b.w.Restore(d); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// weightFile and its bounds on this cgroup version.
func (b *Backend) weight() (file string, lo, hi int64) {
	if b.layout.Version == cgroupfs.V2 {
		return "cpu.weight", 1, 10000
	}
	return "cpu.shares", 2, 262144
}

// ops lists the writes of one pod's tier. idleMissing reports a
// background pod on a kernel without cpu.idle.
func (b *Backend) ops(p Pod, fence, shared cpuset.Set) (ops []writer.Op, idleMissing bool, err error) {
	cpuDir, ok := p.Cgroup.Dirs[cgroupfs.CPU]
	if !ok {
		return nil, false, fmt.Errorf("pod %s has no cpu cgroup", p.Name)
	}
	file, lo, hi := b.weight()
	reason := "tier " + string(p.Tier)
	// found is the value the kubelet gave the pod's weight: the recorded
	// original, or, when the writer cannot tell it (a state file of this
	// boot was set aside), the kubelet's formula applied to the pod's
	// request, recorded as a derived original. Never the current value of
	// a file an earlier agent may have scaled: that would compound.
	found := func() (int64, error) {
		if _, err := b.w.Rebase(cpuDir, file); err != nil {
			return 0, err
		}
		v, err := b.w.Found(cpuDir, file)
		if errors.Is(err, writer.ErrOriginalUnknown) {
			stock, derr := b.stockWeight(p, cpuDir, file)
			if derr != nil {
				return 0, fmt.Errorf("not changing %s of pod %s: %w; %w", file, p.Name, err, derr)
			}
			if derr := b.w.Derive(cpuDir, file, strconv.FormatInt(stock, 10)); derr != nil {
				return 0, derr
			}
			return stock, nil
		}
		if err != nil {
			return 0, err
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("failed to parse %s of %s: %w", file, cpuDir, err)
		}
		return n, nil
	}
	scaled := func(mul, div int64) (writer.Op, error) {
		n, err := found()
		if err != nil {
			return writer.Op{}, err
		}
		n = min(max(n*mul/div, lo), hi)
		return writer.Op{Path: cpuDir, File: file, Value: strconv.FormatInt(n, 10), Reason: reason, Rebase: true}, nil
	}
	var op writer.Op
	switch p.Tier {
	case wellknown.TierBackground:
		if b.w.StateReport().OriginalsUnknown {
			// cpu.idle=1 rewrites the weight: record the kubelet's weight
			// and cpu.idle=0 before anything reads them as originals.
			if _, err := found(); err != nil {
				return nil, false, err
			}
			if _, statErr := os.Stat(filepath.Join(cpuDir, "cpu.idle")); statErr == nil {
				if err := b.w.Derive(cpuDir, "cpu.idle", "0"); err != nil {
					return nil, false, err
				}
			}
		}
		if !b.levers.NoBackgroundIdle {
			if _, statErr := os.Stat(filepath.Join(cpuDir, "cpu.idle")); statErr == nil {
				ops = append(ops, writer.Op{Path: cpuDir, File: "cpu.idle", Value: "1", Reason: reason + ": idle class"})
				break
			}
			idleMissing = true
		}
		ops = append(ops, writer.Op{Path: cpuDir, File: file, Value: strconv.FormatInt(lo, 10), Reason: reason + ": minimal weight"})
	case wellknown.TierLow:
		op, err = scaled(1, b.levers.LowWeightDivisor)
		ops = append(ops, op)
	case wellknown.TierHigh:
		op, err = scaled(b.levers.HighWeightFactor, 1)
		ops = append(ops, op)
	case wellknown.TierCritical:
		op, err = scaled(b.levers.CriticalWeightFactor, 1)
		ops = append(ops, op)
	case wellknown.TierNormal, wellknown.TierSystem:
	default:
		return nil, false, fmt.Errorf("unknown tier %q", p.Tier)
	}
	if err != nil {
		return nil, idleMissing, err
	}
	if fence != nil {
		target := shared
		if p.Tier == wellknown.TierCritical {
			target = fence
		}
		cops, err := b.cpusetOps(p, target, fence.Union(shared), reason)
		if err != nil {
			return nil, idleMissing, err
		}
		ops = append(ops, cops...)
	}
	return ops, idleMissing, nil
}

// stockWeight is the weight the kubelet gives the pod's cgroup: cpu.shares
// from the pod's CPU request with the kubelet's MilliCPUToShares (minimum
// 2, maximum 262144); on v2 cpu.weight from those shares with the runtime's
// conversion. Runtimes changed that conversion (runc's linear formula, then
// a quadratic one), so on v2 the value is trusted only when both formulas
// agree or the file holds one of them (then it is not scaled).
func (b *Backend) stockWeight(p Pod, dir, file string) (int64, error) {
	if !p.RequestKnown {
		return 0, errors.New("the pod's CPU request is not known to derive the kubelet's value")
	}
	shares := milliCPUToShares(p.RequestMilli)
	if b.layout.Version != cgroupfs.V2 {
		return shares, nil
	}
	lin, quad := sharesToWeightLinear(shares), sharesToWeightQuadratic(shares)
	if lin == quad {
		return lin, nil
	}
	cur, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		return 0, fmt.Errorf("failed to read %s: %w", filepath.Join(dir, file), err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(cur)), 10, 64)
	if err == nil && (n == lin || n == quad) {
		return n, nil
	}
	return 0, fmt.Errorf("the runtime's shares-to-weight formula cannot be told (%d shares give %d or %d, the file holds %s)", shares, lin, quad, strings.TrimSpace(string(cur)))
}

// milliCPUToShares is the kubelet's (pkg/kubelet/cm MilliCPUToShares).
func milliCPUToShares(milli int64) int64 {
	const minShares, maxShares, sharesPerCPU, milliPerCPU = 2, 262144, 1024, 1000
	if milli <= 0 {
		return minShares
	}
	s := milli * sharesPerCPU / milliPerCPU
	return min(max(s, minShares), maxShares)
}

// sharesToWeightLinear is runc's conversion up to 1.3.1 (and crun's).
func sharesToWeightLinear(shares int64) int64 {
	if shares == 0 {
		return 0
	}
	return 1 + ((shares-2)*9999)/262142
}

// sharesToWeightQuadratic is runc's conversion from 1.3.2/1.4: a
// quadratic in log2(shares) through (2, 1), (1024, 100), (262144, 10000).
func sharesToWeightQuadratic(shares int64) int64 {
	switch {
	case shares == 0:
		return 0
	case shares <= 2:
		return 1
	case shares >= 262144:
		return 10000
	}
	l := math.Log2(float64(shares))
	exp := (l*l+125*l)/612.0 - 7.0/34.0
	return int64(math.Ceil(math.Pow(10, exp)))
}

// cpusetOps moves a pod and its containers to target. On v1 a child's
// cpuset must stay within its parent's and a parent cannot shrink below a
// child's, so the pod is first widened to hold both the old and the new
// CPUs, then the containers move, then the pod narrows.
func (b *Backend) cpusetOps(p Pod, target, node cpuset.Set, reason string) ([]writer.Op, error) {
	podDir, ok := p.Cgroup.Dirs[cgroupfs.CPUSet]
	if !ok {
		return nil, fmt.Errorf("pod %s has no cpuset cgroup", p.Name)
	}
	if b.w.StateReport().OriginalsUnknown {
		// Outside the static CPU manager (which blocks fencing) the kubelet
		// leaves pods and containers every CPU of the pod root.
		dirs := []string{podDir}
		for _, c := range p.Cgroup.Containers {
			if d, ok := c.Dirs[cgroupfs.CPUSet]; ok {
				dirs = append(dirs, d)
			}
		}
		for _, d := range dirs {
			if err := b.w.Derive(d, "cpuset.cpus", node.String()); err != nil {
				return nil, err
			}
		}
	}
	want := target.String()
	var ops []writer.Op
	if b.layout.Version == cgroupfs.V1 {
		// The current value (reading is not writing), not the original: a pod
		// already on target needs no transition.
		cur, err := os.ReadFile(filepath.Join(podDir, "cpuset.cpus"))
		if err != nil {
			return nil, fmt.Errorf("failed to read the cpuset of pod %s: %w", p.Name, err)
		}
		curSet, err := cpuset.Parse(string(cur))
		if err != nil {
			return nil, err
		}
		if !curSet.SubsetOf(target) && !target.SubsetOf(curSet) {
			ops = append(ops, writer.Op{Path: podDir, File: "cpuset.cpus", Value: curSet.Union(target).String(), Reason: reason + ": cpuset (transition)"})
		} else if curSet.SubsetOf(target) {
			// Widening: the pod first.
			ops = append(ops, writer.Op{Path: podDir, File: "cpuset.cpus", Value: want, Reason: reason + ": cpuset"})
		}
	}
	for _, c := range p.Cgroup.Containers {
		if d, ok := c.Dirs[cgroupfs.CPUSet]; ok {
			ops = append(ops, writer.Op{Path: d, File: "cpuset.cpus", Value: want, Reason: reason + ": cpuset"})
		}
	}
	// Narrowing (or after the transition), and always on v2.
	ops = append(ops, writer.Op{Path: podDir, File: "cpuset.cpus", Value: want, Reason: reason + ": cpuset"})
	return ops, nil
}

// Reconcile re-asserts every value against drift (call it on a timer).
// Weights the kubelet changed to a new value (an in-place resize) are not
// reverted: they are the pods' new baselines, and the last assignment is
// applied again to scale them.
func (b *Backend) Reconcile() (writer.ReassertResult, error) {
	res, err := b.w.Reassert()
	if res.Rebased > 0 && b.last != nil {
		if _, aerr := b.Apply(*b.last); aerr != nil {
			err = errors.Join(err, aerr)
		}
	} else if b.last != nil {
		// Threads started since the last apply (a process exec'd into the
		// pod) get the thread levers now; new threads of a sliced thread
		// inherit its slice by themselves.
		var rep Report
		if terr := b.applyThreads(*b.last, &rep); terr != nil {
			err = errors.Join(err, terr)
		}
	}
	return res, err
}

// StandDown restores every original value (safe mode, a clean stop,
// uninstall) and forgets what was enforced.
func (b *Backend) StandDown() (writer.RestoreResult, error) {
	clear(b.pods)
	b.last = nil
	b.sup = nil
	var terr error
	if b.threads != nil {
		_, terr = b.threads.restoreAll()
	}
	res, err := b.w.RestoreAll()
	return res, errors.Join(err, terr)
}

// qosIdle asserts cpu.idle=1 on the besteffort QoS cgroup while the lever
// is on and every BestEffort pod is background, and lets it go otherwise
// (the caller's RestoreUndesired then writes back cpu.idle and the weight
// the kernel reset with it). The weight itself stays the kubelet's.
func (b *Backend) qosIdle(a Plan) (note string, err error) {
	rel, err := b.layout.QOSRelPath(corev1.PodQOSBestEffort)
	if err != nil {
		return "", err
	}
	dir, ok := b.layout.Dir(cgroupfs.CPU, rel)
	if !ok {
		return "", nil
	}
	want := b.levers.BestEffortIdle.on(false)
	if want {
		var bg, other int
		for _, p := range a.Pods {
			if p.Cgroup == nil || p.Cgroup.QOSClass != corev1.PodQOSBestEffort {
				continue
			}
			if p.Tier == wellknown.TierBackground {
				bg++
			} else {
				other++
			}
		}
		switch {
		case other > 0:
			want, note = false, fmt.Sprintf("besteffort QoS cgroup not idle: %d BestEffort pods are not background", other)
		case bg == 0:
			want = false
		}
		if _, statErr := os.Stat(filepath.Join(dir, "cpu.idle")); want && statErr != nil {
			want, note = false, "besteffort QoS cgroup not idle: the kernel has no cpu.idle"
		}
	}
	if !want {
		b.w.Release(dir, "cpu.idle")
		return note, nil
	}
	for _, r := range b.w.Apply(writer.Op{Path: dir, File: "cpu.idle", Value: "1", Reason: "QoS besteffort: every BestEffort pod is background"}) {
		if r.Err != nil {
			return note, fmt.Errorf("failed to make the besteffort QoS cgroup idle: %w", r.Err)
		}
	}
	return note, nil
}

// applyThreads gives the threads of the plan's pods their thread levers
// and restores those of threads no longer asking (their pod left or
// changed tier). Threads are listed from the pods' cgroups at each call.
func (b *Backend) applyThreads(a Plan, rep *Report) error {
	slice := map[wellknown.Tier]time.Duration{wellknown.TierCritical: b.levers.CriticalSlice, wellknown.TierHigh: b.levers.HighSlice}
	idle := b.levers.BackgroundSchedIdle.on(defaultBackgroundSchedIdle)
	wantSlice := false
	for _, d := range slice {
		wantSlice = wantSlice || d > 0
	}
	if b.threads == nil {
		if !wantSlice && !idle {
			return nil
		}
		base, err := b.probeSlice()
		if err != nil {
			b.noSlice = err.Error()
		}
		b.threads = newThreadSetter(base)
	}
	want := map[int]threadWant{}
	var errs []error
	for _, p := range a.Pods {
		if p.Cgroup == nil {
			continue
		}
		var tw threadWant
		if d := slice[p.Tier]; d > 0 && b.noSlice == "" {
			tw.SliceNS = uint64(d.Nanoseconds())
		}
		tw.Idle = idle && p.Tier == wellknown.TierBackground
		if tw.zero() {
			continue
		}
		tids, err := b.podThreads(p.Cgroup)
		if err != nil {
			errs = append(errs, fmt.Errorf("failed to list the threads of pod %s: %w", p.Name, err))
		}
		for _, tid := range tids {
			want[tid] = tw
		}
	}
	if _, err := b.threads.apply(want); err != nil {
		errs = append(errs, fmt.Errorf("failed to set thread scheduling attributes: %w", err))
	}
	for _, o := range b.threads.orig {
		if o.want.SliceNS != 0 {
			rep.SlicedThreads++
		}
		if o.want.Idle {
			rep.IdleThreads++
		}
	}
	if wantSlice && b.noSlice != "" {
		rep.NoSlice = b.noSlice
		rep.Notes = append(rep.Notes, "critical threads keep the default scheduler slice: "+b.noSlice)
	}
	return errors.Join(errs...)
}

// podThreads lists the threads of a pod's cpu cgroup and its containers'.
func (b *Backend) podThreads(p *cgroupfs.Pod) ([]int, error) {
	var tids []int
	var errs []error
	var err error
	if d, ok := p.Dirs[cgroupfs.CPU]; ok {
		if tids, err = listThreads(d, tids); err != nil {
			errs = append(errs, err)
		}
	}
	for _, c := range p.Containers {
		if d, ok := c.Dirs[cgroupfs.CPU]; ok {
			if tids, err = listThreads(d, tids); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return tids, errors.Join(errs...)
}
