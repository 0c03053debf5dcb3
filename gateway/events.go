package gateway

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"

	inferav1 "github.com/infera-io/temper/apis/proto/infera/v1"
	"github.com/infera-io/temper/apis/wellknown"
)

// Stream limits: each subscriber has a bounded buffer, and the number of
// streams is capped.
const (
	streamBuffer = 64
	maxStreams   = 64
)

type subscriber struct {
	ch      chan *inferav1.ClusterEvent
	dropped uint64 // guarded by broadcaster.mu
}

// broadcaster fans fleet events out to streams without ever blocking the
// publisher: a full subscriber loses the event and is told how many it lost.
type broadcaster struct {
	mu   sync.Mutex
	seq  uint64
	subs map[*subscriber]struct{}
	now  func() time.Time
}

func newBroadcaster(now func() time.Time) *broadcaster {
	return &broadcaster{subs: map[*subscriber]struct{}{}, now: now}
}

func (b *broadcaster) subscribe() (*subscriber, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.subs) >= maxStreams {
		return nil, status.Errorf(codes.ResourceExhausted, "%d event streams are open, the most the gateway serves", maxStreams)
	}
	s := &subscriber{ch: make(chan *inferav1.ClusterEvent, streamBuffer)}
	b.subs[s] = struct{}{}
	return s, nil
}

func (b *broadcaster) unsubscribe(s *subscriber) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.subs, s)
}

func (b *broadcaster) publish(ev *inferav1.ClusterEvent) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.seq++
	ev.Sequence = b.seq
	ev.Time = timestamppb.New(b.now())
	for s := range b.subs {
		e := proto.CloneOf(ev)
		e.Dropped = s.dropped
		select {
		case s.ch <- e:
			s.dropped = 0
		default:
			s.dropped++
		}
	}
}

// nodeEventHandler turns Node changes into fleet events.
func nodeEventHandler(b *broadcaster) cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if n, ok := obj.(*corev1.Node); ok {
				b.publish(&inferav1.ClusterEvent{Type: "NodeAdded", Node: n.Name, Message: "node " + n.Name + " added"})
			}
		},
		UpdateFunc: func(oldObj, newObj any) {
			o, ok1 := oldObj.(*corev1.Node)
			n, ok2 := newObj.(*corev1.Node)
			if !ok1 || !ok2 {
				return
			}
			if a, z := o.Annotations[wellknown.AgentStatusAnnotation], n.Annotations[wellknown.AgentStatusAnnotation]; a != z {
				b.publish(&inferav1.ClusterEvent{Type: "AgentStatusChanged", Node: n.Name, Message: "agent status " + quote(a) + " → " + quote(z)})
			}
			if a, z := wellknown.IsSafeModeRequested(o.Annotations), wellknown.IsSafeModeRequested(n.Annotations); a != z {
				msg := "safe mode requested"
				if !z {
					msg = "safe-mode request withdrawn"
				}
				b.publish(&inferav1.ClusterEvent{Type: "SafeModeRequestChanged", Node: n.Name, Message: msg})
			}
		},
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if n, ok := obj.(*corev1.Node); ok {
				b.publish(&inferav1.ClusterEvent{Type: "NodeDeleted", Node: n.Name, Message: "node " + n.Name + " deleted"})
			}
		},
	}
}

func quote(s string) string {
	if s == "" {
		return "(none)"
	}
	return `"` + s + `"`
}

// WatchEvents implements ClusterService.
func (s *Service) WatchEvents(req *inferav1.WatchClusterEventsRequest, stream grpc.ServerStreamingServer[inferav1.ClusterEvent]) error {
	ctx := stream.Context()
	if err := s.authorize(ctx, Attributes{Verb: "watch", Resource: "events"}); err != nil {
		return err
	}
	sub, err := s.events.subscribe()
	if err != nil {
		return err
	}
	defer s.events.unsubscribe(sub)
	if err := stream.SendHeader(nil); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev := <-sub.ch:
			if req.GetNode() != "" && ev.Node != req.GetNode() {
				continue
			}
			if err := stream.Send(ev); err != nil {
				return err
			}
		}
	}
}

// ndjsonStream is an in-process grpc.ServerStreamingServer that writes each
// message as one JSON line, the format grpc-gateway uses for server
// streams ({"result": ...}), so the generated in-process registration's
// missing streaming support is filled without a gRPC hop.
type ndjsonStream[T proto.Message] struct {
	ctx context.Context
	w   http.ResponseWriter
	m   runtime.Marshaler
	hdr bool
}

func (n *ndjsonStream[T]) Send(ev T) error {
	b, err := n.m.Marshal(map[string]proto.Message{"result": ev})
	if err != nil {
		return err
	}
	if err := n.SendHeader(nil); err != nil {
		return err
	}
	if _, err := n.w.Write(append(b, '\n')); err != nil {
		return err
	}
	if f, ok := n.w.(http.Flusher); ok {
		f.Flush()
	}
	return nil
}

func (n *ndjsonStream[T]) SendHeader(metadata.MD) error {
	if !n.hdr {
		n.hdr = true
		n.w.Header().Set("Content-Type", "application/x-ndjson")
		n.w.Header().Set("Cache-Control", "no-cache")
		n.w.WriteHeader(http.StatusOK)
		if f, ok := n.w.(http.Flusher); ok {
			f.Flush()
		}
	}
	return nil
}
func (n *ndjsonStream[T]) SetHeader(metadata.MD) error { return nil }
func (n *ndjsonStream[T]) SetTrailer(metadata.MD)      {}
func (n *ndjsonStream[T]) Context() context.Context    { return n.ctx }
func (n *ndjsonStream[T]) SendMsg(m any) error {
	ev, ok := m.(T)
	if !ok {
		return status.Error(codes.Internal, "unexpected message type")
	}
	return n.Send(ev)
}
func (n *ndjsonStream[T]) RecvMsg(any) error {
	return status.Error(codes.Unimplemented, "server stream")
}

// writeError ends a started stream with grpc-gateway's error line
// ({"error": google.rpc.Status}).
func (n *ndjsonStream[T]) writeError(err error) {
	b, merr := n.m.Marshal(map[string]proto.Message{"error": status.Convert(err).Proto()})
	if merr != nil {
		return
	}
	_, _ = n.w.Write(append(b, '\n'))
	if f, ok := n.w.(http.Flusher); ok {
		f.Flush()
	}
}

// serveEvents serves GET /api/v1/events as NDJSON through WatchEvents.
func serveEvents(mux *runtime.ServeMux, svc *Service) runtime.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, _ map[string]string) {
		_, out := runtime.MarshalerForRequest(mux, r)
		req := &inferav1.WatchClusterEventsRequest{Node: r.URL.Query().Get("node")}
		st := &ndjsonStream[*inferav1.ClusterEvent]{ctx: r.Context(), w: w, m: out}
		if err := svc.WatchEvents(req, st); err != nil && !st.hdr {
			runtime.HTTPError(r.Context(), mux, out, w, r, err)
		}
	}
}
