package overcommit

import (
	"fmt"
	"math"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	inferav1alpha1 "github.com/infera-io/temper/apis/infera/v1alpha1"
	"github.com/infera-io/temper/apis/tiering"
	"github.com/infera-io/temper/apis/wellknown"
)

// Settings are the deflation parameters of one namespace: the ratios, floor
// and dry-run flag of its OvercommitProfile.
type Settings struct {
	// Ratios per tier; a tier that is absent keeps its requests.
	Ratios map[wellknown.Tier]float64
	// FloorMilli is the smallest request left on a container.
	FloorMilli int64
	// DryRun records the originals and leaves the requests.
	DryRun bool
	// BackgroundBestEffort removes the CPU requests of background pods
	// whose other resources allow it, making them kube-BestEffort.
	BackgroundBestEffort bool
}

// DefaultSettings are the OvercommitProfile schema defaults: they apply in a
// namespace an operator labelled by hand, without a profile annotation.
// TestDefaultSettingsMatchSchema keeps them equal to the CRD's defaults.
func DefaultSettings() Settings {
	return Settings{
		Ratios: map[wellknown.Tier]float64{
			wellknown.TierNormal:     0.75,
			wellknown.TierLow:        0.5,
			wellknown.TierBackground: 0.25,
		},
		FloorMilli: 25,
	}
}

// SettingsFromProfile converts a profile's spec. It re-checks what the schema
// already enforces, so a profile that slipped past it (an older CRD, a
// direct etcd write) is refused rather than applied.
func SettingsFromProfile(p *inferav1alpha1.OvercommitProfile) (Settings, error) {
	s := Settings{Ratios: map[wellknown.Tier]float64{}, FloorMilli: p.Spec.FloorMilli, DryRun: p.Spec.DryRun, BackgroundBestEffort: p.Spec.BackgroundBestEffort}
	if s.FloorMilli < 0 || s.FloorMilli > tiering.MaxCPUMilli {
		return Settings{}, fmt.Errorf("OvercommitProfile %s: spec.floorMilli %d is out of range", p.Name, s.FloorMilli)
	}
	for i, r := range p.Spec.Ratios {
		t, err := wellknown.ParseTier(string(r.Tier))
		if err != nil || t == wellknown.TierCritical || t == wellknown.TierSystem {
			return Settings{}, fmt.Errorf("OvercommitProfile %s: spec.ratios[%d].tier %q is not an overcommit tier", p.Name, i, r.Tier)
		}
		if math.IsNaN(r.Ratio) || r.Ratio <= 0 || r.Ratio > 1 {
			return Settings{}, fmt.Errorf("OvercommitProfile %s: spec.ratios[%d].ratio %v is not in (0, 1]", p.Name, i, r.Ratio)
		}
		s.Ratios[t] = r.Ratio
	}
	return s, nil
}

// Change is one container request the webhook lowers.
type Change struct {
	// Path is the JSON pointer of the container's CPU request.
	Path string
	// Container is the container's name.
	Container string
	From, To  resource.Quantity
	// Remove removes the request instead of lowering it (To is zero): the
	// kube-BestEffort path.
	Remove bool
}

// Skip reasons: why Compute left a pod as it was.
const (
	SkipAlreadyDeflated   = "already carries " + wellknown.OriginalCPURequestsAnnotation
	SkipPodLevelResources = "pod-level CPU resources (spec.resources) are set"
	SkipUnresolvedPrio    = "priorityClassName is set but spec.priority is not resolved"
	SkipProtectedTier     = "critical or system tier"
	SkipGuaranteed        = "Guaranteed QoS class"
	SkipNoRatio           = "the profile has no ratio below 1 for the pod's tier"
	SkipNothingToDeflate  = "no container has a CPU request above the floor"
)

