package manager

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	configv1alpha1 "github.com/infera-io/temper/apis/config/v1alpha1"
	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/internal/certrotation"
)

// TestWebhookDownPodsAdmittedUnmodified stops the manager (the webhook
// configuration still points at its port) and shows that pods in an
// opted-in namespace are admitted as they are: failurePolicy Ignore.
func TestWebhookDownPodsAdmittedUnmodified(t *testing.T) {
	m := startManager(t, nil)
	ctx := context.Background()
	ns := "down-opted-in"
	ensureNamespace(t, ns, map[string]string{wellknown.OvercommitLabel: wellknown.OvercommitEnabledValue}, nil)

	up := podIn(ns, "while-up", "infera-low", cpuContainer("app", "2", "4"))
	if err := env.Client.Create(ctx, up); err != nil {
		t.Fatal(err)
	}
	checkPod(t, up, []wantContainer{{"app", "1", "4"}}, map[string]string{"app": "2"})

	m.Stop(t)
	var cfg admissionregistrationv1.MutatingWebhookConfiguration
	if err := env.Client.Get(ctx, client.ObjectKey{Name: configv1alpha1.DefaultWebhookConfiguration}, &cfg); err != nil {
		t.Fatalf("the webhook configuration must still be installed: %v", err)
	}
	if fp := cfg.Webhooks[0].FailurePolicy; fp == nil || *fp != admissionregistrationv1.Ignore {
		t.Fatalf("failurePolicy = %v, want Ignore", fp)
	}
	start := time.Now()
	down := podIn(ns, "while-down", "infera-low", cpuContainer("app", "2", "4"))
	if err := env.Client.Create(ctx, down); err != nil {
		t.Fatalf("pod refused while the webhook is down: %v", err)
	}
	took := time.Since(start)
	var got corev1.Pod
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(down), &got); err != nil {
		t.Fatal(err)
	}
	checkPod(t, &got, []wantContainer{{"app", "2", "4"}}, nil)
	if took > 2500*time.Millisecond {
		t.Errorf("create took %s with the webhook down; the timeout is 2s", took)
	}
	t.Logf("pod admitted unmodified in %s with the webhook down", took)
}

// TestCertificateRotation runs the manager with a 6 s serving certificate
// and a 15 s CA, so both roll over during the test, and creates a pod every
// 300 ms: every one must be deflated, i.e. the API server reached the
// webhook over TLS and trusted each new certificate.
func TestCertificateRotation(t *testing.T) {
	startManager(t, func(c *configv1alpha1.ManagerConfiguration) {
		c.Webhook.CertValidity = &metav1.Duration{Duration: 6 * time.Second}
		c.Webhook.CAValidity = &metav1.Duration{Duration: 15 * time.Second}
	})
	ctx := context.Background()
	ns := "rotation-opted-in"
	ensureNamespace(t, ns, map[string]string{wellknown.OvercommitLabel: wellknown.OvercommitEnabledValue}, nil)

	serials, cas := map[string]bool{}, map[string]bool{}
	maxBundle := 0
	deadline := time.Now().Add(22 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		p := podIn(ns, fmt.Sprintf("rot-%d", i), "infera-low", cpuContainer("app", "2", ""))
		if err := env.Client.Create(ctx, p, client.DryRunAll); err != nil {
			t.Fatal(err)
		}
		if _, ok := p.Annotations[wellknown.OriginalCPURequestsAnnotation]; !ok {
			t.Fatalf("pod %d at %s was not deflated: the webhook was unreachable or untrusted", i, time.Now().Format(time.StampMilli))
		}
		var s corev1.Secret
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: configv1alpha1.DefaultPlatformNamespace, Name: configv1alpha1.DefaultWebhookSecretName}, &s); err != nil {
			t.Fatal(err)
		}
		serials[serialOf(t, s.Data[certrotation.CertKey])] = true
		bundle := certsOf(t, s.Data[certrotation.CABundleKey])
		cas[bundle[0].SerialNumber.Text(16)] = true
		maxBundle = max(maxBundle, len(bundle))
		time.Sleep(300 * time.Millisecond)
	}
	t.Logf("served %d serving certificates under %d CAs; the bundle held up to %d CAs", len(serials), len(cas), maxBundle)
	if len(serials) < 3 {
		t.Errorf("saw %d serving certificates in 22s with a 6s validity, want at least 3", len(serials))
	}
	if len(cas) < 2 || maxBundle < 2 {
		t.Errorf("saw %d CAs and a bundle of at most %d; want a CA rollover with both CAs in the bundle", len(cas), maxBundle)
	}
}

func certsOf(t *testing.T, b []byte) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		t.Fatal("no certificate")
	}
	return out
}

func serialOf(t *testing.T, b []byte) string { return certsOf(t, b)[0].SerialNumber.Text(16) }

// TestNamespaceRelabelledWhileCreating flips a namespace's opt-in label
// while pods are created: each pod is either fully deflated with the
// originals recorded or untouched; none is half-done or broken.
func TestNamespaceRelabelledWhileCreating(t *testing.T) {
	startManager(t, nil)
	ctx := context.Background()
	ns := "relabel-race"
	ensureNamespace(t, ns, map[string]string{wellknown.OvercommitLabel: wellknown.OvercommitEnabledValue}, nil)

	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		on := true
		for !stop.Load() {
			on = !on
			v := ""
			if on {
				v = wellknown.OvercommitEnabledValue
			}
			var n corev1.Namespace
			if err := env.Client.Get(ctx, client.ObjectKey{Name: ns}, &n); err != nil {
				continue
			}
			before := n.DeepCopy()
			if v == "" {
				delete(n.Labels, wellknown.OvercommitLabel)
			} else {
				n.Labels[wellknown.OvercommitLabel] = v
			}
			_ = env.Client.Patch(ctx, &n, client.MergeFrom(before))
			time.Sleep(15 * time.Millisecond)
		}
	}()
	deflated, untouched := 0, 0
	for i := range 60 {
		p := podIn(ns, fmt.Sprintf("race-%d", i), "infera-low", cpuContainer("a", "1", "2"), cpuContainer("b", "300m", ""))
		if err := env.Client.Create(ctx, p); err != nil {
			stop.Store(true)
			wg.Wait()
			t.Fatalf("pod %d refused: %v", i, err)
		}
		_, has := p.Annotations[wellknown.OriginalCPURequestsAnnotation]
		got := containersOf(p)
		switch {
		case has && got[0] == (wantContainer{"a", "500m", "2"}) && got[1] == (wantContainer{"b", "150m", ""}):
			deflated++
		case !has && got[0] == (wantContainer{"a", "1", "2"}) && got[1] == (wantContainer{"b", "300m", ""}):
			untouched++
		default:
			t.Errorf("pod %d is neither deflated nor untouched: annotated=%v containers=%v", i, has, got)
		}
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("%d pods deflated, %d untouched while the label flipped", deflated, untouched)
	if deflated == 0 || untouched == 0 {
		t.Errorf("the race did not exercise both states (deflated %d, untouched %d)", deflated, untouched)
	}
}
