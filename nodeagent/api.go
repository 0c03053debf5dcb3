package nodeagent

import (
	"context"
	"fmt"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/nodeagent/cgroupfs/writer"
	"github.com/infera-io/temper/nodeagent/lint"
	"github.com/infera-io/temper/nodeagent/server"
)

// agentAPI is what the agent's gRPC API and /readyz serve.
type agentAPI struct {
	a *Agent
	*server.Broadcaster
}

var (
	_ server.Agent    = agentAPI{}
	_ server.Observer = agentAPI{}
)

func (api agentAPI) LayeredConfig(context.Context) (server.LayeredConfig, error) {
	a := api.a
	a.mu.Lock()
	gen, at := a.gen, a.appliedAt
	a.mu.Unlock()
	out := server.LayeredConfig{Generation: gen, Backend: a.backend.Name(), AppliedAt: at}
	if a.inSafeMode() {
		out.Backend = wellknown.BackendNone
	}
	if !a.inSafeMode() {
		cfg := a.backend.Report().Config
		out.JSON, out.Hash = cfg.JSON, cfg.Hash
	}
	return out, nil
}

func (api agentAPI) Status(context.Context) (server.Status, error) {
	a := api.a
	verified, reason := a.Ready()
	a.mu.Lock()
	s := server.Status{
		Backend:    a.backend.Name(),
		SafeMode:   a.safeMode,
		Generation: a.gen,
		NodeName:   a.o.NodeName,
		Version:    version(),
	}
	load := tierLoad(a.assignments)
	a.mu.Unlock()
	if s.SafeMode {
		s.Backend = wellknown.BackendNone
	}
	s.AgentStatus = a.Status()
	s.EnforcementVerified, s.EnforcementReason = verified, reason
	for _, t := range wellknown.AllTiers() {
		u := load[t]
		s.Tiers = append(s.Tiers, server.TierUsage{Tier: string(t), Pods: int(u.Pods), RequestMilli: u.RequestMilli, LimitMilli: u.LimitMilli})
	}
	return s, nil
}

func (api agentAPI) Pods(context.Context) ([]server.Pod, error) {
	a := api.a
	as := a.Assignments()
	safe := a.inSafeMode()
	backend := a.backend.Name()
	out := make([]server.Pod, 0, len(as))
	for _, p := range as {
		sp := server.Pod{
			Namespace: p.Pod.Namespace, Name: p.Pod.Name, UID: string(p.UID),
			Tier: string(p.Tier), TierSource: string(p.Source), QoSClass: string(p.QOSClass),
			CgroupPath: p.CgroupRelPath,
		}
		switch {
		case safe:
			sp.Enforcement, sp.Reason = server.EnforcementSkipped, "safe mode: stock kernel behaviour"
		case backend == wellknown.BackendObserveOnly:
			sp.Enforcement, sp.Reason = server.EnforcementSkipped, "observe-only: "+a.Status()
		case p.Pending():
			sp.Enforcement, sp.Reason = server.EnforcementPending, "the pod's cgroup does not exist yet"
		default:
			sp.Enforcement = server.Enforced
		}
		out = append(out, sp)
	}
	return out, nil
}

func (api agentAPI) CaptureTrace(ctx context.Context, req server.TraceRequest) (server.TraceResult, error) {
	return api.a.captureTrace(ctx, req)
}

// Ready says whether the node's enforcement is verified: what the agent
// means to enforce is what the kernel reports (scx_layered attached with the
// generated config; every cgroup value written and read back), or safe mode
// as asked. Backs /readyz and GetStatus.
func (a *Agent) Ready() (bool, string) {
	if a.backend == nil {
		return false, "starting: no backend selected yet"
	}
	if a.inSafeMode() {
		if st := a.Status(); st != wellknown.AgentStatusSafeMode {
			return false, "safe mode requested but " + st
		}
		return true, "safe mode: stock kernel behaviour, as requested"
	}
	a.mu.Lock()
	reconciled := a.reconciled
	a.mu.Unlock()
	if !reconciled {
		return false, "starting: the first assignment is not applied yet"
	}
	r := a.backend.Report()
	return r.Verified, r.Reason
}

