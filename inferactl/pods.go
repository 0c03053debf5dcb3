package inferactl

import (
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	inferav1 "github.com/infera-io/temper/apis/proto/infera/v1"
	"github.com/infera-io/temper/apis/wellknown"
)

func newPodsCommand(o *options) *cobra.Command {
	var p *printer
	var node, tier string
	c := &cobra.Command{
		Use:   "pods [--node NODE] [--tier TIER]",
		Short: "Pods with their CPU tier, the rule that decided it, QoS class, priority and CPU request",
		Long: `Pods with their CPU tier. Without -n, pods of every namespace are listed.
The source is infera-gateway when one is configured; otherwise the tiers are
computed locally with the agent's function and each node's
infera.io/priority-mapping, and a note on stderr says so.`,
		Example: `  NAME pods --node worker-1
  NAME pods --tier critical -o wide
  NAME pods -n shop -o name`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := p.check(); err != nil {
				return err
			}
			if tier != "" {
				t, err := wellknown.ParseTier(tier)
				if err != nil {
					return errf(ExitUsage, "", "--tier: %v", err)
				}
				tier = string(t)
			}
			ns, explicit, err := o.namespace()
			if err != nil {
				return err
			}
			if !explicit {
				ns = ""
			}
			rows, err := o.pods(c, node, ns, tier)
			if err != nil {
				return err
			}
			return p.print(o.streams.Out, podsTable(rows), podsObject(rows))
		},
	}
	c.Flags().StringVar(&node, "node", "", "only the pods bound to this node")
	o.nodeFlag(c)
	c.Flags().StringVar(&tier, "tier", "", "only pods of this tier: system, critical, high, normal, low, background")
	_ = c.RegisterFlagCompletionFunc("tier", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		var ts []string
		for _, t := range wellknown.AllTiers() {
			ts = append(ts, string(t))
		}
		return ts, cobra.ShellCompDirectiveNoFileComp
	})
	p = addPrinter(c, true)
	return c
}

// pods lists pods with tiers from the gateway (per node) or locally.
func (o *options) pods(c *cobra.Command, node, ns, tier string) ([]podRow, error) {
	ctx := c.Context()
	gw, err := o.source()
	if err != nil {
		return nil, err
	}
	if gw == nil {
		kube, _, err := o.kubeClient()
		if err != nil {
			return nil, err
		}
		rows, err := localPods(ctx, kube, node, ns, tier)
		if err != nil {
			return nil, err
		}
		o.note("%s", localNote)
		return rows, nil
	}
	nodes := []string{node}
	if node == "" {
		views, err := gw.nodes(ctx, "")
		if err != nil {
			return nil, err
		}
		nodes = nodes[:0]
		for _, v := range views {
			nodes = append(nodes, v.Name)
		}
	}
	var rows []podRow
	for _, n := range nodes {
		ps, err := gw.nodePods(ctx, n, tier)
		if err != nil {
			return nil, err
		}
		for _, p := range ps {
			if ns == "" || p.Namespace == ns {
				rows = append(rows, podRow{node: n, pod: p})
			}
		}
	}
	sortPods(rows)
	return rows, nil
}

func podsTable(rows []podRow) *metaTable {
	cols := []column{{"NAMESPACE", false}, {"NAME", false}, {"NODE", false}, {"TIER", false}, {"SOURCE", false}, {"QOS", false},
		{"PRIORITY", false}, {"CPU-REQUEST", false},
		{"PRIORITY-CLASS", true}, {"CPU-LIMIT", true}, {"OVERCOMMITTED", true}, {"PHASE", true},
		{"AGENT-TIER", true}, {"ENFORCEMENT", true}, {"FINDINGS", true}}
	var out [][]any
	for _, r := range rows {
		p := r.pod
		limit := "none"
		if p.LimitMilli > 0 {
			limit = milli(p.LimitMilli)
		}
		out = append(out, []any{p.Namespace, p.Name, r.node, p.Tier, p.TierSource, p.QosClass, int64(p.Priority), milli(p.RequestMilli),
			orNone(p.PriorityClassName), limit, yesNo(p.Overcommitted), orNone(p.Phase),
			orNone(p.AgentTier), orNone(enforcement(p)), orNone(strings.Join(p.Findings, "; "))})
	}
	return table(cols, out)
}

// enforcement is what the node's agent said of the pod, through the
// gateway: "enforced", or "pending"/"skipped" with the agent's reason; ""
// when the agent was not reached (or without a gateway).
func enforcement(p *inferav1.ClusterPod) string {
	if p.Enforcement == inferav1.EnforcementState_ENFORCEMENT_STATE_UNSPECIFIED {
		return ""
	}
	s := strings.ToLower(strings.TrimPrefix(p.Enforcement.String(), "ENFORCEMENT_STATE_"))
	if p.EnforcementReason != "" {
		s += " (" + p.EnforcementReason + ")"
	}
	return s
}

func podsObject(rows []podRow) *unstructured.UnstructuredList {
	var items []*unstructured.Unstructured
	for _, r := range rows {
		it, err := item("ClusterPod", r.pod, r.pod.Name, r.pod.Namespace)
		if err == nil {
			it.Object["node"] = r.node
			items = append(items, it)
		}
	}
	return list(items)
}
