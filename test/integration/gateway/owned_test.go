package gateway

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/infera-io/temper/apis/wellknown"
)

// TestSafeModePolicyOwned: a node whose safe mode an InferaPolicy owns is
// refused with 409 naming the policy, by node and by selector, unless the
// caller forces it; the dashboard and the CLI get the same answer.
func TestSafeModePolicyOwned(t *testing.T) {
	ctx := t.Context()
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "gw-owned", Labels: map[string]string{"pool": "owned"},
		Annotations: map[string]string{wellknown.SafeModeRequestedAnnotation: "true", wellknown.SafeModeOwnerAnnotation: "freeze-gpu"}}}
	if _, err := kube.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kube.CoreV1().Nodes().Delete(context.Background(), n.Name, metav1.DeleteOptions{}) })
	// The gateway reads nodes from its informer's cache: wait until the
	// new node is there (a loaded machine once answered 404 right after
	// the create).
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		code, _ := call(t, viewer, "GET", "/api/v1/nodes/gw-owned", "")
		if code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gateway did not see node gw-owned within 30s (GET = %d)", code)
		}
	}

	code, e := call(t, operator, "POST", "/api/v1/nodes/gw-owned:setSafeMode", `{"enabled":false,"reason":"thaw"}`)
	if code != 409 || !strings.Contains(e["message"].(string), "InferaPolicy freeze-gpu") || !strings.Contains(e["message"].(string), "force") {
		t.Errorf("setSafeMode off on a policy-owned node = %d %v, want 409 naming the policy and force", code, e)
	}
	code, sr := call(t, operator, "POST", "/api/v1/nodes:setSafeMode", `{"labelSelector":"pool=owned","enabled":false,"reason":"thaw"}`)
	res := sr["results"].([]any)
	if code != 200 || sr["failed"] != float64(1) || len(res) != 1 || res[0].(map[string]any)["errorCode"] != float64(409) {
		t.Errorf("setSafeMode off by selector = %d %v, want one 409 result", code, sr)
	}
	got, _ := kube.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
	if !wellknown.IsSafeModeRequested(got.Annotations) {
		t.Fatal("a refused request changed the node")
	}

	code, r := call(t, operator, "POST", "/api/v1/nodes/gw-owned:setSafeMode", `{"enabled":false,"reason":"thaw, I know","force":true}`)
	if code != 200 || r["changed"] != true {
		t.Errorf("forced setSafeMode off = %d %v", code, r)
	}
	got, _ = kube.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
	if wellknown.IsSafeModeRequested(got.Annotations) {
		t.Error("forced request left safe mode on")
	}
}
