package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"sync"

	"google.golang.org/protobuf/types/known/timestamppb"
	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	inferav1 "github.com/infera-io/temper/apis/proto/infera/v1"
)

// Audit annotation keys the gateway sets on its events.
const (
	AuditReasonKey   = "infera.io/reason"
	AuditNodesKey    = "infera.io/nodes"
	AuditActionKey   = "infera.io/action"
	AuditDecisionKey = "authorization.k8s.io/decision"
	AuditSelectorKey = "infera.io/label-selector"
)

// Auditor writes one audit.k8s.io/v1 Event JSON line per request and keeps
// the most recent events in a bounded ring for GET /api/v1/auditEvents.
type Auditor struct {
	mu   sync.Mutex
	w    io.Writer // nil: no file
	ring []auditv1.Event
	next int
	n    int
	err  error // the first write error, reported once
}

// NewAuditor returns an Auditor writing to w (nil for none) and keeping
// size events.
func NewAuditor(w io.Writer, size int) *Auditor {
	return &Auditor{w: w, ring: make([]auditv1.Event, size)}
}

// Record stores ev and writes its line. A write error is returned once and
// the ring still keeps the event.
func (a *Auditor) Record(ev *auditv1.Event) error {
	line, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("failed to encode audit event: %w", err)
	}
	line = append(line, '\n')
	a.mu.Lock()
	defer a.mu.Unlock()
	a.ring[a.next] = *ev
	a.next = (a.next + 1) % len(a.ring)
	if a.n < len(a.ring) {
		a.n++
	}
	if a.w == nil {
		return nil
	}
	if _, err := a.w.Write(line); err != nil && a.err == nil {
		a.err = err
		return fmt.Errorf("failed to write audit log: %w", err)
	}
	return nil
}

// Recent returns the kept events, newest first.
func (a *Auditor) Recent() []auditv1.Event {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]auditv1.Event, 0, a.n)
	for i := 1; i <= a.n; i++ {
		out = append(out, a.ring[(a.next-i+len(a.ring))%len(a.ring)])
	}
	return out
}

// auditRecord is the event of one request while it is handled; the
// handlers fill in what only they know (object, verb, reason).
type auditRecord struct {
	mu sync.Mutex
	ev auditv1.Event
}

type auditKey struct{}

func withAudit(ctx context.Context, r *auditRecord) context.Context {
	return context.WithValue(ctx, auditKey{}, r)
}

func auditFrom(ctx context.Context) *auditRecord {
	r, _ := ctx.Value(auditKey{}).(*auditRecord)
	return r
}

// noteAttributes records what the call asked permission for.
func noteAttributes(ctx context.Context, attrs Attributes) {
	r := auditFrom(ctx)
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ev.Verb = attrs.Verb
	r.ev.ObjectRef = &auditv1.ObjectReference{Resource: attrs.Resource, Subresource: attrs.Subresource,
		Namespace: attrs.Namespace, Name: attrs.Name, APIGroup: Group}
}

// annotate adds an annotation to the request's audit event.
func annotate(ctx context.Context, key, value string) {
	r := auditFrom(ctx)
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ev.Annotations == nil {
		r.ev.Annotations = map[string]string{}
	}
	r.ev.Annotations[key] = value
}

func (r *auditRecord) setUser(u *authnv1.UserInfo) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ev.User = *u
}

// finish completes the event with the response and returns a copy.
func (r *auditRecord) finish(code int, message string, now metav1.MicroTime) *auditv1.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	ev := r.ev
	ev.Annotations = maps.Clone(r.ev.Annotations)
	ev.Stage = auditv1.StageResponseComplete
	ev.StageTimestamp = now
	st := metav1.StatusSuccess
	if code >= 400 {
		st = metav1.StatusFailure
	}
	ev.ResponseStatus = &metav1.Status{Code: int32(code), Status: st, Message: message}
	return &ev
}

// auditProto converts an audit event to its API form (the same JSON shape).
func auditProto(ev *auditv1.Event) *inferav1.AuditEvent {
	out := &inferav1.AuditEvent{
		Kind: "Event", ApiVersion: "audit.k8s.io/v1", Level: string(ev.Level), AuditId: string(ev.AuditID),
		Stage: string(ev.Stage), RequestUri: ev.RequestURI, Verb: ev.Verb,
		User:      &inferav1.AuditUser{Username: ev.User.Username, Uid: ev.User.UID, Groups: ev.User.Groups},
		SourceIps: ev.SourceIPs, UserAgent: ev.UserAgent, Annotations: ev.Annotations,
		RequestReceivedTimestamp: timestamppb.New(ev.RequestReceivedTimestamp.Time),
		StageTimestamp:           timestamppb.New(ev.StageTimestamp.Time),
	}
	if r := ev.ObjectRef; r != nil {
		out.ObjectRef = &inferav1.AuditObjectRef{Resource: r.Resource, Namespace: r.Namespace, Name: r.Name, ApiGroup: r.APIGroup, Subresource: r.Subresource}
	}
	if r := ev.ResponseStatus; r != nil {
		out.ResponseStatus = &inferav1.AuditResponseStatus{Code: r.Code, Message: r.Message, Status: r.Status}
	}
	return out
}
