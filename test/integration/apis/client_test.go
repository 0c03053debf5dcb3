package apis

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	metaapply "k8s.io/client-go/applyconfigurations/meta/v1"
	"k8s.io/client-go/tools/cache"

	inferaapply "github.com/infera-io/temper/apis/client/applyconfiguration/infera/v1alpha1"
	"github.com/infera-io/temper/apis/client/clientset/versioned"
	"github.com/infera-io/temper/apis/client/informers/externalversions"
	inferav1alpha1 "github.com/infera-io/temper/apis/infera/v1alpha1"
)

func TestGeneratedClientInformersListers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cs, err := versioned.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	factory := externalversions.NewSharedInformerFactory(cs, 0)
	policies := factory.Infera().V1alpha1().InferaPolicies()
	lister := policies.Lister()
	seen := make(chan string, 10)
	if _, err := policies.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { seen <- obj.(*inferav1alpha1.InferaPolicy).Name },
	}); err != nil {
		t.Fatal(err)
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), policies.Informer().HasSynced) {
		t.Fatal("informer did not sync")
	}

	created, err := cs.InferaV1alpha1().InferaPolicies().Create(ctx, &inferav1alpha1.InferaPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "typed", Labels: map[string]string{"fleet": "a"}},
		Spec:       inferav1alpha1.InferaPolicySpec{SafeMode: true},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cs.InferaV1alpha1().InferaPolicies().Delete(context.Background(), "typed", metav1.DeleteOptions{})
	})
	select {
	case name := <-seen:
		if name != "typed" {
			t.Fatalf("informer saw %q", name)
		}
	case <-ctx.Done():
		t.Fatal("informer never saw the policy")
	}
	got, err := lister.Get("typed")
	if err != nil || !got.Spec.SafeMode || got.UID != created.UID {
		t.Fatalf("lister Get = %+v, %v", got, err)
	}
	list, err := lister.List(labels.SelectorFromSet(labels.Set{"fleet": "a"}))
	if err != nil || len(list) != 1 {
		t.Fatalf("lister List = %d items, %v", len(list), err)
	}

	// Server-side apply through the generated apply configurations: the
	// applier owns exactly the fields it sent.
	ac := inferaapply.OvercommitProfile("applied").WithSpec(
		inferaapply.OvercommitProfileSpec().
			WithNamespaceSelector(metaapply.LabelSelector().WithMatchLabels(map[string]string{"team": "batch"})).
			WithRatios(inferaapply.TierRatio().WithTier("low").WithRatio(0.5)).
			WithFloorMilli(40))
	applied, err := cs.InferaV1alpha1().OvercommitProfiles().Apply(ctx, ac, metav1.ApplyOptions{FieldManager: "gitops", Force: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cs.InferaV1alpha1().OvercommitProfiles().Delete(context.Background(), "applied", metav1.DeleteOptions{})
	})
	if applied.Spec.FloorMilli != 40 || len(applied.Spec.Ratios) != 1 || applied.Spec.Ratios[0].Ratio != 0.5 {
		t.Fatalf("applied spec = %+v", applied.Spec)
	}
	again, err := cs.InferaV1alpha1().OvercommitProfiles().Apply(ctx, ac, metav1.ApplyOptions{FieldManager: "gitops", Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if again.Generation != applied.Generation {
		t.Errorf("re-applying the same config bumped generation %d→%d (defaulting drift)", applied.Generation, again.Generation)
	}

	// Status through the typed client's subresource.
	applied.Status.MatchedNamespaces = 2
	st, err := cs.InferaV1alpha1().OvercommitProfiles().UpdateStatus(ctx, applied, metav1.UpdateOptions{})
	if err != nil || st.Status.MatchedNamespaces != 2 {
		t.Fatalf("UpdateStatus = %+v, %v", st.Status, err)
	}
}
