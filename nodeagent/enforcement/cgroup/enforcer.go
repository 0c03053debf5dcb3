package cgroup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/utils/clock"

	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/nodeagent/cgroupfs"
	"github.com/infera-io/temper/nodeagent/cgroupfs/writer"
	"github.com/infera-io/temper/nodeagent/cpuset"
	"github.com/infera-io/temper/nodeagent/enforcement"
	"github.com/infera-io/temper/nodeagent/layered"
)

// Enforcer is the cgroup backend as the agent sees it (DESIGN.md §7): it
// turns the pods into a Plan, sizes the critical fence like the scx
// generator does, and re-asserts drift on a timer. Its writer keeps the
// originals in the state directory, so a restarted agent still knows them.
type Enforcer struct {
	b        *Backend
	w        *writer.Writer
	layout   *cgroupfs.Layout
	fence    bool
	interval time.Duration
	clock    clock.WithTicker
	log      logr.Logger
	onChange func()
	// onDrift receives the audit records of values re-asserted.
	onDrift func([]writer.Record)

	// mu serialises Apply, StandDown, Close and the drift reconcile: the
	// core backend is not safe for concurrent use.
	mu      sync.Mutex
	standby bool   // stood down (safe mode) or closed
	problem string // why enforcement is incomplete, "" when it is not
	noSlice string // why critical threads keep the default slice, "" when they do not
	lastErr string // the last error logged, to log each once
	// reported is the writer's drift count already passed to onDrift.
	reported uint64
	stats    enforcement.CgroupStats
	setAside writer.StateReport
}

var _ enforcement.Backend = (*Enforcer)(nil)

// EnforcerOptions are the dependencies of an Enforcer.
type EnforcerOptions struct {
	Layout *cgroupfs.Layout
	// StateDir keeps the writer's originals and lock.
	StateDir   string
	BootIDFile string
	// CPUManagerStateFile: see Options.
	CPUManagerStateFile string
	// FenceCritical confines critical pods to fenced whole cores.
	FenceCritical bool
	// Levers tune the knobs; zero values are the defaults.
	Levers            Levers
	ReconcileInterval time.Duration
	Clock             clock.WithTicker
	Log               logr.Logger
	// OnChange is called when a pod's cgroup vanished (recompute).
	OnChange func()
	// OnDrift receives the audit records of values re-asserted.
	OnDrift func([]writer.Record)
}