// Plan is what Compute decided for a pod.
type Plan struct {
	// Tier is the tier the ratio was chosen for.
	Tier wellknown.Tier
	// Skip is why nothing changes; empty when Changes is not.
	Skip string
	// Changes are the requests to lower (also filled in dry-run, where
	// they are recorded but not applied).
	Changes []Change
	// Originals is the value of infera.io/original-cpu-requests.
	Originals string
	// Warnings are returned to the client as admission warnings.
	Warnings []string
	// BestEffort says the Changes remove every CPU request, so the pod is
	// admitted as kube-BestEffort.
	BestEffort bool
}

// Compute decides how to deflate pod under s. thresholds are every tier
// mapping in force (the manager's and each InferaPolicy's): a pod is only
// deflated when no mapping puts it, or its priority, in the critical or
// system tier, and its ratio is the one of the highest tier any mapping
// gives it. Compute is pure and never fails: odd input yields a Skip and a
// warning.
func Compute(pod *corev1.Pod, s Settings, thresholds []tiering.Thresholds) Plan {
	if v, ok := pod.Annotations[wellknown.OriginalCPURequestsAnnotation]; ok {
		p := Plan{Skip: SkipAlreadyDeflated}
		if _, err := wellknown.ParseOriginalCPURequests(v); err != nil {
			p.Warnings = append(p.Warnings, fmt.Sprintf("%v; pod left as it is", err))
		}
		return p
	}
	if r := pod.Spec.Resources; r != nil {
		_, req := r.Requests[corev1.ResourceCPU]
		_, lim := r.Limits[corev1.ResourceCPU]
		if req || lim {
			return Plan{Skip: SkipPodLevelResources, Warnings: []string{"overcommit: pod-level CPU resources are not deflated; pod left as it is"}}
		}
	}
	if pod.Spec.PriorityClassName != "" && pod.Spec.Priority == nil {
		return Plan{Skip: SkipUnresolvedPrio}
	}
	if len(thresholds) == 0 {
		thresholds = []tiering.Thresholds{tiering.DefaultThresholds()}
	}
	var tier, prioTier wellknown.Tier
	var qos corev1.PodQOSClass
	for _, t := range thresholds {
		r := tiering.Classify(pod, t)
		if tier == "" || tier.Below(r.Tier) {
			tier = r.Tier
		}
		if prioTier == "" || prioTier.Below(r.PriorityTier) {
			prioTier = r.PriorityTier
		}
		qos = r.QOSClass
	}
	plan := Plan{Tier: tier}
	for _, t := range []wellknown.Tier{tier, prioTier} {
		if t == wellknown.TierCritical || t == wellknown.TierSystem {
			plan.Skip = SkipProtectedTier
			return plan
		}
	}
	if qos == corev1.PodQOSGuaranteed {
		plan.Skip = SkipGuaranteed
		return plan
	}
	if tier == wellknown.TierBackground && s.BackgroundBestEffort {
		why := bestEffortBlocker(pod)
		if why == "" {
			if bestEffort(pod, &plan) {
				return plan
			}
			plan.Skip = SkipNothingToDeflate
			return plan
		}
		plan.Warnings = append(plan.Warnings, fmt.Sprintf("overcommit: background pod not admitted as BestEffort: %s; its CPU requests are scaled by the tier's ratio instead", why))
	}
	ratio, ok := s.Ratios[tier]
	if !ok || math.IsNaN(ratio) || ratio <= 0 || ratio >= 1 {
		plan.Skip = SkipNoRatio
		return plan
	}

	// Plain init containers are deflated too: the scheduler counts the
	// largest of them, so leaving them would cap what deflation frees.
	// Restartable (sidecar) init containers run for the pod's lifetime like
	// app containers and are deflated the same way.
	originals := wellknown.OriginalCPURequests{}
	for _, group := range containerGroups(pod) {
		for i := range group.cs {
			c := &group.cs[i]
			q, ok := c.Resources.Requests[corev1.ResourceCPU]
			if !ok || q.Sign() <= 0 {
				continue // nothing requested, nothing to deflate
			}
			if q.Cmp(*resource.NewMilliQuantity(tiering.MaxCPUMilli, resource.DecimalSI)) > 0 {
				plan.Warnings = append(plan.Warnings, fmt.Sprintf("overcommit: %s[%d](%s) CPU request %s is more than %d cores; not deflated",
					group.kind, i, c.Name, q.String(), tiering.MaxCPUMilli/1000))
				continue
			}
			to, ok := deflate(q, ratio, s.FloorMilli)
			if !ok {
				continue
			}
			plan.Changes = append(plan.Changes, Change{
				Path:      fmt.Sprintf("/spec/%s/%d/resources/requests/cpu", group.kind, i),
				Container: c.Name, From: q.DeepCopy(), To: to,
			})
			originals[c.Name] = q.DeepCopy()
		}
	}
	if len(plan.Changes) == 0 {
		plan.Skip = SkipNothingToDeflate
		return plan
	}
	plan.Originals = originals.String()
	return plan
}

