package tiersched

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/sys/unix"

	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/nodeagent/cgroupfs"
	"github.com/infera-io/temper/nodeagent/cgroupfs/writer"
	"github.com/infera-io/temper/nodeagent/enforcement"
)

// Enforcer is the built-in tier scheduler as an enforcement backend. It
// attaches the scheduler when it runs, keeps the tiers map equal to the
// pods' cgroups, polls for an ejection by the kernel (watchdog, SysRq-S,
// an error) and, while the scheduler is not attached, lets the cover (the
// cgroup backend) enforce the same pods until a re-attach succeeds.
//
// Unlike scx_layered, the scheduler cannot outlive the agent: its link
// belongs to the agent process. Close, Release and StandDown all detach,
// and the kernel returns every task to the fair class.
type Enforcer struct {
	o EnforcerOptions

	mu       sync.Mutex
	sched    *Scheduler
	standby  bool // safe mode or stopped: stay detached
	tiers    map[uint64]wellknown.Tier
	last     []enforcement.Pod
	lastM    enforcement.Machine
	pending  int
	covering bool
	reason   string // why not attached; "" when attached
	backoff  time.Duration
	nextTry  time.Time
	stats    enforcement.SchedulerStats
	// base sums the counters of earlier attaches (the BPF maps go with
	// each detach).
	base map[wellknown.Tier]enforcement.TierCounters
}

var _ enforcement.Backend = (*Enforcer)(nil)

// EnforcerOptions configure the Enforcer.
type EnforcerOptions struct {
	// Cover enforces while the scheduler is not attached; nil for none.
	Cover    enforcement.Backend
	Tunables Tunables
	Log      logr.Logger
	// OnChange is called when the scheduler attaches or is ejected.
	OnChange func()
	// Poll is how often an ejection is looked for; default 100 ms, so it
	// is seen within a second even on a slow machine.
	Poll time.Duration
	// RetryInitial and RetryMax bound the re-attach backoff; defaults 1 s
	// and 30 s.
	RetryInitial, RetryMax time.Duration
	// Load attaches the scheduler; default Load (tests may replace it).
	Load func(Tunables) (*Scheduler, error)
}

// NewEnforcer builds the backend; nothing is attached before Run.
func NewEnforcer(o EnforcerOptions) *Enforcer {
	if o.Poll <= 0 {
		o.Poll = 100 * time.Millisecond
	}
	if o.RetryInitial <= 0 {
		o.RetryInitial = time.Second
	}
	if o.RetryMax <= 0 {
		o.RetryMax = 30 * time.Second
	}
	if o.Load == nil {
		o.Load = Load
	}
	return &Enforcer{o: o, tiers: map[uint64]wellknown.Tier{}, reason: "not attached yet", backoff: o.RetryInitial}
}

func (e *Enforcer) Name() string { return wellknown.BackendTierSched }

