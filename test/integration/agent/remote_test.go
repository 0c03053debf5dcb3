package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	configv1alpha1 "github.com/infera-io/temper/apis/config/v1alpha1"
	inferav1 "github.com/infera-io/temper/apis/proto/infera/v1"
	"github.com/infera-io/temper/test/testcerts"
)

// agentServerName is the DNS name in the agent's test serving certificate,
// as the chart's is (docs/gateway.md).
const agentServerName = "infera-agent.infera-system.svc"

// callers mints a token for a ServiceAccount of namespace ns bound to each
// ClusterRole (and one, "nobody", bound to none), with the rules of the
// named roles copied from the repository's manifests.
func callers(t *testing.T, ns string, roles map[string]rbacv1.ClusterRole) map[string]string {
	t.Helper()
	ctx := t.Context()
	cs, err := kubernetes.NewForConfig(env.Config)
	must(t, err)
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tokens := map[string]string{}
	for _, sa := range append([]string{"nobody"}, keys(roles)...) {
		if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if role, ok := roles[sa]; ok {
			role.Name = ns + "-" + sa
			if _, err := cs.RbacV1().ClusterRoles().Create(ctx, &role, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
				ObjectMeta: metav1.ObjectMeta{Name: role.Name},
				RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
				Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: sa, Namespace: ns}},
			}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		exp := int64(3600)
		tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authnv1.TokenRequest{
			Spec: authnv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
		must(t, err)
		tokens[sa] = tr.Status.Token
	}
	return tokens
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// repoRole reads the rules of ClusterRole name from a file of config/rbac.
func repoRole(t *testing.T, file, name string) rbacv1.ClusterRole {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(env.Root, file))
	must(t, err)
	for _, doc := range strings.Split(string(b), "\n---") {
		var r rbacv1.ClusterRole
		if err := yaml.Unmarshal([]byte(doc), &r); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if r.Kind == "ClusterRole" && r.Name == name {
			return rbacv1.ClusterRole{Rules: r.Rules}
		}
	}
	t.Fatalf("%s has no ClusterRole %s", file, name)
	return rbacv1.ClusterRole{}
}

