package cgroup

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/infera-io/temper/nodeagent/cpuset"

	"github.com/go-logr/logr"

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
}

func (l Levers) withDefaults() Levers {
	if l.LowWeightDivisor <= 0 {
		l.LowWeightDivisor = 4
	}
	if l.HighWeightFactor <= 0 {
		l.HighWeightFactor = 2
	}
	if l.CriticalWeightFactor <= 0 {
		l.CriticalWeightFactor = 4
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
}

// Plan is what to enforce on the node: the pods with their tiers and the
// critical fence. (nodeagent.Assignment is one pod's tier; a Plan is the
// whole node as this backend sees it.)
type Plan struct {
	Pods []Pod
	// FenceCPUs is the CPU list reserved for critical pods, sized by the
	// caller; empty means no fence.
	FenceCPUs string
	// NodeCPUs is every CPU pods may use (the cpuset of the kubelet's pod
	// root). Required with FenceCPUs.
	NodeCPUs string
}

// Report says what an Apply did.
type Report struct {
	// Enforced pods had every knob of their tier applied.
	Enforced int
	// Pending pods have no cgroup yet; apply again later.
	Pending []string
	// Fenced is the CPU list critical pods are fenced on, empty when none.
	Fenced string
	// Notes are operator-facing remarks: why there is no fence, which pods
	// lack cpu.idle.
	Notes []string
	// Changed reports whether any cgroup file was written.
	Changed bool
	// Restored counts originals written back because no pod asks for their
	// file any more.
	Restored int
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
	b := &Backend{layout: opts.Layout, w: opts.Writer, levers: opts.Levers.withDefaults(), log: opts.Log, pods: map[string]enforced{}}
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
	var rep Report
	before := b.w.Stats().Writes
	fence, shared, note := b.fence(a)
	if note != "" {
		rep.Notes = append(rep.Notes, note)
	}
	if fence != nil {
		rep.Fenced = fence.String()
	}
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
			want.fence = rep.Fenced
		}
		if prev, ok := b.pods[uid]; ok && (prev.tier != want.tier || prev.fence != want.fence) {
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
	// What no pod asks for any more goes back: values a previous agent
	// run set (adopted from the state file) on pods that left a tier or the
	// node while no agent was watching.
	if res, err := b.w.RestoreUndesired(); err != nil {
		errs = append(errs, fmt.Errorf("failed to restore values no pod asks for any more: %w", err))
	} else {
		rep.Restored = res.Restored
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
	if a.FenceCPUs == "" {
		return nil, nil, ""
	}
	if b.fenceBlocked != "" {
		return nil, nil, b.fenceBlocked
	}
	f, err := cpuset.Parse(a.FenceCPUs)
	if err != nil {
		return nil, nil, fmt.Sprintf("not fencing: %v", err)
	}
	node, err := cpuset.Parse(a.NodeCPUs)
	if err != nil {
		return nil, nil, fmt.Sprintf("not fencing: %v", err)
	}
	if len(f) == 0 || !f.SubsetOf(node) {
		return nil, nil, fmt.Sprintf("not fencing: fence %q is not a non-empty subset of the node's CPUs %q", a.FenceCPUs, a.NodeCPUs)
	}
	shared = node.Minus(f)
	if len(shared) == 0 {
		return nil, nil, fmt.Sprintf("not fencing: fence %q leaves no CPU for the other pods", a.FenceCPUs)
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
	scaled := func(mul, div int64) (writer.Op, error) {
		v, err := b.w.Found(cpuDir, file)
		if err != nil {
			return writer.Op{}, err
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return writer.Op{}, fmt.Errorf("failed to parse %s of %s: %w", file, cpuDir, err)
		}
		n = min(max(n*mul/div, lo), hi)
		return writer.Op{Path: cpuDir, File: file, Value: strconv.FormatInt(n, 10), Reason: reason}, nil
	}
	var op writer.Op
	switch p.Tier {
	case wellknown.TierBackground:
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
		cops, err := b.cpusetOps(p, target, reason)
		if err != nil {
			return nil, idleMissing, err
		}
		ops = append(ops, cops...)
	}
	return ops, idleMissing, nil
}

// cpusetOps moves a pod and its containers to target. On v1 a child's
// cpuset must stay within its parent's and a parent cannot shrink below a
// child's, so the pod is first widened to hold both the old and the new
// CPUs, then the containers move, then the pod narrows.
func (b *Backend) cpusetOps(p Pod, target cpuset.Set, reason string) ([]writer.Op, error) {
	podDir, ok := p.Cgroup.Dirs[cgroupfs.CPUSet]
	if !ok {
		return nil, fmt.Errorf("pod %s has no cpuset cgroup", p.Name)
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
func (b *Backend) Reconcile() (writer.ReassertResult, error) { return b.w.Reassert() }

// StandDown restores every original value (safe mode, a clean stop,
// uninstall) and forgets what was enforced.
func (b *Backend) StandDown() (writer.RestoreResult, error) {
	clear(b.pods)
	return b.w.RestoreAll()
}
