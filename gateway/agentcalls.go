package gateway

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"

	inferav1 "github.com/infera-io/temper/apis/proto/infera/v1"
)

// maxAgentPodPages bounds how many ListPods pages one node listing asks
// its agent for (500 pods each).
const maxAgentPodPages = 20

// agentCall runs call against node's agent within the agent timeout.
func (s *Service) agentCall(ctx context.Context, node *corev1.Node, call func(context.Context, inferav1.AgentServiceClient) error) (string, error) {
	if s.agents == nil {
		return "", status.Error(codes.FailedPrecondition, errAgentsOff.Error())
	}
	c, addr, err := s.agents.client(node)
	if err != nil {
		return addr, status.Errorf(codes.Unavailable, "agent of node %q: %v", node.Name, err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Agents.Timeout.Duration)
	defer cancel()
	if err := call(ctx, c); err != nil {
		return addr, agentError(node.Name, addr, err)
	}
	return addr, nil
}

func reach(node, addr string, err error) *inferav1.AgentReach {
	r := &inferav1.AgentReach{Node: node, Address: addr, Reached: err == nil}
	if err != nil {
		r.Error = status.Convert(err).Message()
	}
	return r
}

// mergeAgentPods adds what node's agent enforces to pods (matched by uid)
// and says whether it could.
func (s *Service) mergeAgentPods(ctx context.Context, node *corev1.Node, pods []*inferav1.ClusterPod) *inferav1.AgentReach {
	var agentPods []*inferav1.Pod
	addr, err := s.agentCall(ctx, node, func(ctx context.Context, c inferav1.AgentServiceClient) error {
		tok := ""
		for range maxAgentPodPages {
			res, err := c.ListPods(ctx, &inferav1.ListPodsRequest{PageSize: 500, PageToken: tok})
			if err != nil {
				return err
			}
			agentPods = append(agentPods, res.GetPods()...)
			if tok = res.GetNextPageToken(); tok == "" {
				return nil
			}
		}
		return nil
	})
	if err != nil {
		return reach(node.Name, addr, err)
	}
	byUID := make(map[string]*inferav1.Pod, len(agentPods))
	for _, p := range agentPods {
		byUID[p.GetUid()] = p
	}
	for _, p := range pods {
		if a, ok := byUID[p.Uid]; ok {
			p.AgentTier, p.CgroupPath, p.Enforcement, p.EnforcementReason = a.GetTier(), a.GetCgroupPath(), a.GetEnforcement(), a.GetEnforcementReason()
		}
	}
	return reach(node.Name, addr, nil)
}

// GetNodeAgentStatus implements ClusterService.
func (s *Service) GetNodeAgentStatus(ctx context.Context, req *inferav1.GetNodeAgentStatusRequest) (*inferav1.GetStatusResponse, error) {
	if err := s.authorize(ctx, Attributes{Verb: "get", Resource: "nodes", Name: req.GetNode()}); err != nil {
		return nil, err
	}
	n, err := s.getNode(req.GetNode())
	if err != nil {
		return nil, err
	}
	var out *inferav1.GetStatusResponse
	_, err = s.agentCall(ctx, n, func(ctx context.Context, c inferav1.AgentServiceClient) error {
		var err error
		out, err = c.GetStatus(ctx, &inferav1.GetStatusRequest{})
		return err
	})
	return out, err
}

// GetNodeLayeredConfig implements ClusterService.
func (s *Service) GetNodeLayeredConfig(ctx context.Context, req *inferav1.GetNodeLayeredConfigRequest) (*inferav1.GetLayeredConfigResponse, error) {
	if err := s.authorize(ctx, Attributes{Verb: "get", Resource: "nodes", Name: req.GetNode()}); err != nil {
		return nil, err
	}
	n, err := s.getNode(req.GetNode())
	if err != nil {
		return nil, err
	}
	var out *inferav1.GetLayeredConfigResponse
	_, err = s.agentCall(ctx, n, func(ctx context.Context, c inferav1.AgentServiceClient) error {
		var err error
		out, err = c.GetLayeredConfig(ctx, &inferav1.GetLayeredConfigRequest{})
		return err
	})
	return out, err
}

// ListAgentStatuses implements ClusterService: one page of nodes, their
// agents asked at most agents.maxConcurrent at a time, each within the
// agent timeout; a node that fails carries its error.
func (s *Service) ListAgentStatuses(ctx context.Context, req *inferav1.ListAgentStatusesRequest) (*inferav1.ListAgentStatusesResponse, error) {
	if err := s.authorize(ctx, Attributes{Verb: "list", Resource: "nodes"}); err != nil {
		return nil, err
	}
	sel, err := parseSelector("label_selector", req.GetLabelSelector())
	if err != nil {
		return nil, err
	}
	ns, err := s.listNodes(sel)
	if err != nil {
		return nil, err
	}
	start, end, next, err := page(req.GetPageSize(), req.GetPageToken(), filterKey(req.GetLabelSelector()), len(ns))
	if err != nil {
		return nil, err
	}
	if s.agents == nil {
		return nil, status.Error(codes.FailedPrecondition, errAgentsOff.Error())
	}
	out := &inferav1.ListAgentStatusesResponse{NextPageToken: next, TotalSize: int32(len(ns)),
		Nodes: make([]*inferav1.NodeAgentStatus, end-start)}
	sem := make(chan struct{}, s.cfg.Agents.MaxConcurrent)
	var wg sync.WaitGroup
	for i, n := range ns[start:end] {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			var st *inferav1.GetStatusResponse
			addr, err := s.agentCall(ctx, n, func(ctx context.Context, c inferav1.AgentServiceClient) error {
				var err error
				st, err = c.GetStatus(ctx, &inferav1.GetStatusRequest{})
				return err
			})
			out.Nodes[i] = &inferav1.NodeAgentStatus{Agent: reach(n.Name, addr, err), Status: st}
		}()
	}
	wg.Wait()
	for _, n := range out.Nodes {
		if !n.Agent.Reached {
			out.Unreachable++
		}
	}
	return out, nil
}

