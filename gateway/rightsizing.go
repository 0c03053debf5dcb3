package gateway

import (
	"context"
	"slices"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	inferav1 "github.com/infera-io/temper/apis/proto/infera/v1"
	"github.com/infera-io/temper/apis/usage"
)

// owner names a pod's workload: its controller, with a ReplicaSet that a
// Deployment made (its name is the Deployment's plus "-" and the pods'
// pod-template-hash) taken for that Deployment.
func owner(p *corev1.Pod) (kind, name string) {
	ref := metav1.GetControllerOf(p)
	if ref == nil {
		return "Pod", p.Name
	}
	if ref.Kind == "ReplicaSet" {
		if h := p.Labels["pod-template-hash"]; h != "" {
			if d, ok := strings.CutSuffix(ref.Name, "-"+h); ok && d != "" {
				return "Deployment", d
			}
		}
	}
	return ref.Kind, ref.Name
}

// GetRightsizing implements ClusterService.
func (s *Service) GetRightsizing(ctx context.Context, req *inferav1.GetRightsizingRequest) (*inferav1.Rightsizing, error) {
	ns := req.GetNamespace()
	if err := s.authorize(ctx, Attributes{Verb: "list", Resource: "pods", Namespace: ns}); err != nil {
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
	if s.agents == nil {
		return nil, status.Error(codes.FailedPrecondition, errAgentsOff.Error())
	}
	pods, err := s.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "failed to list the pods: %v", err)
	}
	byUID := make(map[string]*corev1.Pod, len(pods.Items))
	for i := range pods.Items {
		byUID[string(pods.Items[i].UID)] = &pods.Items[i]
	}
	pol := usage.DefaultPolicy()
	out := &inferav1.Rightsizing{Policy: &inferav1.RightsizingPolicy{Headroom: pol.Headroom, RoundMilli: pol.RoundMilli,
		FloorMilli: pol.FloorMilli, MinSamples: int32(pol.MinSamples), Tolerance: pol.Tolerance}}
	type acc struct {
		w       *inferav1.WorkloadRightsizing
		samples []float64
	}
	ws := map[[3]string]*acc{}
	for _, nu := range s.fleetUsage(ctx, nodes, ns, true) {
		out.Agents = append(out.Agents, reach(nu.node, nu.addr, nu.err))
		if nu.err != nil {
			out.Unreachable++
			continue
		}
		for _, pu := range nu.usage.GetPods() {
			p := byUID[pu.GetUid()]
			if p == nil {
				continue // gone since its samples
			}
			kind, name := owner(p)
			key := [3]string{p.Namespace, kind, name}
			a := ws[key]
			if a == nil {
				a = &acc{w: &inferav1.WorkloadRightsizing{Namespace: p.Namespace, Kind: kind, Name: name}}
				ws[key] = a
			}
			w := a.w
			w.Pods++
			w.RequestMilli += pu.GetRequestMilli()
			w.PodRequestMilli = max(w.PodRequestMilli, pu.GetRequestMilli())
			w.WindowSeconds = max(w.WindowSeconds, nu.usage.GetWindowSeconds())
			if !slices.Contains(w.Nodes, nu.node) {
				w.Nodes = append(w.Nodes, nu.node)
			}
			w.PodNames = append(w.PodNames, p.Name)
			for _, c := range pu.GetSampleCores() {
				a.samples = append(a.samples, float64(c))
			}
		}
	}
	for _, a := range ws {
		w := a.w
		st := usage.Summarize(a.samples)
		w.Usage = &inferav1.CPUUsageStats{Samples: int32(st.Samples), CurrentCores: st.Current, MeanCores: st.Mean,
			P50Cores: st.P50, P95Cores: st.P95, MaxCores: st.Max}
		sg := usage.Suggest(pol, st, w.PodRequestMilli)
		w.SuggestedRequestMilli, w.Verdict, w.Evidence = sg.RequestMilli, sg.Verdict, sg.Evidence
		w.SuggestedTotalMilli = sg.RequestMilli * int64(w.Pods)
		slices.Sort(w.Nodes)
		slices.Sort(w.PodNames)
		out.Workloads = append(out.Workloads, w)
	}
	slices.SortFunc(out.Workloads, func(a, b *inferav1.WorkloadRightsizing) int {
		return strings.Compare(a.Namespace+"\x00"+a.Kind+"\x00"+a.Name, b.Namespace+"\x00"+b.Kind+"\x00"+b.Name)
	})
	return out, nil
}
