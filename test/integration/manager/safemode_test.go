package manager

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	inferav1alpha1 "github.com/infera-io/temper/apis/infera/v1alpha1"
	"github.com/infera-io/temper/apis/wellknown"
)

func createNode(t *testing.T, name string, labels, annotations map[string]string) {
	t.Helper()
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, Annotations: annotations}}
	if err := env.Client.Create(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), n) })
}

func nodeAnnotations(t *testing.T, name string) map[string]string {
	t.Helper()
	var n corev1.Node
	if err := env.Client.Get(context.Background(), client.ObjectKey{Name: name}, &n); err != nil {
		t.Fatal(err)
	}
	return n.Annotations
}

// safeModeState renders a node's safe-mode keys for comparison.
func safeModeState(t *testing.T, name string) string {
	a := nodeAnnotations(t, name)
	v, has := a[wellknown.SafeModeRequestedAnnotation]
	if !has {
		v = "-"
	}
	o, has := a[wellknown.SafeModeOwnerAnnotation]
	if !has {
		o = "-"
	}
	return v + "/" + o
}

func waitNodes(t *testing.T, what string, want map[string]string) {
	t.Helper()
	eventually(t, 20*time.Second, what, func() (bool, string) {
		got := ""
		ok := true
		for n, w := range want {
			s := safeModeState(t, n)
			got += fmt.Sprintf("%s=%s ", n, s)
			ok = ok && s == w
		}
		return ok, got
	})
}

func policy(name string, sel map[string]string, safeMode bool) *inferav1alpha1.InferaPolicy {
	return &inferav1alpha1.InferaPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: inferav1alpha1.InferaPolicySpec{
			NodeSelector: metav1.LabelSelector{MatchLabels: sel}, SafeMode: safeMode,
		},
	}
}

func deleteAndWaitGone(t *testing.T, obj client.Object) {
	t.Helper()
	if err := env.Client.Delete(context.Background(), obj); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "deletion of "+obj.GetName(), func() (bool, string) {
		err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(obj), obj)
		return apierrors.IsNotFound(err), fmt.Sprintf("finalizers %v", obj.GetFinalizers())
	})
}

func setSafeMode(t *testing.T, p *inferav1alpha1.InferaPolicy, on bool) {
	t.Helper()
	before := p.DeepCopy()
	p.Spec.SafeMode = on
	if err := env.Client.Patch(context.Background(), p, client.MergeFrom(before)); err != nil {
		t.Fatal(err)
	}
}

// TestSafeModeRoundTrip: a policy selecting two of three nodes annotates
// exactly those; a value an operator set by hand on one of them survives the
// policy's deletion; overlapping policies keep a node in safe mode until the
// last one asking for it goes.
func TestSafeModeRoundTrip(t *testing.T) {
	startManager(t, nil)
	ctx := context.Background()
	createNode(t, "sm-a", map[string]string{"pool": "sm-gpu"}, nil)
	createNode(t, "sm-b", map[string]string{"pool": "sm-gpu"}, map[string]string{wellknown.SafeModeRequestedAnnotation: "true"}) // by hand
	createNode(t, "sm-c", map[string]string{"pool": "sm-cpu"}, nil)

	p := policy("sm-gpu", map[string]string{"pool": "sm-gpu"}, true)
	if err := env.Client.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	waitNodes(t, "policy sm-gpu applied", map[string]string{"sm-a": "true/sm-gpu", "sm-b": "true/-", "sm-c": "-/-"})
	eventually(t, 20*time.Second, "policy status", func() (bool, string) {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(p), p); err != nil {
			return false, err.Error()
		}
		ready := apimeta.FindStatusCondition(p.Status.Conditions, inferav1alpha1.ConditionReady)
		return p.Status.MatchedNodes == 2 && p.Status.SafeModeNodes == 2 && ready != nil && ready.Status == metav1.ConditionTrue &&
				p.Status.ObservedGeneration == p.Generation,
			fmt.Sprintf("%+v", p.Status)
	})

	// A second policy overlapping on sm-a; then moving sm-c into the pool.
	q := policy("sm-all", map[string]string{}, true)
	if err := env.Client.Create(ctx, q); err != nil {
		t.Fatal(err)
	}
	waitNodes(t, "policy sm-all applied", map[string]string{"sm-a": "true/sm-all,sm-gpu", "sm-b": "true/-", "sm-c": "true/sm-all"})
	deleteAndWaitGone(t, q)
	waitNodes(t, "policy sm-all removed", map[string]string{"sm-a": "true/sm-gpu", "sm-b": "true/-", "sm-c": "-/-"})

	// Turning safe mode off in the spec releases the nodes.
	setSafeMode(t, p, false)
	waitNodes(t, "safeMode false", map[string]string{"sm-a": "-/-", "sm-b": "true/-", "sm-c": "-/-"})
	setSafeMode(t, p, true)
	waitNodes(t, "safeMode true again", map[string]string{"sm-a": "true/sm-gpu", "sm-b": "true/-", "sm-c": "-/-"})

	// A node leaving the pool is released.
	var c corev1.Node
	if err := env.Client.Get(ctx, client.ObjectKey{Name: "sm-c"}, &c); err != nil {
		t.Fatal(err)
	}
	before := c.DeepCopy()
	c.Labels["pool"] = "sm-gpu"
	if err := env.Client.Patch(ctx, &c, client.MergeFrom(before)); err != nil {
		t.Fatal(err)
	}
	waitNodes(t, "sm-c joined the pool", map[string]string{"sm-c": "true/sm-gpu"})
	before = c.DeepCopy()
	c.Labels["pool"] = "sm-cpu"
	if err := env.Client.Patch(ctx, &c, client.MergeFrom(before)); err != nil {
		t.Fatal(err)
	}
	waitNodes(t, "sm-c left the pool", map[string]string{"sm-c": "-/-"})

	deleteAndWaitGone(t, p)
	waitNodes(t, "policy deleted", map[string]string{"sm-a": "-/-", "sm-b": "true/-", "sm-c": "-/-"})
}

// TestPolicyInvalidSelectorKeepsWhatItOwns: a selector the API server
// accepts but that does not compile reports InvalidSelector and does not
// lift safe mode on nodes the policy owns.
func TestPolicyInvalidSelectorKeepsWhatItOwns(t *testing.T) {
	startManager(t, nil)
	ctx := context.Background()
	createNode(t, "inv-a", map[string]string{"pool": "inv"}, nil)
	p := policy("inv", map[string]string{"pool": "inv"}, true)
	if err := env.Client.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deleteAndWaitGone(t, p) })
	waitNodes(t, "policy applied", map[string]string{"inv-a": "true/inv"})
	before := p.DeepCopy()
	p.Spec.NodeSelector = metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "pool", Operator: metav1.LabelSelectorOpIn}}}
	if err := env.Client.Patch(ctx, p, client.MergeFrom(before)); err != nil {
		t.Fatalf("the API server refused the selector (then this case cannot happen): %v", err)
	}
	eventually(t, 20*time.Second, "InvalidSelector condition", func() (bool, string) {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(p), p); err != nil {
			return false, err.Error()
		}
		c := apimeta.FindStatusCondition(p.Status.Conditions, inferav1alpha1.ConditionReady)
		return c != nil && c.Reason == inferav1alpha1.ReasonInvalidSelector && c.ObservedGeneration == p.Generation, fmt.Sprintf("%+v", c)
	})
	if s := safeModeState(t, "inv-a"); s != "true/inv" {
		t.Errorf("an invalid selector changed inv-a to %s", s)
	}
}
