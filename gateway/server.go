package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/uuid"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	inferaclient "github.com/infera-io/temper/apis/client/clientset/versioned"
	inferainformers "github.com/infera-io/temper/apis/client/informers/externalversions"
	inferalisters "github.com/infera-io/temper/apis/client/listers/infera/v1alpha1"
	configv1alpha1 "github.com/infera-io/temper/apis/config/v1alpha1"
	inferav1 "github.com/infera-io/temper/apis/proto/infera/v1"
	"github.com/infera-io/temper/apis/tiering"
)

// Stable URLs of the OpenAPI (Swagger 2.0) document.
const (
	OpenAPIPath       = "/api/v1/openapi.json"
	OpenAPIDesignPath = "/openapi/v2.json"
	eventsPath        = "/api/v1/events"
)

// Options configure a Gateway.
type Options struct {
	// Config is a defaulted, validated GatewayConfiguration.
	Config configv1alpha1.GatewayConfiguration
	// RestConfig reaches the API server as the gateway's ServiceAccount.
	RestConfig *rest.Config
	// Log receives structured progress.
	Log logr.Logger
	// AuditWriter, when set, replaces Config.AuditLogPath.
	AuditWriter io.Writer
	// Registry receives the gateway's metrics; nil creates one with the Go
	// and process collectors.
	Registry *prometheus.Registry
}

// Gateway is infera-gateway: Handler serves everything on one port.
type Gateway struct {
	opts      Options
	svc       *Service
	handler   http.Handler
	factory   informers.SharedInformerFactory
	nodeSync  cache.InformerSynced
	infera    inferaclient.Interface
	reports   atomic.Pointer[inferalisters.NodeQoSReportLister]
	auditFile io.Closer
	log       logr.Logger
	metrics   *metrics
	// agentFactory watches the agents' EndpointSlices (EndpointSlice
	// discovery only).
	agentFactory informers.SharedInformerFactory
	agentSync    cache.InformerSynced
}

