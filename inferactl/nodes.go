package inferactl

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	inferav1 "github.com/infera-io/temper/apis/proto/infera/v1"
	"github.com/infera-io/temper/apis/wellknown"
)

func newNodesCommand(o *options) *cobra.Command {
	var p *printer
	var selector string
	c := &cobra.Command{
		Use:   "nodes [NAME...]",
		Short: "Nodes with their agent state, backend, safe mode and pods per tier",
		Example: `  NAME nodes
  NAME nodes -l pool=gpu -o wide
  NAME nodes worker-1 -o yaml`,
		RunE: func(c *cobra.Command, args []string) error {
			if err := p.check(); err != nil {
				return err
			}
			ctx := c.Context()
			var views []*inferav1.NodeView
			gw, err := o.source()
			if err != nil {
				return err
			}
			switch {
			case gw != nil && len(args) > 0:
				for _, a := range args {
					v, err := gw.node(ctx, a)
					if err != nil {
						return err
					}
					views = append(views, v)
				}
			case gw != nil:
				if views, err = gw.nodes(ctx, selector); err != nil {
					return err
				}
			default:
				kube, _, err := o.kubeClient()
				if err != nil {
					return err
				}
				ns, err := localNodes(ctx, kube, selector)
				if err != nil {
					return err
				}
				want := map[string]bool{}
				for _, a := range args {
					want[a] = true
				}
				now := time.Now()
				for _, n := range ns {
					if len(args) == 0 || want[n.Name] {
						views = append(views, localNodeView(n, now))
						delete(want, n.Name)
					}
				}
				for _, a := range args {
					if want[a] {
						return errf(ExitNotFound, "List the nodes with: "+o.cmdName+" nodes", "node %q not found", a)
					}
				}
				o.note("no gateway configured (--gateway or $%s); node views computed locally from the Node annotations", EnvGateway)
			}
			obj := runtime.Object(nodesObject(views))
			if len(args) == 1 && len(views) == 1 {
				// One named node prints as the object, as kubectl get does.
				if it, err := item("NodeView", views[0], views[0].Name, ""); err == nil {
					obj = it
				}
			}
			return p.print(o.streams.Out, nodesTable(views), obj)
		},
	}
	c.ValidArgsFunction = o.nodeArgs
	c.Flags().StringVarP(&selector, "selector", "l", "", "label selector of the nodes (e.g. pool=gpu)")
	p = addPrinter(c, true)
	return c
}

func tierPods(v *inferav1.NodeView, t wellknown.Tier) any {
	if !v.TierLoadFresh {
		return "-"
	}
	for _, u := range v.Tiers {
		if u.Tier == string(t) {
			return int64(u.Pods)
		}
	}
	return int64(0)
}

func nodesTable(views []*inferav1.NodeView) *metaTable {
	cols := []column{{"NAME", false}, {"READY", false}, {"AGENT", false}, {"BACKEND", false}, {"SAFE-MODE", false},
		{"CRITICAL", false}, {"HIGH", false}, {"NORMAL", false}, {"LOW", false}, {"BACKGROUND", false}, {"FENCED", false},
		{"INTERNAL-IP", true}, {"CPU", true}, {"GENERATION", true}, {"TIER-LOAD", true}, {"AGENT-STATUS", true}}
	var rows [][]any
	for _, v := range views {
		load := "fresh"
		if !v.TierLoadFresh {
			load = v.TierLoadError
		}
		fenced := "-"
		if v.TierLoadFresh {
			fenced = milli(v.FencedMilli)
		}
		rows = append(rows, []any{v.Name, yesNo(v.Ready), v.AgentState, orNone(v.Backend), yesNo(v.SafeModeRequested),
			tierPods(v, wellknown.TierCritical), tierPods(v, wellknown.TierHigh), tierPods(v, wellknown.TierNormal),
			tierPods(v, wellknown.TierLow), tierPods(v, wellknown.TierBackground), fenced,
			orNone(v.InternalIp), milli(v.AllocatableMilli), fmt.Sprint(v.Generation), load, orNone(v.AgentStatus)})
	}
	return table(cols, rows)
}

func nodesObject(views []*inferav1.NodeView) *unstructured.UnstructuredList {
	var items []*unstructured.Unstructured
	for _, v := range views {
		it, err := item("NodeView", v, v.Name, "")
		if err == nil {
			items = append(items, it)
		}
	}
	return list(items)
}
