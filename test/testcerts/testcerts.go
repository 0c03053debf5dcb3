// Package testcerts makes a throwaway CA and a serving certificate signed by
// it, for tests of TLS listeners (the agent's gRPC listener, the gateway's
// client of it). Test-only: the certificates live a day. It is
// certrotation.WriteFiles, the product's own issuer, with a test lifetime.
package testcerts

import (
	"time"

	"github.com/infera-io/temper/internal/certrotation"
)

// Files are the PEM files Write made.
type Files = certrotation.Files

// Write makes a CA and a serving certificate for dnsName under dir.
func Write(dir, dnsName string) (Files, error) {
	return certrotation.WriteFiles(dir, dnsName, 24*time.Hour)
}
