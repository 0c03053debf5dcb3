package nodeagent

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"sync"

	"github.com/go-logr/logr"

	"github.com/infera-io/temper/nodeagent/server"
)

// serveGRPCTCP serves gs also on server.grpc_address with TLS (when set).
// The interceptors from grpcGuard admit only authorized callers there. A
// listener or certificate that cannot be opened is logged; the unix socket
// keeps serving.
func (a *Agent) serveGRPCTCP(ctx context.Context, gs *server.GRPCServer, log logr.Logger) {
	cfg := a.o.Config.Server
	if cfg.GRPCAddress == "" {
		return
	}
	if a.reviewer() == nil {
		log.Error(nil, "Not serving the gRPC API on TCP: the agent has no Kubernetes client to review callers with", "address", cfg.GRPCAddress)
		return
	}
	kp := &keyPair{certFile: cfg.GRPCTLSCertFile, keyFile: cfg.GRPCTLSKeyFile, log: log}
	if _, err := kp.get(nil); err != nil {
		log.Error(err, "Not serving the gRPC API on TCP", "address", cfg.GRPCAddress)
		return
	}
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", cfg.GRPCAddress)
	if err != nil {
		log.Error(err, "Failed to listen; the gRPC API is served on the unix socket only", "address", cfg.GRPCAddress)
		return
	}
	a.remote.mu.Lock()
	a.remote.grpcAddr = l.Addr().String()
	a.remote.mu.Unlock()
	gs.ServeListener(tls.NewListener(l, &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"h2"},
		GetCertificate: kp.get,
	}))
}

// GRPCAddress is where the gRPC API is served on TCP, once listening; ""
// when it is not.
func (a *Agent) GRPCAddress() string {
	a.remote.mu.Lock()
	defer a.remote.mu.Unlock()
	return a.remote.grpcAddr
}

// keyPair serves a certificate from files, re-read when their contents
// change (a rotated Secret), keeping the last good pair when the new one
// does not load.
type keyPair struct {
	certFile, keyFile string
	log               logr.Logger

	mu       sync.Mutex
	cert     *tls.Certificate
	certPEM  []byte
	keyPEM   []byte
	lastFail string
}

func (k *keyPair) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	certPEM, err1 := os.ReadFile(k.certFile)
	keyPEM, err2 := os.ReadFile(k.keyFile)
	if err1 == nil && err2 == nil && k.cert != nil && bytes.Equal(certPEM, k.certPEM) && bytes.Equal(keyPEM, k.keyPEM) {
		return k.cert, nil
	}
	var err error
	switch {
	case err1 != nil:
		err = fmt.Errorf("failed to read the gRPC serving certificate: %w", err1)
	case err2 != nil:
		err = fmt.Errorf("failed to read the gRPC serving key: %w", err2)
	default:
		var c tls.Certificate
		if c, err = tls.X509KeyPair(certPEM, keyPEM); err == nil {
			k.cert, k.certPEM, k.keyPEM, k.lastFail = &c, certPEM, keyPEM, ""
			return k.cert, nil
		}
		err = fmt.Errorf("failed to load the gRPC serving certificate %s and key %s: %w", k.certFile, k.keyFile, err)
	}
	if k.cert == nil {
		return nil, err
	}
	if msg := err.Error(); msg != k.lastFail {
		k.lastFail = msg
		k.log.Error(err, "Keeping the previous gRPC serving certificate")
	}
	return k.cert, nil
}
