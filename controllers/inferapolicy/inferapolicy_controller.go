package inferapolicy

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	kerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	inferav1alpha1 "github.com/infera-io/temper/apis/infera/v1alpha1"
	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/internal/finalizers"
	"github.com/infera-io/temper/internal/statusapply"
)

// +kubebuilder:rbac:groups=infera.io,resources=inferapolicies,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=infera.io,resources=inferapolicies/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=infera.io,resources=inferapolicies/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=nodes,verbs=get;list;watch;patch

// Reconciler reconciles an InferaPolicy onto the nodes.
type Reconciler struct {
	// Client reads through the manager's cache and writes to the API server.
	Client client.Client
}

// SetupWithManager registers the controller. Node label and safe-mode
// annotation changes requeue every policy, since any of them may now select
// or own the node.
func (r *Reconciler) SetupWithManager(ctx context.Context, mgr ctrl.Manager, opts controller.Options) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&inferav1alpha1.InferaPolicy{}).
		Watches(&corev1.Node{}, handler.EnqueueRequestsFromMapFunc(r.allPolicies),
			builder.WithPredicates(NodeSafeModeInputsChanged{})).
		WithOptions(opts).
		Named("inferapolicy").
		Complete(r)
}

func (r *Reconciler) allPolicies(ctx context.Context, _ client.Object) []reconcile.Request {
	var list inferav1alpha1.InferaPolicyList
	if err := r.Client.List(ctx, &list); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Failed to list InferaPolicies")
		return nil
	}
	out := make([]reconcile.Request, 0, len(list.Items))
	for i := range list.Items {
		out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
	}
	return out
}

// Reconcile implements reconcile.Reconciler.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, reterr error) {
	var pol inferav1alpha1.InferaPolicy
	if err := r.Client.Get(ctx, req.NamespacedName, &pol); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	log := ctrl.LoggerFrom(ctx).WithValues("InferaPolicy", klog.KObj(&pol))
	ctx = ctrl.LoggerInto(ctx, log)

	if added, err := finalizers.Ensure(ctx, r.Client, &pol, wellknown.PolicyFinalizer); added || err != nil {
		return ctrl.Result{}, err
	}

	if !pol.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.reconcileDelete(ctx, &pol)
	}

	before := pol.DeepCopy()
	defer func() {
		setReady(&pol, reterr)
		// A spec the controller cannot act on (a terminal error) has been
		// observed too: GitOps health checks read observedGeneration to
		// tell "not looked at yet" from "looked at and failed".
		if reterr == nil || errors.Is(reterr, reconcile.TerminalError(nil)) {
			pol.Status.ObservedGeneration = pol.Generation
		}
		if equality.Semantic.DeepEqual(before.Status, pol.Status) {
			return
		}
		if err := statusapply.Apply(ctx, r.Client, &pol, pol.Status); err != nil {
			reterr = kerrors.NewAggregate([]error{reterr, err})
		}
	}()
	return ctrl.Result{}, r.reconcileNodes(ctx, &pol)
}

// reconcileNodes brings every node's safe-mode and priority-mapping
// annotations to what all policies want, then counts this policy's nodes.
func (r *Reconciler) reconcileNodes(ctx context.Context, pol *inferav1alpha1.InferaPolicy) error {
	self, selErr, mapErr := compile(pol)
	policies, err := r.policies(ctx)
	if err != nil {
		return err
	}
	var nodes corev1.NodeList
	if err := r.Client.List(ctx, &nodes); err != nil {
		return fmt.Errorf("failed to list nodes: %w", err)
	}
	var errs []error
	var matched, inSafeMode int32
	overridden := map[string]string{}
	for i := range nodes.Items {
		node := &nodes.Items[i]
		out, err := r.syncNode(ctx, node, policies)
		if err != nil {
			errs = append(errs, err)
		}
		if by, ok := out.overridden(pol.Name); ok {
			overridden[node.Name] = by
		}
		if self.selector != nil && self.selector.Matches(labels.Set(node.Labels)) {
			matched++
			if wellknown.IsSafeModeRequested(node.Annotations) {
				inSafeMode++
			}
		}
	}
	pol.Status.MatchedNodes, pol.Status.SafeModeNodes = matched, inSafeMode
	setMappingConflict(pol, overridden)
	if err := kerrors.NewAggregate(errs); err != nil {
		return err
	}
	// Not retried: only a spec change can fix these, and that requeues.
	if selErr != nil {
		return reconcile.TerminalError(specError{reason: inferav1alpha1.ReasonInvalidSelector, err: fmt.Errorf("spec.nodeSelector is invalid: %w", selErr)})
	}
	if mapErr != nil {
		return reconcile.TerminalError(specError{reason: inferav1alpha1.ReasonInvalidMapping, err: fmt.Errorf("%w; the selected nodes keep their thresholds", mapErr)})
	}
	return nil
}

// reconcileDelete removes the annotations this policy owns, then the
// finalizer.
func (r *Reconciler) reconcileDelete(ctx context.Context, pol *inferav1alpha1.InferaPolicy) error {
	if !controllerutil.ContainsFinalizer(pol, wellknown.PolicyFinalizer) {
		return nil
	}
	policies, err := r.policies(ctx)
	if err != nil {
		return err
	}
	for i := range policies {
		if policies[i].name == pol.Name {
			policies[i].deleting = true
		}
	}
	var nodes corev1.NodeList
	if err := r.Client.List(ctx, &nodes); err != nil {
		return fmt.Errorf("failed to list nodes: %w", err)
	}
	var errs []error
	for i := range nodes.Items {
		if _, err := r.syncNode(ctx, &nodes.Items[i], policies); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return kerrors.NewAggregate(errs)
	}
	ctrl.LoggerFrom(ctx).Info("Removing finalizer: the node annotations owned by the policy are gone")
	before := pol.DeepCopy()
	controllerutil.RemoveFinalizer(pol, wellknown.PolicyFinalizer)
	if err := r.Client.Patch(ctx, pol, client.MergeFrom(before)); err != nil {
		return client.IgnoreNotFound(fmt.Errorf("failed to remove finalizer from InferaPolicy %s: %w", pol.Name, err))
	}
	return nil
}

