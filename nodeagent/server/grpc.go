package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/go-logr/logr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	inferav1 "github.com/infera-io/temper/apis/proto/infera/v1"
)

// Defaults of Options.
const (
	// DefaultSocketPath is where the agent serves its gRPC API (DESIGN.md §6).
	DefaultSocketPath = "/run/infera/agent.sock"
	// DefaultMaxStreams caps concurrent WatchEvents streams.
	DefaultMaxStreams = 16
	// DefaultPageSize is ListPods' page size when the request asks for 0.
	DefaultPageSize = 100
	// MaxPageSize caps ListPods' page size.
	MaxPageSize = 500
	// DefaultMaxTraceDuration caps CaptureTrace's duration.
	DefaultMaxTraceDuration = 60 * time.Second
	// DefaultShutdownTimeout bounds a graceful stop.
	DefaultShutdownTimeout = 5 * time.Second

	// maxRecvMsgSize bounds a request: the largest legitimate one is a few
	// hundred bytes.
	maxRecvMsgSize = 64 << 10
	// maxSendMsgSize bounds a response: a page of MaxPageSize bounded pods
	// is under 3 MiB, a layered config well under that.
	maxSendMsgSize = 8 << 20
)

// Options configures the gRPC server.
type Options struct {
	// SocketPath is the unix socket to serve on; DefaultSocketPath when
	// empty. Its directory is created with mode 0750 when missing; the
	// socket gets mode 0660.
	SocketPath string
	// SocketGID, when > 0, is the group given to the socket (clients in it
	// may connect); otherwise the socket keeps the agent's group.
	SocketGID int
	// Agent is what is served; required.
	Agent Agent
	// Logger receives the server's logs.
	Logger logr.Logger
	// MaxStreams caps concurrent WatchEvents streams; DefaultMaxStreams
	// when 0.
	MaxStreams int
	// StreamBuffer is the event buffer of each WatchEvents stream;
	// DefaultSubscriberBuffer when 0.
	StreamBuffer int
	// MaxTraceDuration caps CaptureTrace's duration_seconds;
	// DefaultMaxTraceDuration when 0. Whole seconds.
	MaxTraceDuration time.Duration
	// ShutdownTimeout bounds Stop's graceful phase when its context has no
	// deadline; DefaultShutdownTimeout when 0.
	ShutdownTimeout time.Duration
	// ServerOptions are added to the gRPC server's (interceptors that
	// guard the TCP listener of ServeListener).
	ServerOptions []grpc.ServerOption
}

// GRPCServer serves AgentService on a unix socket.
type GRPCServer struct {
	inferav1.UnimplementedAgentServiceServer

	opts   Options
	log    logr.Logger
	agent  Agent
	srv    *grpc.Server
	slots  chan struct{} // one token per open WatchEvents stream
	done   chan struct{} // closed by Stop: streams end
	stopMu sync.Once

	traceMu sync.Mutex
	tracing string // what the running capture captures; "" when none

	mu       sync.Mutex
	listener net.Listener
	sockInfo os.FileInfo
	serveErr chan error
	// extraErr holds one channel per ServeListener.
	extraErr []chan error
}

// NewGRPC returns a server for o; it does not listen yet (see Start).
func NewGRPC(o Options) (*GRPCServer, error) {
	if o.Agent == nil {
		return nil, errors.New("server options: Agent is required")
	}
	if o.SocketPath == "" {
		o.SocketPath = DefaultSocketPath
	}
	if o.MaxStreams <= 0 {
		o.MaxStreams = DefaultMaxStreams
	}
	if o.StreamBuffer <= 0 {
		o.StreamBuffer = DefaultSubscriberBuffer
	}
	if o.StreamBuffer > MaxSubscriberBuffer {
		return nil, fmt.Errorf("server options: StreamBuffer %d exceeds %d", o.StreamBuffer, MaxSubscriberBuffer)
	}
	if o.MaxTraceDuration <= 0 {
		o.MaxTraceDuration = DefaultMaxTraceDuration
	}
	if o.MaxTraceDuration < time.Second {
		return nil, fmt.Errorf("server options: MaxTraceDuration %s is under 1s", o.MaxTraceDuration)
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = DefaultShutdownTimeout
	}
	s := &GRPCServer{
		opts:  o,
		log:   o.Logger.WithName("grpc"),
		agent: o.Agent,
		slots: make(chan struct{}, o.MaxStreams),
		done:  make(chan struct{}),
	}
	s.srv = grpc.NewServer(append([]grpc.ServerOption{
		grpc.MaxRecvMsgSize(maxRecvMsgSize),
		grpc.MaxSendMsgSize(maxSendMsgSize),
		grpc.ConnectionTimeout(10 * time.Second),
		// Stop returns only once every handler has (no stream outlives it).
		grpc.WaitForHandlers(true),
		// Find dead clients of long streams; allow client pings while a
		// stream is open, but not a flood of them.
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 2 * time.Minute, Timeout: 20 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	}, o.ServerOptions...)...)
	inferav1.RegisterAgentServiceServer(s.srv, s)
	return s, nil
}

