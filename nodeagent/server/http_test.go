package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/prometheus/client_golang/prometheus"
)

type readiness struct {
	ok     atomic.Bool
	reason atomic.Value
}

func (r *readiness) get() (bool, string) {
	s, _ := r.reason.Load().(string)
	return r.ok.Load(), s
}

// serveHTTP runs the server on a real loopback listener and returns its
// base URL; the server stops at the end of the test.
func serveHTTP(t *testing.T, o HTTPOptions) string {
	t.Helper()
	o.Logger = testr.New(t)
	s, err := NewHTTP(o)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return "http://" + l.Addr().String()
}

func get(t *testing.T, url string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, http.NoBody)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b), resp.Header
}

func baseOptions(reg *prometheus.Registry, ready *readiness, observe ObserveFunc) HTTPOptions {
	return HTTPOptions{Gatherer: reg, Ready: ready.get, Observe: observe}
}

func TestHTTPHealthAndReadiness(t *testing.T) {
	ready := &readiness{}
	ready.reason.Store("cgroup backend: cpu.shares of pod default/web-0 reads 2, want 1024")
	url := serveHTTP(t, baseOptions(prometheus.NewRegistry(), ready, func(context.Context) (any, error) { return nil, nil }))

	if code, body, _ := get(t, url+"/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Fatalf("/healthz = %d %q, want 200 ok", code, body)
	}
	code, body, _ := get(t, url+"/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "cpu.shares of pod default/web-0 reads 2, want 1024") {
		t.Fatalf("/readyz before verification = %d %q, want 503 with the reason", code, body)
	}
	// The process is alive regardless.
	if code, _, _ := get(t, url+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz while not ready = %d, want 200", code)
	}

	ready.ok.Store(true)
	if code, body, _ := get(t, url+"/readyz"); code != http.StatusOK || body != "ok\n" {
		t.Fatalf("/readyz once verified = %d %q, want 200 ok", code, body)
	}

	ready.ok.Store(false)
	ready.reason.Store("")
	if code, body, _ := get(t, url+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "enforcement not verified") {
		t.Fatalf("/readyz without a reason = %d %q, want 503 saying enforcement is not verified", code, body)
	}

	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, url+"/readyz", http.NoBody)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST /readyz = %d, want 405", resp.StatusCode)
	}
}

func TestHTTPMetricsFromGivenRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "infera_test_scrapes_total", Help: "Test counter."})
	reg.MustRegister(c)
	c.Add(3)
	url := serveHTTP(t, baseOptions(reg, &readiness{}, func(context.Context) (any, error) { return nil, nil }))

	code, body, hdr := get(t, url+"/metrics")
	if code != http.StatusOK || !strings.Contains(body, "infera_test_scrapes_total 3") {
		t.Fatalf("/metrics = %d %q, want 200 with infera_test_scrapes_total 3", code, body)
	}
	if !strings.HasPrefix(hdr.Get("Content-Type"), "text/plain") {
		t.Fatalf("/metrics content type %q", hdr.Get("Content-Type"))
	}
	// Only the given registry: nothing from the process-global one.
	if strings.Contains(body, "go_goroutines") || strings.Contains(body, "promhttp_") {
		t.Fatalf("/metrics serves metrics that are not in the given registry:\n%s", body)
	}
}

func TestHTTPObserve(t *testing.T) {
	type layer struct {
		Name string  `json:"name"`
		Util float64 `json:"util"`
	}
	snapshot := atomic.Value{}
	snapshot.Store([]layer{{Name: "critical", Util: 0.5}})
	var fail atomic.Bool
	url := serveHTTP(t, HTTPOptions{
		Gatherer: prometheus.NewRegistry(), Ready: (&readiness{}).get, ObserveMaxBytes: 1024,
		Observe: func(context.Context) (any, error) {
			if fail.Load() {
				return nil, errors.New("machine shape not read yet")
			}
			return snapshot.Load(), nil
		},
	})

	code, body, hdr := get(t, url+"/observe")
	if code != http.StatusOK || hdr.Get("Content-Type") != "application/json" {
		t.Fatalf("/observe = %d %q (%s)", code, body, hdr.Get("Content-Type"))
	}
	var got []layer
	if err := json.Unmarshal([]byte(body), &got); err != nil || len(got) != 1 || got[0] != (layer{"critical", 0.5}) {
		t.Fatalf("/observe body %q decodes to %v (%v)", body, got, err)
	}

	// Over the size cap: a clear error, not a truncated document.
	snapshot.Store([]layer{{Name: strings.Repeat("x", 2000)}})
	code, body, _ = get(t, url+"/observe")
	if code != http.StatusInternalServerError || !strings.Contains(body, "over the 1024-byte cap") || len(body) > 200 {
		t.Fatalf("/observe over the cap = %d %q, want 500 naming the cap", code, body)
	}

	fail.Store(true)
	code, body, _ = get(t, url+"/observe")
	if code != http.StatusInternalServerError || !strings.Contains(body, "machine shape not read yet") {
		t.Fatalf("/observe failing = %d %q, want 500 with the reason", code, body)
	}
}

func TestHTTPObserveTimeout(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	url := serveHTTP(t, HTTPOptions{
		Gatherer: prometheus.NewRegistry(), Ready: (&readiness{}).get, ObserveTimeout: 50 * time.Millisecond,
		// A snapshot that ignores its context.
		Observe: func(context.Context) (any, error) { <-release; return "late", nil },
	})
	code, body, _ := get(t, url+"/observe")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "no snapshot within 50ms") {
		t.Fatalf("/observe stuck = %d %q, want 503 naming the timeout", code, body)
	}
	// The stuck snapshots hold the in-flight slots; a third request is
	// refused at once instead of piling up.
	get(t, url+"/observe")
	code, body, _ = get(t, url+"/observe")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "too many /observe requests") {
		t.Fatalf("/observe with stuck snapshots in flight = %d %q, want 503 busy", code, body)
	}
}

func TestNewHTTPRequiresDependencies(t *testing.T) {
	reg := prometheus.NewRegistry()
	obs := func(context.Context) (any, error) { return nil, nil }
	ready := func() (bool, string) { return true, "" }
	for name, o := range map[string]HTTPOptions{
		"Gatherer": {Observe: obs, Ready: ready},
		"Observe":  {Gatherer: reg, Ready: ready},
		"Ready":    {Gatherer: reg, Observe: obs},
	} {
		if _, err := NewHTTP(o); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("NewHTTP without %s = %v, want an error naming it", name, err)
		}
	}
}

func TestHTTPExtraRoutes(t *testing.T) {
	o := baseOptions(prometheus.NewRegistry(), &readiness{}, func(context.Context) (any, error) { return map[string]int{}, nil })
	o.Extra = map[string]http.Handler{"/audit": http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("[]"))
	})}
	base := serveHTTP(t, o)
	if code, body, _ := get(t, base+"/audit"); code != http.StatusOK || body != "[]" {
		t.Errorf("GET /audit = %d %q", code, body)
	}
	o.Extra = map[string]http.Handler{"/metrics": http.NotFoundHandler()}
	if _, err := NewHTTP(o); err == nil {
		t.Error("NewHTTP let an extra route replace /metrics")
	}
}
