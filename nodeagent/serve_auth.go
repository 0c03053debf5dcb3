// The agent reviews the tokens of callers of :9100 and grpc_address.
//
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

package nodeagent

import (
	"context"
	"net/http"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"

	"github.com/infera-io/temper/internal/kubeauth"
)

// The agent's resources in SubjectAccessReviews (group infera.io, the
// Node's name as the name), granted by the chart's ClusterRoles:
//
//	GET /observe           get nodes/observe
//	GET /audit             get nodes/audit
//	GET /debug/pprof/...   get nodes/pprof (only with [server] pprof =
//	                       true; no chart role grants it)
//	GET /metrics           get on the non-resource URL /metrics (as
//	                       controller-runtime's authenticated metrics)
//	gRPC on grpc_address   get nodes/agent (reads), watch nodes/agent
//	                       (WatchEvents), create nodes/agent (CaptureTrace)
const (
	authGroup       = "infera.io"
	agentSubresouce = "agent"
)

// remoteAccess is the agent's state for callers from other hosts.
type remoteAccess struct {
	once     sync.Once
	reviewer *kubeauth.Reviewer
	mu       sync.Mutex
	grpcAddr string // the TLS listener of the gRPC API, once listening
}

// reviewer returns the agent's TokenReview / SubjectAccessReview client,
// made once; nil without a Kubernetes client.
func (a *Agent) reviewer() *kubeauth.Reviewer {
	a.remote.once.Do(func() {
		if a.o.Client != nil {
			a.remote.reviewer = kubeauth.New(a.o.Client, kubeauth.Options{})
		}
	})
	return a.remote.reviewer
}

// httpGuard protects :9100 unless it listens on loopback only: every path
// it wraps needs a bearer token TokenReview accepts and SubjectAccessReview
// allows (401 / 403 otherwise). /healthz and /readyz are never wrapped (see
// server.HTTPOptions.Guard).
func (a *Agent) httpGuard(address string) func(string, http.Handler) http.Handler {
	if kubeauth.Loopback(address) {
		return nil
	}
	rv := a.reviewer()
	node := a.o.NodeName
	return func(path string, h http.Handler) http.Handler {
		attrs := kubeauth.Attributes{Verb: "get", Group: authGroup, Resource: "nodes",
			Subresource: strings.TrimPrefix(path, "/"), Name: node}
		switch path {
		case "/metrics":
			attrs = kubeauth.Attributes{Verb: "get", Path: path}
		case pprofPath:
			attrs.Subresource = "pprof"
		}
		if rv == nil {
			return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				http.Error(w, "the agent has no Kubernetes client to review tokens with", http.StatusServiceUnavailable)
			})
		}
		return rv.HTTP(h, func(*http.Request) kubeauth.Attributes { return attrs })
	}
}

// grpcGuard returns the interceptors of the gRPC server: calls over the
// unix socket pass (its file mode guards it), calls over grpc_address need
// a bearer token allowed on nodes/agent of this node.
func (a *Agent) grpcGuard() []grpc.ServerOption {
	rv := a.reviewer()
	if a.o.Config.Server.GRPCAddress == "" || rv == nil {
		return nil
	}
	node := a.o.NodeName
	return rv.GRPCServerOptions(func(method string) (kubeauth.Attributes, bool) {
		attrs := kubeauth.Attributes{Verb: "get", Group: authGroup, Resource: "nodes", Subresource: agentSubresouce, Name: node}
		switch method {
		case "/infera.v1.AgentService/GetLayeredConfig", "/infera.v1.AgentService/GetStatus", "/infera.v1.AgentService/ListPods":
		case "/infera.v1.AgentService/GetUsage":
			// Per-pod CPU usage: read like ListPods.
		case "/infera.v1.AgentService/WatchEvents":
			attrs.Verb = "watch"
		case "/infera.v1.AgentService/CaptureTrace":
			attrs.Verb = "create"
		case "/infera.v1.AgentService/GetObservation":
		default:
			return attrs, false
		}
		return attrs, true
	}, unixPeer)
}

// unixPeer: the call came over the unix socket.
func unixPeer(ctx context.Context) bool {
	p, ok := peer.FromContext(ctx)
	return ok && p.Addr != nil && p.Addr.Network() == "unix"
}
