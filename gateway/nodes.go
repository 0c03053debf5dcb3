package gateway

import (
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	inferav1alpha1 "github.com/infera-io/temper/apis/infera/v1alpha1"
	inferav1 "github.com/infera-io/temper/apis/proto/infera/v1"
	"github.com/infera-io/temper/apis/wellknown"
)

// Agent states in views: the state part of infera.io/agent-status, with the
// two enforcing values folded into one (the backend is its own field).
const (
	stateEnforcing = "enforcing"
	stateUnknown   = "unknown"
)

// nodeView builds the view of one node from its annotations and, when
// given, its NodeQoSReport.
func nodeView(n *corev1.Node, rep *inferav1alpha1.NodeQoSReport, now time.Time, maxAge time.Duration) *inferav1.NodeView {
	return nodeViewCached(n, rep, now, maxAge, nil)
}

// loadCache keeps each Node's parsed tier-load by resourceVersion, so a
// fleet view of many nodes parses only what changed since the last one.
type loadCache struct {
	mu sync.Mutex
	m  map[string]parsedLoad
}

type parsedLoad struct {
	rv   string
	raw  string
	load wellknown.TierLoad
	err  error
}

func newLoadCache() *loadCache { return &loadCache{m: map[string]parsedLoad{}} }

func (c *loadCache) parse(n *corev1.Node, raw string) (wellknown.TierLoad, error) {
	if c == nil {
		return wellknown.ParseTierLoad(raw)
	}
	c.mu.Lock()
	p, ok := c.m[n.Name]
	c.mu.Unlock()
	if ok && p.rv == n.ResourceVersion && p.raw == raw {
		return p.load, p.err
	}
	l, err := wellknown.ParseTierLoad(raw)
	c.mu.Lock()
	if len(c.m) > 100000 {
		clear(c.m)
	}
	c.m[n.Name] = parsedLoad{rv: n.ResourceVersion, raw: raw, load: l, err: err}
	c.mu.Unlock()
	return l, err
}

func nodeViewCached(n *corev1.Node, rep *inferav1alpha1.NodeQoSReport, now time.Time, maxAge time.Duration, lc *loadCache) *inferav1.NodeView {
	v := &inferav1.NodeView{
		Name:              n.Name,
		Labels:            n.Labels,
		SafeModeRequested: wellknown.IsSafeModeRequested(n.Annotations),
		AgentStatus:       n.Annotations[wellknown.AgentStatusAnnotation],
		AgentState:        stateUnknown,
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			v.Ready = c.Status == corev1.ConditionTrue
		}
	}
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			v.InternalIp = a.Address
			break
		}
	}
	if q, ok := n.Status.Allocatable[corev1.ResourceCPU]; ok {
		v.AllocatableMilli = q.MilliValue()
	}
	if v.AgentStatus == "" {
		v.AgentStatusError = "annotation " + wellknown.AgentStatusAnnotation + " is absent: no agent has reported on this node"
	} else if st, err := wellknown.ParseAgentStatus(v.AgentStatus); err != nil {
		v.AgentStatusError = err.Error()
	} else {
		v.AgentState = st.State
		if strings.HasPrefix(st.State, stateEnforcing+"/") {
			v.AgentState = stateEnforcing
		}
	}
	raw, ok := n.Annotations[wellknown.TierLoadAnnotation]
	load, err := lc.parse(n, raw)
	switch {
	case !ok:
		v.TierLoadError = "annotation " + wellknown.TierLoadAnnotation + " is absent"
	case err != nil:
		v.TierLoadError = err.Error()
	default:
		v.Backend = load.Backend
		if ferr := load.CheckFresh(now, maxAge); ferr != nil {
			v.TierLoadError = "annotation " + wellknown.TierLoadAnnotation + ": " + ferr.Error()
		} else {
			v.TierLoadFresh = true
			v.Generation = load.Gen
			v.FencedMilli = load.FencedMilli
			v.Tiers = tierUsages(load.Tiers)
		}
	}
	if rep != nil {
		r := &inferav1.NodeReport{ObservedGeneration: rep.Status.ObservedGeneration, Conditions: conditions(rep.Status.Conditions)}
		if rep.Status.LastHeartbeatTime != nil {
			r.LastHeartbeatTime = timestamppb.New(rep.Status.LastHeartbeatTime.Time)
		}
		v.Report = r
	}
	return v
}

func tierUsages(m map[wellknown.Tier]wellknown.TierUsage) []*inferav1.TierUsage {
	out := make([]*inferav1.TierUsage, 0, len(wellknown.AllTiers()))
	for _, t := range wellknown.AllTiers() {
		u := m[t]
		if t == wellknown.TierSystem && u.Pods == 0 {
			continue
		}
		out = append(out, &inferav1.TierUsage{Tier: string(t), Pods: u.Pods, RequestMilli: u.RequestMilli, LimitMilli: u.LimitMilli})
	}
	return out
}

func conditions(cs []metav1.Condition) []*inferav1.Condition {
	out := make([]*inferav1.Condition, 0, len(cs))
	for _, c := range cs {
		out = append(out, &inferav1.Condition{Type: c.Type, Status: string(c.Status), Reason: c.Reason, Message: c.Message,
			LastTransitionTime: timestamppb.New(c.LastTransitionTime.Time)})
	}
	return out
}
