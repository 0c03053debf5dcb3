package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/infera-io/temper/nodeagent/telemetry"
)

// Defaults of HTTPOptions.
const (
	// DefaultHTTPAddress is the agent's HTTP address (DESIGN.md §6).
	DefaultHTTPAddress = ":9100"
	// DefaultObserveMaxBytes caps a /observe response.
	DefaultObserveMaxBytes = 4 << 20
	// DefaultObserveTimeout bounds the /observe snapshot.
	DefaultObserveTimeout = 5 * time.Second
	// DefaultMetricsTimeout bounds a /metrics scrape.
	DefaultMetricsTimeout = 10 * time.Second

	// Concurrent /observe and /metrics requests; more are answered 503 at
	// once rather than queued.
	maxObserveInFlight = 2
	maxMetricsInFlight = 4
)

// ObserveFunc returns the /observe snapshot: a value encoding/json can
// encode. It should honour ctx; the handler stops waiting when ctx ends.
type ObserveFunc func(ctx context.Context) (any, error)

// ReadyFunc says whether the node's enforcement is verified, and why not.
type ReadyFunc func() (verified bool, reason string)

// HTTPOptions configures the HTTP server of :9100.
type HTTPOptions struct {
	// Address to listen on; DefaultHTTPAddress when empty.
	Address string
	// Gatherer is scraped at /metrics (the agent's own registry, never the
	// global one); required.
	Gatherer prometheus.Gatherer
	// Observe produces /observe; required.
	Observe ObserveFunc
	// Ready backs /readyz; required.
	Ready ReadyFunc
	// Logger receives the server's logs.
	Logger logr.Logger
	// ObserveMaxBytes caps the /observe body; DefaultObserveMaxBytes when 0.
	ObserveMaxBytes int
	// ObserveTimeout bounds Observe; DefaultObserveTimeout when 0.
	ObserveTimeout time.Duration
	// MetricsTimeout bounds a scrape; DefaultMetricsTimeout when 0.
	MetricsTimeout time.Duration
	// ShutdownTimeout bounds Run's graceful stop; DefaultShutdownTimeout
	// when 0.
	ShutdownTimeout time.Duration
	// Extra are more GET routes by path (e.g. "/audit"); they may not
	// replace the four above.
	Extra map[string]http.Handler
	// Guard, when set, wraps the handler of every route but /healthz and
	// /readyz (authentication and authorization; see docs/agent.md).
	Guard func(path string, h http.Handler) http.Handler
}

// HTTPServer serves /metrics, /observe, /healthz and /readyz.
type HTTPServer struct {
	opts       HTTPOptions
	log        logr.Logger
	handler    http.Handler
	observeSem chan struct{}
}

// NewHTTP returns the server for o; Run or Serve serve it.
func NewHTTP(o HTTPOptions) (*HTTPServer, error) {
	switch {
	case o.Gatherer == nil:
		return nil, errors.New("http options: Gatherer is required")
	case o.Observe == nil:
		return nil, errors.New("http options: Observe is required")
	case o.Ready == nil:
		return nil, errors.New("http options: Ready is required")
	}
	if o.Address == "" {
		o.Address = DefaultHTTPAddress
	}
	if o.ObserveMaxBytes <= 0 {
		o.ObserveMaxBytes = DefaultObserveMaxBytes
	}
	if o.ObserveTimeout <= 0 {
		o.ObserveTimeout = DefaultObserveTimeout
	}
	if o.MetricsTimeout <= 0 {
		o.MetricsTimeout = DefaultMetricsTimeout
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = DefaultShutdownTimeout
	}
	s := &HTTPServer{opts: o, log: o.Logger.WithName("http"), observeSem: make(chan struct{}, maxObserveInFlight)}
	guard := o.Guard
	if guard == nil {
		guard = func(_ string, h http.Handler) http.Handler { return h }
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", guard("/metrics", telemetry.Handler(o.Gatherer, promhttp.HandlerOpts{
		ErrorLog:            promLogger{s.log},
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: maxMetricsInFlight,
		Timeout:             o.MetricsTimeout,
	})))
	mux.Handle("GET /observe", guard("/observe", http.HandlerFunc(s.observe)))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { writeText(w, http.StatusOK, "ok") })
	mux.HandleFunc("GET /readyz", s.readyz)
	for path, h := range o.Extra {
		switch path {
		case "/metrics", "/observe", "/healthz", "/readyz":
			return nil, fmt.Errorf("http options: Extra may not replace %s", path)
		}
		mux.Handle("GET "+path, guard(path, h))
	}
	s.handler = mux
	return s, nil
}

