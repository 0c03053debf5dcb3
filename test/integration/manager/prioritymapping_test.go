package manager

import (
	"context"
	"fmt"
	"testing"
	"time"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	inferav1alpha1 "github.com/infera-io/temper/apis/infera/v1alpha1"
	"github.com/infera-io/temper/apis/tiering"
	"github.com/infera-io/temper/apis/wellknown"
)

func mappingPolicy(name string, sel map[string]string, m inferav1alpha1.PriorityMapping) *inferav1alpha1.InferaPolicy {
	p := policy(name, sel, false)
	p.Spec.PriorityMapping = &m
	return p
}

// mappingOf renders a node's infera.io/priority-mapping as "policy:critical"
// ("-" when absent).
func mappingOf(t *testing.T, node string) string {
	t.Helper()
	v, ok := nodeAnnotations(t, node)[wellknown.PriorityMappingAnnotation]
	if !ok {
		return "-"
	}
	m, err := tiering.ParseNodeMapping(v)
	if err != nil {
		return "invalid: " + err.Error()
	}
	return fmt.Sprintf("%s:%d", m.Policy, m.Thresholds.Critical)
}

func waitMappings(t *testing.T, what string, want map[string]string) {
	t.Helper()
	eventually(t, 20*time.Second, what, func() (bool, string) {
		got, ok := "", true
		for n, w := range want {
			s := mappingOf(t, n)
			got += n + "=" + s + " "
			ok = ok && s == w
		}
		return ok, got
	})
}

// TestPriorityMappingOnNodes: the manager copies a policy's priorityMapping
// into infera.io/priority-mapping on exactly the nodes it selects; of two
// policies with different mappings the older wins and the younger reports a
// PriorityMappingConflict; a hand-set value survives everything; deleting
// the policies removes what they wrote.
func TestPriorityMappingOnNodes(t *testing.T) {
	startManager(t, nil)
	ctx := context.Background()
	createNode(t, "pm-a", map[string]string{"pm": "yes"}, nil)
	createNode(t, "pm-b", map[string]string{"pm": "yes"}, nil)
	createNode(t, "pm-other", map[string]string{"pm": "no"}, nil)
	hand := tiering.NodeMapping{Thresholds: tiering.Thresholds{Critical: 300_000, High: 30_000, Normal: 0, Low: -100}}.Marshal()
	createNode(t, "pm-hand", map[string]string{"pm": "yes"}, map[string]string{wellknown.PriorityMappingAnnotation: hand})

	older := mappingPolicy("pm-older", map[string]string{"pm": "yes"}, inferav1alpha1.PriorityMapping{Critical: 500_000, High: 50_000, Normal: 0, Low: -100})
	if err := env.Client.Create(ctx, older); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deleteAndWaitGone(t, older) })
	waitMappings(t, "the older policy's mapping on its nodes", map[string]string{
		"pm-a": "pm-older:500000", "pm-b": "pm-older:500000", "pm-other": "-", "pm-hand": ":300000",
	})
	eventually(t, 20*time.Second, "pm-older reports the hand-set node", func() (bool, string) {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(older), older); err != nil {
			return false, err.Error()
		}
		c := apimeta.FindStatusCondition(older.Status.Conditions, inferav1alpha1.ConditionPriorityMappingConflict)
		return c != nil && c.Status == metav1.ConditionTrue && c.Message == "node pm-hand has the mapping of a hand-set "+wellknown.PriorityMappingAnnotation &&
			apimeta.IsStatusConditionTrue(older.Status.Conditions, inferav1alpha1.ConditionReady), fmt.Sprintf("%+v", older.Status.Conditions)
	})

	// A younger policy with another mapping loses and says so.
	time.Sleep(1100 * time.Millisecond) // creation timestamps have second resolution
	younger := mappingPolicy("pm-younger", map[string]string{"pm": "yes"}, inferav1alpha1.PriorityMapping{Critical: 900_000, High: 90_000, Normal: 0, Low: -100})
	if err := env.Client.Create(ctx, younger); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deleteAndWaitGone(t, younger) })
	eventually(t, 20*time.Second, "pm-younger reports the conflict", func() (bool, string) {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(younger), younger); err != nil {
			return false, err.Error()
		}
		c := apimeta.FindStatusCondition(younger.Status.Conditions, inferav1alpha1.ConditionPriorityMappingConflict)
		return c != nil && c.Status == metav1.ConditionTrue && c.Reason == inferav1alpha1.ReasonMappingOverridden &&
				c.Message == "node pm-a has the mapping of the older InferaPolicy pm-older; node pm-b has the mapping of the older InferaPolicy pm-older; node pm-hand has the mapping of a hand-set "+wellknown.PriorityMappingAnnotation,
			fmt.Sprintf("%+v", younger.Status.Conditions)
	})
	waitMappings(t, "the older policy keeps its nodes", map[string]string{"pm-a": "pm-older:500000", "pm-b": "pm-older:500000", "pm-hand": ":300000"})

	// The older one goes: the younger takes over, the hand-set value stays.
	deleteAndWaitGone(t, older)
	waitMappings(t, "the younger policy takes over", map[string]string{
		"pm-a": "pm-younger:900000", "pm-b": "pm-younger:900000", "pm-other": "-", "pm-hand": ":300000",
	})
	deleteAndWaitGone(t, younger)
	waitMappings(t, "mappings removed with the policies", map[string]string{"pm-a": "-", "pm-b": "-", "pm-other": "-", "pm-hand": ":300000"})
}

// TestWebhookHonoursPolicyPriorityMapping: the overcommit webhook tiers a
// pod by every InferaPolicy's mapping as well as its own (the pod's node is
// not known at admission): a normal-tier pod that a policy's mapping makes
// critical is not deflated while the policy exists.
func TestWebhookHonoursPolicyPriorityMapping(t *testing.T) {
	startManager(t, nil)
	ctx := context.Background()
	const ns = "pm-webhook"
	ensureNamespace(t, ns, map[string]string{wellknown.OvercommitLabel: wellknown.OvercommitEnabledValue}, nil)
	admitted := func() string {
		p := podIn(ns, "probe", "infera-normal", cpuContainer("app", "1", ""))
		if err := env.Client.Create(ctx, p, client.DryRunAll); err != nil {
			t.Fatal(err)
		}
		return cpuRequest(p.Spec.Containers[0])
	}
	if got := admitted(); got != "750m" {
		t.Fatalf("infera-normal pod admitted with %s, want 750m (normal ratio 0.75)", got)
	}
	// Priority 0 (infera-normal) is critical under this mapping.
	pol := mappingPolicy("pm-webhook", map[string]string{"pm-webhook": "none"}, inferav1alpha1.PriorityMapping{Critical: 0, High: -10, Normal: -50, Low: -100})
	if err := env.Client.Create(ctx, pol); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { deleteAndWaitGone(t, pol) })
	eventually(t, 20*time.Second, "the webhook leaves the pod critical under the policy's mapping alone", func() (bool, string) {
		got := admitted()
		return got == "1", "admitted with " + got
	})
	deleteAndWaitGone(t, pol)
	eventually(t, 20*time.Second, "deflation again once the policy is gone", func() (bool, string) {
		got := admitted()
		return got == "750m", "admitted with " + got
	})
}
