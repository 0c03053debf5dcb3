package overcommitprofile

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	kerrors "k8s.io/apimachinery/pkg/util/errors"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
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

// FieldManager is the server-side apply field manager of the namespace
// label and annotation.
const FieldManager = "infera-manager-overcommitprofile"

// +kubebuilder:rbac:groups=infera.io,resources=overcommitprofiles,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=infera.io,resources=overcommitprofiles/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=infera.io,resources=overcommitprofiles/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch

// Reconciler reconciles an OvercommitProfile onto namespaces.
type Reconciler struct {
	Client client.Client
	// PlatformNamespace is never opted in, like kube-system.
	PlatformNamespace string
}

// SetupWithManager registers the controller. Namespace changes requeue every
// profile; a deflated pod requeues the profile its namespace names.
func (r *Reconciler) SetupWithManager(ctx context.Context, mgr ctrl.Manager, opts controller.Options) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&inferav1alpha1.OvercommitProfile{}).
		Watches(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(r.allProfiles),
			builder.WithPredicates(NamespaceInputsChanged{})).
		Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(r.profileOfPod),
			builder.WithPredicates(DeflatedPodChanged{})).
		WithOptions(opts).
		Named("overcommitprofile").
		Complete(r)
}

func (r *Reconciler) allProfiles(ctx context.Context, _ client.Object) []reconcile.Request {
	var list inferav1alpha1.OvercommitProfileList
	if err := r.Client.List(ctx, &list); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Failed to list OvercommitProfiles")
		return nil
	}
	out := make([]reconcile.Request, 0, len(list.Items))
	for i := range list.Items {
		out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
	}
	return out
}

func (r *Reconciler) profileOfPod(ctx context.Context, obj client.Object) []reconcile.Request {
	var ns corev1.Namespace
	if err := r.Client.Get(ctx, client.ObjectKey{Name: obj.GetNamespace()}, &ns); err != nil {
		return nil
	}
	if name := ns.Annotations[wellknown.OvercommitProfileAnnotation]; name != "" {
		return []reconcile.Request{{NamespacedName: client.ObjectKey{Name: name}}}
	}
	return nil
}

// Exempt reports whether a namespace is never opted in.
func (r *Reconciler) Exempt(ns string) bool {
	return ns == metav1.NamespaceSystem || ns == r.PlatformNamespace
}

// Reconcile implements reconcile.Reconciler.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, reterr error) {
	var p inferav1alpha1.OvercommitProfile
	if err := r.Client.Get(ctx, req.NamespacedName, &p); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	log := ctrl.LoggerFrom(ctx).WithValues("OvercommitProfile", klog.KObj(&p))
	ctx = ctrl.LoggerInto(ctx, log)

	if added, err := finalizers.Ensure(ctx, r.Client, &p, wellknown.OvercommitProfileFinalizer); added || err != nil {
		return ctrl.Result{}, err
	}
	if !p.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.reconcileDelete(ctx, &p)
	}

	before := p.DeepCopy()
	var res result
	defer func() {
		setConditions(&p, res, reterr)
		// A spec the controller cannot act on (a terminal error) has been
		// observed too: GitOps health checks read observedGeneration to
		// tell "not looked at yet" from "looked at and failed".
		if reterr == nil || errors.Is(reterr, reconcile.TerminalError(nil)) {
			p.Status.ObservedGeneration = p.Generation
		}
		if equality.Semantic.DeepEqual(before.Status, p.Status) {
			return
		}
		if err := statusapply.Apply(ctx, r.Client, &p, p.Status); err != nil {
			reterr = kerrors.NewAggregate([]error{reterr, err})
		}
	}()

	var err error
	res, err = r.reconcileNamespaces(ctx, &p, false)
	if err != nil {
		return ctrl.Result{}, err
	}
	if err := r.countPods(ctx, &p, res.won); err != nil {
		return ctrl.Result{}, err
	}
	p.Status.MatchedNamespaces = int32(len(res.matched))
	if res.selectorErr != nil {
		return ctrl.Result{}, reconcile.TerminalError(res.selectorErr)
	}
	return ctrl.Result{}, nil
}

func (r *Reconciler) reconcileDelete(ctx context.Context, p *inferav1alpha1.OvercommitProfile) error {
	if !controllerutil.ContainsFinalizer(p, wellknown.OvercommitProfileFinalizer) {
		return nil
	}
	if _, err := r.reconcileNamespaces(ctx, p, true); err != nil {
		return err
	}
	ctrl.LoggerFrom(ctx).Info("Removing finalizer: the profile's namespace label and annotation are released")
	before := p.DeepCopy()
	controllerutil.RemoveFinalizer(p, wellknown.OvercommitProfileFinalizer)
	if err := r.Client.Patch(ctx, p, client.MergeFrom(before)); err != nil {
		return client.IgnoreNotFound(fmt.Errorf("failed to remove finalizer from OvercommitProfile %s: %w", p.Name, err))
	}
	return nil
}

