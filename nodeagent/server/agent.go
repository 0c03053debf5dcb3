package server

import (
	"context"
	"errors"
	"time"
)

// Agent is what the gRPC server serves. The node agent implements it; every
// method must be safe for concurrent use and must answer from memory
// (CaptureTrace excepted), honouring ctx.
type Agent interface {
	// LayeredConfig returns the scx_layered configuration in force.
	LayeredConfig(ctx context.Context) (LayeredConfig, error)
	// Status returns the agent's current state.
	Status(ctx context.Context) (Status, error)
	// Pods returns every pod on the node, in any order. The server sorts,
	// filters, bounds and pages them; the slice is not modified.
	Pods(ctx context.Context) ([]Pod, error)
	// CaptureTrace runs one trace capture and returns when it is done or ctx
	// ends. The server validates the request, checks the pod is on the node
	// and lets one capture run at a time before calling it. Errors wrapping
	// ErrPodNotFound, ErrCaptureBusy, ErrInvalidArgument or
	// ErrTraceUnavailable map to the matching gRPC codes.
	CaptureTrace(ctx context.Context, req TraceRequest) (TraceResult, error)
	// Subscribe returns a channel of the agent's events with room for
	// buffer events, and a func that ends the subscription. The channel is
	// closed when the subscription ends (cancel called or ctx done). A
	// Broadcaster implements it.
	Subscribe(ctx context.Context, buffer int) (<-chan Event, func())
}

// Sentinel errors an Agent wraps (fmt.Errorf("...: %w", ErrPodNotFound)) so
// the server can choose the gRPC status code; the error text is what the
// client sees.
var (
	// ErrPodNotFound: the pod named in a request is not on this node.
	ErrPodNotFound = errors.New("pod not found on this node")
	// ErrCaptureBusy: another trace capture is running.
	ErrCaptureBusy = errors.New("another trace capture is running")
	// ErrInvalidArgument: a request field is out of range.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrTraceUnavailable: this node cannot capture traces (no BPF
	// privilege or BTF).
	ErrTraceUnavailable = errors.New("trace capture unavailable")
)

// LayeredConfig is the scx_layered configuration in force.
type LayeredConfig struct {
	// JSON is the configuration as handed to scx_layered; nil when none is
	// in force.
	JSON []byte
	// Hash is the lowercase hex SHA-256 of JSON; the server computes it
	// when empty.
	Hash string
	// Generation is the assignment generation.
	Generation int64
	// Backend is "scx_layered", "cgroup" or "none".
	Backend string
	// AppliedAt is when the configuration was last applied; zero if never.
	AppliedAt time.Time
}

// Status is the agent's current state.
type Status struct {
	// AgentStatus is the infera.io/agent-status value.
	AgentStatus string
	// Backend is "scx_layered", "cgroup" or "none".
	Backend string
	// SafeMode is true while the agent stands down.
	SafeMode bool
	// Generation is the assignment generation.
	Generation int64
	// EnforcementVerified is true when the enforcement was read back from
	// the kernel and matches the assignment.
	EnforcementVerified bool
	// EnforcementReason says why enforcement is not verified (or how it is).
	EnforcementReason string
	// Tiers is the usage of each tier, in the order to report.
	Tiers []TierUsage
	// NodeName is the Kubernetes Node name.
	NodeName string
	// Version is the agent's build version.
	Version string
}

// TierUsage is what one tier holds on the node.
type TierUsage struct {
	// Tier is the tier name.
	Tier string
	// Pods is the number of pods in the tier.
	Pods int
	// RequestMilli is the sum of CPU requests in millicores.
	RequestMilli int64
	// LimitMilli is the sum of CPU limits in millicores.
	LimitMilli int64
}

// EnforcementState is whether a pod's tier is applied.
type EnforcementState int

// The enforcement states of a pod.
const (
	// EnforcementUnknown is the zero value; the agent should not report it.
	EnforcementUnknown EnforcementState = iota
	// Enforced: applied and verified.
	Enforced
	// EnforcementPending: decided, not applied yet.
	EnforcementPending
	// EnforcementSkipped: deliberately not enforced; Reason says why.
	EnforcementSkipped
)

// PodRef names a pod.
type PodRef struct {
	Namespace string
	Name      string
	// UID, when set, must match the pod's UID.
	UID string
}

// String returns namespace/name.
func (r PodRef) String() string { return r.Namespace + "/" + r.Name }

// Pod is one pod on the node as the agent sees it.
type Pod struct {
	Namespace string
	Name      string
	UID       string
	// Tier is the tier name.
	Tier string
	// TierSource is "priority", "qos-default" or "annotation".
	TierSource string
	// QoSClass is "Guaranteed", "Burstable" or "BestEffort".
	QoSClass string
	// CgroupPath is the pod cgroup relative to the hierarchy root.
	CgroupPath string
	// Enforcement is whether the tier is applied.
	Enforcement EnforcementState
	// Reason says why Enforcement is pending or skipped.
	Reason string
}

// Ref returns the pod's reference.
func (p Pod) Ref() PodRef { return PodRef{Namespace: p.Namespace, Name: p.Name, UID: p.UID} }

// TraceRequest asks for one trace capture; the server has validated it.
type TraceRequest struct {
	// Pod is the pod to capture; nil captures the whole node.
	Pod *PodRef
	// Duration is how long to capture (1 s to Options.MaxTraceDuration).
	Duration time.Duration
}

// TraceResult describes a finished capture.
type TraceResult struct {
	ID        string
	Path      string
	SizeBytes int64
	Events    int64
	// Truncated is true when the capture hit its size cap.
	Truncated bool
	Start     time.Time
	// Took is how long the capture ran.
	Took time.Duration
}

// EventType is the kind of an agent event.
type EventType int

// The event types.
const (
	// EventUnknown is the zero value; never published.
	EventUnknown EventType = iota
	// EventAssignmentChanged: a pod's tier changed, or it arrived or left
	// (Pod, FromTier, ToTier, Generation).
	EventAssignmentChanged
	// EventSafeModeEntered: the agent stood down (Reason).
	EventSafeModeEntered
	// EventSafeModeLeft: the agent enforces again (Reason).
	EventSafeModeLeft
	// EventBackendStateChanged: the backend changed state (Backend,
	// PreviousStatus, Status, Reason).
	EventBackendStateChanged
	// EventDriftReasserted: a managed cgroup value was changed behind the
	// agent's back and written again (Pod, CgroupPath, File, Found,
	// Expected).
	EventDriftReasserted
	// EventLintViolation: the placement linter found a violation
	// (Invariant, Pod, Tier, Detail).
	EventLintViolation
)

// Event is one thing that happened in the agent. Only the fields listed
// for its Type are meaningful.
type Event struct {
	// Sequence numbers events from 1; the Broadcaster sets it.
	Sequence uint64
	// Time is when it happened; the Broadcaster sets it when zero.
	Time time.Time
	Type EventType
	// Message is a one-line description.
	Message string
	// Dropped is how many events the subscriber lost just before this one;
	// the Broadcaster sets it per subscriber.
	Dropped uint64

	Pod            *PodRef
	FromTier       string
	ToTier         string
	Generation     int64
	Backend        string
	PreviousStatus string
	Status         string
	Reason         string
	CgroupPath     string
	File           string
	Found          string
	Expected       string
	Invariant      string
	Tier           string
	Detail         string
}
