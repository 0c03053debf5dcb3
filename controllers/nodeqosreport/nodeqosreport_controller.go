package nodeqosreport

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	inferav1alpha1 "github.com/infera-io/temper/apis/infera/v1alpha1"
	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/internal/statusapply"
)

// +kubebuilder:rbac:groups=infera.io,resources=nodeqosreports,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=infera.io,resources=nodeqosreports/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=nodes,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Event reasons of the backstop, on the Node.
const (
	EventAgentSilent = "AgentSilent"
	EventAgentBack   = "AgentBack"
)

// Reconciler mirrors a Node's agent annotations into its NodeQoSReport and
// runs the silent-agent backstop.
type Reconciler struct {
	Client   client.Client
	Recorder events.EventRecorder
	Clock    clock.PassiveClock
	// TierLoadMaxAge: older tier-load turns AgentHeartbeat False.
	TierLoadMaxAge time.Duration
	// SilentAfter: an agent silent for longer trips the backstop.
	SilentAfter time.Duration
	// Taint enables the backstop's taint (TaintKey, TaintEffect).
	Taint       bool
	TaintKey    string
	TaintEffect corev1.TaintEffect
	// MaxSilentFraction is the circuit breaker of the taint: when more
	// than this share of all nodes have silent agents at once, the cause
	// is fleet-wide (an uninstall, the agents cut off from the API server),
	// not the nodes, and no node is tainted; taints already set are lifted.
	// 0 means DefaultMaxSilentFraction; 1 or more turns the breaker off.
	MaxSilentFraction float64
}

// DefaultMaxSilentFraction is the node lifecycle controller's
// unhealthyZoneThreshold: above it a zone is in full disruption and
// evictions stop.
const DefaultMaxSilentFraction = 0.55

// breakerOpen reports whether silent of total nodes is more than max's
// share (max ≤ 0 or ≥ 1: never).
func breakerOpen(silent, total int, max float64) bool {
	if total == 0 || max <= 0 || max >= 1 {
		return false
	}
	return float64(silent) > max*float64(total)
}

// silentShare counts the nodes whose agents are silent right now.
func (r *Reconciler) silentShare(ctx context.Context, now time.Time) (silent, total int, err error) {
	var nodes corev1.NodeList
	if err := r.Client.List(ctx, &nodes); err != nil {
		return 0, 0, fmt.Errorf("failed to list Nodes for the backstop's circuit breaker: %w", err)
	}
	for i := range nodes.Items {
		if observe(&nodes.Items[i], now, r.TierLoadMaxAge, r.SilentAfter).silent {
			silent++
		}
	}
	return silent, len(nodes.Items), nil
}

// SetupWithManager registers the controller. The request name is the Node's
// name, which is also the report's.
func (r *Reconciler) SetupWithManager(ctx context.Context, mgr ctrl.Manager, opts controller.Options) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&corev1.Node{}, builder.WithPredicates(NodeReportInputsChanged{TaintKey: r.TaintKey})).
		Owns(&inferav1alpha1.NodeQoSReport{}).
		WithOptions(opts).
		Named("nodeqosreport").
		Complete(r)
}

// Reconcile implements reconcile.Reconciler.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, reterr error) {
	var node corev1.Node
	if err := r.Client.Get(ctx, req.NamespacedName, &node); err != nil {
		if apierrors.IsNotFound(err) {
			return ctrl.Result{}, r.deleteOrphan(ctx, req.Name)
		}
		return ctrl.Result{}, fmt.Errorf("failed to get Node %s: %w", req.Name, err)
	}
	log := ctrl.LoggerFrom(ctx).WithValues("Node", klog.KObj(&node))
	ctx = ctrl.LoggerInto(ctx, log)

	report, err := r.ensureReport(ctx, &node)
	if err != nil {
		return ctrl.Result{}, err
	}
	now := r.Clock.Now()
	o := observe(&node, now, r.TierLoadMaxAge, r.SilentAfter)
	wasSilent := apimeta.IsStatusConditionTrue(report.Status.Conditions, inferav1alpha1.ConditionAgentSilent)

	before := report.DeepCopy()
	defer func() {
		setReady(&report.Status, reterr, report.Generation)
		if reterr == nil {
			report.Status.ObservedGeneration = report.Generation
		}
		if equality.Semantic.DeepEqual(before.Status, report.Status) {
			return
		}
		if err := statusapply.Apply(ctx, r.Client, report, report.Status); err != nil {
			reterr = kerrors.NewAggregate([]error{reterr, err})
		}
	}()

	mirror(&report.Status, &node, o, report.Generation)
	if err := r.backstop(ctx, &node, o, wasSilent); err != nil {
		return ctrl.Result{}, err
	}
	if o.next > 0 {
		return ctrl.Result{RequeueAfter: o.next}, nil
	}
	if r.Taint && o.silent {
		// Other nodes falling silent or coming back open and close the
		// breaker without an event on this node: look again.
		return ctrl.Result{RequeueAfter: max(r.SilentAfter/5, 10*time.Second)}, nil
	}
	return ctrl.Result{}, nil
}

