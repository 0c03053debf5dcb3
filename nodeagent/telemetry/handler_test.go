package telemetry

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
)

func TestHandlerCompressesOnlyWhenAsked(t *testing.T) {
	reg := prometheus.NewRegistry()
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "infera_test_gauge", Help: "A gauge."})
	g.Set(42)
	reg.MustRegister(g)
	h := Handler(reg, promhttp.HandlerOpts{})
	fetch := func(accept string) *httptest.ResponseRecorder { return get(t, h, "Accept-Encoding", accept) }
	plain := fetch("")
	if enc := plain.Header().Get("Content-Encoding"); enc != "" {
		t.Errorf("no Accept-Encoding: Content-Encoding %q, want none", enc)
	}
	if !bytes.Contains(plain.Body.Bytes(), []byte("infera_test_gauge 42")) {
		t.Fatalf("identity body lacks the gauge:\n%s", plain.Body)
	}
	for _, accept := range []string{"gzip", "deflate, gzip;q=0.5", "GZIP", "br, gzip"} {
		rec := fetch(accept)
		if enc := rec.Header().Get("Content-Encoding"); enc != "gzip" {
			t.Errorf("Accept-Encoding %q: Content-Encoding %q, want gzip", accept, enc)
			continue
		}
		zr, err := gzip.NewReader(rec.Body)
		if err != nil {
			t.Fatalf("Accept-Encoding %q: %v", accept, err)
		}
		body, err := io.ReadAll(zr)
		if err != nil {
			t.Fatalf("Accept-Encoding %q: %v", accept, err)
		}
		if !bytes.Equal(body, plain.Body.Bytes()) {
			t.Errorf("Accept-Encoding %q: the gzip body differs from the identity body:\n%s", accept, body)
		}
	}
	for _, accept := range []string{"gzip;q=0", "identity", "deflate"} {
		if enc := fetch(accept).Header().Get("Content-Encoding"); enc != "" {
			t.Errorf("Accept-Encoding %q: Content-Encoding %q, want none", accept, enc)
		}
	}
}

// A failed gather answers 500 in plain text, compressed or not.
func TestHandlerErrorIsPlain(t *testing.T) {
	bad := prometheus.GathererFunc(func() ([]*dtoFamily, error) { return nil, errTest })
	h := Handler(bad, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError})
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	req.Header.Set("Accept-Encoding", "gzip")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusInternalServerError {
		t.Fatalf("status %d, want 500", rec.Code)
	}
	if enc := rec.Header().Get("Content-Encoding"); enc != "" {
		t.Errorf("error answer has Content-Encoding %q, want none", enc)
	}
	if !bytes.Contains(rec.Body.Bytes(), []byte("gather failed")) {
		t.Errorf("error body %q does not say why", rec.Body)
	}
}

type dtoFamily = dto.MetricFamily

var errTest = errors.New("gather failed")
