package gateway

import (
	"context"
	"slices"
	"strings"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"

	inferav1 "github.com/infera-io/temper/apis/proto/infera/v1"
	"github.com/infera-io/temper/apis/wellknown"
)

// GetNodeUsage implements ClusterService.
func (s *Service) GetNodeUsage(ctx context.Context, req *inferav1.GetNodeUsageRequest) (*inferav1.GetUsageResponse, error) {
	if err := s.authorize(ctx, Attributes{Verb: "get", Resource: "nodes", Subresource: "pods", Name: req.GetNode()}); err != nil {
		return nil, err
	}
	n, err := s.getNode(req.GetNode())
	if err != nil {
		return nil, err
	}
	var out *inferav1.GetUsageResponse
	_, err = s.agentCall(ctx, n, func(ctx context.Context, c inferav1.AgentServiceClient) error {
		var err error
		out, err = c.GetUsage(ctx, &inferav1.GetUsageRequest{Namespace: req.GetNamespace()})
		return err
	})
	return out, err
}

// nodeUsage is one node's GetUsage answer, or why there is none.
type nodeUsage struct {
	node  string
	addr  string
	usage *inferav1.GetUsageResponse
	err   error
}

// fleetUsage asks the agents of nodes for their usage of namespace's pods,
// agents.maxConcurrent at a time, each within the agent timeout.
func (s *Service) fleetUsage(ctx context.Context, nodes []*corev1.Node, namespace string, samples bool) []nodeUsage {
	out := make([]nodeUsage, len(nodes))
	sem := make(chan struct{}, s.cfg.Agents.MaxConcurrent)
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			var u *inferav1.GetUsageResponse
			addr, err := s.agentCall(ctx, n, func(ctx context.Context, c inferav1.AgentServiceClient) error {
				var err error
				u, err = c.GetUsage(ctx, &inferav1.GetUsageRequest{Namespace: namespace, IncludeSamples: samples})
				return err
			})
			out[i] = nodeUsage{node: n.Name, addr: addr, usage: u, err: err}
		}()
	}
	wg.Wait()
	return out
}

// ListUsage implements ClusterService.
func (s *Service) ListUsage(ctx context.Context, req *inferav1.ListUsageRequest) (*inferav1.ListUsageResponse, error) {
	if err := s.authorize(ctx, Attributes{Verb: "list", Resource: "pods", Namespace: req.GetNamespace()}); err != nil {
		return nil, err
	}
	sel, err := parseSelector("label_selector", req.GetLabelSelector())
	if err != nil {
		return nil, err
	}
	nodes, err := s.listNodes(sel)
	if err != nil {
		return nil, err
	}
	if req.GetNode() != "" {
		n, err := s.getNode(req.GetNode())
		if err != nil {
			return nil, err
		}
		nodes = slices.DeleteFunc(nodes, func(m *corev1.Node) bool { return m.Name != n.Name })
	}
	if s.agents == nil {
		return nil, status.Error(codes.FailedPrecondition, errAgentsOff.Error())
	}
	out := &inferav1.ListUsageResponse{}
	tiers := map[string]*inferav1.TierCPUUsage{}
	addTier := func(m map[string]*inferav1.TierCPUUsage, t string, pods int32, req int64, u *inferav1.CPUUsageStats) {
		tt := m[t]
		if tt == nil {
			tt = &inferav1.TierCPUUsage{Tier: t, Usage: &inferav1.CPUUsageStats{}}
			m[t] = tt
		}
		tt.Pods += pods
		tt.RequestMilli += req
		sumStats(tt.Usage, u)
	}
	for _, nu := range s.fleetUsage(ctx, nodes, req.GetNamespace(), false) {
		sum := &inferav1.NodeUsageSummary{Agent: reach(nu.node, nu.addr, nu.err)}
		out.Nodes = append(out.Nodes, sum)
		if nu.err != nil {
			out.Unreachable++
			continue
		}
		u := nu.usage
		sum.Available, sum.Reason, sum.Samples, sum.WindowSeconds, sum.IntervalSeconds, sum.CappedPods =
			u.GetAvailable(), u.GetReason(), u.GetSamples(), u.GetWindowSeconds(), u.GetIntervalSeconds(), u.GetCappedPods()
		for _, t := range u.GetTiers() {
			sum.UsageCores += t.GetUsage().GetCurrentCores()
		}
		nodeTiers := map[string]*inferav1.TierCPUUsage{}
		for _, p := range u.GetPods() {
			out.Pods = append(out.Pods, &inferav1.FleetPodUsage{Node: nu.node, Pod: p})
			if req.GetNamespace() != "" {
				addTier(tiers, p.GetTier(), 1, p.GetRequestMilli(), p.GetUsage())
				addTier(nodeTiers, p.GetTier(), 1, p.GetRequestMilli(), p.GetUsage())
			}
		}
		if req.GetNamespace() == "" {
			for _, t := range u.GetTiers() {
				addTier(tiers, t.GetTier(), t.GetPods(), t.GetRequestMilli(), t.GetUsage())
			}
			sum.Tiers = u.GetTiers()
		} else {
			sum.Tiers = orderTiers(nodeTiers)
		}
	}
	slices.SortStableFunc(out.Pods, func(a, b *inferav1.FleetPodUsage) int {
		if c := strings.Compare(a.GetPod().GetNamespace(), b.GetPod().GetNamespace()); c != 0 {
			return c
		}
		return strings.Compare(a.GetPod().GetName(), b.GetPod().GetName())
	})
	out.Tiers = orderTiers(tiers)
	return out, nil
}

// sumStats adds u to the running sum: sums of the current values, means,
// p50s, p95s and maxima (for p50, p95 and max an upper bound of the sum's,
// since the summed series need not peak together); samples is the fewest
// of any part.
func sumStats(to, u *inferav1.CPUUsageStats) {
	if u == nil {
		return
	}
	if to.Samples == 0 || u.GetSamples() < to.Samples {
		to.Samples = u.GetSamples()
	}
	to.CurrentCores += u.GetCurrentCores()
	to.MeanCores += u.GetMeanCores()
	to.P50Cores += u.GetP50Cores()
	to.P95Cores += u.GetP95Cores()
	to.MaxCores += u.GetMaxCores()
}

// orderTiers returns the tiers highest first, unknown names last by name.
func orderTiers(m map[string]*inferav1.TierCPUUsage) []*inferav1.TierCPUUsage {
	out := make([]*inferav1.TierCPUUsage, 0, len(m))
	for _, t := range m {
		out = append(out, t)
	}
	slices.SortFunc(out, func(a, b *inferav1.TierCPUUsage) int {
		ra, rb := wellknown.Tier(a.GetTier()).Rank(), wellknown.Tier(b.GetTier()).Rank()
		if ra != rb {
			return rb - ra
		}
		return strings.Compare(a.GetTier(), b.GetTier())
	})
	return out
}