// NewEnforcer builds the cgroup backend, or says why the node cannot have
// one.
func NewEnforcer(o EnforcerOptions) (*Enforcer, error) {
	if o.Layout == nil {
		return nil, errors.New("no cgroup layout")
	}
	w, err := writer.New(writer.Options{
		Root:       o.Layout.Root,
		StateDir:   o.StateDir,
		BootIDFile: o.BootIDFile,
		Log:        o.Log,
	})
	if err != nil {
		return nil, err
	}
	b, err := New(Options{
		Layout:              o.Layout,
		Writer:              w,
		Levers:              o.Levers,
		CPUManagerStateFile: o.CPUManagerStateFile,
		Log:                 o.Log,
	})
	if err != nil {
		_ = w.Close()
		return nil, err
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	return &Enforcer{
		b: b, w: w, layout: o.Layout, fence: o.FenceCritical,
		interval: o.ReconcileInterval, clock: o.Clock, log: o.Log,
		onChange: o.OnChange, onDrift: o.OnDrift,
		setAside: w.StateReport(),
	}, nil
}

func (c *Enforcer) Name() string { return wellknown.BackendCgroup }

func (c *Enforcer) Apply(_ context.Context, pods []enforcement.Pod, m enforcement.Machine) (enforcement.Applied, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.standby = false
	plan := Plan{Pods: make([]Pod, 0, len(pods))}
	var applied enforcement.Applied
	var critReq int64
	var crit int
	plan.CapacityMilli = int64(len(m.CPUs)) * 1000
	if set, err := c.podCPUs(m); err == nil && len(set) > 0 {
		plan.CapacityMilli = int64(len(set)) * 1000
	}
	for _, p := range pods {
		plan.Pods = append(plan.Pods, Pod{Name: p.Name, Tier: p.Tier, Cgroup: p.Cgroup, RequestMilli: p.RequestMilli, RequestKnown: true})
		if p.Tier == wellknown.TierCritical {
			crit++
			critReq += p.RequestMilli
		}
	}
	if c.fence && crit > 0 {
		fence, node, note := c.sizeFence(m, critReq, crit)
		plan.FenceCPUs, plan.NodeCPUs = fence, node
		if note != "" {
			applied.Notes = append(applied.Notes, note)
		}
	}
	rep, err := c.b.Apply(plan)
	c.reportDrift()
	applied.Changed = rep.Changed
	applied.Notes = append(applied.Notes, rep.Notes...)
	applied.FencedMilli = int64(len(rep.Fenced)) * 1000
	if sr := c.setAside; sr.SetAside != "" {
		applied.Notes = append(applied.Notes, fmt.Sprintf("state file %s was set aside (%s); originals it held are not restored", sr.Path, sr.Reason))
	}
	c.stats.Enforced, c.stats.Pending, c.stats.Fenced = rep.Enforced, len(rep.Pending), rep.Fenced
	c.noSlice = rep.NoSlice
	c.problem = ""
	if err != nil {
		c.problem = enforcement.FirstLine(err.Error())
		// One log line per distinct failure, not one per pod event: a
		// read-only cgroupfs must not turn into an error storm.
		if msg := err.Error(); msg != c.lastErr {
			c.lastErr = msg
			c.log.Error(err, "Cgroup enforcement incomplete; the other pods are enforced")
		}
		return applied, nil
	}
	c.lastErr = ""
	return applied, nil
}

// sizeFence picks the fenced CPUs: the whole cores the scx generator would
// give the critical layer, taken from the top of the pods' CPUs (CPU 0
// keeps the system's interrupts and housekeeping).
func (c *Enforcer) sizeFence(m enforcement.Machine, reqMilli int64, pods int) (fence, node cpuset.Set, note string) {
	nodeSet, err := c.podCPUs(m)
	if err != nil {
		return nil, nil, fmt.Sprintf("not fencing critical pods: %v", err)
	}
	n := layered.Node{CPUs: len(m.CPUs), Cores: m.Cores}
	if len(m.Cores) == len(m.CPUs) {
		n.Cores = nil
	}
	f, err := layered.CriticalFence(n, reqMilli, pods, layered.DefaultOptions())
	if err != nil {
		return nil, nil, fmt.Sprintf("not fencing critical pods: %v", err)
	}
	if f.Demotion != nil {
		return nil, nil, "critical pods not fenced: " + f.Demotion.Reason
	}
	var fenced cpuset.Set
	for i := len(m.Cores) - 1; i >= 0 && len(fenced) < f.CPUs; i-- {
		core := cpuset.Set{}
		for _, cpu := range m.Cores[i] {
			core[cpu] = true
		}
		if !core.SubsetOf(nodeSet) {
			continue // a core pods may not fully use is no fence
		}
		fenced = fenced.Union(core)
	}
	if len(fenced) < f.CPUs {
		return nil, nil, fmt.Sprintf("critical pods not fenced: %d whole cores needed, fewer are fully available to pods (%s)", f.Cores, nodeSet)
	}
	return fenced, nodeSet, ""
}

// podCPUs is the cpuset of the kubelet's pod root, or every online CPU
// when the node has no cpuset controller for pods.
func (c *Enforcer) podCPUs(m enforcement.Machine) (cpuset.Set, error) {
	h, ok := c.layout.Hierarchies[cgroupfs.CPUSet]
	if !ok {
		return nil, errors.New("no cpuset controller for pods")
	}
	file := "cpuset.cpus"
	if c.layout.Version == cgroupfs.V2 {
		file = "cpuset.cpus.effective"
	}
	p := filepath.Join(h, c.layout.KubepodsDir, file)
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("failed to read the pods' CPUs: %w", err)
	}
	set, err := cpuset.Parse(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("failed to parse %s: %w", p, err)
	}
	if len(set) == 0 {
		// An empty v1 cpuset.cpus does not happen on a live pod root; v2
		// reports the effective set. Fall back to the machine.
		set = cpuset.Set{}
		for _, cpu := range m.CPUs {
			set[cpu] = true
		}
	}
	return set, nil
}

func (c *Enforcer) StandDown(context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.standby = true
	res, err := c.b.StandDown()
	if res.Restored > 0 {
		c.log.Info("Restored original cgroup values", "restored", res.Restored, "gone", res.Gone)
	}
	return err
}