// Run attaches the scheduler and watches it until ctx is done.
func (e *Enforcer) Run(ctx context.Context) error {
	if e.o.Cover != nil {
		go func() { _ = e.o.Cover.Run(ctx) }()
	}
	t := time.NewTicker(e.o.Poll)
	defer t.Stop()
	for {
		e.tick(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (e *Enforcer) tick(ctx context.Context) {
	e.mu.Lock()
	if e.standby {
		e.mu.Unlock()
		return
	}
	changed := false
	if e.sched != nil {
		ex, why, err := e.sched.Exited()
		if err != nil || ex {
			if err != nil {
				why = "cannot read the scheduler's exit state: " + err.Error()
			}
			e.o.Log.Info("The kernel disabled the tier scheduler; the cgroup backend covers until it is attached again", "reason", why)
			e.stats.Ejections++
			e.stats.Exits++
			e.detachLocked()
			e.reason = "ejected by the kernel: " + why
			e.nextTry = time.Now().Add(e.backoff)
			changed = true
			e.syncCoverLocked(ctx, false)
		}
	}
	load := e.sched == nil && !time.Now().Before(e.nextTry)
	e.mu.Unlock()
	if load {
		// Loading takes a while (seconds under emulation): not under the
		// lock, so Report and Apply do not wait for it.
		s, err := e.o.Load(e.o.Tunables)
		e.mu.Lock()
		switch {
		case err == nil && e.standby:
			_ = s.Close() // stood down meanwhile
		case err == nil:
			err = s.SetTiers(e.tiers)
			if err != nil {
				_ = s.Close()
				break
			}
			e.sched = s
			e.stats.Starts++
			e.reason = ""
			e.backoff = e.o.RetryInitial
			e.o.Log.Info("Tier scheduler attached", "ops", OpsName, "kfuncs", fmt.Sprintf("%s, %s", s.Kfuncs().Insert, s.Kfuncs().MoveToLocal))
		}
		if err != nil {
			msg := enforcement.FirstLine(err.Error())
			if msg != e.reason {
				e.o.Log.Error(err, "Failed to attach the tier scheduler; the cgroup backend covers", "retry_in", e.backoff.String())
			}
			e.reason = msg
			e.nextTry = time.Now().Add(e.backoff)
			e.backoff = min(2*e.backoff, e.o.RetryMax)
		}
		e.syncCoverLocked(ctx, false)
		e.mu.Unlock()
		changed = true
	}
	if changed && e.o.OnChange != nil {
		e.o.OnChange()
	}
}

// syncCoverLocked engages the cover when the scheduler is not attached
// (again on every apply while covering: force) and stands it down once it
// is.
func (e *Enforcer) syncCoverLocked(ctx context.Context, force bool) {
	if e.o.Cover == nil || e.standby {
		return
	}
	switch {
	case e.sched == nil && e.last != nil && (!e.covering || force):
		e.covering = true
		if _, err := e.o.Cover.Apply(ctx, e.last, e.lastM); err != nil {
			e.o.Log.Error(err, "Failed to cover with the cgroup backend")
		}
	case e.sched != nil && e.covering:
		e.covering = false
		if err := e.o.Cover.StandDown(ctx); err != nil {
			e.o.Log.Error(err, "Failed to stand the covering cgroup backend down")
		}
	}
}

func (e *Enforcer) detachLocked() {
	if e.sched == nil {
		return
	}
	if c, err := e.sched.Counters(); err == nil {
		e.base = addCounters(e.base, c)
	}
	_ = e.sched.Close()
	e.sched = nil
}

func addCounters(a, b map[wellknown.Tier]enforcement.TierCounters) map[wellknown.Tier]enforcement.TierCounters {
	out := make(map[wellknown.Tier]enforcement.TierCounters, nrTiers)
	for _, t := range tierByIndex {
		x, y := a[t], b[t]
		out[t] = enforcement.TierCounters{
			Enqueued: x.Enqueued + y.Enqueued, Dispatched: x.Dispatched + y.Dispatched,
			Preempted: x.Preempted + y.Preempted, StarvationGuard: x.StarvationGuard + y.StarvationGuard,
		}
	}
	return out
}

// Apply makes the tiers map equal to the pods' cgroups: a pod change is a
// map update, the scheduler keeps running.
func (e *Enforcer) Apply(ctx context.Context, pods []enforcement.Pod, m enforcement.Machine) (enforcement.Applied, error) {
	tiers := make(map[uint64]wellknown.Tier, len(pods))
	pending := 0
	for _, p := range pods {
		if p.Cgroup == nil {
			pending++
			continue
		}
		dir, ok := p.Cgroup.Dirs[cgroupfs.CPU]
		if !ok {
			pending++
			continue
		}
		var st unix.Stat_t
		if err := unix.Stat(dir, &st); err != nil {
			pending++ // gone, or not there yet
			continue
		}
		tiers[st.Ino] = p.Tier
		if len(tiers) == MaxTierCgroups {
			break
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	var applied enforcement.Applied
	applied.Changed = !maps.Equal(tiers, e.tiers) || e.standby
	e.standby = false
	e.tiers, e.last, e.lastM, e.pending = tiers, pods, m, pending
	if e.sched != nil {
		if err := e.sched.SetTiers(tiers); err != nil {
			return applied, err
		}
	}
	e.syncCoverLocked(ctx, true)
	return applied, nil
}

// MaxTierCgroups bounds the tiers map (bpf/tiersched.h).
const MaxTierCgroups = 4096

// StandDown detaches the scheduler (safe mode) and stands the cover down.
func (e *Enforcer) StandDown(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.standby = true
	e.detachLocked()
	e.reason = "stood down"
	e.last = nil
	e.covering = false
	if e.o.Cover != nil {
		return e.o.Cover.StandDown(ctx)
	}
	return nil
}

// Close detaches the scheduler (a clean stop leaves stock behaviour) and
// closes the cover.
func (e *Enforcer) Close(ctx context.Context) error {
	e.mu.Lock()
	e.standby = true
	e.detachLocked()
	e.mu.Unlock()
	if e.o.Cover != nil {
		return e.o.Cover.Close(ctx)
	}
	return nil
}

// Release detaches too: the scheduler cannot outlive the process anyway.
// The cover's values stay for the next agent.
func (e *Enforcer) Release(ctx context.Context) error {
	e.mu.Lock()
	e.standby = true
	e.detachLocked()
	e.mu.Unlock()
	if e.o.Cover != nil {
		return e.o.Cover.Release(ctx)
	}
	return nil
}

// Report: verified when the scheduler is attached (its exit state says
// the kernel has not disabled it).
func (e *Enforcer) Report() enforcement.Report {
	e.mu.Lock()
	attached, reason, covering, pending := e.sched != nil, e.reason, e.covering, e.pending
	stats := e.stats
	tiers := e.base
	if e.sched != nil {
		if c, err := e.sched.Counters(); err == nil {
			tiers = addCounters(e.base, c)
		}
	}
	e.mu.Unlock()
	r := enforcement.Report{
		Stats:  enforcement.Stats{Scheduler: &stats, Tiers: tiers},
		Expect: enforcement.Expectation{Kind: enforcement.ExpectTierLayers},
	}
	var cover enforcement.Report
	if e.o.Cover != nil {
		cover = e.o.Cover.Report()
		r.Stats.Cgroup = cover.Stats.Cgroup
	}
	if attached {
		r.Status = wellknown.AgentStatusEnforcingTiers
		r.Verified = true
		r.Reason = fmt.Sprintf("tier scheduler %s attached, every pod cgroup in its tiers map (%d pending their cgroup)", OpsName, pending)
		return r
	}
	if covering {
		r.Expect = cover.Expect
		reason += "; cgroup backend covering"
	}
	r.Status = wellknown.FormatAgentStatus(wellknown.AgentStatusDegradedPrefix, "tier scheduler "+reason)
	r.Reason = r.Status
	return r
}

// Audit is the covering cgroup backend's audit ring.
func (e *Enforcer) Audit() []writer.Record {
	if e.o.Cover == nil {
		return nil
	}
	return e.o.Cover.Audit()
}
