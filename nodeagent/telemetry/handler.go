package telemetry

import (
	"compress/gzip"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Handler serves g in the Prometheus exposition format, as
// promhttp.HandlerFor does with o, but compresses at gzip.BestSpeed: the
// library's default level spent about a fifth of a scrape's CPU on the
// agent's text (docs/agent.md, "Where the agent's CPU goes"), while the
// fastest level shrinks it nearly as well. Clients that do not ask for gzip
// get identity, as before.
func Handler(g prometheus.Gatherer, o promhttp.HandlerOpts) http.Handler {
	o.DisableCompression = true
	h := promhttp.HandlerFor(g, o)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !acceptsGzip(r.Header.Values("Accept-Encoding")) {
			h.ServeHTTP(w, r)
			return
		}
		gz := gzipWriters.Get().(*gzip.Writer)
		gz.Reset(w)
		gw := &gzipResponse{ResponseWriter: w, gz: gz}
		h.ServeHTTP(gw, r)
		if gw.compress {
			_ = gz.Close()
		}
		gz.Reset(nil)
		gzipWriters.Put(gz)
	})
}

var gzipWriters = sync.Pool{New: func() any {
	gz, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed)
	return gz
}}

// acceptsGzip reads Accept-Encoding: gzip offered with a weight above 0.
func acceptsGzip(values []string) bool {
	for _, v := range values {
		for _, part := range strings.Split(v, ",") {
			enc, params, _ := strings.Cut(strings.TrimSpace(part), ";")
			if !strings.EqualFold(strings.TrimSpace(enc), "gzip") {
				continue
			}
			if v, ok := strings.CutPrefix(strings.ReplaceAll(params, " ", ""), "q="); ok {
				if q, err := strconv.ParseFloat(v, 64); err == nil && q == 0 {
					return false
				}
			}
			return true
		}
	}
	return false
}

// gzipResponse compresses a successful body; an error answer (promhttp
// writes those as plain text through http.Error) stays uncompressed.
type gzipResponse struct {
	http.ResponseWriter
	gz          *gzip.Writer
	wroteHeader bool
	compress    bool
}

func (w *gzipResponse) WriteHeader(code int) {
	if w.wroteHeader {
		return
	}
	w.wroteHeader = true
	if code == http.StatusOK {
		w.compress = true
		h := w.Header()
		h.Set("Content-Encoding", "gzip")
		h.Del("Content-Length")
		h.Add("Vary", "Accept-Encoding")
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *gzipResponse) Write(b []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.compress {
		return w.gz.Write(b)
	}
	return w.ResponseWriter.Write(b)
}
