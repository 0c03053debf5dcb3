package manager

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	configv1alpha1 "github.com/infera-io/temper/apis/config/v1alpha1"
	inferav1alpha1 "github.com/infera-io/temper/apis/infera/v1alpha1"
	"github.com/infera-io/temper/apis/wellknown"
)

func tainted(t *testing.T, name string) bool {
	t.Helper()
	var n corev1.Node
	if err := env.Client.Get(context.Background(), client.ObjectKey{Name: name}, &n); err != nil {
		t.Fatal(err)
	}
	for _, tt := range n.Spec.Taints {
		if tt.Key == configv1alpha1.DefaultSilentAgentTaintKey {
			return true
		}
	}
	return false
}

// Issue #18, defect 8: the silent-agent taint has a circuit breaker. With
// every agent silent at once (an uninstall, a fleet-wide outage) no node is
// tainted; once most agents are back the one still silent is tainted; when
// they all fall silent again its taint is lifted.
func TestSilentAgentBreaker(t *testing.T) {
	ctx := context.Background()
	var existing corev1.NodeList
	if err := env.Client.List(ctx, &existing); err != nil {
		t.Fatal(err)
	}
	k, ks := len(existing.Items), 0
	for _, n := range existing.Items {
		if _, ok := n.Annotations[wellknown.TierLoadAnnotation]; ok {
			ks++ // left by other tests, long silent
		}
	}
	const s = 6
	// One of the new nodes silent stays at or below the threshold, all of
	// them silent is above it.
	pct := int32((100*(1+ks) + s + k - 1) / (s + k))
	if float64(s+ks) <= float64(pct)/100*float64(s+k) || pct >= 100 {
		t.Skipf("cannot place a threshold between %d and %d silent of %d nodes", 1+ks, s+ks, s+k)
	}
	startManager(t, func(c *configv1alpha1.ManagerConfiguration) {
		c.TierLoadMaxAge = &metav1.Duration{Duration: 2 * time.Second}
		c.SilentAgent.After = &metav1.Duration{Duration: 20 * time.Second}
		on := true
		c.SilentAgent.Taint = &on
		c.SilentAgent.MaxSilentPercent = pct
	})
	names := make([]string, s)
	for i := range names {
		names[i] = fmt.Sprintf("breaker-%d", i)
		createNode(t, names[i], nil, map[string]string{
			wellknown.AgentStatusAnnotation: wellknown.AgentStatusEnforcingCgroup,
			wellknown.TierLoadAnnotation:    tierLoad(t, time.Now().Add(-time.Hour), 1, nil),
		})
	}
	silentReported := func(name string) {
		waitReport(t, name, name+" silent", func(r *inferav1alpha1.NodeQoSReport) bool {
			c := cond(r, inferav1alpha1.ConditionAgentSilent)
			return c != nil && c.Status == metav1.ConditionTrue
		})
	}
	for _, n := range names {
		silentReported(n)
	}
	// Every report says silent, so every node was reconciled as silent:
	// none may carry the taint.
	for _, n := range names {
		if tainted(t, n) {
			t.Errorf("%s tainted while all %d agents were silent (breaker open at %d%%)", n, s, pct)
		}
	}

	// Five agents come back: one silent node is below the threshold.
	for _, n := range names[1:] {
		annotateNode(t, n, map[string]string{wellknown.TierLoadAnnotation: tierLoad(t, time.Now(), 2, nil)})
	}
	eventually(t, 30*time.Second, "the one silent node tainted", func() (bool, string) {
		return tainted(t, names[0]), "not tainted"
	})
	// They fall silent again (20 s): the breaker opens and lifts the taint.
	eventually(t, 60*time.Second, "the taint lifted with the breaker open", func() (bool, string) {
		return !tainted(t, names[0]), "still tainted"
	})
	for _, n := range names {
		if tainted(t, n) {
			t.Errorf("%s tainted with every agent silent again", n)
		}
	}
}
