package overcommit

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// TestManifestsMatchCode keeps three things equal: the configuration
// controller-gen generates from the markers, the kustomize patch that adds
// the namespaceSelector, and MutatingWebhook, which make run installs.
func TestManifestsMatchCode(t *testing.T) {
	dir := filepath.Join("..", "..", "config", "webhook")
	raw, err := os.ReadFile(filepath.Join(dir, "manifests.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var generated admissionregistrationv1.MutatingWebhookConfiguration
	if err := yaml.UnmarshalStrict(raw, &generated); err != nil {
		t.Fatal(err)
	}
	if len(generated.Webhooks) != 1 {
		t.Fatalf("generated %d webhooks, want 1", len(generated.Webhooks))
	}
	raw, err = os.ReadFile(filepath.Join(dir, "namespace_selector_patch.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var ops []struct {
		Op    string          `json:"op"`
		Path  string          `json:"path"`
		Value json.RawMessage `json:"value"`
	}
	if err := yaml.UnmarshalStrict(raw, &ops); err != nil {
		t.Fatal(err)
	}
	got := generated.Webhooks[0]
	for _, op := range ops {
		var sel metav1.LabelSelector
		if err := json.Unmarshal(op.Value, &sel); err != nil {
			t.Fatalf("%s: %v", op.Path, err)
		}
		switch op.Path {
		case "/webhooks/0/namespaceSelector":
			got.NamespaceSelector = &sel
		case "/webhooks/0/objectSelector":
			got.ObjectSelector = &sel
		default:
			t.Fatalf("patch touches %s, which this test does not know", op.Path)
		}
	}
	path := Path
	cc := admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{Name: "webhook-service", Namespace: "system", Path: &path}}
	want := MutatingWebhook(cc, "infera-system")
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("generated + patched webhook differs from MutatingWebhook (-code +manifests):\n%s", diff)
	}
	if *got.TimeoutSeconds > 2 || *got.FailurePolicy != admissionregistrationv1.Ignore || *got.SideEffects != admissionregistrationv1.SideEffectClassNone {
		t.Errorf("timeout %d, failurePolicy %s, sideEffects %s: want ≤ 2, Ignore, None", *got.TimeoutSeconds, *got.FailurePolicy, *got.SideEffects)
	}
}
