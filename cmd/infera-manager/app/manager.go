package app

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/yaml"

	kscheme "github.com/infera-io/temper/internal/scheme"

	configv1alpha1 "github.com/infera-io/temper/apis/config/v1alpha1"
	inferav1alpha1 "github.com/infera-io/temper/apis/infera/v1alpha1"
	"github.com/infera-io/temper/apis/tiering"
	"github.com/infera-io/temper/controllers"
	"github.com/infera-io/temper/internal/certrotation"
	"github.com/infera-io/temper/webhooks/overcommit"
)

// Options are everything Run needs.
type Options struct {
	// RestConfig reaches the API server.
	RestConfig *rest.Config
	// Config is the manager configuration; Run defaults and validates a
	// copy.
	Config configv1alpha1.ManagerConfiguration
	// Log is the root logger.
	Log logr.Logger
	// Clock is the controllers' and the certificate rotator's time source.
	// Default: the real clock.
	Clock clock.Clock
	// Ready, if set, is called once the webhook serves a certificate and the
	// manager has started (tests and make run use it to wait).
	Ready func()
	// SkipControllerNameValidation lets one process run the manager more
	// than once (controller-runtime keeps controller names process-wide);
	// for tests only.
	SkipControllerNameValidation bool
}

// NewScheme returns the manager's scheme: client-go types and infera.io.
func NewScheme() (*runtime.Scheme, error) { return kscheme.New() }

// LoadConfig reads a ManagerConfiguration file strictly (an unknown field
// is an error), defaults and validates it. An empty path means all defaults.
func LoadConfig(path string) (configv1alpha1.ManagerConfiguration, error) {
	var b []byte
	if path != "" {
		var err error
		if b, err = os.ReadFile(path); err != nil {
			return configv1alpha1.ManagerConfiguration{}, fmt.Errorf("failed to read manager configuration: %w", err)
		}
	}
	c, err := ParseConfig(b)
	if err != nil {
		return c, fmt.Errorf("manager configuration %s: %w", path, err)
	}
	return c, nil
}

// maxConfigBytes bounds a manager configuration file; real ones are a few
// hundred bytes.
const maxConfigBytes = 1 << 20

// ParseConfig decodes a ManagerConfiguration strictly from YAML or JSON
// (nothing at all means all defaults), defaults and validates it.
func ParseConfig(b []byte) (configv1alpha1.ManagerConfiguration, error) {
	var c configv1alpha1.ManagerConfiguration
	if len(b) > maxConfigBytes {
		return c, fmt.Errorf("%d bytes is more than the %d allowed", len(b), maxConfigBytes)
	}
	if len(b) > 0 {
		if err := yaml.UnmarshalStrict(b, &c); err != nil {
			return c, fmt.Errorf("failed to decode: %w", err)
		}
	}
	c.Default()
	if err := c.Validate(); err != nil {
		return c, fmt.Errorf("invalid: %w", err)
	}
	return c, nil
}

// LocalConfig is the configuration of `make run`: one replica without
// leader election, metrics and probes on loopback, and the webhook on
// 127.0.0.1:port registered by URL, so the manager installs the webhook
// configuration itself. config/manager/local.yaml is the same as a file.
func LocalConfig(port int32) configv1alpha1.ManagerConfiguration {
	off := false
	return configv1alpha1.ManagerConfiguration{
		LeaderElection:         configv1alpha1.LeaderElectionConfiguration{Enabled: &off},
		MetricsBindAddress:     "127.0.0.1:8080",
		HealthProbeBindAddress: "127.0.0.1:8081",
		Webhook: configv1alpha1.WebhookConfiguration{
			Host: "127.0.0.1", Port: &port, URL: fmt.Sprintf("https://127.0.0.1:%d", port),
		},
	}
}

// hardenTLS is applied to every TLS server of the manager: HTTP/1.1 only
// (HTTP/2 is off: the rapid-reset class of attacks, CVE-2023-44487 and
// CVE-2023-39325, costs a server far more than the client) and TLS 1.2 or
// newer.
func hardenTLS(c *tls.Config) {
	c.NextProtos = []string{"http/1.1"}
	c.MinVersion = tls.VersionTLS12
}

// The metrics filter asks the API server who a scraper is and whether it
// may GET /metrics.
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

