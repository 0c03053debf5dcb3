package inferactl

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"

	inferav1 "github.com/infera-io/temper/apis/proto/infera/v1"
)

// fleetData is what status shows, from either source.
type fleetData struct {
	source  string
	fleet   *inferav1.Fleet
	nodes   []*inferav1.NodeView
	savings *inferav1.Savings
	pods    map[string]int32 // pods per tier, computed locally; nil through the gateway
}

func (o *options) loadFleet(ctx context.Context) (*fleetData, error) {
	gw, err := o.source()
	if err != nil {
		return nil, err
	}
	if gw != nil {
		d := &fleetData{source: "infera-gateway " + gw.base.String()}
		if d.fleet, err = gw.fleet(ctx); err != nil {
			return nil, err
		}
		if d.nodes, err = gw.nodes(ctx, ""); err != nil {
			return nil, err
		}
		if d.savings, err = gw.savings(ctx); err != nil {
			return nil, err
		}
		return d, nil
	}
	kube, _, err := o.kubeClient()
	if err != nil {
		return nil, err
	}
	return localFleetData(ctx, kube)
}

func localFleetData(ctx context.Context, kube kubernetes.Interface) (*fleetData, error) {
	ns, err := localNodes(ctx, kube, "")
	if err != nil {
		return nil, err
	}
	now := time.Now()
	d := &fleetData{source: "local (the API server's objects; no gateway configured)", pods: map[string]int32{}}
	for _, n := range ns {
		d.nodes = append(d.nodes, localNodeView(n, now))
	}
	d.fleet = localFleet(d.nodes, now)
	rows, err := localPods(ctx, kube, "", "", "")
	if err != nil {
		return nil, err
	}
	for _, r := range rows {
		d.pods[r.pod.Tier]++
	}
	// Savings count every pod, bound or not, as the gateway does.
	pl, err := kube.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, kubeError(err, "pods")
	}
	all := make([]*corev1.Pod, 0, len(pl.Items))
	for i := range pl.Items {
		all = append(all, &pl.Items[i])
	}
	d.savings = localSavings(all)
	return d, nil
}

func newStatusCommand(o *options) *cobra.Command {
	var p *printer
	c := &cobra.Command{
		Use:   "status",
		Short: "The fleet at a glance: agents, backends, safe mode, stale agents, pods per tier, CPU freed by overcommit",
		Example: `  NAME status
  NAME status -o yaml`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := p.check(); err != nil {
				return err
			}
			d, err := o.loadFleet(c.Context())
			if err != nil {
				return err
			}
			if p.human() {
				writeString(o.streams.Out, d.human())
				return nil
			}
			obj, err := d.object()
			if err != nil {
				return err
			}
			return p.print(o.streams.Out, nil, obj)
		},
	}
	p = addPrinter(c, false)
	return c
}

func counts(m map[string]int32) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func (d *fleetData) backends() map[string]int32 {
	m := map[string]int32{}
	for _, n := range d.nodes {
		b := n.Backend
		if b == "" {
			b = "<no tier-load>"
		}
		m[b]++
	}
	return m
}

func (d *fleetData) names(keep func(*inferav1.NodeView) bool) []string {
	var out []string
	for _, n := range d.nodes {
		if keep(n) {
			out = append(out, n.Name)
		}
	}
	return out
}

func nameList(ns []string) string {
	const max = 10
	if len(ns) > max {
		return strings.Join(ns[:max], ", ") + fmt.Sprintf(" and %d more", len(ns)-max)
	}
	return strings.Join(ns, ", ")
}

func (d *fleetData) human() string {
	var b strings.Builder
	f := d.fleet
	ready := len(d.names(func(n *inferav1.NodeView) bool { return n.Ready }))
	fmt.Fprintf(&b, "Source:       %s\n", d.source)
	fmt.Fprintf(&b, "Nodes:        %d (%d ready)\n", f.Nodes, ready)
	fmt.Fprintf(&b, "Agents:       %s\n", counts(f.AgentStates))
	fmt.Fprintf(&b, "Backends:     %s\n", counts(d.backends()))
	safe := d.names(func(n *inferav1.NodeView) bool { return n.SafeModeRequested })
	fmt.Fprintf(&b, "Safe mode:    %d requested", len(safe))
	if len(safe) > 0 {
		fmt.Fprintf(&b, ": %s", nameList(safe))
	}
	inSafe := d.names(func(n *inferav1.NodeView) bool { return n.AgentState == "safe-mode" })
	fmt.Fprintf(&b, "; agents in safe mode: %d\n", len(inSafe))
	stale := d.names(func(n *inferav1.NodeView) bool { return !n.TierLoadFresh })
	fmt.Fprintf(&b, "Stale agents: %d without a fresh tier-load", len(stale))
	if len(stale) > 0 {
		fmt.Fprintf(&b, ": %s", nameList(stale))
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "CPU:          %s allocatable, %s fenced for critical pods\n", milli(f.AllocatableMilli), milli(f.FencedMilli))
	b.WriteString("Tiers (the agents' tier-loads, fresh nodes only):\n")
	fmt.Fprintf(&b, "  %-11s %5s %9s %9s\n", "TIER", "PODS", "REQUESTS", "LIMITS")
	for _, t := range f.Tiers {
		fmt.Fprintf(&b, "  %-11s %5d %9s %9s\n", t.Tier, t.Pods, milli(t.RequestMilli), milli(t.LimitMilli))
	}
	if len(f.Tiers) == 0 {
		b.WriteString("  (no node has a fresh tier-load)\n")
	}
	if d.pods != nil {
		fmt.Fprintf(&b, "Pods by tier: %s (computed locally from the Pod specs)\n", counts(d.pods))
	}
	s := d.savings
	fmt.Fprintf(&b, "Overcommit:   %d pods deflated, %s CPU freed (requests %s -> %s)\n", s.PodsDeflated, milli(s.FreedMilli),
		milli(s.OriginalRequestMilli), milli(s.CurrentRequestMilli))
	for _, inv := range s.Invalid {
		fmt.Fprintf(&b, "  not counted: %s\n", inv)
	}
	return b.String()
}

// object is the -o json|yaml form: kind Status with the gateway's messages.
func (d *fleetData) object() (*unstructured.Unstructured, error) {
	toMap := func(m proto.Message) (any, error) {
		it, err := item("x", m, "", "")
		if err != nil {
			return nil, err
		}
		delete(it.Object, "apiVersion")
		delete(it.Object, "kind")
		delete(it.Object, "metadata")
		return it.Object, nil
	}
	fleet, err := toMap(d.fleet)
	if err != nil {
		return nil, err
	}
	savings, err := toMap(d.savings)
	if err != nil {
		return nil, err
	}
	backends := map[string]any{}
	for k, v := range d.backends() {
		backends[k] = int64(v)
	}
	obj := map[string]any{
		"apiVersion": APIVersion, "kind": "Status", "metadata": map[string]any{"name": "fleet"},
		"source": d.source, "fleet": fleet, "savings": savings, "backends": backends,
		"safeModeNodes":   strs(d.names(func(n *inferav1.NodeView) bool { return n.SafeModeRequested })),
		"staleAgentNodes": strs(d.names(func(n *inferav1.NodeView) bool { return !n.TierLoadFresh })),
	}
	if d.pods != nil {
		pods := map[string]any{}
		for k, v := range d.pods {
			pods[k] = int64(v)
		}
		obj["podsByTier"] = pods
	}
	return &unstructured.Unstructured{Object: obj}, nil
}

func strs(s []string) []any {
	out := make([]any, 0, len(s))
	for _, v := range s {
		out = append(out, v)
	}
	return out
}