// TestRemoteAccess: on a non-loopback address the agent's :9100 answers
// /observe, /audit and /metrics only to tokens whose roles allow them, and
// its gRPC API on grpc_address (TLS) only to infera-gateway's role; probes
// and the unix socket need no token.
func TestRemoteAccess(t *testing.T) {
	tokens := callers(t, "agent-callers", map[string]rbacv1.ClusterRole{
		"operator": repoRole(t, "config/rbac/gateway/user_roles.yaml", "infera-operator"),
		"viewer":   repoRole(t, "config/rbac/gateway/user_roles.yaml", "infera-viewer"),
		"metrics":  repoRole(t, "config/rbac/gateway/user_roles.yaml", "infera-metrics-reader"),
		"gateway":  repoRole(t, "config/rbac/gateway/role.yaml", "infera-gateway"),
	})
	certs, err := testcerts.Write(t.TempDir(), agentServerName)
	must(t, err)
	httpPort := port(t, freeAddr(t))
	r := newRigWith(t, "remote-n1", 200*time.Millisecond, rigOptions{configure: func(c *configv1alpha1.AgentConfiguration) {
		c.Server.Address = "0.0.0.0:" + httpPort
		c.Server.GRPCAddress = freeAddr(t)
		c.Server.GRPCTLSCertFile, c.Server.GRPCTLSKeyFile = certs.Cert, certs.Key
	}})
	base := "http://127.0.0.1:" + httpPort
	waitFor(t, "the agent's HTTP listener", func() bool { return r.agent.HTTPAddress() != "" })

	for _, c := range []struct {
		path, who string
		want      int
	}{
		{"/healthz", "", 200},
		{"/observe", "", 401},
		{"/observe", "nobody", 403},
		{"/observe", "viewer", 403},
		{"/observe", "operator", 200},
		{"/audit", "", 401},
		{"/audit", "nobody", 403},
		{"/audit", "operator", 200},
		{"/metrics", "", 401},
		{"/metrics", "nobody", 403},
		{"/metrics", "metrics", 200},
		{"/observe", "metrics", 403},
	} {
		tok := tokens[c.who]
		if c.who == "" {
			tok = ""
		}
		code, body := getWithToken(t, base+c.path, tok)
		if code != c.want {
			t.Errorf("GET %s as %q = %d %s, want %d", c.path, c.who, code, body, c.want)
		}
		if c.want == 403 && !strings.Contains(body, "agent-callers:"+c.who) {
			t.Errorf("GET %s as %q: 403 body %q does not name the caller", c.path, c.who, body)
		}
	}
	// /readyz is never guarded (it may be 503 before enforcement is
	// verified, but never 401).
	if code, body := getWithToken(t, base+"/readyz", ""); code == 401 || code == 403 {
		t.Errorf("GET /readyz without a token = %d %s", code, body)
	}
	if code, _ := getWithToken(t, base+"/observe", "not-a-token"); code != 401 {
		t.Errorf("GET /observe with a forged token = %d, want 401", code)
	}

	// gRPC over TLS: the CA, and the fixed DNS name as ServerName.
	waitFor(t, "the agent's gRPC TLS listener", func() bool { return r.agent.GRPCAddress() != "" })
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certs.CAPEM)
	conn, err := grpc.NewClient(r.cfg.Server.GRPCAddress, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		RootCAs: pool, ServerName: agentServerName, MinVersion: tls.VersionTLS12})))
	must(t, err)
	defer func() { _ = conn.Close() }()
	api := inferav1.NewAgentServiceClient(conn)
	as := func(who string) context.Context {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		t.Cleanup(cancel)
		if who == "" {
			return ctx
		}
		return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tokens[who])
	}
	for _, c := range []struct {
		who  string
		want codes.Code
	}{{"", codes.Unauthenticated}, {"nobody", codes.PermissionDenied}, {"operator", codes.PermissionDenied}, {"gateway", codes.OK}} {
		st, err := api.GetStatus(as(c.who), &inferav1.GetStatusRequest{})
		if status.Code(err) != c.want {
			t.Errorf("GetStatus over TLS as %q = %v, want %s", c.who, err, c.want)
		}
		if c.want == codes.OK && st.GetNodeName() != "remote-n1" {
			t.Errorf("GetStatus as gateway: node %q, want remote-n1", st.GetNodeName())
		}
	}
	stream, err := api.WatchEvents(as("nobody"), &inferav1.WatchEventsRequest{})
	if err == nil {
		_, err = stream.Recv()
	}
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("WatchEvents over TLS as nobody = %v, want PermissionDenied", err)
	}
	// A client that does not trust the CA never gets to the API.
	bad, err := grpc.NewClient(r.cfg.Server.GRPCAddress, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		ServerName: agentServerName, MinVersion: tls.VersionTLS12})))
	must(t, err)
	defer func() { _ = bad.Close() }()
	if _, err := inferav1.NewAgentServiceClient(bad).GetStatus(as("gateway"), &inferav1.GetStatusRequest{}); status.Code(err) != codes.Unavailable {
		t.Errorf("GetStatus with an untrusted certificate = %v, want Unavailable (handshake failure)", err)
	}

	// The unix socket stays open to node-local tools.
	local, err := grpc.NewClient("unix://"+r.cfg.Server.GRPCSocket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	must(t, err)
	defer func() { _ = local.Close() }()
	if _, err := inferav1.NewAgentServiceClient(local).GetStatus(as(""), &inferav1.GetStatusRequest{}); err != nil {
		t.Errorf("GetStatus over the unix socket without a token = %v", err)
	}
}

func port(t *testing.T, addr string) string {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	must(t, err)
	return p
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func getWithToken(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	must(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	must(t, err)
	return resp.StatusCode, string(b)
}