// Close restores every original on a clean stop (issue #4: a stopped agent
// leaves stock kernel behaviour; a crashed one leaves the values for the
// next agent to adopt) and releases the state directory.
func (c *Enforcer) Close(ctx context.Context) error {
	err := c.StandDown(ctx)
	if cerr := c.w.Close(); cerr != nil {
		err = errors.Join(err, cerr)
	}
	return err
}

// Release keeps every value as set and releases the state directory: the
// next agent adopts the originals from the state file.
func (c *Enforcer) Release(context.Context) error {
	c.mu.Lock()
	c.standby = true
	c.mu.Unlock()
	return c.w.Close()
}

// SuppressInterval is how often dynamic CPU suppression is sized.
const SuppressInterval = time.Second

// Run re-asserts drift on the reconcile interval, and sizes dynamic CPU
// suppression every second when that lever is on, until ctx is done.
func (c *Enforcer) Run(ctx context.Context) error {
	t := c.clock.NewTicker(c.interval)
	defer t.Stop()
	var sup <-chan time.Time
	if c.b.levers.Suppress.on(false) {
		st := c.clock.NewTicker(SuppressInterval)
		defer st.Stop()
		sup = st.C()
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C():
			c.reassert()
		case now := <-sup:
			c.suppress(now)
		}
	}
}

func (c *Enforcer) suppress(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.standby {
		return
	}
	st, err := c.b.Suppress(now)
	c.stats.Suppression = enforcement.Suppression{Active: st.Active, BudgetMilli: st.BudgetMilli, ProtectedMilli: st.ProtectedMilli, Pods: st.Pods}
	if err != nil {
		if msg := err.Error(); msg != c.lastErr {
			c.lastErr = msg
			c.log.Error(err, "Failed to size CPU suppression")
		}
	}
}

func (c *Enforcer) reassert() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.standby {
		return
	}
	res, err := c.b.Reconcile()
	if res.Drifted > 0 {
		c.log.Info("Re-asserted cgroup values changed behind the agent's back", "drifted", res.Drifted, "checked", res.Checked)
	}
	c.reportDrift()
	if err != nil {
		if msg := err.Error(); msg != c.lastErr {
			c.lastErr = msg
			c.log.Error(err, "Failed to re-assert cgroup values")
		}
	}
	if res.Gone > 0 && c.onChange != nil {
		// A pod's cgroup vanished; let the agent recompute.
		c.onChange()
	}
}

// Report says whether every cgroup value is written and read back.
func (c *Enforcer) Report() enforcement.Report {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.stats
	st.Writer = c.w.Stats()
	r := enforcement.Report{
		Stats:  enforcement.Stats{Cgroup: &st},
		Expect: enforcement.Expectation{Kind: enforcement.ExpectTierLayers, FencedCPUs: st.Fenced},
	}
	if c.problem != "" {
		r.Status = wellknown.FormatAgentStatus(wellknown.AgentStatusDegradedPrefix, c.problem)
		r.Reason = r.Status
		return r
	}
	r.Status = wellknown.AgentStatusEnforcingCgroup
	r.Verified = true
	r.Reason = fmt.Sprintf("every cgroup value written and read back (%d pods enforced, %d pending their cgroup)", st.Enforced, st.Pending)
	if c.noSlice != "" {
		r.Reason += "; critical threads keep the default scheduler slice: " + c.noSlice
	}
	return r
}

// Audit is the writer's audit ring.
func (c *Enforcer) Audit() []writer.Record { return c.w.Audit() }

// reportDrift passes the values re-asserted since the last report (by the
// timer or by an apply that found a value changed) to onDrift. Callers hold
// mu.
func (c *Enforcer) reportDrift() {
	total := c.w.Stats().Drift
	n := int(total - c.reported)
	c.reported = total
	if n <= 0 || c.onDrift == nil {
		return
	}
	audit := c.w.Audit()
	var drifted []writer.Record
	for i := len(audit) - 1; i >= 0 && len(drifted) < n; i-- {
		if audit[i].Kind == writer.KindDrift && audit[i].Err == "" {
			drifted = append(drifted, audit[i])
		}
	}
	c.onDrift(drifted)
}

// Knobs returns the cgroup values the backend keeps asserting, parents
// first: the cgroup knobs in force, for the agent's GetObservation.
func (c *Enforcer) Knobs() []writer.Desired { return c.w.Desired() }