// CaptureNodeTrace implements ClusterService.
func (s *Service) CaptureNodeTrace(ctx context.Context, req *inferav1.CaptureNodeTraceRequest) (*inferav1.CaptureTraceResponse, error) {
	if err := s.authorize(ctx, Attributes{Verb: "create", Resource: "traces", Name: req.GetNode()}); err != nil {
		return nil, err
	}
	n, err := s.getNode(req.GetNode())
	if err != nil {
		return nil, err
	}
	if s.agents == nil {
		return nil, status.Error(codes.FailedPrecondition, errAgentsOff.Error())
	}
	d := req.GetDurationSeconds()
	// The capture must end, and its answer arrive, within the request.
	maxD := int32((s.cfg.RequestTimeout.Duration - s.cfg.Agents.Timeout.Duration).Seconds())
	if d < 1 || d > maxD {
		return nil, status.Errorf(codes.InvalidArgument, "duration_seconds: %d is out of range [1, %d] (the gateway's request timeout less its agent timeout)", d, maxD)
	}
	c, addr, err := s.agents.client(n)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "agent of node %q: %v", n.Name, err)
	}
	cctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout.Duration)
	defer cancel()
	res, err := c.CaptureTrace(cctx, &inferav1.CaptureTraceRequest{Pod: req.GetPod(), DurationSeconds: d})
	if err != nil {
		return nil, agentError(n.Name, addr, err)
	}
	annotate(ctx, "infera.io/trace", res.GetPath())
	return res, nil
}

// WatchNodeEvents implements ClusterService: the node agent's WatchEvents,
// relayed until the caller or the agent ends it.
func (s *Service) WatchNodeEvents(req *inferav1.WatchNodeEventsRequest, stream grpc.ServerStreamingServer[inferav1.Event]) error {
	ctx := stream.Context()
	if err := s.authorize(ctx, Attributes{Verb: "watch", Resource: "events"}); err != nil {
		return err
	}
	if err := s.authorize(ctx, Attributes{Verb: "get", Resource: "nodes", Name: req.GetNode()}); err != nil {
		return err
	}
	n, err := s.getNode(req.GetNode())
	if err != nil {
		return err
	}
	if s.agents == nil {
		return status.Error(codes.FailedPrecondition, errAgentsOff.Error())
	}
	c, addr, err := s.agents.client(n)
	if err != nil {
		return status.Errorf(codes.Unavailable, "agent of node %q: %v", n.Name, err)
	}
	// Opening the stream must succeed within the agent timeout; the stream
	// itself lives as long as the caller's request.
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	opened := make(chan struct{})
	go func() {
		select {
		case <-opened:
		case <-sctx.Done():
		case <-time.After(s.cfg.Agents.Timeout.Duration):
			cancel()
		}
	}()
	up, err := c.WatchEvents(sctx, &inferav1.WatchEventsRequest{Types: req.GetTypes()})
	if err == nil {
		_, err = up.Header()
	}
	close(opened)
	if err != nil {
		return agentError(n.Name, addr, err)
	}
	if err := stream.SendHeader(nil); err != nil {
		return err
	}
	for {
		ev, err := up.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return agentError(n.Name, addr, err)
		}
		if err := stream.Send(ev); err != nil {
			return err
		}
	}
}

// agentEventsPath matches GET /api/v1/nodes/{node}/agentEvents.
func agentEventsNode(path string) (string, bool) {
	rest, ok := strings.CutPrefix(path, "/api/v1/nodes/")
	if !ok {
		return "", false
	}
	node, ok := strings.CutSuffix(rest, "/agentEvents")
	return node, ok && node != "" && !strings.Contains(node, "/")
}

// serveNodeEvents serves GET /api/v1/nodes/{node}/agentEvents as NDJSON
// through WatchNodeEvents.
func serveNodeEvents(mux *runtime.ServeMux, svc *Service) runtime.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, params map[string]string) {
		_, out := runtime.MarshalerForRequest(mux, r)
		req := &inferav1.WatchNodeEventsRequest{Node: params["node"]}
		for _, t := range r.URL.Query()["types"] {
			v, ok := inferav1.EventType_value[t]
			if !ok {
				runtime.HTTPError(r.Context(), mux, out, w, r, status.Errorf(codes.InvalidArgument, "types: unknown event type %q", t))
				return
			}
			req.Types = append(req.Types, inferav1.EventType(v))
		}
		st := &ndjsonStream[*inferav1.Event]{ctx: r.Context(), w: w, m: out}
		if err := svc.WatchNodeEvents(req, st); err != nil && !st.hdr {
			runtime.HTTPError(r.Context(), mux, out, w, r, err)
		} else if err != nil {
			st.writeError(err)
		}
	}
}