type candidate struct {
	p        *inferav1alpha1.OvercommitProfile
	selector labels.Selector
}

// result is what reconcileNamespaces saw for the profile being reconciled.
type result struct {
	matched     []string          // namespaces it selects
	won         []string          // of those, the ones it names
	lostTo      map[string]string // namespace → the older profile that won it
	kept        map[string]string // namespace → why the manager left it alone
	selectorErr error
}

// reconcileNamespaces brings every namespace to what all live profiles want
// (the oldest selecting profile wins a namespace), treating self as gone
// when deleting.
func (r *Reconciler) reconcileNamespaces(ctx context.Context, self *inferav1alpha1.OvercommitProfile, deleting bool) (result, error) {
	res := result{lostTo: map[string]string{}, kept: map[string]string{}}
	var profiles inferav1alpha1.OvercommitProfileList
	if err := r.Client.List(ctx, &profiles); err != nil {
		return res, fmt.Errorf("failed to list OvercommitProfiles: %w", err)
	}
	var cands []candidate
	for i := range profiles.Items {
		p := &profiles.Items[i]
		if !p.DeletionTimestamp.IsZero() || (deleting && p.Name == self.Name) {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(&p.Spec.NamespaceSelector)
		if err != nil {
			if p.Name == self.Name {
				res.selectorErr = fmt.Errorf("spec.namespaceSelector is invalid: %w", err)
			}
			continue
		}
		cands = append(cands, candidate{p: p, selector: sel})
	}
	sort.Slice(cands, func(i, j int) bool {
		a, b := cands[i].p, cands[j].p
		if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
			return a.CreationTimestamp.Before(&b.CreationTimestamp)
		}
		return a.Name < b.Name
	})

	var namespaces corev1.NamespaceList
	if err := r.Client.List(ctx, &namespaces); err != nil {
		return res, fmt.Errorf("failed to list namespaces: %w", err)
	}
	var errs []error
	for i := range namespaces.Items {
		ns := &namespaces.Items[i]
		winner := ""
		if !r.Exempt(ns.Name) && ns.DeletionTimestamp.IsZero() {
			for _, c := range cands {
				if c.selector.Matches(labels.Set(ns.Labels)) {
					if winner == "" {
						winner = c.p.Name
					}
					if c.p.Name == self.Name {
						res.matched = append(res.matched, ns.Name)
						if winner == self.Name {
							res.won = append(res.won, ns.Name)
						} else {
							res.lostTo[ns.Name] = winner
						}
					}
				}
			}
		}
		if err := r.syncNamespace(ctx, ns, winner); err != nil {
			if apierrors.IsConflict(err) {
				res.kept[ns.Name] = err.Error()
				continue
			}
			errs = append(errs, err)
		}
	}
	return res, kerrors.NewAggregate(errs)
}

// syncNamespace applies the label and annotation for winner, or releases
// them when winner is empty. Only fields this manager applied are removed on
// release; a label an operator set stays.
func (r *Reconciler) syncNamespace(ctx context.Context, ns *corev1.Namespace, winner string) error {
	label, annotation := ns.Labels[wellknown.OvercommitLabel], ns.Annotations[wellknown.OvercommitProfileAnnotation]
	ac := corev1ac.Namespace(ns.Name)
	switch {
	case winner != "" && label == wellknown.OvercommitEnabledValue && annotation == winner:
		return nil
	case winner != "":
		ac = ac.WithLabels(map[string]string{wellknown.OvercommitLabel: wellknown.OvercommitEnabledValue}).
			WithAnnotations(map[string]string{wellknown.OvercommitProfileAnnotation: winner})
		ctrl.LoggerFrom(ctx).Info("Opting namespace in", "Namespace", klog.KObj(ns), "profile", winner)
	case !r.owns(ns):
		return nil // nothing of ours on it (a hand-set label or annotation stays)
	default:
		ctrl.LoggerFrom(ctx).Info("Releasing namespace", "Namespace", klog.KObj(ns))
	}
	// No force: a label another manager set to a different value is a
	// conflict, and the namespace is left as the operator has it.
	if err := r.Client.Apply(ctx, ac, client.FieldOwner(FieldManager)); err != nil {
		return fmt.Errorf("failed to apply overcommit label to Namespace %s: %w", ns.Name, err)
	}
	return nil
}

// owns reports whether this manager has applied fields on ns.
func (r *Reconciler) owns(ns *corev1.Namespace) bool {
	for _, mf := range ns.ManagedFields {
		if mf.Manager == FieldManager && mf.Operation == metav1.ManagedFieldsOperationApply && mf.FieldsV1 != nil &&
			strings.Contains(mf.FieldsV1.GetRawString(), wellknown.Domain) {
			return true
		}
	}
	return false
}

