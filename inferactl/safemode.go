package inferactl

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	inferav1 "github.com/infera-io/temper/apis/proto/infera/v1"
	"github.com/infera-io/temper/apis/wellknown"
)

type safeModeOptions struct {
	selector string
	reason   string
	wait     bool
	timeout  time.Duration
	dryRun   string
	force    bool
	interval time.Duration
}

func newSafeModeCommand(o *options) *cobra.Command {
	s := &safeModeOptions{interval: time.Second}
	c := &cobra.Command{
		Use:   "safe-mode on|off (NODE | -l SELECTOR) --reason TEXT",
		Short: "Request or withdraw safe mode (stock kernel behaviour) on nodes, through infera-gateway",
		Long: `Request (on) or withdraw (off) safe mode on one node or on every node a label
selector matches. The change goes through infera-gateway, which sets the
node's infera.io/safe-mode-requested annotation as you (so RBAC and the API
server's audit apply), writes its audit log and leaves a Node Event with the
reason.

A node whose safe mode an InferaPolicy owns (infera.io/safe-mode-requested-by)
is refused unless --force: the manager would put the policy's value back.
--wait waits until the agents report the new state in infera.io/agent-status.
--dry-run=server checks the change with the API server (your permission on
safemodes.infera.io and a server-side dry-run patch of each Node) and changes
nothing.`,
		Example: `  NAME safe-mode on worker-1 --reason "kernel upgrade" --wait
  NAME safe-mode off -l pool=gpu --reason "upgrade done"
  NAME safe-mode on worker-1 --reason test --dry-run=server`,
		Args: cobra.RangeArgs(1, 2),
		ValidArgsFunction: func(c *cobra.Command, args []string, prefix string) ([]string, cobra.ShellCompDirective) {
			switch len(args) {
			case 0:
				return []string{"on", "off"}, noFiles
			case 1:
				return o.completeNodes(c, prefix), noFiles
			}
			return nil, noFiles
		},
		RunE: func(c *cobra.Command, args []string) error {
			return o.runSafeMode(c.Context(), s, args)
		},
	}
	f := c.Flags()
	f.StringVarP(&s.selector, "selector", "l", "", "label selector of the nodes (instead of a node name)")
	f.StringVar(&s.reason, "reason", "", "why (required; goes into the audit log and the Node Event)")
	f.BoolVar(&s.wait, "wait", false, "wait until the agents report the new state")
	f.DurationVar(&s.timeout, "timeout", 2*time.Minute, "how long --wait waits")
	f.StringVar(&s.dryRun, "dry-run", "none", `"server" checks the change with the API server and changes nothing; "none" changes it`)
	f.BoolVar(&s.force, "force", false, "change nodes whose safe mode an InferaPolicy owns")
	return c
}

func (o *options) runSafeMode(ctx context.Context, s *safeModeOptions, args []string) error {
	var on bool
	switch args[0] {
	case "on":
		on = true
	case "off":
	default:
		return errf(ExitUsage, "", "first argument: %q is not on or off", args[0])
	}
	node := ""
	if len(args) == 2 {
		node = args[1]
	}
	switch {
	case node == "" && s.selector == "":
		return errf(ExitUsage, "", "name a node or give -l SELECTOR")
	case node != "" && s.selector != "":
		return errf(ExitUsage, "", "give a node name or -l SELECTOR, not both")
	case strings.TrimSpace(s.reason) == "":
		return errf(ExitUsage, "Say why with --reason, e.g. --reason \"kernel upgrade\"; it goes into the audit log and the Node Event.", "--reason is required")
	case s.dryRun != "none" && s.dryRun != "server":
		return errf(ExitUsage, "", "--dry-run: %q is not none or server", s.dryRun)
	}
	kube, _, err := o.kubeClient()
	if err != nil {
		return err
	}
	var gw *gatewayClient
	if s.dryRun == "none" {
		if gw, err = o.gatewayClient(); err != nil {
			return err
		}
	}
	// The targets, read as the caller: the policy check needs the
	// annotations, which the gateway's views do not carry.
	var nodes []*corev1.Node
	if node != "" {
		n, err := kube.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			e := kubeError(err, fmt.Sprintf("node %q", node))
			if ExitCode(e) == ExitNotFound {
				return errf(ExitNotFound, "List the nodes with: "+o.cmdName+" nodes", "node %q not found", node)
			}
			return e
		}
		nodes = []*corev1.Node{n}
	} else {
		if nodes, err = o.selectNodes(ctx, kube, gw, s.selector); err != nil {
			return err
		}
		if len(nodes) == 0 {
			return errf(ExitNotFound, "Check the labels with: kubectl get nodes --show-labels", "no node matches -l %s", s.selector)
		}
	}
	if !s.force {
		var owned []string
		for _, n := range nodes {
			if p := n.Annotations[wellknown.SafeModeOwnerAnnotation]; p != "" {
				owned = append(owned, fmt.Sprintf("node %s (InferaPolicy %s)", n.Name, p))
			}
		}
		if len(owned) > 0 {
			return errf(ExitRefused,
				"Change the policy instead (kubectl edit inferapolicy <name>), or pass --force to change the node anyway\n"+
					"(the manager may set the policy's value again).",
				"refused: safe mode on %s is owned by an InferaPolicy (annotation %s)", strings.Join(owned, ", "), wellknown.SafeModeOwnerAnnotation)
		}
	}
	state := "withdrawn"
	if on {
		state = "requested"
	}
	if s.dryRun == "server" {
		return o.safeModeDryRun(ctx, kube, nodes, on, state)
	}

	var results []*inferav1.SafeModeResult
	if node != "" {
		r, err := gw.setNodeSafeMode(ctx, node, on, s.force, s.reason)
		if err != nil {
			return err
		}
		results = []*inferav1.SafeModeResult{r}
	} else {
		r, err := gw.setSafeMode(ctx, s.selector, on, s.force, s.reason)
		if err != nil {
			return err
		}
		results = r.Results
	}
	failed, forbidden := 0, 0
	var ok []string
	for _, r := range results {
		switch {
		case r.Error != "":
			failed++
			if r.ErrorCode == 403 {
				forbidden++
			}
			fmt.Fprintf(o.streams.ErrOut, "node/%s: %s\n", r.Node, r.Error)
		case r.Changed:
			fmt.Fprintf(o.streams.Out, "node/%s safe mode %s\n", r.Node, state)
			ok = append(ok, r.Node)
		default:
			fmt.Fprintf(o.streams.Out, "node/%s safe mode already %s (unchanged)\n", r.Node, state)
			ok = append(ok, r.Node)
		}
	}
	if failed > 0 {
		if forbidden == failed && len(ok) == 0 {
			return errf(ExitForbidden, "infera-gateway changes the Node as you: you need patch on core nodes as well (the infera-operator role has it).",
				"permission denied on %d of %d nodes", failed, len(results))
		}
		return errf(ExitPartial, "", "safe mode failed on %d of %d nodes (see above)", failed, len(results))
	}
	if s.wait {
		return o.waitAgents(ctx, kube, ok, on, s)
	}
	return nil
}