func (r *Reconciler) policies(ctx context.Context) ([]selection, error) {
	var list inferav1alpha1.InferaPolicyList
	if err := r.Client.List(ctx, &list); err != nil {
		return nil, fmt.Errorf("failed to list InferaPolicies: %w", err)
	}
	out := make([]selection, 0, len(list.Items))
	for i := range list.Items {
		// An invalid selector keeps what it owns; an invalid mapping maps
		// nothing.
		s, _, _ := compile(&list.Items[i])
		out = append(out, s)
	}
	sortOldestFirst(out)
	return out, nil
}

// syncNode patches the node's safe-mode and priority-mapping annotations
// to what policies want, in one patch.
func (r *Reconciler) syncNode(ctx context.Context, node *corev1.Node, policies []selection) (mappingOutcome, error) {
	patch, _ := desiredAnnotations(node, policies)
	mpatch, out := desiredMapping(node, policies)
	for k, v := range mpatch {
		patch[k] = v
	}
	if len(patch) == 0 {
		return out, nil
	}
	before := node.DeepCopy()
	node.Annotations = apply(node.Annotations, patch)
	ctrl.LoggerFrom(ctx).Info("Updating node annotations", "Node", klog.KObj(node),
		"safeMode", node.Annotations[wellknown.SafeModeRequestedAnnotation], "owners", node.Annotations[wellknown.SafeModeOwnerAnnotation],
		"priorityMapping", node.Annotations[wellknown.PriorityMappingAnnotation])
	// The optimistic lock makes a concurrent hand edit a conflict and a
	// retry, never a lost update.
	if err := r.Client.Patch(ctx, node, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{})); err != nil {
		return out, fmt.Errorf("failed to patch Node %s: %w", node.Name, err)
	}
	return out, nil
}

// specError is a spec the controller cannot act on; reason is the Ready
// condition's.
type specError struct {
	reason string
	err    error
}

func (e specError) Error() string { return e.err.Error() }

func setReady(pol *inferav1alpha1.InferaPolicy, err error) {
	c := metav1.Condition{
		Type: inferav1alpha1.ConditionReady, Status: metav1.ConditionTrue,
		Reason: inferav1alpha1.ReasonReconciled, ObservedGeneration: pol.Generation,
		Message: fmt.Sprintf("%d nodes matched, %d in safe mode", pol.Status.MatchedNodes, pol.Status.SafeModeNodes),
	}
	if err != nil {
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, inferav1alpha1.ReasonReconcileFailed, err.Error()
		var se specError
		if errors.As(err, &se) {
			c.Reason = se.reason
			c.Message = se.Error()
		}
	}
	apimeta.SetStatusCondition(&pol.Status.Conditions, c)
}

// setMappingConflict reports the selected nodes that carry another priority
// mapping than the policy's (overridden: node → by whom).
func setMappingConflict(pol *inferav1alpha1.InferaPolicy, overridden map[string]string) {
	c := metav1.Condition{
		Type: inferav1alpha1.ConditionPriorityMappingConflict, Status: metav1.ConditionFalse,
		Reason: inferav1alpha1.ReasonNoConflict, ObservedGeneration: pol.Generation,
		Message: "every selected node carries this policy's priority mapping, if it has one",
	}
	if len(overridden) > 0 {
		nodes := make([]string, 0, len(overridden))
		for n := range overridden {
			nodes = append(nodes, n)
		}
		sort.Strings(nodes)
		msgs := make([]string, 0, len(nodes))
		for i, n := range nodes {
			if i == 10 {
				msgs = append(msgs, fmt.Sprintf("and %d more", len(nodes)-10))
				break
			}
			msgs = append(msgs, fmt.Sprintf("node %s has the mapping of %s", n, overridden[n]))
		}
		c.Status, c.Reason, c.Message = metav1.ConditionTrue, inferav1alpha1.ReasonMappingOverridden, strings.Join(msgs, "; ")
	}
	apimeta.SetStatusCondition(&pol.Status.Conditions, c)
}

// NodeSafeModeInputsChanged passes node events that can change what a
// policy does: creation, deletion, and updates of labels or of the
// annotations policies write. Status heartbeats are filtered out.
type NodeSafeModeInputsChanged struct {
	predicate.Funcs
}

// Update implements predicate.Predicate.
func (NodeSafeModeInputsChanged) Update(e event.UpdateEvent) bool {
	if e.ObjectOld == nil || e.ObjectNew == nil {
		return true
	}
	o, n := e.ObjectOld, e.ObjectNew
	if !equality.Semantic.DeepEqual(o.GetLabels(), n.GetLabels()) {
		return true
	}
	for _, k := range []string{wellknown.SafeModeRequestedAnnotation, wellknown.SafeModeOwnerAnnotation, wellknown.PriorityMappingAnnotation} {
		if o.GetAnnotations()[k] != n.GetAnnotations()[k] {
			return true
		}
	}
	return false
}
