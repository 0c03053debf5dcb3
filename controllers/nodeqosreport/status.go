package nodeqosreport

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	inferav1alpha1 "github.com/infera-io/temper/apis/infera/v1alpha1"
	"github.com/infera-io/temper/apis/wellknown"
)

// observation is what the node's annotations say at one instant.
type observation struct {
	load      *wellknown.TierLoad // nil when absent or malformed
	loadErr   error               // parse error of a present tier-load
	hasLoad   bool
	status    *wellknown.AgentStatus
	statusErr error
	rawStatus string
	stale     error // wrapped wellknown.ErrTierLoadStale, or nil
	silent    bool
	// next is when the observation changes by time alone (heartbeat going
	// stale, agent going silent); zero when it does not.
	next time.Duration
}

func observe(node *corev1.Node, now time.Time, maxAge, silentAfter time.Duration) observation {
	var o observation
	if v, ok := node.Annotations[wellknown.AgentStatusAnnotation]; ok {
		o.rawStatus = v
		s, err := wellknown.ParseAgentStatus(v)
		if err != nil {
			o.statusErr = err
		} else {
			o.status = &s
		}
	}
	v, ok := node.Annotations[wellknown.TierLoadAnnotation]
	if !ok {
		return o
	}
	o.hasLoad = true
	l, err := wellknown.ParseTierLoad(v)
	if err != nil {
		o.loadErr = err
		return o
	}
	o.load = &l
	o.stale = l.CheckFresh(now, maxAge)
	age := l.Age(now)
	o.silent = age > silentAfter
	switch {
	case o.stale == nil:
		o.next = maxAge - age + time.Second
	case !o.silent && age > 0:
		o.next = silentAfter - age + time.Second
	}
	return o
}

func milliQty(m int64) resource.Quantity { return *resource.NewMilliQuantity(m, resource.DecimalSI) }

func tierStatus(u wellknown.TierUsage) inferav1alpha1.TierStatus {
	return inferav1alpha1.TierStatus{Pods: u.Pods, RequestCPU: milliQty(u.RequestMilli), LimitCPU: milliQty(u.LimitMilli)}
}

