package inferactl

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"

	"github.com/infera-io/temper/apis/explain"
	inferav1 "github.com/infera-io/temper/apis/proto/infera/v1"
	"github.com/infera-io/temper/apis/tiering"
	"github.com/infera-io/temper/apis/wellknown"
)

// The local views: what the gateway's messages would say, computed from the
// API server's objects when no gateway is configured. They follow the
// agent: each node's infera.io/priority-mapping, else the default
// thresholds.

// tierLoadMaxAge is the gateway's default: older tier-loads are stale.
const tierLoadMaxAge = 180 * time.Second

func localNodeView(n *corev1.Node, now time.Time) *inferav1.NodeView {
	v := &inferav1.NodeView{
		Name: n.Name, Labels: n.Labels,
		SafeModeRequested: wellknown.IsSafeModeRequested(n.Annotations),
		AgentStatus:       n.Annotations[wellknown.AgentStatusAnnotation],
		AgentState:        "unknown",
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
		if strings.HasPrefix(st.State, "enforcing/") {
			v.AgentState = "enforcing"
		}
	}
	raw, ok := n.Annotations[wellknown.TierLoadAnnotation]
	switch load, err := wellknown.ParseTierLoad(raw); {
	case !ok:
		v.TierLoadError = "annotation " + wellknown.TierLoadAnnotation + " is absent"
	case err != nil:
		v.TierLoadError = err.Error()
	default:
		v.Backend = load.Backend
		if ferr := load.CheckFresh(now, tierLoadMaxAge); ferr != nil {
			v.TierLoadError = "annotation " + wellknown.TierLoadAnnotation + ": " + ferr.Error()
		} else {
			v.TierLoadFresh, v.Generation, v.FencedMilli = true, load.Gen, load.FencedMilli
			for _, t := range wellknown.AllTiers() {
				u := load.Tiers[t]
				if t == wellknown.TierSystem && u.Pods == 0 {
					continue
				}
				v.Tiers = append(v.Tiers, &inferav1.TierUsage{Tier: string(t), Pods: u.Pods, RequestMilli: u.RequestMilli, LimitMilli: u.LimitMilli})
			}
		}
	}
	return v
}

func localNodes(ctx context.Context, kube kubernetes.Interface, selector string) ([]*corev1.Node, error) {
	l, err := kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil, kubeError(err, "nodes")
	}
	out := make([]*corev1.Node, len(l.Items))
	for i := range l.Items {
		out[i] = &l.Items[i]
	}
	slices.SortFunc(out, func(a, b *corev1.Node) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

func localFleet(views []*inferav1.NodeView, now time.Time) *inferav1.Fleet {
	f := &inferav1.Fleet{Nodes: int32(len(views)), AgentStates: map[string]int32{}, Time: timestamppb.New(now)}
	sums := map[string]*inferav1.TierUsage{}
	for _, v := range views {
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
	return f
}

// podRow is a pod with the node it runs on (ClusterPod has no node field:
// the gateway lists pods per node).
type podRow struct {
	node string
	pod  *inferav1.ClusterPod
}

// thresholdsFor returns the node's thresholds and, when its
// infera.io/priority-mapping is present but unusable, why.
func thresholdsFor(nodes map[string]*corev1.Node, node string) (tiering.Thresholds, error) {
	if n, ok := nodes[node]; ok {
		return tiering.ForNode(n.Annotations, tiering.DefaultThresholds())
	}
	return tiering.DefaultThresholds(), nil
}

func localClusterPod(p *corev1.Pod, t tiering.Thresholds) *inferav1.ClusterPod {
	r := tiering.Classify(p, t)
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

// localPods lists bound pods (of one node, one namespace, one tier when
// given) with their tiers. Unscheduled pods have no tier in force yet.
func localPods(ctx context.Context, kube kubernetes.Interface, node, namespace, tier string) ([]podRow, error) {
	sel := fields.OneTermNotEqualSelector("spec.nodeName", "")
	what := "pods"
	if node != "" {
		sel = fields.OneTermEqualSelector("spec.nodeName", node)
		if _, err := kube.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{}); err != nil {
			return nil, kubeError(err, fmt.Sprintf("node %q", node))
		}
		what = "the pods of node " + node
	}
	pl, err := kube.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{FieldSelector: sel.String()})
	if err != nil {
		return nil, kubeError(err, what)
	}
	nodes := map[string]*corev1.Node{}
	if nl, err := kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); err == nil {
		for i := range nl.Items {
			nodes[nl.Items[i].Name] = &nl.Items[i]
		}
	} // Without list on nodes, the default thresholds apply.
	var rows []podRow
	for i := range pl.Items {
		p := &pl.Items[i]
		t, _ := thresholdsFor(nodes, p.Spec.NodeName)
		cp := localClusterPod(p, t)
		if tier != "" && cp.Tier != tier {
			continue
		}
		rows = append(rows, podRow{node: p.Spec.NodeName, pod: cp})
	}
	sortPods(rows)
	return rows, nil
}

func sortPods(rows []podRow) {
	slices.SortFunc(rows, func(a, b podRow) int {
		if c := strings.Compare(a.pod.Namespace, b.pod.Namespace); c != 0 {
			return c
		}
		return strings.Compare(a.pod.Name, b.pod.Name)
	})
}

// localExplain explains a pod's tier as the agent on its node decides it.
func localExplain(ctx context.Context, kube kubernetes.Interface, ns, name string) (*inferav1.TierExplanation, error) {
	p, err := kube.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, kubeError(err, fmt.Sprintf("pod %s/%s", ns, name))
	}
	t := tiering.DefaultThresholds()
	var mappingErr error
	if p.Spec.NodeName != "" {
		if n, err := kube.CoreV1().Nodes().Get(ctx, p.Spec.NodeName, metav1.GetOptions{}); err == nil {
			t, mappingErr = tiering.ForNode(n.Annotations, t)
		}
	}
	e := explain.Tier(p, t)
	if mappingErr != nil {
		e.Findings = append(e.Findings, "node "+p.Spec.NodeName+": "+mappingErr.Error()+"; default thresholds used")
	}
	return e, nil
}

// localSavings sums the CPU freed by overcommit over pods, as the
// gateway's GetSavings does (wellknown.PodCPUSavings is the one reader).
func localSavings(pods []*corev1.Pod) *inferav1.Savings {
	var tally explain.SavingsTally
	for _, p := range pods {
		tally.Add(p)
	}
	return tally.Savings()
}