// metricsOptions serves metrics on a loopback address as plain HTTP (only
// the node itself reaches it: make run, a sidecar scraper); on any other
// address over TLS (hardened like the webhook, a self-signed certificate
// unless one is mounted) and only to callers whose bearer token TokenReview
// accepts and SubjectAccessReview allows to GET the non-resource URL
// /metrics (docs/manager.md).
func metricsOptions(addr string) metricsserver.Options {
	o := metricsserver.Options{BindAddress: addr, TLSOpts: []func(*tls.Config){hardenTLS}}
	if addr == "0" || loopback(addr) {
		return o
	}
	o.SecureServing = true
	o.FilterProvider = filters.WithAuthenticationAndAuthorization
	return o
}

// loopback reports whether a bind address only listens on a loopback
// interface ("localhost:8080", "127.0.0.1:8080", "[::1]:8080").
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Run runs the manager until ctx is done.
func Run(ctx context.Context, o Options) error {
	// Default only fills unset fields, so a shallow copy keeps the caller's
	// configuration as it was.
	c := o.Config
	cfg := &c
	cfg.Default()
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("invalid manager configuration: %w", err)
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	log := o.Log
	scheme, err := NewScheme()
	if err != nil {
		return err
	}
	direct, err := client.New(o.RestConfig, client.Options{Scheme: scheme})
	if err != nil {
		return fmt.Errorf("failed to create client: %w", err)
	}

	var rotator *certrotation.Rotator
	webhookOn := *cfg.Webhook.Enabled
	whOpts := webhook.Options{Host: cfg.Webhook.Host, Port: int(*cfg.Webhook.Port), CertDir: cfg.Webhook.CertDir,
		TLSOpts: []func(*tls.Config){hardenTLS}}
	if webhookOn && cfg.Webhook.CertMode == configv1alpha1.CertModeSelfManaged {
		rotator, err = newRotator(ctx, direct, cfg, o)
		if err != nil {
			return err
		}
		whOpts.TLSOpts = append(whOpts.TLSOpts, func(c *tls.Config) { c.GetCertificate = rotator.GetCertificate })
	}

	mgr, err := ctrl.NewManager(o.RestConfig, ctrl.Options{
		Scheme:                        scheme,
		Logger:                        log,
		LeaderElection:                *cfg.LeaderElection.Enabled,
		LeaderElectionID:              cfg.LeaderElection.LeaseName,
		LeaderElectionNamespace:       cfg.PlatformNamespace,
		LeaderElectionReleaseOnCancel: true,
		Metrics:                       metricsOptions(cfg.MetricsBindAddress),
		HealthProbeBindAddress:        cfg.HealthProbeBindAddress,
		WebhookServer:                 webhook.NewServer(whOpts),
		Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{
			// Pods are only counted: keep the cache lean.
			&corev1.Pod{}: {Transform: cache.TransformStripManagedFields()},
		}},
	})
	if err != nil {
		return fmt.Errorf("failed to create the manager: %w", err)
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return fmt.Errorf("failed to add the health check: %w", err)
	}

	if name, err := controllers.SetupControllers(ctx, mgr, controllers.Options{
		PlatformNamespace: cfg.PlatformNamespace,
		TierLoadMaxAge:    cfg.TierLoadMaxAge.Duration,
		SilentAfter:       cfg.SilentAgent.After.Duration,
		Taint:             *cfg.SilentAgent.Taint,
		TaintKey:          cfg.SilentAgent.TaintKey,
		TaintEffect:       cfg.SilentAgent.TaintEffect,
		MaxSilentPercent:  cfg.SilentAgent.MaxSilentPercent,
		Clock:             o.Clock,
		Controller:        controller.Options{SkipNameValidation: &o.SkipControllerNameValidation},
	}); err != nil {
		log.Error(err, "Failed to set up a controller", "controller", name)
		return err
	}

	if webhookOn {
		if err := setupWebhook(ctx, mgr, cfg, rotator); err != nil {
			return err
		}
	}
	if o.Ready != nil {
		if err := mgr.Add(readyNotifier{mgr: mgr, rotator: rotator, ready: o.Ready}); err != nil {
			return fmt.Errorf("failed to add the ready notifier: %w", err)
		}
	}
	log.Info("Starting infera-manager", "leaderElection", *cfg.LeaderElection.Enabled, "webhook", webhookOn,
		"certMode", cfg.Webhook.CertMode, "platformNamespace", cfg.PlatformNamespace)
	if err := mgr.Start(ctx); err != nil {
		return fmt.Errorf("manager stopped with an error: %w", err)
	}
	return nil
}