// SocketPath returns the socket the server listens on.
func (s *GRPCServer) SocketPath() string { return s.opts.SocketPath }

// Start listens on the socket (see listenUnix for how an existing socket is
// handled) and serves in the background until Stop.
func (s *GRPCServer) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.listener != nil {
		return errors.New("gRPC server already started")
	}
	l, fi, err := listenUnix(s.opts.SocketPath, s.opts.SocketGID)
	if err != nil {
		return err
	}
	s.listener, s.sockInfo = l, fi
	s.serveErr = make(chan error, 1)
	go func() { s.serveErr <- s.srv.Serve(l) }()
	s.log.Info("serving the agent API", "socket", s.opts.SocketPath)
	return nil
}

// Stop ends every WatchEvents stream, lets unary calls finish until ctx
// ends (or ShutdownTimeout when ctx has no deadline), then closes every
// connection and removes the socket. It returns the error Serve failed
// with, if any.
func (s *GRPCServer) Stop(ctx context.Context) error {
	s.stopMu.Do(func() { close(s.done) })
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.opts.ShutdownTimeout)
		defer cancel()
	}
	graceful := make(chan struct{})
	go func() {
		s.srv.GracefulStop()
		close(graceful)
	}()
	select {
	case <-graceful:
	case <-ctx.Done():
		// A client that never reads keeps its stream's Send blocked;
		// closing the connections unblocks it.
		s.srv.Stop()
		<-graceful
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	if s.serveErr != nil {
		if err := <-s.serveErr; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			errs = append(errs, fmt.Errorf("gRPC server on %s failed: %w", s.opts.SocketPath, err))
		}
		s.serveErr = nil
	}
	for _, c := range s.extraErr {
		if err := <-c; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			errs = append(errs, fmt.Errorf("gRPC server failed: %w", err))
		}
	}
	s.extraErr = nil
	if s.sockInfo != nil {
		if err := removeSocket(s.opts.SocketPath, s.sockInfo); err != nil {
			errs = append(errs, err)
		}
		s.sockInfo = nil
	}
	return errors.Join(errs...)
}

// Run starts the server, serves until ctx ends, then stops it within
// ShutdownTimeout.
func (s *GRPCServer) Run(ctx context.Context) error {
	if err := s.Start(); err != nil {
		return err
	}
	<-ctx.Done()
	return s.Stop(context.WithoutCancel(ctx))
}

// GetLayeredConfig implements AgentService.
func (s *GRPCServer) GetLayeredConfig(ctx context.Context, _ *inferav1.GetLayeredConfigRequest) (*inferav1.GetLayeredConfigResponse, error) {
	c, err := s.agent.LayeredConfig(ctx)
	if err != nil {
		return nil, s.toStatus("get the layered config", err)
	}
	if !utf8.Valid(c.JSON) {
		return nil, status.Error(codes.Internal, "the layered config in force is not valid UTF-8 JSON")
	}
	return layeredConfigToProto(c), nil
}

// GetStatus implements AgentService.
func (s *GRPCServer) GetStatus(ctx context.Context, _ *inferav1.GetStatusRequest) (*inferav1.GetStatusResponse, error) {
	st, err := s.agent.Status(ctx)
	if err != nil {
		return nil, s.toStatus("get the agent status", err)
	}
	return statusToProto(st), nil
}

// ListPods implements AgentService.
func (s *GRPCServer) ListPods(ctx context.Context, req *inferav1.ListPodsRequest) (*inferav1.ListPodsResponse, error) {
	q, err := parseListPods(req)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	pods, err := s.agent.Pods(ctx)
	if err != nil {
		return nil, s.toStatus("list the node's pods", err)
	}
	page, next, total := q.page(pods)
	r := &inferav1.ListPodsResponse{NextPageToken: next, TotalSize: int32(min(total, 1<<31-1))}
	for _, p := range page {
		r.Pods = append(r.Pods, podToProto(p))
	}
	return r, nil
}

// CaptureTrace implements AgentService.
func (s *GRPCServer) CaptureTrace(ctx context.Context, req *inferav1.CaptureTraceRequest) (*inferav1.CaptureTraceResponse, error) {
	tr, err := s.validateTrace(req)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	target := "the whole node"
	if tr.Pod != nil {
		target = fmt.Sprintf("pod %q", tr.Pod.String())
		if err := s.checkPodOnNode(ctx, *tr.Pod); err != nil {
			return nil, err
		}
	}

	s.traceMu.Lock()
	if s.tracing != "" {
		running := s.tracing
		s.traceMu.Unlock()
		return nil, status.Errorf(codes.ResourceExhausted,
			"cannot capture %s: a capture of %s is running; one capture at a time per node, retry when it ends", target, running)
	}
	s.tracing = target
	s.traceMu.Unlock()
	defer func() {
		s.traceMu.Lock()
		s.tracing = ""
		s.traceMu.Unlock()
	}()

	s.log.Info("capturing a trace", "target", target, "duration", tr.Duration)
	res, err := s.agent.CaptureTrace(ctx, tr)
	if err != nil {
		return nil, s.toStatus("capture a trace of "+target, err)
	}
	return traceResultToProto(res), nil
}

