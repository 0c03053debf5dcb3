package manager

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	configv1alpha1 "github.com/infera-io/temper/apis/config/v1alpha1"
)

// saToken creates a ServiceAccount and returns a token for it.
func saToken(t *testing.T, ns, name string) string {
	t.Helper()
	ctx := context.Background()
	ensureNamespace(t, ns, nil, nil)
	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("failed to issue a token for %s/%s: %v", ns, name, err)
	}
	return tr.Status.Token
}

func get(t *testing.T, c *http.Client, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Proto + " " + string(b)
}

// Issue #18, defect 9: the webhook and metrics servers speak HTTP/1.1 only
// (no HTTP/2: the rapid-reset class of attacks) and TLS 1.2 or newer, and
// metrics served beyond loopback need a token that TokenReview accepts and
// SubjectAccessReview allows to GET /metrics.
func TestManagerServersAreHardened(t *testing.T) {
	metricsPort := freePort(t)
	r := startManager(t, func(c *configv1alpha1.ManagerConfiguration) {
		c.MetricsBindAddress = fmt.Sprintf(":%d", metricsPort) // every interface: not local
	})
	insecure := &tls.Config{InsecureSkipVerify: true} //nolint:gosec // self-signed serving certificates of the test
	h2 := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: insecure.Clone(), ForceAttemptHTTP2: true}}

	// The webhook server: no HTTP/2, no TLS below 1.2.
	webhookPort := r.Port
	conn, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", webhookPort), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2", "http/1.1"}}) //nolint:gosec // see above
	if err != nil {
		t.Fatal(err)
	}
	if p := conn.ConnectionState().NegotiatedProtocol; p == "h2" {
		t.Errorf("webhook server negotiated %q, want HTTP/1.1 only", p)
	}
	_ = conn.Close()
	if c, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", webhookPort), &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS11}); err == nil { //nolint:gosec // see above
		_ = c.Close()
		t.Error("webhook server accepted TLS 1.1")
	}

	// The metrics server beyond loopback: TLS, HTTP/1.1, authenticated.
	url := fmt.Sprintf("https://127.0.0.1:%d/metrics", metricsPort)
	var code int
	var body string
	eventually(t, 30*time.Second, "metrics served over TLS", func() (bool, string) {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		resp, err := h2.Do(req)
		if err != nil {
			return false, err.Error()
		}
		_ = resp.Body.Close()
		code = resp.StatusCode
		return true, ""
	})
	if code != http.StatusUnauthorized {
		t.Errorf("GET /metrics without a token = %d, want 401", code)
	}
	nobody := saToken(t, "metrics-test", "nobody")
	if code, body = get(t, h2, url, nobody); code != http.StatusForbidden {
		t.Errorf("GET /metrics as a service account without RBAC = %d, want 403 (%.100s)", code, body)
	}
	scraper := saToken(t, "metrics-test", "scraper")
	ctx := context.Background()
	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "metrics-test-reader"},
		Rules: []rbacv1.PolicyRule{{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "metrics-test-reader"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "metrics-test-reader"},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: "metrics-test", Name: "scraper"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The metrics filter caches a denial for 30 s (controller-runtime's
	// DenyCacheTTL): a scrape that reached it before the API server's RBAC
	// saw the new binding is denied until that expires, so wait past it.
	eventually(t, 75*time.Second, "an authorized scrape", func() (bool, string) {
		code, body = get(t, h2, url, scraper)
		return code == http.StatusOK, fmt.Sprintf("%d %.100s", code, body)
	})
	if !strings.HasPrefix(body, "HTTP/1.1 ") || !strings.Contains(body, "controller_runtime_") {
		t.Errorf("authorized scrape answered %.200s; want HTTP/1.1 and the manager's metrics", body)
	}
	if c, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", metricsPort), &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS11}); err == nil { //nolint:gosec // see above
		_ = c.Close()
		t.Error("metrics server accepted TLS 1.1")
	}
}
