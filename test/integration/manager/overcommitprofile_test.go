package manager

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	inferav1alpha1 "github.com/infera-io/temper/apis/infera/v1alpha1"
	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/webhooks/overcommit"
)

func nsState(t *testing.T, name string) string {
	t.Helper()
	var n corev1.Namespace
	if err := env.Client.Get(context.Background(), client.ObjectKey{Name: name}, &n); err != nil {
		t.Fatal(err)
	}
	l, ok := n.Labels[wellknown.OvercommitLabel]
	if !ok {
		l = "-"
	}
	a, ok := n.Annotations[wellknown.OvercommitProfileAnnotation]
	if !ok {
		a = "-"
	}
	return l + "/" + a
}

func waitNamespaces(t *testing.T, what string, want map[string]string) {
	t.Helper()
	eventually(t, 20*time.Second, what, func() (bool, string) {
		ok, got := true, ""
		for n, w := range want {
			s := nsState(t, n)
			got += n + "=" + s + " "
			ok = ok && s == w
		}
		return ok, got
	})
}

func profile(name string, sel map[string]string) *inferav1alpha1.OvercommitProfile {
	return &inferav1alpha1.OvercommitProfile{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       inferav1alpha1.OvercommitProfileSpec{NamespaceSelector: metav1.LabelSelector{MatchLabels: sel}},
	}
}

// TestOvercommitProfileNamespaces: a profile opts in exactly the namespaces
// it selects (never kube-system or the platform's), the older of two
// overlapping profiles wins, status counts deflated pods and CPU freed, and
// on deletion only what the manager applied goes: a label an operator set
// by hand stays.
func TestOvercommitProfileNamespaces(t *testing.T) {
	startManager(t, nil)
	ctx := context.Background()
	ensureNamespace(t, "ocp-a", map[string]string{"ocp": "yes"}, nil)
	ensureNamespace(t, "ocp-hand", map[string]string{"ocp": "yes"}, nil)
	ensureNamespace(t, "ocp-other", nil, nil)
	ensureNamespace(t, "infera-system", nil, nil)
	labelNamespace(t, "ocp-hand", wellknown.OvercommitLabel, wellknown.OvercommitEnabledValue) // by hand, like kubectl label
	for _, ns := range []string{metav1.NamespaceSystem, "infera-system"} {
		labelNamespace(t, ns, "ocp", "yes")
		t.Cleanup(func() { labelNamespace(t, ns, "ocp", "") })
	}

	older := profile("ocp-older", map[string]string{"ocp": "yes"})
	older.Spec.Ratios = []inferav1alpha1.TierRatio{{Tier: "low", Ratio: 0.5}}
	if err := env.Client.Create(ctx, older); err != nil {
		t.Fatal(err)
	}
	waitNamespaces(t, "ocp-older applied", map[string]string{
		"ocp-a": "enabled/ocp-older", "ocp-hand": "enabled/ocp-older", "ocp-other": "-/-",
		metav1.NamespaceSystem: "-/-", "infera-system": "-/-",
	})
	// Creation timestamps have a one-second resolution.
	time.Sleep(1100 * time.Millisecond)
	newer := profile("ocp-newer", map[string]string{"ocp": "yes"})
	if err := env.Client.Create(ctx, newer); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "ProfileConflict on the newer profile", func() (bool, string) {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(newer), newer); err != nil {
			return false, err.Error()
		}
		c := apimeta.FindStatusCondition(newer.Status.Conditions, inferav1alpha1.ConditionProfileConflict)
		return c != nil && c.Status == metav1.ConditionTrue && strings.Contains(c.Message, "ocp-older"), fmt.Sprintf("%+v", c)
	})
	if s := nsState(t, "ocp-a"); s != "enabled/ocp-older" {
		t.Errorf("the newer profile took ocp-a: %s", s)
	}

	// Two pods through the webhook with the older profile's low ratio.
	for i, req := range []string{"2", "600m"} {
		p := podIn("ocp-a", fmt.Sprintf("counted-%d", i), "infera-low", cpuContainer("app", req, ""))
		if err := env.Client.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 20*time.Second, "status counts", func() (bool, string) {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(older), older); err != nil {
			return false, err.Error()
		}
		st := older.Status
		return st.MatchedNamespaces == 2 && st.PodsDeflated == 2 && st.CPUFreed.String() == "1300m" && st.ObservedGeneration == older.Generation,
			fmt.Sprintf("%+v", st)
	})
	out, err := env.Kubectl(ctx, "get", "ocp", "ocp-older", "--no-headers")
	if f := strings.Fields(out); err != nil || len(f) < 5 || f[2] != "2" || f[3] != "2" || f[4] != "1300m" {
		t.Errorf("kubectl get ocp = %q, %v", out, err)
	}

	// Deleting the older profile hands its namespaces to the newer one.
	deleteAndWaitGone(t, older)
	waitNamespaces(t, "ocp-newer takes over", map[string]string{"ocp-a": "enabled/ocp-newer", "ocp-hand": "enabled/ocp-newer"})
	// Deleting the last one releases them; the hand-set label stays.
	deleteAndWaitGone(t, newer)
	waitNamespaces(t, "profiles gone", map[string]string{"ocp-a": "-/-", "ocp-hand": "enabled/-", "ocp-other": "-/-"})
}