func (s *GRPCServer) validateTrace(req *inferav1.CaptureTraceRequest) (TraceRequest, error) {
	maxSec := int32(s.opts.MaxTraceDuration / time.Second)
	if d := req.GetDurationSeconds(); d < 1 || d > maxSec {
		return TraceRequest{}, fmt.Errorf("duration_seconds: must be between 1 and %d, got %d", maxSec, d)
	}
	tr := TraceRequest{Duration: time.Duration(req.GetDurationSeconds()) * time.Second}
	if p := req.GetPod(); p != nil {
		for _, f := range []struct {
			name, v  string
			required bool
			max      int
		}{
			{"pod.namespace", p.GetNamespace(), true, maxNameLen},
			{"pod.name", p.GetName(), true, maxNameLen},
			{"pod.uid", p.GetUid(), false, maxUIDLen},
		} {
			switch {
			case f.required && f.v == "":
				return TraceRequest{}, fmt.Errorf("%s: required when pod is set (leave pod unset to capture the whole node)", f.name)
			case len(f.v) > f.max:
				return TraceRequest{}, fmt.Errorf("%s: %d bytes, longer than the %d allowed", f.name, len(f.v), f.max)
			}
		}
		tr.Pod = &PodRef{Namespace: p.GetNamespace(), Name: p.GetName(), UID: p.GetUid()}
	}
	return tr, nil
}

// checkPodOnNode answers NOT_FOUND, naming the pod, when ref is not on this
// node (or has another UID).
func (s *GRPCServer) checkPodOnNode(ctx context.Context, ref PodRef) error {
	pods, err := s.agent.Pods(ctx)
	if err != nil {
		return s.toStatus("list the node's pods", err)
	}
	for _, p := range pods {
		if p.Namespace != ref.Namespace || p.Name != ref.Name {
			continue
		}
		if ref.UID != "" && p.UID != ref.UID {
			return status.Errorf(codes.NotFound, "pod %q with uid %q is not on this node (the pod of that name has uid %q)",
				ref.String(), ref.UID, bound(p.UID, maxUIDLen))
		}
		return nil
	}
	return status.Errorf(codes.NotFound, "pod %q is not on this node", ref.String())
}

// WatchEvents implements AgentService.
func (s *GRPCServer) WatchEvents(req *inferav1.WatchEventsRequest, stream grpc.ServerStreamingServer[inferav1.Event]) error {
	want, err := eventFilter(req)
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	select {
	case s.slots <- struct{}{}:
		defer func() { <-s.slots }()
	default:
		return status.Errorf(codes.ResourceExhausted,
			"too many WatchEvents streams: %d are open, the cap is %d", s.opts.MaxStreams, s.opts.MaxStreams)
	}
	ctx := stream.Context()
	events, cancel := s.agent.Subscribe(ctx, s.opts.StreamBuffer)
	defer cancel()
	// Headers tell the client the subscription is live.
	if err := stream.SendHeader(nil); err != nil {
		return err
	}
	var carried uint64 // dropped counts of events the filter skipped
	for {
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-s.done:
			return status.Error(codes.Unavailable, "the agent API is shutting down")
		case ev, ok := <-events:
			if !ok {
				return status.Error(codes.Unavailable, "the agent ended the event subscription (too many subscribers or shutting down)")
			}
			if want != nil && !want[ev.Type] {
				carried += ev.Dropped
				continue
			}
			ev.Dropped += carried
			carried = 0
			// Send blocks while the client does not read (HTTP/2 flow
			// control); meanwhile the subscription's bounded buffer fills
			// and further events are dropped and counted, never queued.
			if err := stream.Send(eventToProto(ev)); err != nil {
				return err
			}
		}
	}
}

// eventFilter returns the wanted types, or nil for all.
func eventFilter(req *inferav1.WatchEventsRequest) (map[EventType]bool, error) {
	types := req.GetTypes()
	if len(types) == 0 {
		return nil, nil
	}
	if len(types) > 64 {
		return nil, fmt.Errorf("types: %d entries, at most 64 allowed", len(types))
	}
	want := map[EventType]bool{}
	for i, t := range types {
		found := false
		for et, pt := range eventTypes {
			if pt == t && et != int(EventUnknown) {
				want[EventType(et)] = true
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("types[%d]: unknown event type %d", i, int32(t))
		}
	}
	return want, nil
}

// toStatus maps an Agent error to a gRPC status whose message says what
// failed.
func (s *GRPCServer) toStatus(what string, err error) error {
	var code codes.Code
	switch {
	case errors.Is(err, ErrPodNotFound):
		code = codes.NotFound
	case errors.Is(err, ErrCaptureBusy):
		code = codes.ResourceExhausted
	case errors.Is(err, ErrInvalidArgument):
		code = codes.InvalidArgument
	case errors.Is(err, ErrTraceUnavailable):
		code = codes.FailedPrecondition
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	default:
		code = codes.Internal
		s.log.Error(err, "agent call failed", "call", what)
	}
	return status.Errorf(code, "failed to %s: %s", what, bound(err.Error(), maxReasonLen))
}
