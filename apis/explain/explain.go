// Package explain builds the views of /api/v1 that come from Kubernetes
// objects alone — why a pod has its tier (TierExplanation) and what
// overcommit freed (Savings) — once, for the gateway that serves them and
// for inferactl when it computes them itself, so both read the same.
package explain

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"

	inferav1 "github.com/infera-io/temper/apis/proto/infera/v1"
	"github.com/infera-io/temper/apis/tiering"
	"github.com/infera-io/temper/apis/wellknown"
)

// Tier explains pod's tier under thresholds t: priority, class, QoS, the
// tier annotation and its outcome, the deciding rule, the findings, the
// overcommit originals and the current CPU requests.
func Tier(p *corev1.Pod, t tiering.Thresholds) *inferav1.TierExplanation {
	r := tiering.Classify(p, t)
	e := &inferav1.TierExplanation{
		Namespace: p.Namespace, Name: p.Name, Node: p.Spec.NodeName, PriorityClassName: p.Spec.PriorityClassName,
		QosClass: string(r.QOSClass), PriorityTier: string(r.PriorityTier), Tier: string(r.Tier), DecidingRule: string(r.Source),
		Thresholds:  &inferav1.Thresholds{System: wellknown.DefaultSystemMinPriority, Critical: t.Critical, High: t.High, Normal: t.Normal, Low: t.Low},
		CpuRequests: map[string]string{},
	}
	if p.Spec.Priority != nil {
		e.Priority = *p.Spec.Priority
	}
	ann, hasAnn := p.Annotations[wellknown.TierAnnotation]
	e.TierAnnotation = ann
	switch {
	case !hasAnn:
		e.AnnotationOutcome = "absent"
	case r.Source == tiering.SourceAnnotation:
		e.AnnotationOutcome = "accepted"
	case len(r.Findings) > 0:
		e.AnnotationOutcome = "ignored"
	default:
		e.AnnotationOutcome = "agrees"
	}
	switch r.Source {
	case tiering.SourceQoSDefault:
		e.Rule = fmt.Sprintf("no PriorityClass and priority 0: QoS class %s gives %s", r.QOSClass, r.PriorityTier)
	case tiering.SourcePriority:
		e.Rule = fmt.Sprintf("priority %d gives %s", e.Priority, r.PriorityTier)
	case tiering.SourceAnnotation:
		e.Rule = fmt.Sprintf("priority gives %s; %s=%s lowers it to %s", r.PriorityTier, wellknown.TierAnnotation, ann, r.Tier)
	}
	for _, f := range r.Findings {
		e.Findings = append(e.Findings, f.String())
	}
	if v, ok := p.Annotations[wellknown.OriginalCPURequestsAnnotation]; ok {
		orig, err := wellknown.ParseOriginalCPURequests(v)
		if err != nil {
			e.Findings = append(e.Findings, fmt.Sprintf("pod %s/%s: %v", p.Namespace, p.Name, err))
		}
		if len(orig) > 0 {
			e.OriginalCpuRequests = map[string]string{}
			for name, q := range orig {
				e.OriginalCpuRequests[name] = q.String()
			}
		}
	}
	for _, c := range p.Spec.Containers {
		if q, ok := c.Resources.Requests[corev1.ResourceCPU]; ok {
			e.CpuRequests[c.Name] = q.String()
		}
	}
	return e
}
