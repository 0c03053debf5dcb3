package v1alpha1

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	inferav1alpha1 "github.com/infera-io/temper/apis/infera/v1alpha1"
	"github.com/infera-io/temper/apis/wellknown"
)

// InferaDensityArgs are the arguments of the InferaDensity kube-scheduler
// plugin. They go into a KubeSchedulerConfiguration profile as the args of
// the pluginConfig entry named InferaDensity:
//
//	pluginConfig:
//	- name: InferaDensity
//	  args:
//	    fenceReserveMilli: 2000
//
// Every field is optional; Default fills in the values of DESIGN.md. The
// plugin decodes these args strictly (an unknown field is an error), then
// calls Default and Validate.
//
// +kubebuilder:object:root=true
type InferaDensityArgs struct {
	metav1.TypeMeta `json:",inline"`

	// TierLoadMaxAge is how old an infera.io/tier-load annotation may be
	// before the plugin treats it as absent: neutral score, never a filter.
	// The agent confirms the annotation at least every 60 s. Default: 180s,
	// the contract's value; it must be more than 0 and at most 1h.
	// +optional
	TierLoadMaxAge *metav1.Duration `json:"tierLoadMaxAge,omitempty"`

	// FenceReserveMilli is the CPU, in millicores, a node keeps outside the
	// critical tier's whole-core fence for the always-on system layer and
	// the minimum shared pool. A critical pod can be fenced on a node only if
	// the critical tier's cores, rounded up, fit in the node's allocatable
	// CPU minus this reserve. It must agree with the agents' setting, or the
	// plugin will place critical pods on nodes that demote them (too small)
	// or keep them off nodes that could fence them (too large). Default:
	// 2000: the agent's generator (nodeagent/scx DefaultOptions) keeps one
	// whole core for the system layer and one for the shared pool outside
	// the fence. At most 1,000,000,000.
	// +optional
	FenceReserveMilli *int64 `json:"fenceReserveMilli,omitempty"`

	// PriorityMapping holds the minimum pod priority of each tier. It must
	// agree with the agents' [priority_mapping] and the InferaPolicy that
	// selects the nodes; when given, all four thresholds must be set.
	// Default: the thresholds of DESIGN.md §2.
	// +optional
	PriorityMapping *inferav1alpha1.PriorityMapping `json:"priorityMapping,omitempty"`
}

// Defaults of InferaDensityArgs.
const (
	DefaultFenceReserveMilli int64 = 2000
	maxTierLoadMaxAge              = time.Hour
	maxFenceReserveMilli     int64 = 1_000_000_000
)

// Default fills every unset field with its default.
func (a *InferaDensityArgs) Default() {
	if a.TierLoadMaxAge == nil {
		a.TierLoadMaxAge = &metav1.Duration{Duration: wellknown.TierLoadMaxAge}
	}
	if a.FenceReserveMilli == nil {
		v := DefaultFenceReserveMilli
		a.FenceReserveMilli = &v
	}
	if a.PriorityMapping == nil {
		a.PriorityMapping = &inferav1alpha1.PriorityMapping{
			Critical: wellknown.DefaultCriticalMinPriority,
			High:     wellknown.DefaultHighMinPriority,
			Normal:   wellknown.DefaultNormalMinPriority,
			Low:      wellknown.DefaultLowMinPriority,
		}
	}
}

// Validate checks defaulted args. The errors name the field as it is
// spelled in the scheduler configuration file.
func (a *InferaDensityArgs) Validate() error {
	var errs field.ErrorList
	if a.TierLoadMaxAge == nil {
		errs = append(errs, field.Required(field.NewPath("tierLoadMaxAge"), "call Default first"))
	} else if d := a.TierLoadMaxAge.Duration; d <= 0 || d > maxTierLoadMaxAge {
		errs = append(errs, field.Invalid(field.NewPath("tierLoadMaxAge"), d.String(), "must be more than 0 and at most "+maxTierLoadMaxAge.String()))
	}
	if a.FenceReserveMilli == nil {
		errs = append(errs, field.Required(field.NewPath("fenceReserveMilli"), "call Default first"))
	} else if v := *a.FenceReserveMilli; v < 0 || v > maxFenceReserveMilli {
		errs = append(errs, field.Invalid(field.NewPath("fenceReserveMilli"), v, "must be between 0 and 1000000000"))
	}
	if m := a.PriorityMapping; m == nil {
		errs = append(errs, field.Required(field.NewPath("priorityMapping"), "call Default first"))
	} else {
		p := field.NewPath("priorityMapping")
		switch {
		case m.Critical >= wellknown.DefaultSystemMinPriority:
			errs = append(errs, field.Invalid(p.Child("critical"), m.Critical, "is in the system range (at least 2000000000)"))
		case m.High >= m.Critical:
			errs = append(errs, field.Invalid(p.Child("high"), m.High, "must be below critical"))
		case m.Normal >= m.High:
			errs = append(errs, field.Invalid(p.Child("normal"), m.Normal, "must be below high"))
		case m.Low >= m.Normal:
			errs = append(errs, field.Invalid(p.Child("low"), m.Low, "must be below normal"))
		}
	}
	return errs.ToAggregate()
}
