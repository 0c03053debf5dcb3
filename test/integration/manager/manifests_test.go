package manager

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	configv1alpha1 "github.com/infera-io/temper/apis/config/v1alpha1"
	managerapp "github.com/infera-io/temper/cmd/infera-manager/app"
)

// TestManifestsApply: the kustomize build of config/manager (Deployment,
// configuration, RBAC, webhook) is accepted by the API server.
func TestManifestsApply(t *testing.T) {
	ctx := context.Background()
	ensureNamespace(t, configv1alpha1.DefaultPlatformNamespace, nil, nil)
	// A manager started by another test installed the make-run flavour
	// (url instead of service); the manifests describe a fresh install.
	wh := &admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: configv1alpha1.DefaultWebhookConfiguration}}
	if err := env.Client.Delete(ctx, wh); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	out, err := env.Kubectl(ctx, "apply", "--server-side", "--force-conflicts", "--dry-run=server", "--field-manager=manifests-test",
		"-k", filepath.Join(env.Root, "config", "manager"))
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, want := range []string{
		"deployment.apps/infera-manager", "configmap/infera-manager-config", "service/infera-webhook-service",
		"mutatingwebhookconfiguration.admissionregistration.k8s.io/infera-mutating-webhook-configuration",
		"clusterrole.rbac.authorization.k8s.io/infera-manager", "role.rbac.authorization.k8s.io/infera-manager",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("kubectl apply output lacks %s:\n%s", want, out)
		}
	}
}

// TestShippedConfigIsTheDefaults: config/manager/manager-config.yaml loads
// strictly and spells out exactly the defaults.
func TestShippedConfigIsTheDefaults(t *testing.T) {
	got, err := managerapp.LoadConfig(filepath.Join(env.Root, "config", "manager", "manager-config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	want, err := managerapp.LoadConfig("")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("shipped configuration differs from the defaults (-defaults +shipped):\n%s", diff)
	}
}
