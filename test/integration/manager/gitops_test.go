package manager

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	inferav1alpha1 "github.com/infera-io/temper/apis/infera/v1alpha1"
)

const gitopsManifests = `apiVersion: infera.io/v1alpha1
kind: InferaPolicy
metadata:
  name: gitops-policy
spec:
  nodeSelector:
    matchLabels:
      pool: gitops
  safeMode: true
---
apiVersion: infera.io/v1alpha1
kind: OvercommitProfile
metadata:
  name: gitops-profile
spec:
  namespaceSelector:
    matchLabels:
      team: gitops
`

// TestGitOpsServerSideApply applies an InferaPolicy and an OvercommitProfile
// twice with server-side apply, the way Argo CD syncs, while the manager
// reconciles them: spec and generation stay as applied (no defaulting
// drift) and no field manager but the applier owns anything under spec.
func TestGitOpsServerSideApply(t *testing.T) {
	startManager(t, nil)
	ctx := context.Background()
	createNode(t, "gitops-node", map[string]string{"pool": "gitops"}, nil)
	ensureNamespace(t, "gitops-ns", map[string]string{"team": "gitops"}, nil)
	file := filepath.Join(t.TempDir(), "gitops.yaml")
	if err := os.WriteFile(file, []byte(gitopsManifests), 0o600); err != nil {
		t.Fatal(err)
	}
	apply := func() {
		t.Helper()
		if out, err := env.Kubectl(ctx, "apply", "--server-side", "--field-manager=argocd", "-f", file); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}
	apply()
	pol := &inferav1alpha1.InferaPolicy{ObjectMeta: metav1.ObjectMeta{Name: "gitops-policy"}}
	prof := &inferav1alpha1.OvercommitProfile{ObjectMeta: metav1.ObjectMeta{Name: "gitops-profile"}}
	t.Cleanup(func() { deleteAndWaitGone(t, pol); deleteAndWaitGone(t, prof) })

	// Wait until the manager has done everything it does: finalizer, status,
	// node annotation, namespace label.
	eventually(t, 20*time.Second, "the manager reconciled both", func() (bool, string) {
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(pol), pol); err != nil {
			return false, err.Error()
		}
		if err := env.Client.Get(ctx, client.ObjectKeyFromObject(prof), prof); err != nil {
			return false, err.Error()
		}
		return pol.Status.ObservedGeneration == pol.Generation && pol.Status.SafeModeNodes == 1 &&
				prof.Status.ObservedGeneration == prof.Generation && prof.Status.MatchedNamespaces == 1 &&
				safeModeState(t, "gitops-node") == "true/gitops-policy" && nsState(t, "gitops-ns") == "enabled/gitops-profile",
			fmt.Sprintf("policy %+v profile %+v", pol.Status, prof.Status)
	})
	polSpec, profSpec, polGen, profGen := pol.Spec, prof.Spec, pol.Generation, prof.Generation

	apply()
	time.Sleep(time.Second) // let the manager react to the second apply
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(pol), pol); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(prof), prof); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(polSpec, pol.Spec); diff != "" || pol.Generation != polGen {
		t.Errorf("InferaPolicy spec drifted (generation %d→%d):\n%s", polGen, pol.Generation, diff)
	}
	if diff := cmp.Diff(profSpec, prof.Spec); diff != "" || prof.Generation != profGen {
		t.Errorf("OvercommitProfile spec drifted (generation %d→%d):\n%s", profGen, prof.Generation, diff)
	}
	// The schema's defaults are what the applier sees: nothing to fight over.
	if len(prof.Spec.Ratios) != 3 || prof.Spec.FloorMilli != 25 {
		t.Errorf("profile defaults = %+v", prof.Spec)
	}
	for _, obj := range []client.Object{pol, prof} {
		managers := []string{}
		for _, mf := range obj.GetManagedFields() {
			managers = append(managers, mf.Manager+"/"+string(mf.Operation)+"/"+mf.Subresource)
			if mf.Manager != "argocd" && mf.FieldsV1 != nil && strings.Contains(mf.FieldsV1.GetRawString(), `"f:spec"`) {
				t.Errorf("%s: field manager %s (%s) owns spec fields: %s", obj.GetName(), mf.Manager, mf.Operation, mf.FieldsV1.GetRawString())
			}
		}
		t.Logf("%s field managers: %v", obj.GetName(), managers)
		if len(managers) != 3 || !strings.Contains(strings.Join(managers, " "), "infera-manager/Update/") ||
			!strings.Contains(strings.Join(managers, " "), "infera-manager/Apply/status") {
			t.Errorf("%s: want argocd (spec), infera-manager Update (finalizer) and Apply (status), got %v", obj.GetName(), managers)
		}
	}
	// A server-side dry-run diff of the same manifests is empty (kubectl
	// diff exits 1 on any difference): a GitOps tool sees no drift.
	if out, err := env.Kubectl(ctx, "diff", "--server-side", "--field-manager=argocd", "-f", file); err != nil {
		t.Errorf("kubectl diff reports drift: %v\n%s", err, out)
	}
}
