package manager

import (
	"context"
	"fmt"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	configv1alpha1 "github.com/infera-io/temper/apis/config/v1alpha1"
)

// TestLeaderElection runs two replicas with leader election: both serve the
// webhook, one holds the Lease and reconciles; when it stops, the other
// takes over the Lease and the controllers.
func TestLeaderElection(t *testing.T) {
	ctx := context.Background()
	ensureNamespace(t, configv1alpha1.DefaultPlatformNamespace, nil, nil)
	elect := func(c *configv1alpha1.ManagerConfiguration) {
		on := true
		c.LeaderElection.Enabled = &on
		c.LeaderElection.LeaseName = "infera-manager-leader-test"
	}
	a := startManager(t, elect)
	holder := func() string {
		var l coordinationv1.Lease
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: configv1alpha1.DefaultPlatformNamespace, Name: "infera-manager-leader-test"}, &l); err != nil || l.Spec.HolderIdentity == nil {
			return ""
		}
		return *l.Spec.HolderIdentity
	}
	eventually(t, 30*time.Second, "replica a takes the lease", func() (bool, string) { return holder() != "", "no holder" })
	first := holder()
	createNode(t, "leader-a", map[string]string{"pool": "leader"}, nil)
	p := policy("leader", map[string]string{"pool": "leader"}, true)
	if err := env.Client.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	waitNodes(t, "the leader reconciles", map[string]string{"leader-a": "true/leader"})

	// Replica b serves the webhook while a leads: the configuration now
	// points at b, and b's answers are deflations.
	startManager(t, elect)
	if h := holder(); h != first {
		t.Fatalf("lease moved to %s while %s was running", h, first)
	}
	a.Stop(t)
	eventually(t, 40*time.Second, "replica b takes over the lease", func() (bool, string) {
		h := holder()
		return h != "" && h != first, fmt.Sprintf("holder %q", h)
	})
	createNode(t, "leader-b", map[string]string{"pool": "leader"}, nil)
	waitNodes(t, "the new leader reconciles", map[string]string{"leader-b": "true/leader"})
	deleteAndWaitGone(t, p) // while a manager still runs to release the finalizer
}
