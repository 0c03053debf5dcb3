package inferactl

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	inferav1 "github.com/infera-io/temper/apis/proto/infera/v1"
	"github.com/infera-io/temper/inferactl"
)

func streams(out, errOut io.Writer) genericiooptions.IOStreams {
	return genericiooptions.IOStreams{In: strings.NewReader(""), Out: out, ErrOut: errOut}
}

// TestErrors: every documented failure has its exit code and a message
// that says what went wrong and what to do next.
func TestErrors(t *testing.T) {
	noToken := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(noToken, []byte("not-a-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name       string
		who        string
		gateway    bool
		args       []string
		code       int
		wantStderr []string
	}{
		{"unknown pod via gateway", viewer, true, []string{"explain-tier", "ghost"}, inferactl.ExitNotFound,
			[]string{"pod default/ghost not found", "inferactl pods -n default"}},
		{"unknown pod locally", "admin", false, []string{"-n", "shop", "explain-tier", "ghost"}, inferactl.ExitNotFound,
			[]string{"pod shop/ghost not found"}},
		{"unknown node", viewer, true, []string{"nodes", "ghost"}, inferactl.ExitNotFound, []string{`node "ghost" not found`}},
		{"unknown node for safe mode", operator, true, []string{"safe-mode", "on", "ghost", "--reason", "x"}, inferactl.ExitNotFound,
			[]string{`node "ghost" not found`, "inferactl nodes"}},
		{"no permission on the gateway", nobody, true, []string{"status"}, inferactl.ExitForbidden,
			[]string{"permission denied by infera-gateway", "system:serviceaccount:" + callerNS + ":nobody", "list nodes.infera.io", "infera-viewer"}},
		{"no permission on the API server", nobody, false, []string{"nodes"}, inferactl.ExitForbidden,
			[]string{"permission denied by the API server", `cannot list resource "nodes"`, "infera-viewer"}},
		{"viewer may not switch safe mode", viewer, true, []string{"safe-mode", "on", "cli-n2", "--reason", "x"}, inferactl.ExitForbidden,
			[]string{"permission denied", `"nodes"`}},
		{"rejected token", viewer, true, []string{"--gateway-token-file", noToken, "status"}, inferactl.ExitForbidden,
			[]string{"infera-gateway did not authenticate you", "kubectl create token"}},
		{"client certificate with the gateway", "admin", true, []string{"status"}, inferactl.ExitForbidden,
			[]string{"no bearer token", "client certificate", "--gateway-token-file"}},
		{"--as with the gateway", viewer, true, []string{"--as", "someone", "status"}, inferactl.ExitUsage,
			[]string{"--as cannot be used with infera-gateway"}},
		{"safe mode without a gateway", operator, false, []string{"safe-mode", "on", "cli-n2", "--reason", "x"}, inferactl.ExitNoGateway,
			[]string{"needs infera-gateway", "--gateway URL", "port-forward"}},
		{"follow without a gateway", viewer, false, []string{"events", "--follow"}, inferactl.ExitNoGateway, []string{"needs infera-gateway"}},
		{"gateway unreachable", viewer, false, []string{"--gateway", "http://127.0.0.1:1", "status"}, inferactl.ExitNoGateway,
			[]string{"cannot reach infera-gateway at http://127.0.0.1:1", "port-forward"}},
		{"safe mode owned by a policy", operator, true, []string{"safe-mode", "off", "cli-n4", "--reason", "x"}, inferactl.ExitRefused,
			[]string{"node cli-n4 (InferaPolicy maintenance)", "--force", "kubectl edit inferapolicy"}},
		{"safe mode without a reason", operator, true, []string{"safe-mode", "on", "cli-n2"}, inferactl.ExitUsage, []string{"--reason is required"}},
		{"wait times out", operator, true, []string{"safe-mode", "on", "cli-n3", "--reason", "x", "--wait", "--timeout", "2s"}, inferactl.ExitTimeout,
			[]string{"timed out after 2s", `cli-n3 (agent-status "refused: kernel has no sched_ext")`}},
		// This suite's gateway reaches no agents, so it has no usage.
		{"usage from a gateway without agents", viewer, true, []string{"top", "--by", "pod"}, inferactl.ExitNotAvailable,
			[]string{"infera-gateway cannot serve this", "not configured to reach"}},
		{"usage by pod needs a gateway", viewer, false, []string{"top", "--by", "pod"}, inferactl.ExitNoGateway, []string{"needs infera-gateway"}},
		// This suite's gateway reaches no agents: without the trace route
		// inferactl says so; with it, the gateway does (FAILED_PRECONDITION).
		{"trace is not available from this gateway", operator, true, []string{"trace", "cli-n1", "--duration", "2s"}, inferactl.ExitNotAvailable,
			traceWant()},
		{"trace needs a gateway", operator, false, []string{"trace", "cli-n1"}, inferactl.ExitNoGateway, []string{"needs infera-gateway"}},
		{"unknown command", viewer, false, []string{"frobnicate"}, inferactl.ExitUsage, []string{"unknown command"}},
		{"unknown output", viewer, true, []string{"nodes", "-o", "toml"}, inferactl.ExitUsage, []string{"allowed formats"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := run(t, c.who, c.gateway, c.args...)
			if r.code != c.code {
				t.Errorf("%v: exit %d, want %d\nstderr: %s", c.args, r.code, c.code, r.stderr)
			}
			for _, w := range c.wantStderr {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("%v: stderr does not contain %q:\n%s", c.args, w, r.stderr)
				}
			}
		})
	}
	// The wait timed out, but the request stands: undo it.
	mustOK(t, run(t, operator, true, "safe-mode", "off", "cli-n3", "--reason", "test cleanup"), "cleanup")
}

