package kubeauth_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/infera-io/temper/internal/kubeauth"
	"github.com/infera-io/temper/test/envtest"
)

var env *envtest.Env

func TestMain(m *testing.M) {
	os.Exit(envtest.RunMain(m, envtest.Options{}, func(e *envtest.Env) { env = e }))
}

// clock is a settable time source.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func saToken(t *testing.T, cs kubernetes.Interface, ns, name string) string {
	t.Helper()
	ctx := t.Context()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authnv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tr.Status.Token
}

// TestCache: a token and a decision are reviewed once per TTL, not once per
// request (a scrape every few seconds must not hammer the API server), and
// a rejected token is remembered only briefly.
func TestCache(t *testing.T) {
	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	tok := saToken(t, cs, "kubeauth-cache", "scraper")
	clk := &clock{now: time.Now()}
	rv := kubeauth.New(cs, kubeauth.Options{Now: clk.Now})
	ctx := context.Background()
	attrs := kubeauth.Attributes{Verb: "get", Path: "/metrics"}

	for i := range 20 {
		u, err := rv.Authenticate(ctx, tok)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if want := "system:serviceaccount:kubeauth-cache:scraper"; u.Username != want {
			t.Fatalf("user %q, want %q", u.Username, want)
		}
		d, err := rv.Authorize(ctx, u, attrs)
		if err != nil || d.Allowed {
			t.Fatalf("request %d: %+v %v, want denied (no role grants /metrics)", i, d, err)
		}
		clk.Add(time.Second)
	}
	if tr, sar := rv.Reviews(); tr != 1 || sar != 1 {
		t.Errorf("20 requests in 20 s: %d TokenReviews and %d SubjectAccessReviews, want 1 and 1", tr, sar)
	}
	// Past the deny TTL (30 s) the decision is asked again; the user is
	// still cached (2 min).
	clk.Add(kubeauth.DefaultDenyTTL)
	u, err := rv.Authenticate(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rv.Authorize(ctx, u, attrs); err != nil {
		t.Fatal(err)
	}
	if tr, sar := rv.Reviews(); tr != 1 || sar != 2 {
		t.Errorf("after the deny TTL: %d TokenReviews, %d SubjectAccessReviews, want 1 and 2", tr, sar)
	}
	clk.Add(kubeauth.DefaultAuthnTTL)
	if _, err := rv.Authenticate(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if tr, _ := rv.Reviews(); tr != 2 {
		t.Errorf("after the authn TTL: %d TokenReviews, want 2", tr)
	}

	// A forged token: 401-worthy, cached for the short negative TTL.
	for range 3 {
		if _, err := rv.Authenticate(ctx, "forged"); !errors.Is(err, kubeauth.ErrUnauthenticated) {
			t.Fatalf("forged token: %v, want ErrUnauthenticated", err)
		}
	}
	if tr, _ := rv.Reviews(); tr != 3 {
		t.Errorf("3 forged requests: %d TokenReviews in all, want 3 (one for the forgery)", tr)
	}
}

// TestHTTP: the wrapper answers 401 without a token, 403 naming the user
// when not allowed, and calls through when allowed.
func TestHTTP(t *testing.T) {
	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	tok := saToken(t, cs, "kubeauth-http", "caller")
	rv := kubeauth.New(cs, kubeauth.Options{})
	allowed := kubeauth.Attributes{Verb: "get", Path: "/api"} // system:discovery grants /api to every authenticated user
	denied := kubeauth.Attributes{Verb: "get", Group: "infera.io", Resource: "nodes", Subresource: "observe", Name: "n1"}
	var attrs kubeauth.Attributes
	srv := httptest.NewServer(rv.HTTP(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = fmt.Fprint(w, "ok") }),
		func(*http.Request) kubeauth.Attributes { return attrs }))
	defer srv.Close()
	get := func(token string) int {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	attrs = denied
	if c := get(""); c != 401 {
		t.Errorf("no token: %d, want 401", c)
	}
	if c := get(tok); c != 403 {
		t.Errorf("%s: %d, want 403", denied, c)
	}
	attrs = allowed
	if c := get(tok); c != 200 {
		t.Errorf("%s: %d, want 200", allowed, c)
	}
}

func TestLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		":9100": false, "0.0.0.0:9100": false, "10.0.0.1:9100": false, "[::]:9100": false, "bad": false,
		"127.0.0.1:9100": true, "localhost:9100": true, "[::1]:9100": true, "127.0.0.2:9100": true,
	} {
		if got := kubeauth.Loopback(addr); got != want {
			t.Errorf("Loopback(%q) = %v, want %v", addr, got, want)
		}
	}
}