// containerGroup is one of a pod's container lists with its JSON field name.
type containerGroup struct {
	kind string
	cs   []corev1.Container
}

// containerGroups are the pod's init and app containers, in that order.
func containerGroups(pod *corev1.Pod) [2]containerGroup {
	return [2]containerGroup{{"initContainers", pod.Spec.InitContainers}, {"containers", pod.Spec.Containers}}
}

// bestEffortBlocker says why removing a pod's CPU requests would not make
// it kube-BestEffort (the QoS class counts CPU and memory, requests and
// limits, of every container), or "" when it would.
func bestEffortBlocker(pod *corev1.Pod) string {
	for _, group := range containerGroups(pod) {
		for i, c := range group.cs {
			if _, ok := c.Resources.Limits[corev1.ResourceCPU]; ok {
				return fmt.Sprintf("%s[%d](%s) sets a CPU limit", group.kind, i, c.Name)
			}
			_, req := c.Resources.Requests[corev1.ResourceMemory]
			_, lim := c.Resources.Limits[corev1.ResourceMemory]
			if req || lim {
				return fmt.Sprintf("%s[%d](%s) sets a memory request or limit", group.kind, i, c.Name)
			}
		}
	}
	if r := pod.Spec.Resources; r != nil {
		if _, ok := r.Requests[corev1.ResourceMemory]; ok {
			return "the pod sets a pod-level memory request"
		}
		if _, ok := r.Limits[corev1.ResourceMemory]; ok {
			return "the pod sets a pod-level memory limit"
		}
	}
	return ""
}

// bestEffort plans the removal of every CPU request of pod, recording the
// originals; false when there is none to remove.
func bestEffort(pod *corev1.Pod, plan *Plan) bool {
	originals := wellknown.OriginalCPURequests{}
	for _, group := range containerGroups(pod) {
		for i, c := range group.cs {
			q, ok := c.Resources.Requests[corev1.ResourceCPU]
			if !ok {
				continue
			}
			plan.Changes = append(plan.Changes, Change{
				Path:      fmt.Sprintf("/spec/%s/%d/resources/requests/cpu", group.kind, i),
				Container: c.Name, From: q.DeepCopy(), Remove: true,
			})
			if q.Sign() > 0 {
				originals[c.Name] = q.DeepCopy()
			}
		}
	}
	if len(plan.Changes) == 0 {
		return false
	}
	plan.BestEffort = true
	plan.Originals = originals.String()
	return true
}

// deflate scales q by ratio, rounds up to a millicore and keeps at least
// floorMilli. ok is false when that would not lower q (q at or below the
// floor, or a ratio too close to 1 to move a millicore).
func deflate(q resource.Quantity, ratio float64, floorMilli int64) (resource.Quantity, bool) {
	m := q.MilliValue()
	if m <= floorMilli {
		return resource.Quantity{}, false
	}
	n := max(int64(math.Ceil(float64(m)*ratio)), floorMilli)
	to := *resource.NewMilliQuantity(n, resource.DecimalSI)
	if to.Cmp(q) >= 0 {
		return resource.Quantity{}, false
	}
	return to, true
}
