package gateway

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"

	inferaclient "github.com/infera-io/temper/apis/client/clientset/versioned"
	inferalisters "github.com/infera-io/temper/apis/client/listers/infera/v1alpha1"
	configv1alpha1 "github.com/infera-io/temper/apis/config/v1alpha1"
	"github.com/infera-io/temper/apis/explain"
	inferav1alpha1 "github.com/infera-io/temper/apis/infera/v1alpha1"
	inferav1 "github.com/infera-io/temper/apis/proto/infera/v1"
	"github.com/infera-io/temper/apis/tiering"
	"github.com/infera-io/temper/apis/wellknown"
)

// Service implements ClusterService. Reads use the gateway's own identity
// after the caller was authorized; writes are made as the caller.
type Service struct {
	inferav1.UnimplementedClusterServiceServer

	auth        *Auth
	kube        kubernetes.Interface
	infera      inferaclient.Interface
	nodes       corelisters.NodeLister
	reports     func() inferalisters.NodeQoSReportLister // nil lister: CRD absent
	impersonate func(u *authnv1.UserInfo) (kubernetes.Interface, error)
	auditor     *Auditor
	events      *broadcaster
	cfg         configv1alpha1.GatewayConfiguration
	thresholds  tiering.Thresholds
	loads       *loadCache
	now         func() time.Time
	// agents reaches the node agents; nil when not configured.
	agents *agentPool
}

func (s *Service) authorize(ctx context.Context, attrs Attributes) error {
	noteAttributes(ctx, attrs)
	u, ok := UserFrom(ctx)
	if !ok {
		return status.Error(codes.Unauthenticated, "no authenticated user")
	}
	allowed, reason, err := s.auth.Authorize(ctx, u, attrs)
	if err != nil {
		return status.Errorf(codes.Unavailable, "authorization: %v", err)
	}
	if !allowed {
		annotate(ctx, AuditDecisionKey, "forbid")
		msg := fmt.Sprintf("user %q cannot %s", u.Username, attrs)
		if reason != "" {
			msg += ": " + reason
		}
		return status.Error(codes.PermissionDenied, msg)
	}
	annotate(ctx, AuditDecisionKey, "allow")
	return nil
}

func (s *Service) reportLister() inferalisters.NodeQoSReportLister {
	if s.reports == nil {
		return nil
	}
	return s.reports()
}

func (s *Service) report(l inferalisters.NodeQoSReportLister, name string) *inferav1alpha1.NodeQoSReport {
	if l == nil {
		return nil
	}
	r, err := l.Get(name)
	if err != nil {
		return nil
	}
	return r
}

func parseSelector(field, sel string) (labels.Selector, error) {
	s, err := labels.Parse(sel)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "%s: %v", field, err)
	}
	return s, nil
}

func (s *Service) listNodes(sel labels.Selector) ([]*corev1.Node, error) {
	ns, err := s.nodes.List(sel)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "failed to list nodes: %v", err)
	}
	slices.SortFunc(ns, func(a, b *corev1.Node) int { return strings.Compare(a.Name, b.Name) })
	return ns, nil
}

func (s *Service) getNode(name string) (*corev1.Node, error) {
	if name == "" {
		return nil, status.Error(codes.InvalidArgument, "name: a node name is required")
	}
	n, err := s.nodes.Get(name)
	if apierrors.IsNotFound(err) {
		return nil, status.Errorf(codes.NotFound, "node %q not found", name)
	}
	if err != nil {
		return nil, status.Errorf(codes.Internal, "failed to get node %q: %v", name, err)
	}
	return n, nil
}

