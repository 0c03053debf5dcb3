package gateway

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"

	configv1alpha1 "github.com/infera-io/temper/apis/config/v1alpha1"
	inferav1 "github.com/infera-io/temper/apis/proto/infera/v1"
)

// errAgentsOff: the configuration has no agents section.
var errAgentsOff = errors.New("the gateway is not configured to reach the node agents (agents in its GatewayConfiguration)")

// agentPool reaches the node agents' gRPC API over TLS, as the gateway's
// ServiceAccount (its token as bearer; the agents check it with TokenReview
// and a SubjectAccessReview on nodes/agent). One connection per node,
// replaced when the node's agent moves.
type agentPool struct {
	cfg    configv1alpha1.GatewayAgents
	slices discoverylisters.EndpointSliceLister // EndpointSlice discovery
	creds  credentials.TransportCredentials
	token  *tokenFile

	mu    sync.Mutex
	conns map[string]agentConn // by node name
}

type agentConn struct {
	addr string
	conn *grpc.ClientConn
}

func newAgentPool(cfg configv1alpha1.GatewayAgents, slices discoverylisters.EndpointSliceLister) (*agentPool, error) {
	ca, err := os.ReadFile(cfg.CAFile)
	if err != nil {
		return nil, fmt.Errorf("failed to read agents.caFile: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("agents.caFile %s holds no PEM certificate", cfg.CAFile)
	}
	return &agentPool{
		cfg: cfg, slices: slices,
		creds: credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: cfg.ServerName, MinVersion: tls.VersionTLS12}),
		token: &tokenFile{path: cfg.TokenFile},
		conns: map[string]agentConn{},
	}, nil
}

// address finds the agent of node: its EndpointSlice address (the Service's
// endpoint whose nodeName is the node, at the slice's port named "grpc" or
// else agents.port) or the Node's InternalIP at agents.port.
func (p *agentPool) address(node *corev1.Node) (string, error) {
	port := strconv.Itoa(int(p.cfg.Port))
	if p.cfg.Discovery == configv1alpha1.AgentDiscoveryNodeAddress {
		for _, a := range node.Status.Addresses {
			if a.Type == corev1.NodeInternalIP && a.Address != "" {
				return net.JoinHostPort(a.Address, port), nil
			}
		}
		return "", fmt.Errorf("node %q has no InternalIP address to reach its agent at", node.Name)
	}
	slices, err := p.slices.EndpointSlices(p.cfg.ServiceNamespace).List(labels.SelectorFromSet(labels.Set{
		discoveryv1.LabelServiceName: p.cfg.ServiceName}))
	if err != nil {
		return "", fmt.Errorf("failed to list the EndpointSlices of Service %s/%s: %w", p.cfg.ServiceNamespace, p.cfg.ServiceName, err)
	}
	var notReady string
	for _, s := range slices {
		// The Service's port named "grpc", when the slice has it.
		slicePort := port
		for _, p := range s.Ports {
			if p.Name != nil && *p.Name == "grpc" && p.Port != nil {
				slicePort = strconv.Itoa(int(*p.Port))
			}
		}
		for _, e := range s.Endpoints {
			if e.NodeName == nil || *e.NodeName != node.Name || len(e.Addresses) == 0 {
				continue
			}
			addr := net.JoinHostPort(e.Addresses[0], slicePort)
			// An agent that is not ready (enforcement not verified) still
			// answers; prefer a ready one when a node has two (a rollout).
			if e.Conditions.Ready == nil || *e.Conditions.Ready {
				return addr, nil
			}
			notReady = addr
		}
	}
	if notReady != "" {
		return notReady, nil
	}
	return "", fmt.Errorf("no agent endpoint for node %q in Service %s/%s", node.Name, p.cfg.ServiceNamespace, p.cfg.ServiceName)
}

// client returns a client of node's agent and its address.
func (p *agentPool) client(node *corev1.Node) (inferav1.AgentServiceClient, string, error) {
	addr, err := p.address(node)
	if err != nil {
		return nil, "", err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.conns[node.Name]; ok {
		if c.addr == addr {
			return inferav1.NewAgentServiceClient(c.conn), addr, nil
		}
		_ = c.conn.Close()
		delete(p.conns, node.Name)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(p.creds), grpc.WithPerRPCCredentials(p.token))
	if err != nil {
		return nil, addr, fmt.Errorf("failed to set up a connection to %s: %w", addr, err)
	}
	p.conns[node.Name] = agentConn{addr: addr, conn: conn}
	return inferav1.NewAgentServiceClient(conn), addr, nil
}

// forget closes the connection of a node that is gone.
func (p *agentPool) forget(node string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.conns[node]; ok {
		_ = c.conn.Close()
		delete(p.conns, node)
	}
}

func (p *agentPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for n, c := range p.conns {
		_ = c.conn.Close()
		delete(p.conns, n)
	}
}

// agentError is a failed call to one agent, naming the node and address.
func agentError(node, addr string, err error) error {
	st := status.Convert(err)
	where := fmt.Sprintf("agent of node %q", node)
	if addr != "" {
		where += " at " + addr
	}
	code := st.Code()
	switch code {
	case codes.DeadlineExceeded, codes.Canceled:
		return status.Errorf(codes.Unavailable, "%s did not answer in time: %s", where, st.Message())
	case codes.Unauthenticated, codes.PermissionDenied:
		// The gateway's own identity was refused: a deployment problem,
		// not the caller's.
		return status.Errorf(codes.Unavailable, "%s refused the gateway (%s): %s", where, code, st.Message())
	case codes.Unknown:
		code = codes.Unavailable
	}
	return status.Errorf(code, "%s: %s", where, st.Message())
}

// tokenFile is the gateway's bearer token for the agents, re-read from its
// file once a minute (projected tokens rotate).
type tokenFile struct {
	path string
	mu   sync.Mutex
	tok  string
	read time.Time
}

func (t *tokenFile) get() (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tok != "" && time.Since(t.read) < time.Minute {
		return t.tok, nil
	}
	b, err := os.ReadFile(t.path)
	if err != nil {
		return "", fmt.Errorf("failed to read the gateway's token for the agents: %w", err)
	}
	t.tok, t.read = strings.TrimSpace(string(b)), time.Now()
	return t.tok, nil
}

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (t *tokenFile) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	tok, err := t.get()
	if err != nil {
		return nil, err
	}
	return map[string]string{"authorization": "Bearer " + tok}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials: the
// token never travels without TLS.
func (t *tokenFile) RequireTransportSecurity() bool { return true }
