package certrotation

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// The Secret is named in the manager configuration; these markers grant the
// default name, and kustomize moves the Role to the platform namespace.
// Creating the webhook configuration is only needed with webhook.url (make
// run), where the client is an administrator anyway.
//
// +kubebuilder:rbac:groups="",namespace=infera-system,resources=secrets,verbs=create
// +kubebuilder:rbac:groups="",namespace=infera-system,resources=secrets,verbs=get;update,resourceNames=infera-webhook-server-cert
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingwebhookconfigurations,verbs=get;update,resourceNames=infera-mutating-webhook-configuration

// Options configure a Rotator.
type Options struct {
	// Client reads and writes the Secret and the webhook configuration. Use
	// an uncached client: the manager's cache does not hold Secrets.
	Client client.Client
	// Secret is where the CA and the serving certificate live.
	Secret types.NamespacedName
	// WebhookConfiguration is the MutatingWebhookConfiguration whose
	// webhooks get the CA bundle.
	WebhookConfiguration string
	// Install, when set, is the whole configuration to create or update
	// (make run); otherwise only the CA bundle of an existing one is set.
	Install *admissionregistrationv1.MutatingWebhookConfiguration
	// DNSNames and IPAddresses are the serving certificate's names.
	DNSNames    []string
	IPAddresses []net.IP
	// CAValidity and CertValidity are the lifetimes of new certificates.
	CAValidity, CertValidity time.Duration
	// Resync bounds the wait between passes, so that a replica picks up a
	// certificate another replica renewed. Default: 1m.
	Resync time.Duration
	// Clock is the time source. Default: the real clock.
	Clock clock.Clock
	// Log receives what the rotator does.
	Log logr.Logger
}

// Rotator keeps the serving certificate. Start it as a manager runnable and
// hand GetCertificate to the webhook server.
type Rotator struct {
	o       Options
	current atomic.Pointer[tls.Certificate]
	serial  atomic.Pointer[string]
	ready   chan struct{}
	once    sync.Once
}

// New returns a Rotator; it does nothing until Start or Sync.
func New(o Options) *Rotator {
	if o.Resync <= 0 {
		o.Resync = time.Minute
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	return &Rotator{o: o, ready: make(chan struct{})}
}

// NeedLeaderElection is false: every replica serves the webhook, so every
// replica needs the certificate.
func (r *Rotator) NeedLeaderElection() bool { return false }

// Start runs passes until ctx is done. A failed pass is retried after a
// short backoff; it never ends the manager.
func (r *Rotator) Start(ctx context.Context) error {
	backoff := time.Second
	for {
		next, err := r.Sync(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			r.o.Log.Error(err, "Failed to sync the webhook serving certificate", "Secret", klog.KRef(r.o.Secret.Namespace, r.o.Secret.Name))
			next = backoff
			backoff = min(backoff*2, 30*time.Second)
		} else {
			backoff = time.Second
		}
		select {
		case <-ctx.Done():
			return nil
		case <-r.o.Clock.After(next):
		}
	}
}

// GetCertificate serves the current certificate (tls.Config hook).
func (r *Rotator) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c := r.current.Load()
	if c == nil {
		return nil, errors.New("webhook serving certificate is not ready yet")
	}
	return c, nil
}

// Ready is a healthz checker: ready once a certificate is loaded.
func (r *Rotator) Ready(*http.Request) error {
	select {
	case <-r.ready:
		return nil
	default:
		return errors.New("webhook serving certificate is not loaded yet")
	}
}