// GetFleet implements ClusterService.
func (s *Service) GetFleet(ctx context.Context, _ *inferav1.GetFleetRequest) (*inferav1.Fleet, error) {
	if err := s.authorize(ctx, Attributes{Verb: "list", Resource: "nodes"}); err != nil {
		return nil, err
	}
	ns, err := s.listNodes(labels.Everything())
	if err != nil {
		return nil, err
	}
	now := s.now()
	f := &inferav1.Fleet{Nodes: int32(len(ns)), AgentStates: map[string]int32{}, Time: timestamppb.New(now),
		NodeQosReportsInstalled: s.reportLister() != nil}
	sums := map[string]*inferav1.TierUsage{}
	for _, n := range ns {
		v := nodeViewCached(n, nil, now, s.cfg.TierLoadMaxAge.Duration, s.loads)
		f.AgentStates[v.AgentState]++
		f.AllocatableMilli += v.AllocatableMilli
		if v.SafeModeRequested {
			f.SafeModeRequested++
		}
		if !v.TierLoadFresh {
			f.StaleTierLoad++
			continue
		}
		f.FencedMilli += v.FencedMilli
		for _, u := range v.Tiers {
			t := sums[u.Tier]
			if t == nil {
				t = &inferav1.TierUsage{Tier: u.Tier}
				sums[u.Tier] = t
				f.Tiers = append(f.Tiers, t)
			}
			t.Pods += u.Pods
			t.RequestMilli += u.RequestMilli
			t.LimitMilli += u.LimitMilli
		}
	}
	slices.SortFunc(f.Tiers, func(a, b *inferav1.TierUsage) int {
		return wellknown.Tier(b.Tier).Rank() - wellknown.Tier(a.Tier).Rank()
	})
	return f, nil
}

// ListNodes implements ClusterService.
func (s *Service) ListNodes(ctx context.Context, req *inferav1.ListNodesRequest) (*inferav1.ListNodesResponse, error) {
	if err := s.authorize(ctx, Attributes{Verb: "list", Resource: "nodes"}); err != nil {
		return nil, err
	}
	sel, err := parseSelector("label_selector", req.GetLabelSelector())
	if err != nil {
		return nil, err
	}
	ns, err := s.listNodes(sel)
	if err != nil {
		return nil, err
	}
	start, end, next, err := page(req.GetPageSize(), req.GetPageToken(), filterKey(req.GetLabelSelector()), len(ns))
	if err != nil {
		return nil, err
	}
	now, rl := s.now(), s.reportLister()
	out := &inferav1.ListNodesResponse{NextPageToken: next, TotalSize: int32(len(ns))}
	for _, n := range ns[start:end] {
		out.Nodes = append(out.Nodes, nodeViewCached(n, s.report(rl, n.Name), now, s.cfg.TierLoadMaxAge.Duration, s.loads))
	}
	return out, nil
}

// GetNode implements ClusterService.
func (s *Service) GetNode(ctx context.Context, req *inferav1.GetNodeRequest) (*inferav1.NodeView, error) {
	if err := s.authorize(ctx, Attributes{Verb: "get", Resource: "nodes", Name: req.GetName()}); err != nil {
		return nil, err
	}
	n, err := s.getNode(req.GetName())
	if err != nil {
		return nil, err
	}
	return nodeView(n, s.report(s.reportLister(), n.Name), s.now(), s.cfg.TierLoadMaxAge.Duration), nil
}

