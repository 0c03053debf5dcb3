package tiering

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"

	"github.com/infera-io/temper/apis/wellknown"
)

// Thresholds are the minimum priorities of the workload tiers. A pod is in
// the highest tier whose minimum its priority reaches; below Low it is
// background. Priorities at or above wellknown.DefaultSystemMinPriority are
// always the system tier.
type Thresholds struct {
	Critical int32
	High     int32
	Normal   int32
	Low      int32
}

// DefaultThresholds returns the thresholds of DESIGN.md §2.
func DefaultThresholds() Thresholds {
	return Thresholds{
		Critical: wellknown.DefaultCriticalMinPriority,
		High:     wellknown.DefaultHighMinPriority,
		Normal:   wellknown.DefaultNormalMinPriority,
		Low:      wellknown.DefaultLowMinPriority,
	}
}

// Validate checks that the thresholds are strictly decreasing and below the
// system range. The error names the offending key as it is spelled in the
// agent config's [priority_mapping] section and in InferaPolicy.
func (t Thresholds) Validate() error { return t.ValidateField("priority_mapping.") }

// ValidateField is Validate for thresholds spelled elsewhere: the field
// names in the error are prefixed by prefix (e.g. "spec.priorityMapping.").
func (t Thresholds) ValidateField(prefix string) error {
	switch {
	case t.Critical >= wellknown.DefaultSystemMinPriority:
		return fmt.Errorf("%scritical: %d is in the system range (>= %d)", prefix, t.Critical, wellknown.DefaultSystemMinPriority)
	case t.High >= t.Critical:
		return fmt.Errorf("%shigh: %d must be below critical (%d)", prefix, t.High, t.Critical)
	case t.Normal >= t.High:
		return fmt.Errorf("%snormal: %d must be below high (%d)", prefix, t.Normal, t.High)
	case t.Low >= t.Normal:
		return fmt.Errorf("%slow: %d must be below normal (%d)", prefix, t.Low, t.Normal)
	}
	return nil
}

// ForPriority returns the tier of a priority value alone.
func (t Thresholds) ForPriority(p int32) wellknown.Tier {
	switch {
	case p >= wellknown.DefaultSystemMinPriority:
		return wellknown.TierSystem
	case p >= t.Critical:
		return wellknown.TierCritical
	case p >= t.High:
		return wellknown.TierHigh
	case p >= t.Normal:
		return wellknown.TierNormal
	case p >= t.Low:
		return wellknown.TierLow
	default:
		return wellknown.TierBackground
	}
}

// Source says which rule decided a pod's tier.
type Source string

const (
	// SourcePriority: the pod's priority (its PriorityClass).
	SourcePriority Source = "priority"
	// SourceQoSDefault: no PriorityClass and priority 0, so the QoS class.
	SourceQoSDefault Source = "qos-default"
	// SourceAnnotation: infera.io/tier lowered the tier.
	SourceAnnotation Source = "annotation"
)

// Finding is a lint finding about a pod's input. Field is the pod field the
// way kubectl explain spells it.
type Finding struct {
	Field   string
	Message string
}

func (f Finding) String() string { return f.Field + ": " + f.Message }

// Result is a pod's tier and how it was reached.
type Result struct {
	Tier wellknown.Tier
	// PriorityTier is the tier before the infera.io/tier annotation.
	PriorityTier wellknown.Tier
	Source       Source
	QOSClass     corev1.PodQOSClass
	Findings     []Finding
}

var tierAnnotationField = "metadata.annotations[" + wellknown.TierAnnotation + "]"

// Classify returns the tier of pod under thresholds t (DESIGN.md §2):
//   - priority at or above the system minimum → system;
//   - no priorityClassName and priority 0 (or unset) → by QoS class:
//     Guaranteed and Burstable → normal, BestEffort → background;
//   - otherwise by the thresholds;
//   - then infera.io/tier may lower the tier, never raise it. A raising or
//     unknown value is ignored and reported as a finding.
func Classify(pod *corev1.Pod, t Thresholds) Result {
	var prio int32
	if pod.Spec.Priority != nil {
		prio = *pod.Spec.Priority
	}
	r := Result{QOSClass: QOSClass(pod)}
	switch {
	case pod.Spec.PriorityClassName == "" && prio == 0:
		r.Source = SourceQoSDefault
		if r.QOSClass == corev1.PodQOSBestEffort {
			r.PriorityTier = wellknown.TierBackground
		} else {
			r.PriorityTier = wellknown.TierNormal
		}
	default:
		r.Source = SourcePriority
		r.PriorityTier = t.ForPriority(prio)
	}
	r.Tier = r.PriorityTier

	v, ok := pod.Annotations[wellknown.TierAnnotation]
	if !ok {
		return r
	}
	want, err := wellknown.ParseTier(v)
	switch {
	case err != nil:
		r.Findings = append(r.Findings, Finding{Field: tierAnnotationField, Message: err.Error() + "; annotation ignored"})
	case want.Below(r.PriorityTier):
		r.Tier, r.Source = want, SourceAnnotation
	case want == r.PriorityTier:
		// Agrees with the priority: nothing to do.
	default:
		r.Findings = append(r.Findings, Finding{
			Field: tierAnnotationField,
			Message: fmt.Sprintf("%q would raise the pod above its %s tier; the annotation may only lower a tier (use a PriorityClass to raise it); annotation ignored",
				want, r.PriorityTier),
		})
	}
	return r
}