// mirror writes the observation into the report's status.
func mirror(st *inferav1alpha1.NodeQoSReportStatus, node *corev1.Node, o observation, generation int64) {
	st.AgentStatus = o.rawStatus
	st.Phase = phase(o.status)
	st.SafeModeRequested = wellknown.IsSafeModeRequested(node.Annotations)
	if l := o.load; l != nil {
		st.Backend = l.Backend
		st.EnforcementGeneration = l.Gen
		st.AllocatableCPU = milliQty(l.AllocatableMilli)
		st.FencedCPU = milliQty(l.FencedMilli)
		st.Tiers = inferav1alpha1.TierStatuses{
			System:     tierStatus(l.Usage(wellknown.TierSystem)),
			Critical:   tierStatus(l.Usage(wellknown.TierCritical)),
			High:       tierStatus(l.Usage(wellknown.TierHigh)),
			Normal:     tierStatus(l.Usage(wellknown.TierNormal)),
			Low:        tierStatus(l.Usage(wellknown.TierLow)),
			Background: tierStatus(l.Usage(wellknown.TierBackground)),
		}
		ts := metav1.NewTime(l.TS)
		st.LastHeartbeatTime = &ts
	} else {
		// Readers treat a missing or malformed tier-load as absent.
		st.Backend = wellknown.BackendNone
		st.EnforcementGeneration = 0
		st.AllocatableCPU, st.FencedCPU = resource.Quantity{}, resource.Quantity{}
		st.Tiers = inferav1alpha1.TierStatuses{}
		st.LastHeartbeatTime = nil
	}

	set := func(t string, ok bool, reason, msg string) {
		s := metav1.ConditionFalse
		if ok {
			s = metav1.ConditionTrue
		}
		apimeta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: t, Status: s, Reason: reason, Message: msg, ObservedGeneration: generation})
	}

	// AnnotationsValid: the first problem, naming the key.
	switch {
	case o.loadErr != nil:
		set(inferav1alpha1.ConditionAnnotationsValid, false, inferav1alpha1.ReasonMalformedTierLoad, o.loadErr.Error())
	case o.statusErr != nil:
		set(inferav1alpha1.ConditionAnnotationsValid, false, inferav1alpha1.ReasonMalformedStatus, o.statusErr.Error())
	default:
		set(inferav1alpha1.ConditionAnnotationsValid, true, inferav1alpha1.ReasonAnnotationsParsed, "agent annotations parse")
	}

	// AgentHeartbeat.
	switch {
	case o.load == nil && o.hasLoad:
		set(inferav1alpha1.ConditionAgentHeartbeat, false, inferav1alpha1.ReasonHeartbeatMissing,
			fmt.Sprintf("annotation %s cannot be parsed, so it counts as absent", wellknown.TierLoadAnnotation))
	case o.load == nil:
		set(inferav1alpha1.ConditionAgentHeartbeat, false, inferav1alpha1.ReasonHeartbeatMissing,
			fmt.Sprintf("node has no %s annotation", wellknown.TierLoadAnnotation))
	case o.stale != nil:
		set(inferav1alpha1.ConditionAgentHeartbeat, false, inferav1alpha1.ReasonHeartbeatStale,
			fmt.Sprintf("%s last confirmed at %s: %v", wellknown.TierLoadAnnotation, o.load.TS.UTC().Format(time.RFC3339), o.stale))
	default:
		set(inferav1alpha1.ConditionAgentHeartbeat, true, inferav1alpha1.ReasonHeartbeatFresh,
			fmt.Sprintf("%s confirmed at %s", wellknown.TierLoadAnnotation, o.load.TS.UTC().Format(time.RFC3339)))
	}

	// Enforcing.
	switch {
	case o.status == nil && o.statusErr == nil:
		set(inferav1alpha1.ConditionEnforcing, false, inferav1alpha1.ReasonAgentNotEnforcing,
			fmt.Sprintf("node has no %s annotation", wellknown.AgentStatusAnnotation))
	case o.status == nil:
		set(inferav1alpha1.ConditionEnforcing, false, inferav1alpha1.ReasonMalformedStatus, o.statusErr.Error())
	case o.status.State == wellknown.AgentStatusEnforcingSCX || o.status.State == wellknown.AgentStatusEnforcingCgroup || o.status.State == wellknown.AgentStatusEnforcingTiers:
		set(inferav1alpha1.ConditionEnforcing, true, inferav1alpha1.ReasonAgentEnforcing, "agent reports "+o.rawStatus)
	default:
		set(inferav1alpha1.ConditionEnforcing, false, inferav1alpha1.ReasonAgentNotEnforcing, "agent reports "+o.rawStatus)
	}

	// AgentSilent.
	switch {
	case o.load == nil:
		set(inferav1alpha1.ConditionAgentSilent, false, inferav1alpha1.ReasonAgentNeverReported,
			"no parseable heartbeat: the backstop acts only on agents that reported and stopped")
	case o.silent:
		set(inferav1alpha1.ConditionAgentSilent, true, inferav1alpha1.ReasonAgentSilent,
			fmt.Sprintf("no heartbeat since %s", o.load.TS.UTC().Format(time.RFC3339)))
	default:
		set(inferav1alpha1.ConditionAgentSilent, false, inferav1alpha1.ReasonAgentReporting, "agent heartbeat within the silent-agent threshold")
	}
}

// phase is the agent status in one word; nil (absent or malformed) is
// Unknown.
func phase(s *wellknown.AgentStatus) inferav1alpha1.NodeQoSPhase {
	if s == nil {
		return inferav1alpha1.PhaseUnknown
	}
	switch s.State {
	case wellknown.AgentStatusEnforcingSCX, wellknown.AgentStatusEnforcingCgroup, wellknown.AgentStatusEnforcingTiers:
		return inferav1alpha1.PhaseEnforcing
	case wellknown.AgentStatusObserveOnly:
		return inferav1alpha1.PhaseObserveOnly
	case wellknown.AgentStatusSafeMode:
		return inferav1alpha1.PhaseSafeMode
	case wellknown.AgentStatusDegradedPrefix:
		return inferav1alpha1.PhaseDegraded
	case wellknown.AgentStatusRefusedPrefix:
		return inferav1alpha1.PhaseRefused
	}
	return inferav1alpha1.PhaseUnknown
}

// setReady summarises: Ready when the annotations parse and the heartbeat is
// fresh, or the reconcile error.
func setReady(st *inferav1alpha1.NodeQoSReportStatus, err error, generation int64) {
	c := metav1.Condition{Type: inferav1alpha1.ConditionReady, ObservedGeneration: generation}
	valid := apimeta.FindStatusCondition(st.Conditions, inferav1alpha1.ConditionAnnotationsValid)
	hb := apimeta.FindStatusCondition(st.Conditions, inferav1alpha1.ConditionAgentHeartbeat)
	switch {
	case err != nil:
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, inferav1alpha1.ReasonReconcileFailed, err.Error()
	case valid != nil && valid.Status != metav1.ConditionTrue:
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, valid.Reason, valid.Message
	case hb != nil && hb.Status != metav1.ConditionTrue:
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, hb.Reason, hb.Message
	default:
		c.Status, c.Reason, c.Message = metav1.ConditionTrue, inferav1alpha1.ReasonReconciled, "status mirrors a fresh heartbeat"
	}
	apimeta.SetStatusCondition(&st.Conditions, c)
}