// ListNodePods implements ClusterService.
func (s *Service) ListNodePods(ctx context.Context, req *inferav1.ListNodePodsRequest) (*inferav1.ListNodePodsResponse, error) {
	if err := s.authorize(ctx, Attributes{Verb: "get", Resource: "nodes", Subresource: "pods", Name: req.GetNode()}); err != nil {
		return nil, err
	}
	var tier wellknown.Tier
	if req.GetTier() != "" {
		t, err := wellknown.ParseTier(req.GetTier())
		if err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "tier: %v", err)
		}
		tier = t
	}
	node, err := s.getNode(req.GetNode())
	if err != nil {
		return nil, err
	}
	list, err := s.kube.CoreV1().Pods("").List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("spec.nodeName", req.GetNode()).String()})
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "failed to list the pods of node %q: %v", req.GetNode(), err)
	}
	pods := make([]*inferav1.ClusterPod, 0, len(list.Items))
	for i := range list.Items {
		p := s.clusterPod(&list.Items[i])
		if tier == "" || p.Tier == string(tier) {
			pods = append(pods, p)
		}
	}
	slices.SortFunc(pods, func(a, b *inferav1.ClusterPod) int {
		if c := strings.Compare(a.Namespace, b.Namespace); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	start, end, next, err := page(req.GetPageSize(), req.GetPageToken(), filterKey(req.GetNode(), req.GetTier()), len(pods))
	if err != nil {
		return nil, err
	}
	// What the node's agent enforces for each pod; the pods come back
	// whether or not it answers.
	agent := s.mergeAgentPods(ctx, node, pods[start:end])
	return &inferav1.ListNodePodsResponse{Pods: pods[start:end], NextPageToken: next, TotalSize: int32(len(pods)), Agent: agent}, nil
}

func (s *Service) clusterPod(p *corev1.Pod) *inferav1.ClusterPod {
	r := tiering.Classify(p, s.thresholds)
	cpu := tiering.PodCPU(p)
	out := &inferav1.ClusterPod{
		Namespace: p.Namespace, Name: p.Name, Uid: string(p.UID), Tier: string(r.Tier), TierSource: string(r.Source),
		QosClass: string(r.QOSClass), PriorityClassName: p.Spec.PriorityClassName,
		RequestMilli: cpu.RequestMilli, LimitMilli: cpu.LimitMilli, Phase: string(p.Status.Phase),
	}
	if p.Spec.Priority != nil {
		out.Priority = *p.Spec.Priority
	}
	_, out.Overcommitted = p.Annotations[wellknown.OriginalCPURequestsAnnotation]
	for _, f := range append(r.Findings, cpu.Findings...) {
		out.Findings = append(out.Findings, f.String())
	}
	return out
}

// ExplainTier implements ClusterService.
func (s *Service) ExplainTier(ctx context.Context, req *inferav1.ExplainTierRequest) (*inferav1.TierExplanation, error) {
	if err := s.authorize(ctx, Attributes{Verb: "get", Resource: "pods", Namespace: req.GetNamespace(), Name: req.GetName()}); err != nil {
		return nil, err
	}
	if req.GetNamespace() == "" || req.GetName() == "" {
		return nil, status.Error(codes.InvalidArgument, "namespace, name: both are required")
	}
	p, err := s.kube.CoreV1().Pods(req.GetNamespace()).Get(ctx, req.GetName(), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, status.Errorf(codes.NotFound, "pod %s/%s not found", req.GetNamespace(), req.GetName())
	}
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "failed to get pod %s/%s: %v", req.GetNamespace(), req.GetName(), err)
	}
	return explain.Tier(p, s.thresholds), nil
}

func crdAbsent(err error) bool {
	return apierrors.IsNotFound(err) || meta404(err)
}

// meta404 is a discovery "the server could not find the requested resource".
func meta404(err error) bool {
	var se apierrors.APIStatus
	return errors.As(err, &se) && se.Status().Code == 404
}

// ListPolicies implements ClusterService.
func (s *Service) ListPolicies(ctx context.Context, req *inferav1.ListPoliciesRequest) (*inferav1.ListPoliciesResponse, error) {
	if err := s.authorize(ctx, Attributes{Verb: "list", Resource: "inferapolicies"}); err != nil {
		return nil, err
	}
	list, err := s.infera.InferaV1alpha1().InferaPolicies().List(ctx, metav1.ListOptions{})
	if crdAbsent(err) {
		_, _, _, perr := page(req.GetPageSize(), req.GetPageToken(), "", 0)
		return &inferav1.ListPoliciesResponse{}, perr
	}
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "failed to list InferaPolicies: %v", err)
	}
	items := list.Items
	sort.Slice(items, func(i, j int) bool { return items[i].Name < items[j].Name })
	start, end, next, err := page(req.GetPageSize(), req.GetPageToken(), "", len(items))
	if err != nil {
		return nil, err
	}
	out := &inferav1.ListPoliciesResponse{CrdInstalled: true, NextPageToken: next, TotalSize: int32(len(items))}
	for _, p := range items[start:end] {
		v := &inferav1.Policy{Name: p.Name, NodeSelector: metav1.FormatLabelSelector(&p.Spec.NodeSelector), SafeMode: p.Spec.SafeMode,
			MatchedNodes: p.Status.MatchedNodes, SafeModeNodes: p.Status.SafeModeNodes, Conditions: conditions(p.Status.Conditions)}
		if m := p.Spec.PriorityMapping; m != nil {
			v.PriorityMapping = &inferav1.Thresholds{System: wellknown.DefaultSystemMinPriority, Critical: m.Critical, High: m.High, Normal: m.Normal, Low: m.Low}
		}
		out.Policies = append(out.Policies, v)
	}
	return out, nil
}