// safeModeDryRun asks the API server whether the caller may do the change:
// a SelfSubjectAccessReview for update safemodes.infera.io (what the
// gateway checks) and a server-side dry-run of the Node patch the gateway
// would make as the caller.
func (o *options) safeModeDryRun(ctx context.Context, kube kubernetes.Interface, nodes []*corev1.Node, on bool, state string) error {
	var value any
	if on {
		value = wellknown.SafeModeRequestedValue
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]any{wellknown.SafeModeRequestedAnnotation: value}}})
	for _, n := range nodes {
		ssar, err := kube.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authzv1.SelfSubjectAccessReview{
			Spec: authzv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authzv1.ResourceAttributes{
				Group: wellknown.Domain, Resource: "safemodes", Verb: "update", Name: n.Name}},
		}, metav1.CreateOptions{})
		if err != nil {
			return kubeError(err, "a SelfSubjectAccessReview")
		}
		if !ssar.Status.Allowed {
			return errf(ExitForbidden, hintRoles, "permission denied: you cannot update safemodes.infera.io %q (infera-gateway would refuse)", n.Name)
		}
		if _, err := kube.CoreV1().Nodes().Patch(ctx, n.Name, types.MergePatchType, patch,
			metav1.PatchOptions{DryRun: []string{metav1.DryRunAll}, FieldManager: "inferactl"}); err != nil {
			return kubeError(err, fmt.Sprintf("node %q", n.Name))
		}
		before := wellknown.IsSafeModeRequested(n.Annotations)
		suffix := ""
		if before == on {
			suffix = ", unchanged"
		}
		fmt.Fprintf(o.streams.Out, "node/%s safe mode %s (server dry run%s)\n", n.Name, state, suffix)
	}
	return nil
}

// waitAgents polls the Nodes until each agent reports the state: safe-mode
// for on, anything else for off.
func (o *options) waitAgents(ctx context.Context, kube kubernetes.Interface, nodes []string, on bool, s *safeModeOptions) error {
	// The deadline bounds the waiting, not the reads: a read cut off by it
	// would hide the agents' last state.
	deadline := time.Now().Add(s.timeout)
	pending := map[string]string{}
	for _, n := range nodes {
		pending[n] = ""
	}
	for {
		for _, name := range sortedKeys(pending) {
			n, err := kube.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return kubeError(err, fmt.Sprintf("node %q", name))
			}
			st := n.Annotations[wellknown.AgentStatusAnnotation]
			pending[name] = st
			if (st == wellknown.AgentStatusSafeMode) == on && st != "" {
				fmt.Fprintf(o.streams.Out, "node/%s agent reports %q\n", name, st)
				delete(pending, name)
			}
		}
		if len(pending) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			var parts []string
			for _, name := range sortedKeys(pending) {
				parts = append(parts, fmt.Sprintf("%s (agent-status %q)", name, pending[name]))
			}
			return errf(ExitTimeout,
				"The request stands; the agent acts on it when it runs. Check the agent: kubectl -n infera-system logs -l app.kubernetes.io/name=infera-agent --tail 50",
				"timed out after %s waiting for the agents on %s", s.timeout, strings.Join(parts, ", "))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(s.interval):
		}
	}
}

// selectNodes returns the nodes a selector matches, with their
// annotations. infera-operator may get Nodes but not list them, so with a
// gateway the names come from its node list and each Node is read by name.
func (o *options) selectNodes(ctx context.Context, kube kubernetes.Interface, gw *gatewayClient, selector string) ([]*corev1.Node, error) {
	if gw == nil {
		return localNodes(ctx, kube, selector)
	}
	views, err := gw.nodes(ctx, selector)
	if err != nil {
		return nil, err
	}
	out := make([]*corev1.Node, 0, len(views))
	for _, v := range views {
		n, err := kube.CoreV1().Nodes().Get(ctx, v.Name, metav1.GetOptions{})
		if err != nil {
			return nil, kubeError(err, fmt.Sprintf("node %q", v.Name))
		}
		out = append(out, n)
	}
	return out, nil
}