func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "dev"
}

// events publishes what changed between two assignments.
func (a *Agent) assignmentEvents(prev, cur []Assignment, gen int64) {
	if a.events == nil {
		return
	}
	before := make(map[string]Assignment, len(prev))
	for _, p := range prev {
		before[string(p.UID)] = p
	}
	const maxEvents = 256 // a node-wide change is summarised, not flooded
	n := 0
	emit := func(ev server.Event) {
		n++
		if n <= maxEvents {
			a.events.Publish(ev)
		}
	}
	for _, p := range cur {
		old, ok := before[string(p.UID)]
		delete(before, string(p.UID))
		if ok && old.Tier == p.Tier {
			continue
		}
		ref := &server.PodRef{Namespace: p.Pod.Namespace, Name: p.Pod.Name, UID: string(p.UID)}
		ev := server.Event{Type: server.EventAssignmentChanged, Pod: ref, ToTier: string(p.Tier), Generation: gen}
		if ok {
			ev.FromTier = string(old.Tier)
			ev.Message = fmt.Sprintf("pod %s moved from tier %s to %s", p.Pod, old.Tier, p.Tier)
		} else {
			ev.Message = fmt.Sprintf("pod %s arrived in tier %s", p.Pod, p.Tier)
		}
		emit(ev)
	}
	gone := make([]Assignment, 0, len(before))
	for _, p := range before {
		gone = append(gone, p)
	}
	slices.SortFunc(gone, func(x, y Assignment) int {
		if x.Pod.String() < y.Pod.String() {
			return -1
		}
		return 1
	})
	for _, p := range gone {
		emit(server.Event{Type: server.EventAssignmentChanged, Generation: gen,
			Pod:      &server.PodRef{Namespace: p.Pod.Namespace, Name: p.Pod.Name, UID: string(p.UID)},
			FromTier: string(p.Tier), Message: fmt.Sprintf("pod %s left tier %s", p.Pod, p.Tier)})
	}
	if n > maxEvents {
		a.events.Publish(server.Event{Type: server.EventAssignmentChanged, Generation: gen,
			Message: fmt.Sprintf("%d more assignment changes not sent one by one", n-maxEvents)})
	}
}

// driftEvents publishes re-asserted cgroup values.
func (a *Agent) driftEvents(recs []writer.Record) {
	for _, r := range recs {
		a.events.Publish(server.Event{Type: server.EventDriftReasserted, CgroupPath: r.Path, File: r.File,
			Found: r.Old, Expected: r.New, Time: r.Time,
			Message: fmt.Sprintf("%s/%s was %s behind the agent's back; set to %s again", r.Path, r.File, r.Old, r.New)})
	}
}

// lintEvents publishes an invariant that starts being violated (not every
// sample of a lasting violation).
func (a *Agent) lintEvents(prev, cur []lint.Verdict) {
	was := map[string]bool{}
	for _, v := range prev {
		was[v.Invariant] = v.Violations > 0
	}
	for _, v := range cur {
		if v.Violations == 0 || was[v.Invariant] {
			continue
		}
		ev := server.Event{Type: server.EventLintViolation, Invariant: v.Invariant, Detail: v.Message, Message: v.Invariant + ": " + v.Message}
		if len(v.Examples) > 0 {
			ex := v.Examples[0]
			ev.Tier = ex.Tier
			if ns, name, ok := strings.Cut(ex.Pod, "/"); ok {
				ev.Pod = &server.PodRef{Namespace: ns, Name: name}
			}
		}
		a.events.Publish(ev)
	}
}

// EventStats are the event broadcaster's counters (live WatchEvents
// subscribers, events dropped for slow ones).
func (a *Agent) EventStats() server.BroadcasterStats { return a.events.Stats() }
