// Package enforcement is the seam between the agent and the ways it can
// enforce tiers on a node (DESIGN.md §7). A backend lives in its own folder
// below this one (cgroup/, scx/, ...) and implements Backend; the agent
// picks one with its selection rule and then only ever talks to this
// interface: it hands over the pods and the machine, and reads one Report.
package enforcement

import (
	"context"

	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/nodeagent/cgroupfs"
	"github.com/infera-io/temper/nodeagent/cgroupfs/writer"
	"github.com/infera-io/temper/nodeagent/cpuset"
	"github.com/infera-io/temper/nodeagent/layered"
)

// Backend is one way of enforcing the tiers. Backends are safe for
// concurrent use.
type Backend interface {
	// Name is the backend as tier-load reports it (wellknown.Backend*).
	Name() string
	// Apply enforces pods on machine m.
	Apply(ctx context.Context, pods []Pod, m Machine) (Applied, error)
	// StandDown returns the node to stock kernel behaviour (safe mode).
	StandDown(ctx context.Context) error
	// Run runs the backend's background work until ctx is done.
	Run(ctx context.Context) error
	// Close is the clean stop of the agent: the cgroup backend restores
	// every original; scx_layered keeps running for the next agent to
	// adopt (DESIGN.md §7).
	Close(ctx context.Context) error
	// Release is the error exit of the agent: every value stays as set and
	// scx_layered keeps running, so the next agent adopts them instead of
	// the node flipping to stock and back on each crash-loop iteration.
	Release(ctx context.Context) error
	// Report says how enforcement stands now.
	Report() Report
	// Audit is the cgroup writer's audit ring, oldest first; nil for a
	// backend that writes no cgroup values.
	Audit() []writer.Record
}

// Pod is one pod as a backend enforces it.
type Pod struct {
	// Name is namespace/name, for notes and logs.
	Name string
	Tier wellknown.Tier
	// Cgroup is the pod's cgroup, nil while it does not exist yet.
	Cgroup *cgroupfs.Pod
	// CgroupRelPath is where the pod's cgroup is (or will be), relative to
	// each hierarchy root; empty when it cannot be computed.
	CgroupRelPath string
	RequestMilli  int64
	LimitMilli    int64
}

// Machine is the CPU shape of the node as the kernel reports it.
type Machine struct {
	// CPUs are the online logical CPU ids, ascending.
	CPUs []int
	// Cores groups the online CPUs by physical core (SMT siblings share a
	// core), each group ascending, groups ordered by their first CPU.
	Cores [][]int
}

// Applied says what an Apply did.
type Applied struct {
	// Changed reports whether what is enforced changed (gen rises).
	Changed     bool
	FencedMilli int64
	// Layers are the scx_layered layers generated, nil on other backends.
	Layers []layered.LayerSummary
	// Notes are operator-facing remarks (e.g. a demoted critical layer).
	Notes []string
}

// Report is how enforcement stands, in one value: what the agent reports
// as its status, whether that is verified against the kernel, the
// counters, the config in force and what the placement linter may expect.
type Report struct {
	// Status is the infera.io/agent-status value.
	Status string
	// Verified says whether what the backend means to enforce is what the
	// kernel reports; Reason says why (or why not).
	Verified bool
	Reason   string
	Stats    Stats
	// Config is the scheduler config in force and its hash; empty for
	// backends without one.
	Config Config
	Expect Expectation
}

// Stats are a backend's counters for metrics and the API. Each part is nil
// when the backend has none of it.
type Stats struct {
	Cgroup    *CgroupStats
	Scheduler *SchedulerStats
	// Tiers are per-tier scheduler counters (the built-in scheduler).
	Tiers map[wellknown.Tier]TierCounters
}

// CgroupStats are the cgroup writer's counters and the last apply's
// outcome.
type CgroupStats struct {
	Writer   writer.Stats
	Enforced int
	Pending  int
	Fenced   cpuset.Set
	// Suppression is dynamic CPU suppression's last tick (zero when the
	// lever is off).
	Suppression Suppression
}

// Suppression is what dynamic CPU suppression holds low and background
// pods to.
type Suppression struct {
	Active bool
	// BudgetMilli is the CPU the held pods may use together.
	BudgetMilli int64
	// ProtectedMilli is what critical and high pods used.
	ProtectedMilli int64
	Pods           int
}

// SchedulerStats count a sched_ext scheduler's lifecycle.
type SchedulerStats struct {
	Starts, Exits, Ejections int
}

// TierCounters are one tier's scheduler events.
type TierCounters struct {
	Enqueued, Dispatched, Preempted, StarvationGuard uint64
}

// Config is a scheduler config in force.
type Config struct {
	JSON []byte
	Hash string
}

// ExpectKind names the promise the placement linter checks.
type ExpectKind int

const (
	// ExpectNothing: no enforcement promise (observe-only, safe mode).
	ExpectNothing ExpectKind = iota
	// ExpectTierLayers: one layer per tier present, critical confined to
	// FencedCPUs when not empty, low and background open (the cgroup
	// backend's promise, lint.CgroupPromise).
	ExpectTierLayers
	// ExpectLayered: the scx_layered layers in Layers (lint.ScxPromise).
	ExpectLayered
)

// Expectation is what the placement linter may expect of the enforcement.
type Expectation struct {
	Kind       ExpectKind
	FencedCPUs cpuset.Set
	Layers     []layered.LayerSummary
}

// ObserveOnly enforces nothing and says why; an empty Why is observe-only
// as configured.
type ObserveOnly struct{ Why string }

var _ Backend = ObserveOnly{}

func (o ObserveOnly) Name() string { return wellknown.BackendObserveOnly }
func (o ObserveOnly) Apply(context.Context, []Pod, Machine) (Applied, error) {
	return Applied{}, nil
}
func (o ObserveOnly) StandDown(context.Context) error { return nil }
func (o ObserveOnly) Run(ctx context.Context) error   { <-ctx.Done(); return nil }
func (o ObserveOnly) Close(context.Context) error     { return nil }
func (o ObserveOnly) Release(context.Context) error   { return nil }
func (o ObserveOnly) Audit() []writer.Record          { return nil }
func (o ObserveOnly) Report() Report {
	if o.Why != "" {
		st := wellknown.FormatAgentStatus(wellknown.AgentStatusRefusedPrefix, o.Why)
		return Report{Status: st, Reason: st}
	}
	return Report{Status: wellknown.AgentStatusObserveOnly, Verified: true, Reason: "observe-only, as configured"}
}

// FirstLine cuts s to its first line and at most 200 bytes, for a status.
func FirstLine(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			s = s[:i]
			break
		}
	}
	const limit = 200
	if len(s) > limit {
		s = s[:limit] + "…"
	}
	return s
}