type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// New builds a Gateway; Start must run before it serves.
func New(o Options) (*Gateway, error) {
	cfg := o.Config
	kube, err := kubernetes.NewForConfig(o.RestConfig)
	if err != nil {
		return nil, fmt.Errorf("failed to create Kubernetes client: %w", err)
	}
	ic, err := inferaclient.NewForConfig(o.RestConfig)
	if err != nil {
		return nil, fmt.Errorf("failed to create infera.io client: %w", err)
	}
	g := &Gateway{opts: o, infera: ic, log: o.Log}
	w := o.AuditWriter
	if w == nil {
		switch p := *cfg.AuditLogPath; p {
		case "":
		case "-":
			w = os.Stdout
		default:
			f, err := os.OpenFile(p, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
			if err != nil {
				return nil, fmt.Errorf("failed to open audit log: %w", err)
			}
			w, g.auditFile = f, f
		}
	}
	// Strip what the views never read, so 500 Nodes stay small in memory.
	g.factory = informers.NewSharedInformerFactoryWithOptions(kube, 0, informers.WithTransform(func(obj any) (any, error) {
		if n, ok := obj.(*corev1.Node); ok {
			n.ManagedFields = nil
			n.Status.Images = nil
			n.Status.VolumesAttached, n.Status.VolumesInUse = nil, nil
		}
		return obj, nil
	}))
	nodes := g.factory.Core().V1().Nodes()
	g.nodeSync = nodes.Informer().HasSynced
	now := time.Now
	m := cfg.PriorityMapping
	g.svc = &Service{
		auth: NewAuth(kube, cfg.AuthCacheTTL.Duration), kube: kube, infera: ic, nodes: nodes.Lister(),
		reports: func() inferalisters.NodeQoSReportLister {
			if l := g.reports.Load(); l != nil {
				return *l
			}
			return nil
		},
		impersonate: Impersonating(o.RestConfig),
		auditor:     NewAuditor(w, int(cfg.AuditRingSize)),
		events:      newBroadcaster(now),
		cfg:         cfg,
		thresholds:  tiering.Thresholds{Critical: m.Critical, High: m.High, Normal: m.Normal, Low: m.Low},
		loads:       newLoadCache(),
		now:         now,
	}
	if a := cfg.Agents; a != nil {
		var slices discoverylisters.EndpointSliceLister
		if a.Discovery == configv1alpha1.AgentDiscoveryEndpointSlice {
			g.agentFactory = informers.NewSharedInformerFactoryWithOptions(kube, 0, informers.WithNamespace(a.ServiceNamespace),
				informers.WithTweakListOptions(func(o *metav1.ListOptions) {
					o.LabelSelector = discoveryv1.LabelServiceName + "=" + a.ServiceName
				}))
			inf := g.agentFactory.Discovery().V1().EndpointSlices()
			slices, g.agentSync = inf.Lister(), inf.Informer().HasSynced
		}
		pool, err := newAgentPool(*a, slices)
		if err != nil {
			return nil, err
		}
		g.svc.agents = pool
		if _, err := nodes.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if n, ok := obj.(*corev1.Node); ok {
				pool.forget(n.Name)
			}
		}}); err != nil {
			return nil, fmt.Errorf("failed to watch nodes: %w", err)
		}
	}
	if _, err := nodes.Informer().AddEventHandler(nodeEventHandler(g.svc.events)); err != nil {
		return nil, fmt.Errorf("failed to watch nodes: %w", err)
	}
	reg := o.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	g.metrics = &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "infera_gateway_requests_total",
			Help: "API requests by HTTP method and status code."}, []string{"method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "infera_gateway_request_duration_seconds",
			Help: "API request latency by HTTP method (event streams excluded).", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}, []string{"method"}),
	}
	reg.MustRegister(g.metrics.requests, g.metrics.duration)

	gw := runtime.NewServeMux(runtime.WithMarshalerOption(runtime.MIMEWildcard, &runtime.JSONPb{
		MarshalOptions:   protojson.MarshalOptions{EmitDefaultValues: true},
		UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
	}))
	if err := inferav1.RegisterClusterServiceHandlerServer(context.Background(), gw, g.svc); err != nil {
		return nil, fmt.Errorf("failed to register the cluster API: %w", err)
	}
	// The generated in-process registration cannot stream; this handler,
	// registered later, takes the route and streams NDJSON itself.
	if err := gw.HandlePath(http.MethodGet, eventsPath, serveEvents(gw, g.svc)); err != nil {
		return nil, fmt.Errorf("failed to register the event stream: %w", err)
	}
	if err := gw.HandlePath(http.MethodGet, "/api/v1/nodes/{node}/agentEvents", serveNodeEvents(gw, g.svc)); err != nil {
		return nil, fmt.Errorf("failed to register the node event stream: %w", err)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !g.nodeSync() {
			http.Error(w, "the Node cache has not synced yet", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	doc := func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(inferav1.ClusterSwaggerJSON)
	}
	mux.HandleFunc("GET "+OpenAPIPath, doc)
	mux.HandleFunc("GET "+OpenAPIDesignPath, doc)
	mux.Handle("/api/", g.api(gw))
	g.handler = mux
	return g, nil
}

// Handler serves the whole gateway.
func (g *Gateway) Handler() http.Handler { return g.handler }

// Auditor is the gateway's audit log.
func (g *Gateway) Auditor() *Auditor { return g.svc.auditor }

// Start starts the caches and waits until the Node cache is synced; the
// NodeQoSReport cache starts whenever the CRD is found.
func (g *Gateway) Start(ctx context.Context) error {
	g.factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), g.nodeSync) {
		return errors.New("failed to sync the Node cache")
	}
	if g.agentFactory != nil {
		g.agentFactory.Start(ctx.Done())
		if !cache.WaitForCacheSync(ctx.Done(), g.agentSync) {
			return errors.New("failed to sync the agents' EndpointSlice cache")
		}
	}
	go g.watchReports(ctx)
	return nil
}