// TestNoKubeconfig: no kubeconfig anywhere is exit 3 with the fix.
func TestNoKubeconfig(t *testing.T) {
	t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "missing"))
	t.Setenv("HOME", t.TempDir())
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	r := run(t, "", false, "status")
	if r.code != inferactl.ExitNoCluster || !strings.Contains(r.stderr, "no kubeconfig") || !strings.Contains(r.stderr, "--kubeconfig") {
		t.Errorf("status without a kubeconfig: exit %d, stderr %q; want %d naming the fix", r.code, r.stderr, inferactl.ExitNoCluster)
	}
}

// TestNoCRDs removes the NodeQoSReport CRD: reports is exit 7 and says how
// to install them; status still works (it reads Node annotations).
func TestNoCRDs(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(env.Root, "config", "crd", "bases", "infera.io_nodeqosreports.yaml")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	crd := &unstructured.Unstructured{}
	if err := yaml.Unmarshal(b, &crd.Object); err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Delete(ctx, crd.DeepCopy()); err != nil {
		t.Fatal(err)
	}
	gone := func(ctx context.Context) (bool, error) {
		got := &unstructured.Unstructured{}
		got.SetGroupVersionKind(crd.GroupVersionKind())
		err := env.Client.Get(ctx, client.ObjectKey{Name: crd.GetName()}, got)
		return apierrors.IsNotFound(err), nil
	}
	if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 60*time.Second, true, gone); err != nil {
		t.Fatalf("the CRD did not go: %v", err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		_ = env.Client.Create(ctx, crd.DeepCopy())
		_ = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
			_, err := kube.Discovery().ServerResourcesForGroupVersion("infera.io/v1alpha1")
			return err == nil, nil
		})
	})
	var r result
	_ = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		r = run(t, "admin", false, "reports")
		return r.code == inferactl.ExitNoCRDs, nil
	})
	if r.code != inferactl.ExitNoCRDs || !strings.Contains(r.stderr, "nodeqosreports.infera.io CRD is not installed") || !strings.Contains(r.stderr, "helm install") {
		t.Errorf("reports without the CRD: exit %d, stderr %q; want %d", r.code, r.stderr, inferactl.ExitNoCRDs)
	}
	mustOK(t, run(t, "admin", false, "status"), "status without the NodeQoSReport CRD")
}

// traceWant is what `trace` prints against this suite's gateway, which
// reaches no agents, depending on whether the gateway has the trace route.
func traceWant() []string {
	if bytes.Contains(inferav1.ClusterSwaggerJSON, []byte(`"/api/v1/nodes/{node}/traces"`)) {
		return []string{"infera-gateway cannot serve this"}
	}
	return []string{"trace capture is not available", "does not serve POST /api/v1/nodes/{node}/traces"}
}