// WaitReady blocks until a certificate is loaded or ctx is done.
func (r *Rotator) WaitReady(ctx context.Context) error {
	select {
	case <-r.ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Serial is the serial number (hex) of the certificate being served.
func (r *Rotator) Serial() string {
	if s := r.serial.Load(); s != nil {
		return *s
	}
	return ""
}

// Sync runs one pass: make or renew what is due, load it, write the CA
// bundle. It returns how long to wait before the next pass.
func (r *Rotator) Sync(ctx context.Context) (time.Duration, error) {
	now := r.o.Clock.Now()
	var secret corev1.Secret
	var wait time.Duration
	err := r.o.Client.Get(ctx, r.o.Secret, &secret)
	switch {
	case apierrors.IsNotFound(err):
		secret = corev1.Secret{}
		secret.Name, secret.Namespace = r.o.Secret.Name, r.o.Secret.Namespace
		secret.Type = corev1.SecretTypeTLS
		secret.Data = map[string][]byte{}
		if wait, err = r.fill(&secret, now); err != nil {
			return 0, err
		}
		r.o.Log.Info("Creating the webhook serving certificate", "Secret", klog.KObj(&secret))
		if err := r.o.Client.Create(ctx, &secret); err != nil {
			return 0, fmt.Errorf("failed to create Secret %s: %w", r.o.Secret, err)
		}
	case err != nil:
		return 0, fmt.Errorf("failed to get Secret %s: %w", r.o.Secret, err)
	default:
		before := secret.DeepCopy()
		if wait, err = r.fill(&secret, now); err != nil {
			return 0, err
		}
		if !equality.Semantic.DeepEqual(before.Data, secret.Data) {
			r.o.Log.Info("Renewing the webhook serving certificate", "Secret", klog.KObj(&secret))
			if err := r.o.Client.Update(ctx, &secret); err != nil {
				return 0, fmt.Errorf("failed to update Secret %s: %w", r.o.Secret, err)
			}
		}
	}

	pair, err := tls.X509KeyPair(secret.Data[CertKey], secret.Data[KeyKey])
	if err != nil {
		return 0, fmt.Errorf("failed to load the serving certificate from Secret %s: %w", r.o.Secret, err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return 0, fmt.Errorf("failed to parse the serving certificate: %w", err)
	}
	pair.Leaf = leaf
	serial := leaf.SerialNumber.Text(16)
	if old := r.serial.Load(); old == nil || *old != serial {
		r.o.Log.Info("Serving a new webhook certificate", "serial", serial, "notAfter", leaf.NotAfter)
	}
	r.current.Store(&pair)
	r.serial.Store(&serial)

	if err := r.inject(ctx, secret.Data[CABundleKey]); err != nil {
		return 0, err
	}
	r.once.Do(func() { close(r.ready) })

	cas, _ := parseCerts(secret.Data[CABundleKey])
	next := renewAt(leaf).Sub(now)
	if len(cas) > 0 {
		next = min(next, renewAt(cas[0]).Sub(now))
	}
	if wait > 0 {
		next = min(next, wait)
	}
	return max(min(next, r.o.Resync), 100*time.Millisecond), nil
}

// fill makes whatever in secret.Data is missing, broken or due. It returns
// how soon it wants another pass (0: no particular hurry).
//
// A CA rollover is done in two steps so the API server never meets a
// certificate it does not trust yet: the new CA first joins the bundle next
// to the old one, and only a pass at least `settle` later signs a serving
// certificate with it; meanwhile the old, still valid serving certificate
// keeps being served.
func (r *Rotator) fill(secret *corev1.Secret, now time.Time) (time.Duration, error) {
	if secret.Data == nil {
		secret.Data = map[string][]byte{}
	}
	d := secret.Data
	cas, caErr := parseCerts(d[CABundleKey])
	var ca *keyPair
	if caErr == nil {
		if key, err := parseKey(d[CAKeyKey]); err == nil && keyMatches(cas[0], key) && now.Before(renewAt(cas[0])) &&
			nominal(cas[0]) <= r.o.CAValidity {
			ca = &keyPair{cert: cas[0], key: key, der: cas[0].Raw}
		}
	}
	if ca == nil {
		var err error
		if ca, err = newCA(now, r.o.CAValidity); err != nil {
			return 0, err
		}
		keyPEM, err := encodeKey(ca.key)
		if err != nil {
			return 0, err
		}
		d[CABundleKey] = bundle(ca.cert, cas, now)
		d[CAKeyKey] = keyPEM
	} else if b := bundle(ca.cert, cas, now); !bytes.Equal(b, d[CABundleKey]) {
		d[CABundleKey] = b // an old CA expired: drop it
	}
	trusted, _ := parseCerts(d[CABundleKey])

	serving, usable := r.serving(d, trusted, now)
	if serving != nil {
		return 0, nil // valid and not due
	}
	if settled := issued(ca.cert).Add(r.settle()); usable && now.Before(settled) {
		// Due, but the CA that would sign the new one is too fresh for the
		// API server to have it: serve the old one a little longer.
		return settled.Sub(now), nil
	}
	next, err := newServing(ca, now, r.o.CertValidity, r.o.DNSNames, r.o.IPAddresses)
	if err != nil {
		return 0, err
	}
	keyPEM, err := encodeKey(next.key)
	if err != nil {
		return 0, err
	}
	d[CertKey], d[KeyKey] = encodeCert(next.der), keyPEM
	return 0, nil
}

// settle is how long a new CA sits in the bundle before it signs: long
// enough for the API server to load the new bundle (at least a second, even
// under load), and short enough to fit well inside the third of life a due
// serving certificate has left (at most a sixth of the validity, 30 s).
func (r *Rotator) settle() time.Duration {
	return min(30*time.Second, max(r.o.CertValidity/20, min(time.Second, r.o.CertValidity/6)))
}

// serving returns the stored serving certificate when it is valid and not
// due; usable is true when it can still be served for now (unexpired,
// trusted by the bundle) even if it is due.
func (r *Rotator) serving(d map[string][]byte, trusted []*x509.Certificate, now time.Time) (cert *x509.Certificate, usable bool) {
	certs, err := parseCerts(d[CertKey])
	if err != nil {
		return nil, false
	}
	key, err := parseKey(d[KeyKey])
	if err != nil || !keyMatches(certs[0], key) {
		return nil, false
	}
	c := certs[0]
	signed := false
	for _, ca := range trusted {
		if c.CheckSignatureFrom(ca) == nil {
			signed = true
			break
		}
	}
	if !signed || !now.Before(c.NotAfter) || !coversNames(c, r.o.DNSNames, r.o.IPAddresses) {
		return nil, false
	}
	// A certificate that lives longer than configured is replaced, so that
	// shortening the validity takes effect at once.
	if !now.Before(renewAt(c)) || nominal(c) > r.o.CertValidity {
		return nil, true
	}
	return c, true
}

// inject writes the CA bundle into the webhook configuration (or installs
// the whole configuration in Install mode).
func (r *Rotator) inject(ctx context.Context, caBundle []byte) error {
	var cfg admissionregistrationv1.MutatingWebhookConfiguration
	err := r.o.Client.Get(ctx, client.ObjectKey{Name: r.o.WebhookConfiguration}, &cfg)
	if apierrors.IsNotFound(err) {
		if r.o.Install == nil {
			r.o.Log.Info("Webhook configuration not found yet; the CA bundle will be written when it appears", "MutatingWebhookConfiguration", r.o.WebhookConfiguration)
			return nil
		}
		want := r.o.Install.DeepCopy()
		want.Name = r.o.WebhookConfiguration
		for i := range want.Webhooks {
			want.Webhooks[i].ClientConfig.CABundle = caBundle
		}
		r.o.Log.Info("Installing the webhook configuration", "MutatingWebhookConfiguration", r.o.WebhookConfiguration)
		if err := r.o.Client.Create(ctx, want); err != nil {
			return fmt.Errorf("failed to create MutatingWebhookConfiguration %s: %w", r.o.WebhookConfiguration, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("failed to get MutatingWebhookConfiguration %s: %w", r.o.WebhookConfiguration, err)
	}
	before := cfg.DeepCopy()
	if r.o.Install != nil {
		cfg.Webhooks = r.o.Install.DeepCopy().Webhooks
		cfg.Labels = r.o.Install.Labels
	}
	for i := range cfg.Webhooks {
		cfg.Webhooks[i].ClientConfig.CABundle = caBundle
	}
	if equality.Semantic.DeepEqual(before.Webhooks, cfg.Webhooks) {
		return nil
	}
	r.o.Log.Info("Writing the CA bundle into the webhook configuration", "MutatingWebhookConfiguration", r.o.WebhookConfiguration)
	if err := r.o.Client.Update(ctx, &cfg); err != nil {
		return fmt.Errorf("failed to update MutatingWebhookConfiguration %s: %w", r.o.WebhookConfiguration, err)
	}
	return nil
}