// Handler returns the server's handler (for tests and for embedding).
func (s *HTTPServer) Handler() http.Handler { return s.handler }

// Address returns the configured listen address.
func (s *HTTPServer) Address() string { return s.opts.Address }

// Run listens on Address and serves until ctx ends, then shuts down within
// ShutdownTimeout.
func (s *HTTPServer) Run(ctx context.Context) error {
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", s.opts.Address)
	if err != nil {
		return fmt.Errorf("failed to listen on %s: %w", s.opts.Address, err)
	}
	return s.Serve(ctx, l)
}

// Serve serves on l until ctx ends, then shuts down within
// ShutdownTimeout. It closes l.
func (s *HTTPServer) Serve(ctx context.Context, l net.Listener) error {
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		// The slowest handler is a scrape or an observe, each bounded.
		WriteTimeout:   max(s.opts.MetricsTimeout, s.opts.ObserveTimeout) + 10*time.Second,
		IdleTimeout:    60 * time.Second,
		MaxHeaderBytes: 16 << 10,
		BaseContext:    func(net.Listener) context.Context { return ctx },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	s.log.Info("serving HTTP", "address", l.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("HTTP server on %s failed: %w", l.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
		return fmt.Errorf("failed to shut down the HTTP server on %s: %w", l.Addr(), err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("HTTP server on %s failed: %w", l.Addr(), err)
	}
	return nil
}

func (s *HTTPServer) readyz(w http.ResponseWriter, _ *http.Request) {
	ok, reason := s.opts.Ready()
	if !ok {
		if reason == "" {
			reason = "enforcement not verified"
		}
		writeText(w, http.StatusServiceUnavailable, "not ready: "+bound(reason, maxReasonLen))
		return
	}
	writeText(w, http.StatusOK, "ok")
}

func (s *HTTPServer) observe(w http.ResponseWriter, r *http.Request) {
	// The slot is released when the snapshot returns, not when the
	// request ends, so snapshots that outlive their timeout cannot pile up.
	select {
	case s.observeSem <- struct{}{}:
	default:
		writeText(w, http.StatusServiceUnavailable, "busy: too many /observe requests in flight")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.opts.ObserveTimeout)
	defer cancel()

	type result struct {
		body []byte
		err  error
	}
	// Run the snapshot and its encoding aside, so a snapshot that ignores
	// ctx cannot hold the request past the timeout.
	res := make(chan result, 1)
	go func() {
		defer func() { <-s.observeSem }()
		v, err := s.opts.Observe(ctx)
		if err != nil {
			res <- result{err: err}
			return
		}
		// encoding/json builds the whole encoding before returning it;
		// the cap bounds what is sent and kept, and keeps the agent's
		// snapshot honest (a snapshot over the cap is a bug to fix).
		body, err := json.Marshal(v)
		switch {
		case err != nil:
			res <- result{err: fmt.Errorf("failed to encode the snapshot: %w", err)}
		case len(body) > s.opts.ObserveMaxBytes:
			res <- result{err: &errTooLarge{size: len(body), max: s.opts.ObserveMaxBytes}}
		default:
			res <- result{body: body}
		}
	}()
	select {
	case <-ctx.Done():
		writeText(w, http.StatusServiceUnavailable, fmt.Sprintf("observe: no snapshot within %s", s.opts.ObserveTimeout))
	case out := <-res:
		var tooBig *errTooLarge
		switch {
		case errors.As(out.err, &tooBig):
			s.log.Error(out.err, "observe snapshot over its size cap")
			writeText(w, http.StatusInternalServerError, "observe: "+out.err.Error())
		case out.err != nil:
			writeText(w, http.StatusInternalServerError, "observe: "+bound(out.err.Error(), maxReasonLen))
		default:
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(out.body)
		}
	}
}

// errTooLarge: the snapshot's encoding exceeds ObserveMaxBytes.
type errTooLarge struct{ size, max int }

func (e *errTooLarge) Error() string {
	return fmt.Sprintf("snapshot is %d bytes, over the %d-byte cap", e.size, e.max)
}

func writeText(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = fmt.Fprintln(w, msg)
}

// promLogger adapts logr to promhttp's error log.
type promLogger struct{ log logr.Logger }

func (l promLogger) Println(v ...any) { l.log.Error(errors.New(fmt.Sprint(v...)), "metrics scrape") }
