package nodeagent

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
	cgroupenf "github.com/infera-io/temper/nodeagent/enforcement/cgroup"
	"github.com/infera-io/temper/nodeagent/layered"
)

// cgroupBackend enforces tiers with cgroup knobs (DESIGN.md §7): it turns
// the assignment into the cgroup backend's, sizes the critical fence like
// the scx generator does, and re-asserts drift on a timer. Its writer keeps
// the originals in the state directory, so a restarted agent still knows
// them.
type cgroupBackend struct {
	b        *cgroupenf.Backend
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
	// backend is not safe for concurrent use.
	mu      sync.Mutex
	standby bool   // stood down (safe mode) or closed
	problem string // why enforcement is incomplete, "" when it is not
	lastErr string // the last error logged, to log each once
	// reported is the writer's drift count already passed to onDrift.
	reported uint64
	stats    cgroupStats
}

// cgroupStats is what the backend reports for metrics, the API and the
// observation layer.
type cgroupStats struct {
	// Writer counts writes, drift, errors and restores.
	Writer      writer.Stats
	Enforced    int
	Pending     int
	FencedCPUs  string
	StateReport writer.StateReport
}

// cgroupStateSubdir is where, under the agent's state_dir, the cgroup
// writer keeps its originals and lock.
const cgroupStateSubdir = "cgroup"

// newCgroupBackend builds the cgroup backend, or says why the node cannot
// have one.
func (a *Agent) newCgroupBackend() (backend, error) {
	cfg := a.o.Config
	if a.layout == nil {
		if a.layoutErr != nil {
			return nil, a.layoutErr
		}
		return nil, errors.New("no cgroup layout")
	}
	log := a.log.WithName("cgroup")
	w, err := writer.New(writer.Options{
		Root:       a.layout.Root,
		StateDir:   filepath.Join(cfg.StateDir, cgroupStateSubdir),
		BootIDFile: a.o.BootIDFile,
		Log:        log,
	})
	if err != nil {
		return nil, err
	}
	b, err := cgroupenf.New(cgroupenf.Options{
		Layout:              a.layout,
		Writer:              w,
		CPUManagerStateFile: cfg.Cgroup.CPUManagerState,
		Log:                 log,
	})
	if err != nil {
		_ = w.Close()
		return nil, err
	}
	cb := &cgroupBackend{
		b: b, w: w, layout: a.layout, fence: cfg.Cgroup.FenceCritical,
		interval: cfg.Cgroup.ReconcileInterval.Duration, clock: a.o.Clock, log: log,
		onChange: a.poke,
		onDrift:  a.driftEvents,
	}
	cb.stats.StateReport = w.StateReport()
	return cb, nil
}

func (c *cgroupBackend) Name() string { return wellknown.BackendCgroup }

func (c *cgroupBackend) Apply(_ context.Context, as []Assignment, m Machine) (Applied, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.standby = false
	ca := cgroupenf.Plan{Pods: make([]cgroupenf.Pod, 0, len(as))}
	var applied Applied
	var critReq int64
	var crit int
	for _, a := range as {
		ca.Pods = append(ca.Pods, cgroupenf.Pod{Name: a.Pod.String(), Tier: a.Tier, Cgroup: a.Cgroup})
		if a.Tier == wellknown.TierCritical {
			crit++
			critReq += a.CPU.RequestMilli
		}
	}
	if c.fence && crit > 0 {
		fence, node, note := c.sizeFence(m, critReq, crit)
		ca.FenceCPUs, ca.NodeCPUs = fence, node
		if note != "" {
			applied.Notes = append(applied.Notes, note)
		}
	}
	rep, err := c.b.Apply(ca)
	c.reportDrift()
	applied.Changed = rep.Changed
	applied.Notes = append(applied.Notes, rep.Notes...)
	if rep.Fenced != "" {
		if set, perr := cpuset.Parse(rep.Fenced); perr == nil {
			applied.FencedMilli = int64(len(set)) * 1000
		}
	}
	if sr := c.stats.StateReport; sr.SetAside != "" {
		applied.Notes = append(applied.Notes, fmt.Sprintf("state file %s was set aside (%s); originals it held are not restored", sr.Path, sr.Reason))
	}
	c.stats.Enforced, c.stats.Pending, c.stats.FencedCPUs = rep.Enforced, len(rep.Pending), rep.Fenced
	c.problem = ""
	if err != nil {
		c.problem = firstLine(err.Error())
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
func (c *cgroupBackend) sizeFence(m Machine, reqMilli int64, pods int) (fence, node, note string) {
	nodeSet, err := c.podCPUs(m)
	if err != nil {
		return "", "", fmt.Sprintf("not fencing critical pods: %v", err)
	}
	n := layered.Node{CPUs: len(m.CPUs), Cores: m.Cores}
	if len(m.Cores) == len(m.CPUs) {
		n.Cores = nil
	}
	f, err := layered.CriticalFence(n, reqMilli, pods, layered.DefaultOptions())
	if err != nil {
		return "", "", fmt.Sprintf("not fencing critical pods: %v", err)
	}
	if f.Demotion != nil {
		return "", "", "critical pods not fenced: " + f.Demotion.Reason
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
		return "", "", fmt.Sprintf("critical pods not fenced: %d whole cores needed, fewer are fully available to pods (%s)", f.Cores, nodeSet)
	}
	return fenced.String(), nodeSet.String(), ""
}

// podCPUs is the cpuset of the kubelet's pod root, or every online CPU
// when the node has no cpuset controller for pods.
func (c *cgroupBackend) podCPUs(m Machine) (cpuset.Set, error) {
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

func (c *cgroupBackend) StandDown(context.Context) error {
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
func (c *cgroupBackend) Close(ctx context.Context) error {
	err := c.StandDown(ctx)
	if cerr := c.w.Close(); cerr != nil {
		err = errors.Join(err, cerr)
	}
	return err
}

// Run re-asserts drift on the reconcile interval until ctx is done.
func (c *cgroupBackend) Run(ctx context.Context) error {
	t := c.clock.NewTicker(c.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C():
			c.reassert()
		}
	}
}

func (c *cgroupBackend) reassert() {
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

func (c *cgroupBackend) Status() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.problem != "" {
		return wellknown.FormatAgentStatus(wellknown.AgentStatusDegradedPrefix, c.problem)
	}
	return wellknown.AgentStatusEnforcingCgroup
}

// Stats returns the counters for metrics and the API.
func (c *cgroupBackend) Stats() cgroupStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	s.Writer = c.w.Stats()
	return s
}

// reportDrift passes the values re-asserted since the last report (by the
// timer or by an apply that found a value changed) to onDrift. Callers hold
// mu.
func (c *cgroupBackend) reportDrift() {
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

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	const max = 200
	if len(s) > max {
		s = s[:max] + "…"
	}
	return s
}
