package dashboard

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, path string, hdr map[string]string) *http.Response {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, path, nil)
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Result()
}

// TestServe: the embedded bundle is served with its security headers, in
// gzip when asked, revalidated by ETag, and unknown paths are 404.
func TestServe(t *testing.T) {
	h, err := New()
	if err != nil {
		t.Fatal(err)
	}
	resp := get(t, h, "/", nil)
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `<script defer src="app.js">`) {
		t.Fatalf("GET / = %d %q, want index.html loading app.js", resp.StatusCode, body)
	}
	if got := resp.Header.Get("Content-Security-Policy"); got != SecurityPolicy {
		t.Errorf("GET / Content-Security-Policy = %q, want %q", got, SecurityPolicy)
	}
	if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
		t.Errorf("GET / X-Content-Type-Options = %q", got)
	}
	for _, p := range []string{"/app.js", "/app.css", "/THIRD_PARTY_LICENSES.txt"} {
		if resp := get(t, h, p, nil); resp.StatusCode != 200 {
			t.Errorf("GET %s = %d, want 200", p, resp.StatusCode)
		}
	}
	js := get(t, h, "/app.js", nil)
	if ct := js.Header.Get("Content-Type"); ct != "text/javascript; charset=utf-8" {
		t.Errorf("GET /app.js Content-Type = %q", ct)
	}
	plain, _ := io.ReadAll(js.Body)
	gz := get(t, h, "/app.js", map[string]string{"Accept-Encoding": "gzip, br"})
	if gz.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("GET /app.js with Accept-Encoding gzip: Content-Encoding = %q", gz.Header.Get("Content-Encoding"))
	}
	zr, err := gzip.NewReader(gz.Body)
	if err != nil {
		t.Fatal(err)
	}
	unz, _ := io.ReadAll(zr)
	if !bytes.Equal(unz, plain) {
		t.Errorf("gzip body of /app.js differs from the plain body")
	}
	if gz.Header.Get("ETag") == js.Header.Get("ETag") {
		t.Errorf("gzip and plain /app.js share the ETag %s", js.Header.Get("ETag"))
	}
	if resp := get(t, h, "/app.js", map[string]string{"If-None-Match": js.Header.Get("ETag")}); resp.StatusCode != http.StatusNotModified {
		t.Errorf("GET /app.js with its ETag = %d, want 304", resp.StatusCode)
	}
	post := httptest.NewRecorder()
	h.ServeHTTP(post, httptest.NewRequest(http.MethodPost, "/", nil))
	if post.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST / = %d, want 405", post.Code)
	}
	for _, p := range []string{"/nope.js", "/dist/app.js", "/../go.mod"} {
		if resp := get(t, h, p, nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s = %d, want 404", p, resp.StatusCode)
		}
	}
}

// TestBundleSelfContained: the bundle references no asset outside the
// gateway (nothing is fetched from the internet at run time).
func TestBundleSelfContained(t *testing.T) {
	h, err := New()
	if err != nil {
		t.Fatal(err)
	}
	for name, f := range h.files {
		if name == "THIRD_PARTY_LICENSES.txt" {
			continue
		}
		// XML namespace names (Preact's SVG and MathML support) are
		// identifiers, never fetched.
		body := bytes.ReplaceAll(f.body, []byte("http://www.w3.org/"), nil)
		for _, bad := range []string{"https://", "http://", "//cdn", "@import"} {
			if i := bytes.Index(body, []byte(bad)); i >= 0 {
				lo, hi := max(0, i-40), min(len(body), i+60)
				t.Errorf("%s references %q: ...%s...", name, bad, body[lo:hi])
			}
		}
	}
}
