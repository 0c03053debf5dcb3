package certrotation

import (
	"crypto/x509"
	"net"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
)

func newTestRotator() *Rotator {
	return New(Options{
		DNSNames:     []string{"infera-webhook-service.infera-system.svc"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		CAValidity:   90 * time.Minute,
		CertValidity: 30 * time.Minute,
	})
}

func leafOf(t *testing.T, s *corev1.Secret) *x509.Certificate {
	t.Helper()
	cs, err := parseCerts(s.Data[CertKey])
	if err != nil {
		t.Fatal(err)
	}
	return cs[0]
}

func casOf(t *testing.T, s *corev1.Secret) []*x509.Certificate {
	t.Helper()
	cs, err := parseCerts(s.Data[CABundleKey])
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func TestFillLifecycle(t *testing.T) {
	r := newTestRotator()
	t0 := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	s := &corev1.Secret{}
	if _, err := r.fill(s, t0); err != nil {
		t.Fatal(err)
	}
	leaf, cas := leafOf(t, s), casOf(t, s)
	if len(cas) != 1 || leaf.CheckSignatureFrom(cas[0]) != nil {
		t.Fatalf("first fill: %d CAs, leaf signed by CA: %v", len(cas), leaf.CheckSignatureFrom(cas[0]))
	}
	if !coversNames(leaf, r.o.DNSNames, r.o.IPAddresses) || leaf.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth {
		t.Errorf("leaf names %v %v, usage %v", leaf.DNSNames, leaf.IPAddresses, leaf.ExtKeyUsage)
	}

	// Before two thirds of its life nothing changes.
	before := s.DeepCopy()
	if _, err := r.fill(s, t0.Add(19*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if string(before.Data[CertKey]) != string(s.Data[CertKey]) || string(before.Data[CABundleKey]) != string(s.Data[CABundleKey]) {
		t.Fatal("fill renewed a certificate that was not due")
	}

	// At two thirds the serving certificate is renewed under the same CA.
	if _, err := r.fill(s, t0.Add(21*time.Minute)); err != nil {
		t.Fatal(err)
	}
	renewed := leafOf(t, s)
	if renewed.SerialNumber.Cmp(leaf.SerialNumber) == 0 || renewed.CheckSignatureFrom(cas[0]) != nil || len(casOf(t, s)) != 1 {
		t.Fatal("the serving certificate was not renewed under the same CA")
	}

	if _, err := r.fill(s, t0.Add(42*time.Minute)); err != nil {
		t.Fatal(err)
	}
	renewed = leafOf(t, s) // valid until 72 min, due at 62 min

	// At two thirds of the CA's life (60 min) a new CA joins the bundle
	// first; the serving certificate, due but still valid, is kept until the
	// new CA has settled.
	tCA := t0.Add(62*time.Minute + 30*time.Second)
	wait, err := r.fill(s, tCA)
	if err != nil {
		t.Fatal(err)
	}
	cas2 := casOf(t, s)
	if len(cas2) != 2 || cas2[1].SerialNumber.Cmp(cas[0].SerialNumber) != 0 {
		t.Fatalf("bundle after CA rollover has %d CAs, want the new one then the old one", len(cas2))
	}
	if leafOf(t, s).SerialNumber.Cmp(renewed.SerialNumber) != 0 || wait <= 0 || wait > r.settle()+time.Second {
		t.Fatalf("a due leaf must wait for the new CA to settle (wait %s, settle %s)", wait, r.settle())
	}
	if _, err := r.fill(s, tCA.Add(r.settle()+time.Second)); err != nil {
		t.Fatal(err)
	}
	if l := leafOf(t, s); l.CheckSignatureFrom(cas2[0]) != nil {
		t.Fatal("after settling, the new leaf must be signed by the new CA")
	}

	// Once the old CA expires it leaves the bundle.
	if _, err := r.fill(s, t0.Add(92*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if n := len(casOf(t, s)); n != 1 {
		t.Fatalf("bundle holds %d CAs after the old one expired, want 1", n)
	}
}

func TestFillReplacesBrokenOrMismatched(t *testing.T) {
	t0 := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	for name, mutate := range map[string]func(r *Rotator, s *corev1.Secret){
		"garbage certificate": func(_ *Rotator, s *corev1.Secret) { s.Data[CertKey] = []byte("garbage") },
		"key of another cert": func(_ *Rotator, s *corev1.Secret) {
			o := &corev1.Secret{}
			_, _ = newTestRotator().fill(o, t0)
			s.Data[KeyKey] = o.Data[KeyKey]
		},
		"names changed":      func(r *Rotator, _ *corev1.Secret) { r.o.DNSNames = []string{"other.svc"} },
		"validity shortened": func(r *Rotator, _ *corev1.Secret) { r.o.CertValidity = 10 * time.Minute },
	} {
		t.Run(name, func(t *testing.T) {
			r := newTestRotator()
			s := &corev1.Secret{}
			if _, err := r.fill(s, t0); err != nil {
				t.Fatal(err)
			}
			old := leafOf(t, s).SerialNumber
			mutate(r, s)
			if _, err := r.fill(s, t0.Add(time.Minute)); err != nil {
				t.Fatal(err)
			}
			l := leafOf(t, s)
			if l.SerialNumber.Cmp(old) == 0 {
				t.Fatal("the serving certificate was not replaced")
			}
			if !coversNames(l, r.o.DNSNames, r.o.IPAddresses) || l.CheckSignatureFrom(casOf(t, s)[0]) != nil {
				t.Fatal("the replacement is not valid")
			}
		})
	}
}