// watchReports starts the NodeQoSReport informer once the CRD is served.
func (g *Gateway) watchReports(ctx context.Context) {
	t := time.NewTicker(30 * time.Second)
	defer t.Stop()
	for {
		if _, err := g.infera.Discovery().ServerResourcesForGroupVersion("infera.io/v1alpha1"); err == nil {
			f := inferainformers.NewSharedInformerFactory(g.infera, 0)
			inf := f.Infera().V1alpha1().NodeQoSReports()
			l := inf.Lister()
			inf.Informer()
			f.Start(ctx.Done())
			if cache.WaitForCacheSync(ctx.Done(), inf.Informer().HasSynced) {
				g.reports.Store(&l)
				g.log.Info("NodeQoSReports found; node views include them")
			}
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Close closes the audit file and the agent connections.
func (g *Gateway) Close() error {
	if g.svc.agents != nil {
		g.svc.agents.close()
	}
	if g.auditFile != nil {
		return g.auditFile.Close()
	}
	return nil
}

// statusWriter records the status code and the start of an error body.
type statusWriter struct {
	http.ResponseWriter
	code int
	body bytes.Buffer
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	if w.code >= 400 && w.body.Len() < 2048 {
		w.body.Write(b[:min(len(b), 2048-w.body.Len())])
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// writeStatus writes a google.rpc.Status-shaped JSON error, like
// grpc-gateway's own errors.
func writeStatus(w http.ResponseWriter, httpCode int, code codes.Code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(httpCode)
	_ = json.NewEncoder(w).Encode(map[string]any{"code": int(code), "message": msg, "details": []any{}})
}

// api wraps the generated mux: metrics, audit, size limit, timeout and
// authentication (authorization happens per call, in Service).
func (g *Gateway) api(gw http.Handler) http.Handler {
	cfg := g.opts.Config
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		_, nodeStream := agentEventsNode(r.URL.Path)
		stream := r.URL.Path == eventsPath || nodeStream
		rec := &auditRecord{ev: auditv1.Event{
			TypeMeta: metav1.TypeMeta{Kind: "Event", APIVersion: "audit.k8s.io/v1"},
			Level:    auditv1.LevelMetadata, AuditID: uuid.NewUUID(), Stage: auditv1.StageResponseComplete,
			RequestURI: r.URL.RequestURI(), Verb: strings.ToLower(r.Method), UserAgent: r.UserAgent(),
			RequestReceivedTimestamp: metav1.NewMicroTime(start),
		}}
		if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
			rec.ev.SourceIPs = []string{host}
		}
		w.Header().Set("Audit-Id", string(rec.ev.AuditID))
		sw := &statusWriter{ResponseWriter: w}
		ctx := withAudit(r.Context(), rec)
		defer func() {
			code := sw.code
			if code == 0 {
				code = http.StatusOK
			}
			var msg string
			if code >= 400 {
				var e struct {
					Message string `json:"message"`
				}
				if json.Unmarshal(sw.body.Bytes(), &e) == nil {
					msg = e.Message
				}
			}
			if err := g.svc.auditor.Record(rec.finish(code, msg, metav1.NewMicroTime(time.Now()))); err != nil {
				g.log.Error(err, "Audit log write failed; events are still kept in memory")
			}
			g.metrics.requests.WithLabelValues(r.Method, strconv.Itoa(code)).Inc()
			if !stream {
				g.metrics.duration.WithLabelValues(r.Method).Observe(time.Since(start).Seconds())
			}
		}()
		if r.ContentLength > cfg.MaxRequestBytes {
			writeStatus(sw, http.StatusRequestEntityTooLarge, codes.InvalidArgument,
				fmt.Sprintf("request body is %d bytes, more than the %d allowed", r.ContentLength, cfg.MaxRequestBytes))
			return
		}
		r.Body = http.MaxBytesReader(sw, r.Body, cfg.MaxRequestBytes)
		tok, err := bearerToken(r)
		var u *authnv1.UserInfo
		if err == nil {
			u, err = g.svc.auth.Authenticate(ctx, tok)
		}
		if err != nil {
			code, gc := http.StatusUnauthorized, codes.Unauthenticated
			if !errors.Is(err, ErrUnauthenticated) {
				code, gc = http.StatusServiceUnavailable, codes.Unavailable
			}
			sw.Header().Set("WWW-Authenticate", `Bearer realm="infera-gateway"`)
			writeStatus(sw, code, gc, err.Error())
			return
		}
		rec.setUser(u)
		ctx = withUser(ctx, u)
		if !stream {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, cfg.RequestTimeout.Duration)
			defer cancel()
		}
		gw.ServeHTTP(sw, r.WithContext(ctx))
	})
}

// Run serves the gateway until ctx is done.
func Run(ctx context.Context, o Options) error {
	g, err := New(o)
	if err != nil {
		return err
	}
	defer func() { _ = g.Close() }()
	if err := g.Start(ctx); err != nil {
		return err
	}
	cfg := o.Config
	srv := &http.Server{Addr: cfg.BindAddress, Handler: g.Handler(), ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes: 64 << 10, BaseContext: func(net.Listener) context.Context { return ctx }}
	errc := make(chan error, 1)
	var once sync.Once
	go func() {
		o.Log.Info("Serving the cluster API", "address", cfg.BindAddress, "tls", cfg.TLSCertFile != "")
		var err error
		if cfg.TLSCertFile != "" {
			err = srv.ListenAndServeTLS(cfg.TLSCertFile, cfg.TLSKeyFile)
		} else {
			err = srv.ListenAndServe()
		}
		once.Do(func() { errc <- err })
	}()
	select {
	case err := <-errc:
		return fmt.Errorf("failed to serve on %s: %w", cfg.BindAddress, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("failed to shut down: %w", err)
	}
	return nil
}
