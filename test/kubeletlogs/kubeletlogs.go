package kubeletlogs

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/infera-io/temper/test/testcerts"
)

// Host is the name the certificate is for and the Hostname address a Node
// needs (kube-apiserver's default --kubelet-preferred-address-types tries
// Hostname first).
const Host = "localhost"

// Server serves container logs. Set logs with Set.
type Server struct {
	// CA is the PEM file of the CA that signed the serving certificate:
	// pass it to kube-apiserver as --kubelet-certificate-authority.
	CA string
	// Port is the TCP port on 127.0.0.1.
	Port int

	mu   sync.Mutex
	logs map[string]string // namespace/pod/container → text
	srv  *http.Server
}

// Start listens on 127.0.0.1 with a certificate for Host written under dir.
func Start(dir string) (*Server, error) {
	files, err := testcerts.Write(dir, Host)
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(files.Cert, files.Key)
	if err != nil {
		return nil, fmt.Errorf("failed to load the stand-in kubelet's certificate: %w", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("failed to listen for the stand-in kubelet: %w", err)
	}
	s := &Server{CA: files.CA, Port: l.Addr().(*net.TCPAddr).Port, logs: map[string]string{}}
	s.srv = &http.Server{Handler: http.HandlerFunc(s.serve), ReadHeaderTimeout: 10 * time.Second,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}}
	go func() { _ = s.srv.Serve(tls.NewListener(l, s.srv.TLSConfig)) }()
	return s, nil
}

// Set makes text the log of namespace/pod's container.
func (s *Server) Set(namespace, pod, container, text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.logs[namespace+"/"+pod+"/"+container] = text
}

// Close stops serving.
func (s *Server) Close() error { return s.srv.Shutdown(context.Background()) }

// Point makes node's kubelet this server: a Hostname address of Host and
// the kubelet port. The caller updates the Node's status.
func (s *Server) Point(node *corev1.Node) {
	node.Status.Addresses = append(node.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeHostName, Address: Host})
	node.Status.DaemonEndpoints.KubeletEndpoint.Port = int32(s.Port)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, "/containerLogs/")
	if !ok || r.Method != http.MethodGet {
		http.NotFound(w, r)
		return
	}
	s.mu.Lock()
	text, ok := s.logs[rest]
	s.mu.Unlock()
	if !ok {
		http.Error(w, "container "+rest+" not found", http.StatusNotFound)
		return
	}
	if v := r.URL.Query().Get("tailLines"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			http.Error(w, "bad tailLines", http.StatusBadRequest)
			return
		}
		lines := strings.SplitAfter(text, "\n")
		if lines[len(lines)-1] == "" {
			lines = lines[:len(lines)-1]
		}
		text = strings.Join(lines[max(0, len(lines)-n):], "")
	}
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write([]byte(text))
}
