package inferactl

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	inferav1 "github.com/infera-io/temper/apis/proto/infera/v1"
	"github.com/infera-io/temper/apis/tiering"
	"github.com/infera-io/temper/apis/wellknown"
)

func newExplainCommand(o *options) *cobra.Command {
	var p *printer
	c := &cobra.Command{
		Use:     "explain-tier POD",
		Aliases: []string{"explain"},
		Short:   "Why a pod has its tier: priority, class, QoS, the tier annotation, thresholds, overcommit originals",
		Example: `  NAME explain-tier -n shop checkout-7d9f
  NAME explain-tier checkout-7d9f -o yaml`,
		Args: cobra.ExactArgs(1),
		ValidArgsFunction: func(c *cobra.Command, args []string, prefix string) ([]string, cobra.ShellCompDirective) {
			if len(args) > 0 {
				return nil, noFiles
			}
			return o.completePods(c, prefix), noFiles
		},
		RunE: func(c *cobra.Command, args []string) error {
			if err := p.check(); err != nil {
				return err
			}
			ns, _, err := o.namespace()
			if err != nil {
				return err
			}
			name := strings.TrimPrefix(args[0], "pod/")
			var e *inferav1.TierExplanation
			source := ""
			gw, err := o.source()
			if err != nil {
				return err
			}
			if gw != nil {
				e, err = gw.explain(c.Context(), ns, name)
				source = "infera-gateway " + gw.base.String()
			} else {
				kube, _, kerr := o.kubeClient()
				if kerr != nil {
					return kerr
				}
				e, err = localExplain(c.Context(), kube, ns, name)
				source = "local (apis/tiering with the node's infera.io/priority-mapping; no gateway configured)"
			}
			if err != nil {
				var ce *Error
				if asError(err, &ce) && ce.Code == ExitNotFound {
					ce.Msg = fmt.Sprintf("pod %s/%s not found", ns, name)
					ce.Hint = fmt.Sprintf("List the pods with: %s pods -n %s (or kubectl get pods -A | grep %s)", o.cmdName, ns, name)
				}
				return err
			}
			if p.human() {
				writeString(o.streams.Out, explainText(e, source, o.mappingLines(c.Context(), e, gw != nil)))
				return nil
			}
			it, err := item("TierExplanation", e, e.Name, e.Namespace)
			if err != nil {
				return err
			}
			return p.print(o.streams.Out, nil, it)
		},
	}
	p = addPrinter(c, false)
	return c
}

// mappingLines says which priority mapping the node's agent uses, read
// from the Node with the caller's credentials (nothing when the caller may
// not read Nodes): the node's infera.io/priority-mapping and the
// InferaPolicy it came from. Through the gateway, whose explanation uses
// its own configured thresholds, it warns when the node's differ.
func (o *options) mappingLines(ctx context.Context, e *inferav1.TierExplanation, viaGateway bool) []string {
	if e.Node == "" {
		return nil
	}
	kube, _, err := o.kubeClient()
	if err != nil {
		return nil
	}
	n, err := kube.CoreV1().Nodes().Get(ctx, e.Node, metav1.GetOptions{})
	if err != nil {
		return nil
	}
	v, ok := n.Annotations[wellknown.PriorityMappingAnnotation]
	if !ok {
		return []string{fmt.Sprintf("none on node %s: its agent uses its configured thresholds (the defaults unless changed)", e.Node)}
	}
	m, err := tiering.ParseNodeMapping(v)
	if err != nil {
		return []string{fmt.Sprintf("node %s: %v; its agent keeps its configured thresholds", e.Node, err)}
	}
	from := "set by hand"
	if m.Policy != "" {
		from = "from InferaPolicy " + m.Policy
	}
	lines := []string{fmt.Sprintf("node %s's %s, %s", e.Node, wellknown.PriorityMappingAnnotation, from)}
	t := m.Thresholds
	if et := e.Thresholds; viaGateway && et != nil && (et.Critical != t.Critical || et.High != t.High || et.Normal != t.Normal || et.Low != t.Low) {
		lines = append(lines, fmt.Sprintf("WARNING: the gateway used its own thresholds; the node's agent uses critical >= %d, high >= %d, normal >= %d, low >= %d "+
			"(run without --gateway for the tier computed with them)", t.Critical, t.High, t.Normal, t.Low))
	}
	return lines
}

func explainText(e *inferav1.TierExplanation, source string, mapping []string) string {
	var b strings.Builder
	f := func(k, format string, args ...any) {
		fmt.Fprintf(&b, "%-17s "+format+"\n", append([]any{k + ":"}, args...)...)
	}
	f("Pod", "%s/%s", e.Namespace, e.Name)
	f("Node", "%s", orNone(e.Node))
	f("Tier", "%s", e.Tier)
	f("Decided by", "%s: %s", e.DecidingRule, e.Rule)
	class := "no PriorityClass"
	if e.PriorityClassName != "" {
		class = "PriorityClass " + e.PriorityClassName
	}
	f("Priority", "%d (%s)", e.Priority, class)
	f("QoS class", "%s", e.QosClass)
	f("Priority tier", "%s", e.PriorityTier)
	if e.AnnotationOutcome == "absent" {
		f(wellknown.TierAnnotation, "not set")
	} else {
		f(wellknown.TierAnnotation, "%q (%s)", e.TierAnnotation, e.AnnotationOutcome)
	}
	if t := e.Thresholds; t != nil {
		f("Thresholds", "system >= %d, critical >= %d, high >= %d, normal >= %d, low >= %d, else background",
			t.System, t.Critical, t.High, t.Normal, t.Low)
	}
	for i, l := range mapping {
		if i == 0 {
			f("Mapping", "%s", l)
		} else {
			fmt.Fprintf(&b, "%-17s %s\n", "", l)
		}
	}
	if len(e.OriginalCpuRequests) > 0 {
		var parts []string
		for _, k := range sortedKeys(e.OriginalCpuRequests) {
			parts = append(parts, fmt.Sprintf("%s %s -> %s", k, e.OriginalCpuRequests[k], orNone(e.CpuRequests[k])))
		}
		f("Overcommit", "deflated by the webhook: %s", strings.Join(parts, ", "))
	} else {
		f("Overcommit", "not deflated")
	}
	if len(e.Findings) > 0 {
		b.WriteString("Findings:\n")
		for _, x := range e.Findings {
			fmt.Fprintf(&b, "  - %s\n", x)
		}
	}
	f("Source", "%s", source)
	return b.String()
}
