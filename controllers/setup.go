package controllers

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"

	"github.com/infera-io/temper/controllers/inferapolicy"
	"github.com/infera-io/temper/controllers/nodeqosreport"
	"github.com/infera-io/temper/controllers/overcommitprofile"
)

// Options configure the controllers.
type Options struct {
	// PlatformNamespace is never opted into overcommit.
	PlatformNamespace string
	// TierLoadMaxAge: an older tier-load turns AgentHeartbeat False.
	TierLoadMaxAge time.Duration
	// SilentAfter, Taint, TaintKey, TaintEffect configure the silent-agent
	// backstop.
	SilentAfter time.Duration
	Taint       bool
	TaintKey    string
	TaintEffect corev1.TaintEffect
	// MaxSilentPercent is the taint's circuit breaker (0: the default).
	MaxSilentPercent int32
	// Clock is the time source of the NodeQoSReport controller.
	Clock clock.PassiveClock
	// Controller options every controller gets (concurrency, rate limits).
	Controller controller.Options
}

// FieldOwner is the field manager of every write the controllers make, so
// managedFields name the manager rather than the binary.
const FieldOwner = "infera-manager"

type setupFunc func(ctx context.Context, mgr ctrl.Manager, c client.Client, o Options) error

// controllers is the explicit registry, in start order.
var controllers = []struct {
	name  string
	setup setupFunc
}{
	{"inferapolicy", func(ctx context.Context, mgr ctrl.Manager, c client.Client, o Options) error {
		return (&inferapolicy.Reconciler{Client: c}).SetupWithManager(ctx, mgr, o.Controller)
	}},
	{"nodeqosreport", func(ctx context.Context, mgr ctrl.Manager, c client.Client, o Options) error {
		return (&nodeqosreport.Reconciler{
			Client:         c,
			Recorder:       mgr.GetEventRecorder("infera-manager"),
			Clock:          o.Clock,
			TierLoadMaxAge: o.TierLoadMaxAge,
			SilentAfter:    o.SilentAfter,
			Taint:          o.Taint,
			TaintKey:       o.TaintKey,
			TaintEffect:    o.TaintEffect,
			// 0 → the default; 100 → 1, never open.
			MaxSilentFraction: float64(o.MaxSilentPercent) / 100,
		}).SetupWithManager(ctx, mgr, o.Controller)
	}},
	{"overcommitprofile", func(ctx context.Context, mgr ctrl.Manager, c client.Client, o Options) error {
		return (&overcommitprofile.Reconciler{Client: c, PlatformNamespace: o.PlatformNamespace}).
			SetupWithManager(ctx, mgr, o.Controller)
	}},
}

// SetupControllers registers every controller with mgr. On failure it
// returns the failing controller's name and the error.
func SetupControllers(ctx context.Context, mgr ctrl.Manager, o Options) (string, error) {
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	c := client.WithFieldOwner(mgr.GetClient(), FieldOwner)
	for _, ctl := range controllers {
		if err := ctl.setup(ctx, mgr, c, o); err != nil {
			return ctl.name, fmt.Errorf("failed to set up the %s controller: %w", ctl.name, err)
		}
	}
	return "", nil
}
