package inferactl

import (
	"context"
	"errors"
	"fmt"
	"math"
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
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/cli-runtime/pkg/printers"

	inferav1 "github.com/infera-io/temper/apis/proto/infera/v1"
)

// usagePath is the gateway's fleet usage route (the agents' samples);
// gateways without it answer with exit 10.
const usagePath = "/api/v1/usage"

// tracePath is the gateway's trace capture route (proxied to the node's
// agent); gateways without it answer with exit 10.
const tracePath = "/api/v1/nodes/{node}/traces"

func newTopCommand(o *options) *cobra.Command {
	var p *printer
	var by, node string
	c := &cobra.Command{
		Use:   "top [--by tier|pod] [--node N] [-n NS]",
		Short: "CPU used by tier and by pod, measured by the agents, through infera-gateway",
		Long: `CPU used by tier (per node) or by pod, measured by each node's agent: it
samples the CPU time of the pods' threads (every 10 s by default) and keeps
the last samples (an hour at the default interval). infera-gateway asks
every node's agent (GET /api/v1/usage); a node whose agent does not answer
is named on stderr and the others are shown. USAGE is the newest sample,
P95 the 95th percentile of the samples held (an observed value); -o wide
adds the mean, the maximum, the sample count and the window. -n keeps one
namespace's pods (tiers then sum only those). Without a gateway, --by tier
falls back to the requests and limits of the agents' tier-loads (no usage)
and --by pod exits 4.`,
		Example: `  NAME top
  NAME top --by pod -n shop
  NAME top --by tier --node worker-1 -o wide`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if err := p.check(); err != nil {
				return err
			}
			if by != "tier" && by != "pod" {
				return errf(ExitUsage, "", "--by: %q is not tier or pod", by)
			}
			ns, explicit, err := o.namespace()
			if err != nil {
				return err
			}
			if !explicit {
				ns = ""
			}
			if !o.gatewayConfigured() && by == "tier" && node == "" && ns == "" {
				d, err := o.loadFleet(c.Context())
				if err != nil {
					return err
				}
				o.note("requests and limits from the agents' tier-loads (source: %s); usage needs infera-gateway (--gateway or $%s)", d.source, EnvGateway)
				return p.print(o.streams.Out, topRequestsTable(d.nodes), nodesObject(d.nodes))
			}
			u, err := o.usage(c.Context(), ns, node)
			if err != nil {
				return err
			}
			if by == "pod" {
				return p.print(o.streams.Out, topPodsTable(u), usageObject(u, "FleetPodUsage"))
			}
			return p.print(o.streams.Out, topTiersTable(u), usageObject(u, "NodeUsageSummary"))
		},
	}
	c.Flags().StringVar(&by, "by", "tier", "tier or pod")
	c.Flags().StringVar(&node, "node", "", "only this node's agent")
	o.nodeFlag(c)
	p = addPrinter(c, true)
	return c
}

// usage asks the gateway for the agents' usage and names on stderr the
// nodes whose agents did not answer or have no usage.
func (o *options) usage(ctx context.Context, ns, node string) (*inferav1.ListUsageResponse, error) {
	gw, err := o.gatewayClient()
	if err != nil {
		return nil, err
	}
	ok, err := gw.serves(ctx, http.MethodGet, usagePath)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errf(ExitNotAvailable, "Upgrade infera-gateway to a version that serves the agents' usage (docs/gateway.md).",
			"CPU usage is not available: infera-gateway at %s does not serve GET %s", gw.base, usagePath)
	}
	q := url.Values{}
	if ns != "" {
		q.Set("namespace", ns)
	}
	if node != "" {
		q.Set("node", node)
	}
	out := &inferav1.ListUsageResponse{}
	if err := gw.call(ctx, http.MethodGet, usagePath, q, nil, out); err != nil {
		return nil, err
	}
	for _, n := range out.GetNodes() {
		switch {
		case !n.GetAgent().GetReached():
			o.note("node %s: no usage, its agent was not reached: %s", n.GetAgent().GetNode(), n.GetAgent().GetError())
		case !n.GetAvailable():
			o.note("node %s: no usage: %s", n.GetAgent().GetNode(), n.GetReason())
		}
	}
	return out, nil
}

// cores renders CPU cores as millicores, the way kubectl top does.
func cores(c float64) string {
	return fmt.Sprintf("%dm", int64(math.Round(c*1000)))
}

// window renders a sample window: "58s", "12m".
func window(seconds float64) string {
	return duration.HumanDuration(time.Duration(seconds * float64(time.Second)))
}

func topTiersTable(u *inferav1.ListUsageResponse) *metaTable {
	cols := []column{{"NODE", false}, {"TIER", false}, {"PODS", false}, {"CPU-REQUESTS", false}, {"CPU-USAGE", false}, {"CPU-P95", false},
		{"CPU-MEAN", true}, {"CPU-MAX", true}, {"SAMPLES", true}, {"WINDOW", true}}
	var rows [][]any
	for _, n := range u.GetNodes() {
		if !n.GetAgent().GetReached() || !n.GetAvailable() {
			continue
		}
		for _, t := range n.GetTiers() {
			s := t.GetUsage()
			rows = append(rows, []any{n.GetAgent().GetNode(), t.GetTier(), int64(t.GetPods()), milli(t.GetRequestMilli()), cores(s.GetCurrentCores()),
				cores(s.GetP95Cores()), cores(s.GetMeanCores()), cores(s.GetMaxCores()), int64(s.GetSamples()), window(n.GetWindowSeconds())})
		}
	}
	return table(cols, rows)
}

func topPodsTable(u *inferav1.ListUsageResponse) *metaTable {
	cols := []column{{"NAMESPACE", false}, {"NAME", false}, {"NODE", false}, {"TIER", false}, {"CPU-REQUEST", false}, {"CPU-USAGE", false}, {"CPU-P95", false},
		{"CPU-MEAN", true}, {"CPU-MAX", true}, {"SAMPLES", true}}
	var rows [][]any
	for _, fp := range u.GetPods() {
		p, s := fp.GetPod(), fp.GetPod().GetUsage()
		rows = append(rows, []any{p.GetNamespace(), p.GetName(), fp.GetNode(), p.GetTier(), milli(p.GetRequestMilli()), cores(s.GetCurrentCores()),
			cores(s.GetP95Cores()), cores(s.GetMeanCores()), cores(s.GetMaxCores()), int64(s.GetSamples())})
	}
	return table(cols, rows)
}

// usageObject is the -o json|yaml|name form: the pods (FleetPodUsage) or
// the nodes (NodeUsageSummary) as a List.
func usageObject(u *inferav1.ListUsageResponse, kind string) runtime.Object {
	var items []*unstructured.Unstructured
	if kind == "FleetPodUsage" {
		for _, p := range u.GetPods() {
			it, err := item(kind, p, p.GetPod().GetName(), p.GetPod().GetNamespace())
			if err == nil {
				items = append(items, it)
			}
		}
	} else {
		for _, n := range u.GetNodes() {
			it, err := item(kind, n, n.GetAgent().GetNode(), "")
			if err == nil {
				items = append(items, it)
			}
		}
	}
	return list(items)
}

func topRequestsTable(views []*inferav1.NodeView) *metaTable {
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
