package certrotation

import (
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Files are the PEM files WriteFiles made.
type Files struct {
	// CA, Cert and Key are the paths of ca.crt, tls.crt and tls.key.
	CA, Cert, Key string
	// CAPEM is the CA certificate, as written to CA.
	CAPEM []byte
}

// WriteFiles makes a fresh CA and a serving certificate for dnsName signed by
// it, both valid for validity, with the same keys and lifetimes rules as the
// rotator's Secret, and writes ca.crt, tls.crt and tls.key (mode 0600) under
// dir. For listeners that read their certificate from files: make run's
// agent and the tests of TLS listeners.
func WriteFiles(dir, dnsName string, validity time.Duration) (Files, error) {
	now := time.Now()
	ca, err := newCA(now, validity)
	if err != nil {
		return Files{}, err
	}
	srv, err := newServing(ca, now, validity, []string{dnsName}, nil)
	if err != nil {
		return Files{}, err
	}
	key, err := encodeKey(srv.key)
	if err != nil {
		return Files{}, err
	}
	f := Files{CA: filepath.Join(dir, CABundleKey), Cert: filepath.Join(dir, CertKey), Key: filepath.Join(dir, KeyKey), CAPEM: encodeCert(ca.der)}
	for _, w := range []struct {
		path string
		b    []byte
	}{{f.CA, f.CAPEM}, {f.Cert, encodeCert(srv.der)}, {f.Key, key}} {
		if err := os.WriteFile(w.path, w.b, 0o600); err != nil {
			return Files{}, fmt.Errorf("failed to write %s: %w", w.path, err)
		}
	}
	return f, nil
}