// TestOvercommitProfileOutOfRangeRejected: the API server refuses ratios
// outside (0, 1], unknown or critical tiers and a negative floor, with a
// message naming the field.
func TestOvercommitProfileOutOfRangeRejected(t *testing.T) {
	ctx := context.Background()
	for name, mutate := range map[string]func(*inferav1alpha1.OvercommitProfile){
		"ratio above 1": func(p *inferav1alpha1.OvercommitProfile) {
			p.Spec.Ratios = []inferav1alpha1.TierRatio{{Tier: "low", Ratio: 1.5}}
		},
		"ratio 0": func(p *inferav1alpha1.OvercommitProfile) {
			p.Spec.Ratios = []inferav1alpha1.TierRatio{{Tier: "low", Ratio: 0}}
		},
		"negative ratio": func(p *inferav1alpha1.OvercommitProfile) {
			p.Spec.Ratios = []inferav1alpha1.TierRatio{{Tier: "low", Ratio: -1}}
		},
		"critical tier": func(p *inferav1alpha1.OvercommitProfile) {
			p.Spec.Ratios = []inferav1alpha1.TierRatio{{Tier: "critical", Ratio: 0.5}}
		},
		"negative floor": func(p *inferav1alpha1.OvercommitProfile) { p.Spec.FloorMilli = -1 },
		"duplicate tiers": func(p *inferav1alpha1.OvercommitProfile) {
			p.Spec.Ratios = []inferav1alpha1.TierRatio{{Tier: "low", Ratio: 0.5}, {Tier: "low", Ratio: 0.6}}
		},
	} {
		t.Run(name, func(t *testing.T) {
			p := profile("bad-"+strings.ReplaceAll(name, " ", "-"), map[string]string{"x": "y"})
			mutate(p)
			err := env.Client.Create(ctx, p)
			if err == nil {
				_ = env.Client.Delete(ctx, p)
				t.Fatal("the API server accepted the profile")
			}
			if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "spec.") {
				t.Errorf("err = %v, want Invalid naming a spec field", err)
			}
		})
	}
}

// TestDefaultSettingsMatchSchema: a namespace labelled by hand, without a
// profile, gets overcommit.DefaultSettings; they must be what the CRD
// schema defaults an empty profile to. The profile is created from YAML
// without ratios or floor, as a user writes it: a typed Go client would send
// floorMilli: 0 and so never get the floor's default.
func TestDefaultSettingsMatchSchema(t *testing.T) {
	ctx := context.Background()
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "infera.io/v1alpha1", "kind": "OvercommitProfile",
		"metadata": map[string]any{"name": "schema-defaults"},
		"spec":     map[string]any{"namespaceSelector": map[string]any{"matchLabels": map[string]any{"never": "matches"}}},
	}}
	if err := env.Client.Create(ctx, u); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), u) })
	p := &inferav1alpha1.OvercommitProfile{}
	if err := env.Client.Get(ctx, client.ObjectKey{Name: "schema-defaults"}, p); err != nil {
		t.Fatal(err)
	}
	got, err := overcommit.SettingsFromProfile(p)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(overcommit.DefaultSettings(), got); diff != "" {
		t.Errorf("schema defaults differ from overcommit.DefaultSettings (-code +schema):\n%s", diff)
	}
}
