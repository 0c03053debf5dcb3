package controllers

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
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
	// Clock is the time source of the NodeQoSReport controller.
	Clock clock.PassiveClock
	// Controller options every controller gets (concurrency, rate limits).
	Controller controller.Options
}

type setupFunc func(ctx context.Context, mgr ctrl.Manager, o Options) error

// controllers is the explicit registry, in start order.
var controllers = []struct {
	name  string
	setup setupFunc
}{
	{"inferapolicy", func(ctx context.Context, mgr ctrl.Manager, o Options) error {
		return (&inferapolicy.Reconciler{Client: mgr.GetClient()}).SetupWithManager(ctx, mgr, o.Controller)
	}},
	{"nodeqosreport", func(ctx context.Context, mgr ctrl.Manager, o Options) error {
		return (&nodeqosreport.Reconciler{
			Client:         mgr.GetClient(),
			Recorder:       mgr.GetEventRecorder("infera-manager"),
			Clock:          o.Clock,
			TierLoadMaxAge: o.TierLoadMaxAge,
			SilentAfter:    o.SilentAfter,
			Taint:          o.Taint,
			TaintKey:       o.TaintKey,
			TaintEffect:    o.TaintEffect,
		}).SetupWithManager(ctx, mgr, o.Controller)
	}},
	{"overcommitprofile", func(ctx context.Context, mgr ctrl.Manager, o Options) error {
		return (&overcommitprofile.Reconciler{Client: mgr.GetClient(), PlatformNamespace: o.PlatformNamespace}).
			SetupWithManager(ctx, mgr, o.Controller)
	}},
}

// SetupControllers registers every controller with mgr. On failure it
// returns the failing controller's name and the error.
func SetupControllers(ctx context.Context, mgr ctrl.Manager, o Options) (string, error) {
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	for _, c := range controllers {
		if err := c.setup(ctx, mgr, o); err != nil {
			return c.name, fmt.Errorf("failed to set up the %s controller: %w", c.name, err)
		}
	}
	return "", nil
}
