package inferactl

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/cli-runtime/pkg/printers"

	inferav1 "github.com/infera-io/temper/apis/proto/infera/v1"
)

// Per-pod CPU usage is measured by each node's agent and published only in
// its node-local /observe document; neither the agent's gRPC API nor
// infera-gateway carries it.
const usageMissing = "per-pod CPU usage is measured by each node's agent (its /observe document on :9100, docs/observe.md), " +
	"and neither the agent's gRPC API nor infera-gateway serves it"

// tracePath is the gateway's trace capture route (proxied to the node's
// agent); gateways without it answer with exit 10.
const tracePath = "/api/v1/nodes/{node}/traces"

func newTopCommand(o *options) *cobra.Command {
	var p *printer
	var by string
	c := &cobra.Command{
		Use:   "top [--by tier|pod]",
		Short: "CPU by tier from the agents' tier-loads (requests, limits, fenced CPU); by pod is not served",
		Long: `CPU by tier from the agents: each node's agent publishes the pods, CPU
requests and limits of every tier and the CPU fenced for critical pods (its
infera.io/tier-load); --by tier shows them per node. These are reservations,
not usage: per-pod CPU usage is only in each agent's node-local /observe
document, which neither the agent's gRPC API nor infera-gateway serves, so
--by pod says so and exits 10.`,
		Example: `  NAME top
  NAME top --by pod`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := p.check(); err != nil {
				return err
			}
			switch by {
			case "tier":
			case "pod":
				return errf(ExitNotAvailable, o.cmdName+" pods shows each pod's tier and CPU request; kubectl top pods shows usage from metrics-server.",
					"CPU usage by pod is not available: %s", usageMissing)
			default:
				return errf(ExitUsage, "", "--by: %q is not tier or pod", by)
			}
			d, err := o.loadFleet(c.Context())
			if err != nil {
				return err
			}
			o.note("requests and limits from the agents' tier-loads (source: %s); measured usage is not served yet", d.source)
			return p.print(o.streams.Out, topTable(d.nodes), nodesObject(d.nodes))
		},
	}
	c.Flags().StringVar(&by, "by", "tier", "tier or pod")
	p = addPrinter(c, false)
	return c
}

func topTable(views []*inferav1.NodeView) *metaTable {
	cols := []column{{"NODE", false}, {"TIER", false}, {"PODS", false}, {"CPU-REQUESTS", false}, {"CPU-LIMITS", false}, {"FENCED", false}}
	var rows [][]any
	for _, v := range views {
		if !v.TierLoadFresh {
			rows = append(rows, []any{v.Name, "-", "-", "-", "-", "no fresh tier-load: " + v.TierLoadError})
			continue
		}
		for i, u := range v.Tiers {
			fenced := ""
			if i == 0 {
				fenced = milli(v.FencedMilli)
			}
			limits := "none"
			if u.LimitMilli > 0 {
				limits = milli(u.LimitMilli)
			}
			rows = append(rows, []any{v.Name, u.Tier, int64(u.Pods), milli(u.RequestMilli), limits, fenced})
		}
	}
	return table(cols, rows)
}

func newTraceCommand(o *options) *cobra.Command {
	var d time.Duration
	c := &cobra.Command{
		Use:   "trace NODE | pod/NAME [--duration D]",
		Short: "Capture a scheduling trace on a node, or of one pod, through infera-gateway and the node's agent",
		Long: `Ask a node's agent, through infera-gateway, to record scheduling events for
--duration, of the whole node or of one pod (pod/NAME in -n's namespace; its
node is looked up). The trace stays on the node, at the path printed. A
gateway that does not proxy trace capture to the agents (no
POST /api/v1/nodes/{node}/traces in its OpenAPI document) gets exit 10.`,
		Example: `  NAME trace worker-1 --duration 5s
  NAME trace -n shop pod/checkout-7d9f --duration 10s`,
		Args: cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if d < time.Second {
				return errf(ExitUsage, "", "--duration must be at least 1s")
			}
			return o.runTrace(c.Context(), args[0], d)
		},
	}
	c.Flags().DurationVar(&d, "duration", 10*time.Second, "how long to record (the gateway's request timeout, 30s by default, bounds it)")
	return c
}