func setupWebhook(ctx context.Context, mgr ctrl.Manager, cfg *configv1alpha1.ManagerConfiguration, rotator *certrotation.Rotator) error {
	m := cfg.Webhook.PriorityMapping
	metrics, err := overcommit.NewMetrics(ctrlmetrics.Registry)
	if err != nil {
		return err
	}
	h := &overcommit.Handler{
		Metrics:           metrics,
		Reader:            mgr.GetClient(),
		PlatformNamespace: cfg.PlatformNamespace,
		Thresholds:        tiering.Thresholds{Critical: m.Critical, High: m.High, Normal: m.Normal, Low: m.Low},
	}
	// The webhook runs on every replica, controllers only on the leader:
	// register the informers it reads now, so followers have them synced
	// before the first admission request instead of during it.
	for _, obj := range []client.Object{&corev1.Namespace{}, &inferav1alpha1.OvercommitProfile{}, &inferav1alpha1.InferaPolicy{}} {
		if _, err := mgr.GetCache().GetInformer(ctx, obj); err != nil {
			return fmt.Errorf("failed to get an informer for the webhook: %w", err)
		}
	}
	srv := mgr.GetWebhookServer()
	srv.Register(overcommit.Path, overcommit.Webhook(h, mgr.GetLogger().WithName("overcommit-webhook")))
	if err := mgr.AddReadyzCheck("webhook", srv.StartedChecker()); err != nil {
		return fmt.Errorf("failed to add the webhook ready check: %w", err)
	}
	if rotator != nil {
		if err := mgr.Add(rotator); err != nil {
			return fmt.Errorf("failed to add the certificate rotator: %w", err)
		}
		if err := mgr.AddReadyzCheck("webhook-certificate", rotator.Ready); err != nil {
			return fmt.Errorf("failed to add the certificate ready check: %w", err)
		}
	}
	return nil
}

// newRotator builds the certificate rotator. With a webhook URL (make run)
// the certificate names the URL's host and the rotator installs the whole
// webhook configuration; otherwise it names the Service and only keeps the
// CA bundle of the configuration the manifests installed.
func newRotator(ctx context.Context, c client.Client, cfg *configv1alpha1.ManagerConfiguration, o Options) (*certrotation.Rotator, error) {
	w := cfg.Webhook
	ro := certrotation.Options{
		Client:               c,
		Secret:               types.NamespacedName{Namespace: cfg.PlatformNamespace, Name: w.SecretName},
		WebhookConfiguration: w.ConfigurationName,
		CAValidity:           w.CAValidity.Duration,
		CertValidity:         w.CertValidity.Duration,
		Clock:                o.Clock,
		Log:                  o.Log.WithName("certrotation"),
	}
	if w.URL == "" {
		svc := w.ServiceName + "." + cfg.PlatformNamespace
		ro.DNSNames = []string{svc + ".svc", svc + ".svc.cluster.local"}
		return certrotation.New(ro), nil
	}
	u, err := url.Parse(w.URL)
	if err != nil || u.Scheme != "https" || u.Hostname() == "" {
		return nil, fmt.Errorf("webhook.url %q must be an https URL with a host", w.URL)
	}
	if p := u.Port(); p != "" && p != strconv.Itoa(int(*w.Port)) {
		return nil, fmt.Errorf("webhook.url %q names port %s but the webhook listens on %d", w.URL, p, *w.Port)
	}
	if ip := net.ParseIP(u.Hostname()); ip != nil {
		ro.IPAddresses = []net.IP{ip}
	} else {
		ro.DNSNames = []string{u.Hostname()}
	}
	hookURL := w.URL + overcommit.Path
	ro.Install = &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: w.ConfigurationName, Labels: map[string]string{"app.kubernetes.io/managed-by": "infera-manager"}},
		Webhooks: []admissionregistrationv1.MutatingWebhook{
			overcommit.MutatingWebhook(admissionregistrationv1.WebhookClientConfig{URL: &hookURL}, cfg.PlatformNamespace),
		},
	}
	// Outside a cluster nobody else creates the platform namespace, and the
	// certificate Secret lives there.
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: cfg.PlatformNamespace}}
	if err := c.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("failed to create the platform namespace %s: %w", cfg.PlatformNamespace, err)
	}
	return certrotation.New(ro), nil
}

// readyNotifier calls ready once the manager runs and the certificate is
// served.
type readyNotifier struct {
	mgr     ctrl.Manager
	rotator *certrotation.Rotator
	ready   func()
}

func (n readyNotifier) NeedLeaderElection() bool { return false }

func (n readyNotifier) Start(ctx context.Context) error {
	if n.rotator != nil {
		if err := n.rotator.WaitReady(ctx); err != nil {
			return nil //nolint:nilerr // the manager is stopping
		}
	}
	if !n.mgr.GetCache().WaitForCacheSync(ctx) {
		return nil
	}
	n.ready()
	return nil
}
