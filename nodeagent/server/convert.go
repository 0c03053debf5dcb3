package server

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/timestamppb"

	inferav1 "github.com/infera-io/temper/apis/proto/infera/v1"
)

// Bounds of the strings the server echoes (documented in agent.proto).
const (
	maxNameLen   = 253
	maxUIDLen    = 128
	maxPathLen   = 4096
	maxReasonLen = 1024
	maxValueLen  = 256
	maxShortLen  = 64 // tier, tier source, QoS class, backend, invariant
)

// bound returns s as valid UTF-8 (each run of invalid bytes becomes one
// U+FFFD) of at most n bytes, cut at a character boundary. Hostile or
// corrupt values from the node must neither break proto marshalling (proto3
// strings are UTF-8) nor make a response unbounded.
func bound(s string, n int) string {
	if len(s) <= n && utf8.ValidString(s) {
		return s
	}
	if len(s) > 4*n {
		s = s[:4*n] // enough to fill n bytes; the rest is cut anyway
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

func layeredConfigToProto(c LayeredConfig) *inferav1.GetLayeredConfigResponse {
	r := &inferav1.GetLayeredConfigResponse{
		ConfigJson: string(c.JSON),
		ConfigHash: c.Hash,
		Generation: c.Generation,
		Backend:    bound(c.Backend, maxShortLen),
	}
	if len(c.JSON) > 0 && r.ConfigHash == "" {
		sum := sha256.Sum256(c.JSON)
		r.ConfigHash = hex.EncodeToString(sum[:])
	}
	r.ConfigHash = bound(r.ConfigHash, maxShortLen*2)
	if !c.AppliedAt.IsZero() {
		r.AppliedTime = timestamppb.New(c.AppliedAt)
	}
	return r
}

func statusToProto(s Status) *inferav1.GetStatusResponse {
	r := &inferav1.GetStatusResponse{
		AgentStatus:         bound(s.AgentStatus, maxReasonLen),
		Backend:             bound(s.Backend, maxShortLen),
		SafeMode:            s.SafeMode,
		Generation:          s.Generation,
		EnforcementVerified: s.EnforcementVerified,
		EnforcementReason:   bound(s.EnforcementReason, maxReasonLen),
		NodeName:            bound(s.NodeName, maxNameLen),
		Version:             bound(s.Version, maxReasonLen),
	}
	// A node has a handful of tiers; more is a bug, not a reason to send
	// an unbounded list.
	for i, t := range s.Tiers {
		if i == 16 {
			break
		}
		r.Tiers = append(r.Tiers, &inferav1.TierUsage{
			Tier:         bound(t.Tier, maxShortLen),
			Pods:         int32(min(t.Pods, 1<<31-1)),
			RequestMilli: t.RequestMilli,
			LimitMilli:   t.LimitMilli,
		})
	}
	return r
}

// boundPod returns p with every string bounded.
func boundPod(p Pod) Pod {
	p.Namespace = bound(p.Namespace, maxNameLen)
	p.Name = bound(p.Name, maxNameLen)
	p.UID = bound(p.UID, maxUIDLen)
	p.Tier = bound(p.Tier, maxShortLen)
	p.TierSource = bound(p.TierSource, maxShortLen)
	p.QoSClass = bound(p.QoSClass, maxShortLen)
	p.CgroupPath = bound(p.CgroupPath, maxPathLen)
	p.Reason = bound(p.Reason, maxReasonLen)
	return p
}

// podToProto converts a pod already passed through boundPod.
func podToProto(p Pod) *inferav1.Pod {
	return &inferav1.Pod{
		Namespace:         p.Namespace,
		Name:              p.Name,
		Uid:               p.UID,
		Tier:              p.Tier,
		TierSource:        p.TierSource,
		QosClass:          p.QoSClass,
		CgroupPath:        p.CgroupPath,
		Enforcement:       enforcementToProto(p.Enforcement),
		EnforcementReason: p.Reason,
	}
}

func enforcementToProto(e EnforcementState) inferav1.EnforcementState {
	switch e {
	case Enforced:
		return inferav1.EnforcementState_ENFORCEMENT_STATE_ENFORCED
	case EnforcementPending:
		return inferav1.EnforcementState_ENFORCEMENT_STATE_PENDING
	case EnforcementSkipped:
		return inferav1.EnforcementState_ENFORCEMENT_STATE_SKIPPED
	default:
		return inferav1.EnforcementState_ENFORCEMENT_STATE_UNSPECIFIED
	}
}

func podRefToProto(r *PodRef) *inferav1.PodRef {
	if r == nil {
		return nil
	}
	return &inferav1.PodRef{
		Namespace: bound(r.Namespace, maxNameLen),
		Name:      bound(r.Name, maxNameLen),
		Uid:       bound(r.UID, maxUIDLen),
	}
}

func traceResultToProto(t TraceResult) *inferav1.CaptureTraceResponse {
	r := &inferav1.CaptureTraceResponse{
		CaptureId:       bound(t.ID, maxReasonLen),
		Path:            bound(t.Path, maxPathLen),
		SizeBytes:       t.SizeBytes,
		Events:          t.Events,
		Truncated:       t.Truncated,
		DurationSeconds: t.Took.Seconds(),
	}
	if !t.Start.IsZero() {
		r.StartTime = timestamppb.New(t.Start)
	}
	return r
}

// eventTypes maps this package's event types to the proto's; the index is
// the EventType.
var eventTypes = [...]inferav1.EventType{
	EventUnknown:             inferav1.EventType_EVENT_TYPE_UNSPECIFIED,
	EventAssignmentChanged:   inferav1.EventType_EVENT_TYPE_ASSIGNMENT_CHANGED,
	EventSafeModeEntered:     inferav1.EventType_EVENT_TYPE_SAFE_MODE_ENTERED,
	EventSafeModeLeft:        inferav1.EventType_EVENT_TYPE_SAFE_MODE_LEFT,
	EventBackendStateChanged: inferav1.EventType_EVENT_TYPE_BACKEND_STATE_CHANGED,
	EventDriftReasserted:     inferav1.EventType_EVENT_TYPE_DRIFT_REASSERTED,
	EventLintViolation:       inferav1.EventType_EVENT_TYPE_LINT_VIOLATION,
}

func eventTypeToProto(t EventType) inferav1.EventType {
	if t < 0 || int(t) >= len(eventTypes) {
		return inferav1.EventType_EVENT_TYPE_UNSPECIFIED
	}
	return eventTypes[t]
}

func eventToProto(e Event) *inferav1.Event {
	r := &inferav1.Event{
		Sequence: e.Sequence,
		Type:     eventTypeToProto(e.Type),
		Message:  bound(e.Message, maxReasonLen),
		Dropped:  e.Dropped,
	}
	if !e.Time.IsZero() {
		r.Time = timestamppb.New(e.Time)
	}
	switch e.Type {
	case EventAssignmentChanged:
		r.Detail = &inferav1.Event_AssignmentChanged{AssignmentChanged: &inferav1.AssignmentChanged{
			Pod:        podRefToProto(e.Pod),
			FromTier:   bound(e.FromTier, maxShortLen),
			ToTier:     bound(e.ToTier, maxShortLen),
			Generation: e.Generation,
		}}
	case EventSafeModeEntered, EventSafeModeLeft:
		r.Detail = &inferav1.Event_SafeModeChanged{SafeModeChanged: &inferav1.SafeModeChanged{
			Reason: bound(e.Reason, maxReasonLen),
		}}
	case EventBackendStateChanged:
		r.Detail = &inferav1.Event_BackendStateChanged{BackendStateChanged: &inferav1.BackendStateChanged{
			Backend:        bound(e.Backend, maxShortLen),
			PreviousStatus: bound(e.PreviousStatus, maxReasonLen),
			Status:         bound(e.Status, maxReasonLen),
			Reason:         bound(e.Reason, maxReasonLen),
		}}
	case EventDriftReasserted:
		r.Detail = &inferav1.Event_DriftReasserted{DriftReasserted: &inferav1.DriftReasserted{
			Pod:        podRefToProto(e.Pod),
			CgroupPath: bound(e.CgroupPath, maxPathLen),
			File:       bound(e.File, maxNameLen),
			Found:      bound(e.Found, maxValueLen),
			Expected:   bound(e.Expected, maxValueLen),
		}}
	case EventLintViolation:
		r.Detail = &inferav1.Event_LintViolation{LintViolation: &inferav1.LintViolation{
			Invariant: bound(e.Invariant, maxShortLen),
			Pod:       podRefToProto(e.Pod),
			Tier:      bound(e.Tier, maxShortLen),
			Detail:    bound(e.Detail, maxReasonLen),
		}}
	}
	return r
}