func (o *options) runTrace(ctx context.Context, target string, d time.Duration) error {
	gw, err := o.gatewayClient()
	if err != nil {
		return err
	}
	ok, err := gw.serves(ctx, http.MethodPost, tracePath)
	if err != nil {
		return err
	}
	if !ok {
		return errf(ExitNotAvailable, "Upgrade infera-gateway to a version that reaches the agents (docs/gateway.md), or capture on the node through the agent's local API.",
			"trace capture is not available: infera-gateway at %s does not serve POST %s", gw.base, tracePath)
	}
	body := map[string]any{"durationSeconds": int(d / time.Second)}
	node := target
	if name, isPod := strings.CutPrefix(target, "pod/"); isPod {
		kube, _, err := o.kubeClient()
		if err != nil {
			return err
		}
		ns, _, err := o.namespace()
		if err != nil {
			return err
		}
		p, err := kube.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return kubeError(err, fmt.Sprintf("pod %s/%s", ns, name))
		}
		if p.Spec.NodeName == "" {
			return errf(ExitUsage, "", "pod %s/%s is not scheduled to a node yet", ns, name)
		}
		node = p.Spec.NodeName
		body["pod"] = map[string]any{"namespace": ns, "name": name, "uid": string(p.UID)}
	}
	node = strings.TrimPrefix(node, "node/")
	out := &inferav1.CaptureTraceResponse{}
	if err := gw.callJSON(ctx, http.MethodPost, "/api/v1/nodes/"+url.PathEscape(node)+"/traces", body, out); err != nil {
		return err
	}
	fmt.Fprintf(o.streams.Out, "node/%s: %d scheduling events in %.1fs, %d bytes at %s (on the node)", node, out.Events, out.DurationSeconds, out.SizeBytes, out.Path)
	if out.Truncated {
		fmt.Fprint(o.streams.Out, "; stopped early at the size cap")
	}
	fmt.Fprintln(o.streams.Out)
	return nil
}

func newEventsCommand(o *options) *cobra.Command {
	var follow bool
	var node string
	c := &cobra.Command{
		Use:   "events [--follow] [--node NODE]",
		Short: "Temper's Events on Nodes (agent, manager, gateway actions); --follow streams the gateway's fleet events",
		Long: `Without --follow: the Kubernetes Events on Nodes that Temper's components
wrote (the agent, the manager and the gateway's safe-mode actions), oldest
first. With --follow: infera-gateway's live event stream (agent status and
safe-mode changes, node additions and deletions, actions) until Ctrl-C; it
starts with the next event.`,
		Example: `  NAME events
  NAME events --follow --node worker-1`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if follow {
				gw, err := o.gatewayClient()
				if err != nil {
					return err
				}
				ctx, stop := signal.NotifyContext(c.Context(), syscall.SIGINT, syscall.SIGTERM)
				defer stop()
				fmt.Fprintf(o.streams.ErrOut, "Following infera-gateway's events at %s (Ctrl-C stops).\n", gw.base)
				err = gw.watchEvents(ctx, node, func(ev *inferav1.ClusterEvent) error {
					ts := ev.GetTime().AsTime().Local().Format(time.RFC3339)
					line := fmt.Sprintf("%s  %-22s %-20s %s", ts, ev.Type, ev.Node, ev.Message)
					if ev.Dropped > 0 {
						line += fmt.Sprintf(" (%d earlier events dropped)", ev.Dropped)
					}
					_, werr := fmt.Fprintln(o.streams.Out, line)
					return werr
				})
				if errors.Is(err, context.Canceled) {
					return nil
				}
				return err
			}
			return o.nodeEvents(c.Context(), node)
		},
	}
	c.Flags().BoolVarP(&follow, "follow", "f", false, "stream infera-gateway's fleet events")
	c.Flags().StringVar(&node, "node", "", "only this node's events")
	o.nodeFlag(c)
	return c
}

func (o *options) nodeEvents(ctx context.Context, node string) error {
	kube, _, err := o.kubeClient()
	if err != nil {
		return err
	}
	sel := fields.Set{"involvedObject.kind": "Node"}
	if node != "" {
		sel["involvedObject.name"] = node
	}
	l, err := kube.CoreV1().Events("").List(ctx, metav1.ListOptions{FieldSelector: sel.AsSelector().String()})
	if err != nil {
		return kubeError(err, "events")
	}
	var evs []corev1.Event
	for _, e := range l.Items {
		from := e.Source.Component
		if from == "" {
			from = e.ReportingController
		}
		if strings.HasPrefix(from, "infera") {
			evs = append(evs, e)
		}
	}
	last := func(e corev1.Event) time.Time {
		switch {
		case !e.LastTimestamp.IsZero():
			return e.LastTimestamp.Time
		case !e.EventTime.IsZero():
			return e.EventTime.Time
		}
		return e.CreationTimestamp.Time
	}
	slices.SortStableFunc(evs, func(a, b corev1.Event) int { return last(a).Compare(last(b)) })
	if len(evs) == 0 {
		fmt.Fprintln(o.streams.ErrOut, "No events from Temper's components on nodes.")
		return nil
	}
	cols := []column{{"LAST SEEN", false}, {"NODE", false}, {"TYPE", false}, {"REASON", false}, {"FROM", false}, {"MESSAGE", false}}
	var rows [][]any
	for _, e := range evs {
		from := e.Source.Component
		if from == "" {
			from = e.ReportingController
		}
		rows = append(rows, []any{duration.HumanDuration(time.Since(last(e))), e.InvolvedObject.Name, e.Type, e.Reason, from, e.Message})
	}
	return printers.NewTablePrinter(printers.PrintOptions{}).PrintObj(table(cols, rows), o.streams.Out)
}