// ListOvercommitProfiles implements ClusterService.
func (s *Service) ListOvercommitProfiles(ctx context.Context, req *inferav1.ListOvercommitProfilesRequest) (*inferav1.ListOvercommitProfilesResponse, error) {
	if err := s.authorize(ctx, Attributes{Verb: "list", Resource: "overcommitprofiles"}); err != nil {
		return nil, err
	}
	list, err := s.infera.InferaV1alpha1().OvercommitProfiles().List(ctx, metav1.ListOptions{})
	if crdAbsent(err) {
		_, _, _, perr := page(req.GetPageSize(), req.GetPageToken(), "", 0)
		return &inferav1.ListOvercommitProfilesResponse{}, perr
	}
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "failed to list OvercommitProfiles: %v", err)
	}
	items := list.Items
	sort.Slice(items, func(i, j int) bool { return items[i].Name < items[j].Name })
	start, end, next, err := page(req.GetPageSize(), req.GetPageToken(), "", len(items))
	if err != nil {
		return nil, err
	}
	out := &inferav1.ListOvercommitProfilesResponse{CrdInstalled: true, NextPageToken: next, TotalSize: int32(len(items))}
	for _, p := range items[start:end] {
		v := &inferav1.OvercommitProfile{Name: p.Name, NamespaceSelector: metav1.FormatLabelSelector(&p.Spec.NamespaceSelector),
			Ratios: map[string]float64{}, FloorMilli: p.Spec.FloorMilli, DryRun: p.Spec.DryRun, BackgroundBestEffort: p.Spec.BackgroundBestEffort,
			MatchedNamespaces: p.Status.MatchedNamespaces, PodsDeflated: p.Status.PodsDeflated,
			CpuFreedMilli: p.Status.CPUFreed.MilliValue(), Conditions: conditions(p.Status.Conditions)}
		for _, r := range p.Spec.Ratios {
			v.Ratios[string(r.Tier)] = r.Ratio
		}
		out.Profiles = append(out.Profiles, v)
	}
	return out, nil
}

// GetSavings implements ClusterService.
func (s *Service) GetSavings(ctx context.Context, _ *inferav1.GetSavingsRequest) (*inferav1.Savings, error) {
	if err := s.authorize(ctx, Attributes{Verb: "get", Resource: "savings"}); err != nil {
		return nil, err
	}
	var tally explain.SavingsTally
	opts := metav1.ListOptions{Limit: 500}
	for {
		list, err := s.kube.CoreV1().Pods("").List(ctx, opts)
		if err != nil {
			return nil, status.Errorf(codes.Unavailable, "failed to list pods: %v", err)
		}
		for i := range list.Items {
			tally.Add(&list.Items[i])
		}
		if list.Continue == "" {
			break
		}
		opts.Continue = list.Continue
	}
	return tally.Savings(), nil
}

// ListAuditEvents implements ClusterService.
func (s *Service) ListAuditEvents(ctx context.Context, req *inferav1.ListAuditEventsRequest) (*inferav1.ListAuditEventsResponse, error) {
	if err := s.authorize(ctx, Attributes{Verb: "list", Resource: "auditevents"}); err != nil {
		return nil, err
	}
	evs := s.auditor.Recent()
	// Tokens hold offsets from the newest event, so events recorded
	// between pages shift the listing; the filter ties a token to the
	// newest event it was issued against.
	newest := ""
	if len(evs) > 0 {
		newest = string(evs[0].AuditID)
	}
	if req.GetPageToken() != "" {
		newest = tokenFilter(req.GetPageToken())
		for i := range evs {
			if string(evs[i].AuditID) == newest {
				evs = evs[i:]
				break
			}
		}
	}
	start, end, next, err := page(req.GetPageSize(), req.GetPageToken(), newest, len(evs))
	if err != nil {
		return nil, err
	}
	out := &inferav1.ListAuditEventsResponse{NextPageToken: next}
	for i := start; i < end; i++ {
		out.Events = append(out.Events, auditProto(&evs[i]))
	}
	return out, nil
}
