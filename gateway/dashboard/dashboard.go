package dashboard

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed dist
var dist embed.FS

// SecurityPolicy is the Content-Security-Policy of every dashboard file:
// scripts, styles and API calls only from the gateway itself, no frames,
// no inline code, no forms posted anywhere.
const SecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

type file struct {
	body, gz    []byte
	contentType string
	etag        string
}

// Handler serves the dashboard: "/" is index.html, the other files by name;
// anything else is 404. Files carry a strong ETag (their SHA-256) and are
// revalidated on every load, so a new gateway never serves a stale bundle.
type Handler struct {
	files map[string]file
}

// New reads the embedded bundle.
func New() (*Handler, error) {
	return newFrom(dist)
}

func newFrom(fsys fs.FS) (*Handler, error) {
	h := &Handler{files: map[string]file{}}
	err := fs.WalkDir(fsys, "dist", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		var gz bytes.Buffer
		w, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
		_, _ = w.Write(b)
		_ = w.Close()
		h.files[strings.TrimPrefix(p, "dist/")] = file{body: b, gz: gz.Bytes(), contentType: contentType(p),
			etag: `"` + hex.EncodeToString(sum[:16]) + `"`}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("failed to read the dashboard bundle: %w", err)
	}
	if _, ok := h.files["index.html"]; !ok {
		return nil, fmt.Errorf("the dashboard bundle has no index.html; run make generate-dashboard")
	}
	return h, nil
}

func contentType(p string) string {
	switch path.Ext(p) {
	case ".html":
		return "text/html; charset=utf-8"
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	default:
		return "text/plain; charset=utf-8"
	}
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/")
	if name == "" {
		name = "index.html"
	}
	f, ok := h.files[name]
	hdr := w.Header()
	hdr.Set("Content-Security-Policy", SecurityPolicy)
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "no-referrer")
	hdr.Set("X-Frame-Options", "DENY")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hdr.Set("Allow", "GET, HEAD")
		http.Error(w, "405 method not allowed; the dashboard is read-only, the API is at /api/v1", http.StatusMethodNotAllowed)
		return
	}
	if !ok {
		http.Error(w, "404 page not found; the dashboard is at /, the API at /api/v1", http.StatusNotFound)
		return
	}
	hdr.Set("Content-Type", f.contentType)
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("ETag", f.etag)
	hdr.Add("Vary", "Accept-Encoding")
	body := f.body
	if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
		hdr.Set("Content-Encoding", "gzip")
		hdr.Set("ETag", strings.TrimSuffix(f.etag, `"`)+`-gz"`)
		body = f.gz
		// Ranges of a compressed body are of no use to a browser.
		r.Header.Del("Range")
	}
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(body))
}