// countPods fills podsDeflated and cpuFreed from the live pods of the
// namespaces the profile won.
func (r *Reconciler) countPods(ctx context.Context, p *inferav1alpha1.OvercommitProfile, namespaces []string) error {
	var deflated int32
	var freed int64
	for _, ns := range namespaces {
		var pods corev1.PodList
		if err := r.Client.List(ctx, &pods, client.InNamespace(ns)); err != nil {
			return fmt.Errorf("failed to list pods in %s: %w", ns, err)
		}
		for i := range pods.Items {
			pod := &pods.Items[i]
			if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
				continue
			}
			// A value that does not parse counts for nothing here; the
			// gateway's savings view lists it by pod.
			if sv, ok, err := wellknown.PodCPUSavings(pod); ok && err == nil && sv.FreedMilli > 0 {
				deflated++
				freed += sv.FreedMilli
			}
		}
	}
	p.Status.PodsDeflated = deflated
	p.Status.CPUFreed = *resource.NewMilliQuantity(freed, resource.DecimalSI)
	return nil
}

func setConditions(p *inferav1alpha1.OvercommitProfile, res result, err error) {
	ready := metav1.Condition{
		Type: inferav1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: inferav1alpha1.ReasonReconciled,
		ObservedGeneration: p.Generation,
		Message:            fmt.Sprintf("%d namespaces opted in", len(res.won)),
	}
	if err != nil {
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, inferav1alpha1.ReasonReconcileFailed, err.Error()
		if errors.Is(err, res.selectorErr) && res.selectorErr != nil {
			ready.Reason = inferav1alpha1.ReasonInvalidSelector
		}
	}
	apimeta.SetStatusCondition(&p.Status.Conditions, ready)

	conflict := metav1.Condition{
		Type: inferav1alpha1.ConditionProfileConflict, Status: metav1.ConditionFalse, Reason: inferav1alpha1.ReasonNoConflict,
		ObservedGeneration: p.Generation, Message: "no namespace is claimed by another profile or manager",
	}
	var msgs []string
	for _, ns := range sortedKeys(res.lostTo) {
		msgs = append(msgs, fmt.Sprintf("namespace %s is opted in by the older profile %s", ns, res.lostTo[ns]))
	}
	for _, ns := range sortedKeys(res.kept) {
		msgs = append(msgs, fmt.Sprintf("namespace %s left as it is: %s", ns, res.kept[ns]))
	}
	if len(msgs) > 0 {
		conflict.Status, conflict.Reason, conflict.Message = metav1.ConditionTrue, inferav1alpha1.ReasonNamespaceClaimed, strings.Join(msgs, "; ")
	}
	apimeta.SetStatusCondition(&p.Status.Conditions, conflict)
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// NamespaceInputsChanged passes namespace events that can change which
// profile opts a namespace in: creation, deletion, labels and the profile
// annotation.
type NamespaceInputsChanged struct {
	predicate.Funcs
}

// Update implements predicate.Predicate.
func (NamespaceInputsChanged) Update(e event.UpdateEvent) bool {
	if e.ObjectOld == nil || e.ObjectNew == nil {
		return true
	}
	return !equality.Semantic.DeepEqual(e.ObjectOld.GetLabels(), e.ObjectNew.GetLabels()) ||
		e.ObjectOld.GetAnnotations()[wellknown.OvercommitProfileAnnotation] != e.ObjectNew.GetAnnotations()[wellknown.OvercommitProfileAnnotation]
}

// DeflatedPodChanged passes events of pods that carry
// infera.io/original-cpu-requests: they change a profile's counts.
type DeflatedPodChanged struct {
	predicate.Funcs
}

func deflated(o client.Object) bool {
	_, ok := o.GetAnnotations()[wellknown.OriginalCPURequestsAnnotation]
	return ok
}

// Create implements predicate.Predicate.
func (DeflatedPodChanged) Create(e event.CreateEvent) bool { return deflated(e.Object) }

// Delete implements predicate.Predicate.
func (DeflatedPodChanged) Delete(e event.DeleteEvent) bool { return deflated(e.Object) }

// Update implements predicate.Predicate: phase changes of deflated pods.
func (DeflatedPodChanged) Update(e event.UpdateEvent) bool {
	o, ok1 := e.ObjectOld.(*corev1.Pod)
	n, ok2 := e.ObjectNew.(*corev1.Pod)
	return ok1 && ok2 && deflated(n) && o.Status.Phase != n.Status.Phase
}

// Generic implements predicate.Predicate.
func (DeflatedPodChanged) Generic(e event.GenericEvent) bool { return deflated(e.Object) }
