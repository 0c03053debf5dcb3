package telemetry

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"
)

// Handler serves g in the Prometheus exposition format, as
// promhttp.HandlerFor does with o, with two differences. It compresses at
// gzip.BestSpeed with klauspost/compress (already in the module graph
// through promhttp): the library's default level spent about a fifth of a
// scrape's CPU on the agent's text (docs/agent.md, "Where the agent's CPU
// goes"), the fastest level shrinks it nearly as well, and this encoder
// takes half the time of the standard library's at the same size; clients
// that do not ask for gzip get identity. And when g is the agent's *Metrics, a
// scrape in the text format (what Prometheus asks for) takes the text path
// (podtext.go); other formats are gathered and encoded by promhttp.
// o.MaxRequestsInFlight and o.Timeout bound both paths as promhttp does.
func Handler(g prometheus.Gatherer, o promhttp.HandlerOpts) http.Handler {
	inFlight, timeout := o.MaxRequestsInFlight, o.Timeout
	o.DisableCompression, o.MaxRequestsInFlight, o.Timeout = true, 0, 0
	h := promhttp.HandlerFor(g, o)
	if m, ok := g.(*Metrics); ok {
		registry := h
		// The formats promhttp offers with o, so both paths negotiate alike.
		accepted := o.AcceptedFormats
		if len(accepted) == 0 {
			accepted = expfmt.DefaultAcceptedFormats()
			if o.EnableOpenMetrics {
				accepted = expfmt.DefaultOpenMetricsAcceptedFormats()
			}
		}
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			format := expfmt.NegotiateAccept(r.Header, accepted...)
			if format.FormatType() != expfmt.TypeTextPlain {
				registry.ServeHTTP(w, r)
				return
			}
			m.serveText(w, format, o)
		})
	}
	h = gzipped(h)
	// The slot is held until the scrape's work ends, not when a timed-out
	// request is answered, so timed-out scrapes cannot pile up.
	if inFlight > 0 {
		h = limitInFlight(h, inFlight)
	}
	if timeout > 0 {
		h = http.TimeoutHandler(h, timeout, fmt.Sprintf("Exceeded configured timeout of %v.\n", timeout))
	}
	return h
}

// limitInFlight answers 503 at once when n requests are being served.
func limitInFlight(h http.Handler, n int) http.Handler {
	sem := make(chan struct{}, n)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case sem <- struct{}{}:
			defer func() { <-sem }()
		default:
			http.Error(w, fmt.Sprintf("Limit of concurrent requests reached (%d), try again later.", n), http.StatusServiceUnavailable)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// gzipped compresses h's successful answers for clients that ask for gzip.
func gzipped(h http.Handler) http.Handler {
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