// ensureReport gets the node's report, creating it owned by the node.
func (r *Reconciler) ensureReport(ctx context.Context, node *corev1.Node) (*inferav1alpha1.NodeQoSReport, error) {
	var report inferav1alpha1.NodeQoSReport
	err := r.Client.Get(ctx, client.ObjectKey{Name: node.Name}, &report)
	if err == nil {
		if ownedBy(&report, node) {
			return &report, nil
		}
		// A Node deleted and re-created under the same name: point the
		// report at the new one, or the garbage collector removes it.
		before := report.DeepCopy()
		report.OwnerReferences = []metav1.OwnerReference{nodeOwner(node)}
		ctrl.LoggerFrom(ctx).Info("Adopting NodeQoSReport for a re-created Node")
		if err := r.Client.Patch(ctx, &report, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); err != nil {
			return nil, fmt.Errorf("failed to update the owner of NodeQoSReport %s: %w", node.Name, err)
		}
		return &report, nil
	}
	if !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("failed to get NodeQoSReport %s: %w", node.Name, err)
	}
	report = inferav1alpha1.NodeQoSReport{ObjectMeta: metav1.ObjectMeta{
		Name:            node.Name,
		OwnerReferences: []metav1.OwnerReference{nodeOwner(node)},
	}}
	ctrl.LoggerFrom(ctx).Info("Creating NodeQoSReport")
	if err := r.Client.Create(ctx, &report); err != nil {
		return nil, fmt.Errorf("failed to create NodeQoSReport %s: %w", node.Name, err)
	}
	return &report, nil
}

func nodeOwner(node *corev1.Node) metav1.OwnerReference {
	isController := true
	return metav1.OwnerReference{APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID, Controller: &isController}
}

func ownedBy(report *inferav1alpha1.NodeQoSReport, node *corev1.Node) bool {
	for _, o := range report.OwnerReferences {
		if o.Kind == "Node" && o.UID == node.UID {
			return true
		}
	}
	return false
}

// deleteOrphan removes the report of a node that is gone. The garbage
// collector does the same through the owner reference; doing it here too
// keeps clusters without it (envtest, a stopped controller-manager) clean.
func (r *Reconciler) deleteOrphan(ctx context.Context, name string) error {
	report := &inferav1alpha1.NodeQoSReport{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := r.Client.Delete(ctx, report); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("failed to delete NodeQoSReport %s of a deleted Node: %w", name, err)
	}
	return nil
}

// backstop emits the silent/back events and keeps the taint.
func (r *Reconciler) backstop(ctx context.Context, node *corev1.Node, o observation, wasSilent bool) error {
	log := ctrl.LoggerFrom(ctx)
	switch {
	case o.silent && !wasSilent:
		log.Info("Agent is silent", "lastHeartbeat", o.load.TS, "after", r.SilentAfter)
		if r.Recorder != nil {
			r.Recorder.Eventf(node, nil, corev1.EventTypeWarning, EventAgentSilent, "Backstop",
				"The Temper agent has not confirmed %s since %s (more than %s)", wellknown.TierLoadAnnotation, o.load.TS.UTC().Format(time.RFC3339), r.SilentAfter)
		}
	case !o.silent && wasSilent:
		log.Info("Agent is back")
		if r.Recorder != nil {
			r.Recorder.Eventf(node, nil, corev1.EventTypeNormal, EventAgentBack, "Backstop", "The Temper agent reports again")
		}
	}
	want := r.Taint && o.silent
	if want {
		max := r.MaxSilentFraction
		if max == 0 {
			max = DefaultMaxSilentFraction
		}
		silent, total, err := r.silentShare(ctx, r.Clock.Now())
		if err != nil {
			return err
		}
		if breakerOpen(silent, total, max) {
			want = false
			log.Info("Not tainting: too many agents are silent at once for the cause to be this node (backstop circuit breaker open)",
				"silent", silent, "nodes", total, "maxSilentFraction", max)
		}
	}
	return r.syncTaint(ctx, node, want)
}

func (r *Reconciler) syncTaint(ctx context.Context, node *corev1.Node, want bool) error {
	idx := -1
	for i, t := range node.Spec.Taints {
		if t.Key == r.TaintKey {
			idx = i
			break
		}
	}
	has := idx >= 0
	if has == want && (!has || node.Spec.Taints[idx].Effect == r.TaintEffect) {
		return nil
	}
	before := node.DeepCopy()
	taints := make([]corev1.Taint, 0, len(node.Spec.Taints)+1)
	for _, t := range node.Spec.Taints {
		if t.Key != r.TaintKey {
			taints = append(taints, t)
		}
	}
	if want {
		now := metav1.NewTime(r.Clock.Now())
		taints = append(taints, corev1.Taint{Key: r.TaintKey, Value: "true", Effect: r.TaintEffect, TimeAdded: &now})
		ctrl.LoggerFrom(ctx).Info("Tainting node with a silent agent", "taint", r.TaintKey)
	} else {
		ctrl.LoggerFrom(ctx).Info("Lifting the silent-agent taint", "taint", r.TaintKey)
	}
	node.Spec.Taints = taints
	if err := r.Client.Patch(ctx, node, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); err != nil {
		return fmt.Errorf("failed to patch taints of Node %s: %w", node.Name, err)
	}
	return nil
}

// NodeReportInputsChanged passes node events that change the report:
// creation, deletion, the agent and safe-mode annotations, and the
// backstop's taint. The kubelet's status heartbeats are filtered out.
type NodeReportInputsChanged struct {
	predicate.Funcs
	TaintKey string
}

// Update implements predicate.Predicate.
func (p NodeReportInputsChanged) Update(e event.UpdateEvent) bool {
	o, ok1 := e.ObjectOld.(*corev1.Node)
	n, ok2 := e.ObjectNew.(*corev1.Node)
	if !ok1 || !ok2 {
		return true
	}
	for _, k := range []string{wellknown.AgentStatusAnnotation, wellknown.TierLoadAnnotation, wellknown.SafeModeRequestedAnnotation} {
		if o.Annotations[k] != n.Annotations[k] {
			return true
		}
	}
	return hasTaint(o, p.TaintKey) != hasTaint(n, p.TaintKey)
}

func hasTaint(n *corev1.Node, key string) bool {
	for _, t := range n.Spec.Taints {
		if t.Key == key {
			return true
		}
	}
	return false
}
