package schedulerplugin

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/utils/clock"
	"sigs.k8s.io/yaml"

	configv1alpha1 "github.com/infera-io/temper/apis/config/v1alpha1"
	"github.com/infera-io/temper/apis/tiering"
	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/schedulerplugin/core"
)

// Name is the plugin's name in a KubeSchedulerConfiguration profile.
const Name = "InferaDensity"

// ArgsKind is the kind of the plugin's args, by the scheduler's convention
// of the plugin name plus "Args".
const ArgsKind = Name + "Args"

// InferaDensity is the plugin. Build it with New.
type InferaDensity struct {
	logger     klog.Logger
	clock      clock.PassiveClock
	maxAge     time.Duration
	params     core.Params
	thresholds tiering.Thresholds
	nodes      *nodeCache
	// stale activates critical pods when the annotations that filtered
	// them turn stale (requeue.go); nil without a scheduler handle.
	stale *staleWatch
	// mappings indexes the nodes' priority mappings for PreFilter; nil
	// without a scheduler handle (PreFilter then scans the nodes).
	mappings *mappingIndex
	// last is the podState of the cycle in progress, so Filter and Score
	// find it without a CycleState lookup (readState).
	last atomic.Pointer[cycleEntry]
	// reasons holds the rejection texts Filter has built (reasonCache).
	reasons reasonCache
}

// cycleEntry pairs a CycleState with the podState written into it.
type cycleEntry struct {
	state fwk.CycleState
	s     *podState
}

var (
	_ fwk.PreFilterPlugin   = &InferaDensity{}
	_ fwk.FilterPlugin      = &InferaDensity{}
	_ fwk.PostFilterPlugin  = &InferaDensity{}
	_ fwk.PreScorePlugin    = &InferaDensity{}
	_ fwk.ScorePlugin       = &InferaDensity{}
	_ fwk.ScoreExtensions   = &InferaDensity{}
	_ fwk.EnqueueExtensions = &InferaDensity{}
	_ fwk.SignPlugin        = &InferaDensity{}
)

// New is the plugin factory the scheduler calls once per profile that
// enables the plugin. obj is the profile's args for the plugin: nil (all
// defaults), the raw object the scheduler leaves for an out-of-tree plugin
// (decoded strictly here), or an *InferaDensityArgs from an in-process
// caller. The args are defaulted and validated; invalid args fail the
// scheduler's start with an error naming the field.
func New(ctx context.Context, obj runtime.Object, h fwk.Handle) (fwk.Plugin, error) {
	args, err := DecodeArgs(obj)
	if err != nil {
		return nil, err
	}
	logger := klog.FromContext(ctx).WithValues("plugin", Name)
	pl := newPlugin(logger, args, clock.RealClock{})
	if h != nil {
		pl.stale = newStaleWatch(logger, clock.RealClock{}, h.Activate)
	}
	if h != nil && h.SharedInformerFactory() != nil {
		// Index the nodes' priority mappings, and forget deleted nodes so
		// the cache stays as large as the cluster.
		mappings := newMappingIndex()
		reg, err := h.SharedInformerFactory().Core().V1().Nodes().Informer().AddEventHandler(mappings.handler(pl.nodes.forget))
		if err != nil {
			return nil, fmt.Errorf("failed to watch nodes: %w", err)
		}
		mappings.synced = reg.HasSynced
		pl.mappings = mappings
	}
	logger.V(2).Info("Initialized plugin", "tierLoadMaxAge", pl.maxAge, "fenceReserveMilli", pl.params.FenceReserveMilli, "thresholds", pl.thresholds)
	return pl, nil
}

func newPlugin(logger klog.Logger, args *configv1alpha1.InferaDensityArgs, clk clock.PassiveClock) *InferaDensity {
	m := args.PriorityMapping
	return &InferaDensity{
		logger:     logger,
		clock:      clk,
		maxAge:     args.TierLoadMaxAge.Duration,
		params:     core.Params{FenceReserveMilli: *args.FenceReserveMilli},
		thresholds: tiering.Thresholds{Critical: m.Critical, High: m.High, Normal: m.Normal, Low: m.Low},
		nodes:      newNodeCache(logger),
	}
}

// DecodeArgs turns the scheduler's view of the plugin args into defaulted,
// validated InferaDensityArgs. Unknown fields are an error, so a typo in
// the configuration file does not silently fall back to a default.
func DecodeArgs(obj runtime.Object) (*configv1alpha1.InferaDensityArgs, error) {
	args := &configv1alpha1.InferaDensityArgs{}
	switch o := obj.(type) {
	case nil:
	case *configv1alpha1.InferaDensityArgs:
		if o != nil {
			args = o.DeepCopy()
		}
	case *runtime.Unknown:
		if len(o.Raw) > 0 {
			if err := yaml.UnmarshalStrict(o.Raw, args); err != nil {
				return nil, fmt.Errorf("failed to decode %s args: %w", Name, err)
			}
		}
	default:
		return nil, fmt.Errorf("failed to decode %s args: want %s, got %T", Name, ArgsKind, obj)
	}
	if args.Kind != "" && args.Kind != ArgsKind {
		return nil, fmt.Errorf("failed to decode %s args: kind is %q, want %q", Name, args.Kind, ArgsKind)
	}
	args.Default()
	if err := args.Validate(); err != nil {
		return nil, fmt.Errorf("invalid %s args: %w", Name, err)
	}
	return args, nil
}

// Name returns the plugin's name.
func (pl *InferaDensity) Name() string { return Name }

// stateKey is where the pod's tier and request live in the CycleState.
const stateKey fwk.StateKey = Name

// podState is computed once per scheduling cycle: the pod's tier and CPU
// request, and the time against which annotation ages are judged, so every
// node of the cycle is judged at the same instant.
//
// A node's infera.io/priority-mapping can give the pod another tier there
// than the plugin's own thresholds do (the node's agent tiers it by that
// mapping): tierOn classifies it once per distinct mapping.
type podState struct {
	pod core.Pod
	now time.Time
	raw *corev1.Pod
	th  tiering.Thresholds
	// byMapping caches tiering.Thresholds → wellknown.Tier; Filter and
	// Score run in parallel.
	byMapping sync.Map
	// staleAt is the earliest instant at which an annotation that filtered
	// the pod in this cycle turns stale (requeue.go).
	staleAt minExpiry
}

// Clone shares the state: what it holds never changes once written but
// byMapping, which is safe for concurrent use, and staleAt, an atomic
// minimum that a preemption dry run may as well lower.
func (s *podState) Clone() fwk.StateData { return s }

// on returns the pod as a node with thresholds th sees it.
func (s *podState) on(th tiering.Thresholds) core.Pod {
	if th == s.th {
		return s.pod
	}
	p := s.pod
	if v, ok := s.byMapping.Load(th); ok {
		p.Tier = v.(wellknown.Tier)
		return p
	}
	p.Tier = tiering.Classify(s.raw, th).Tier
	s.byMapping.Store(th, p.Tier)
	return p
}

func (pl *InferaDensity) podStateFor(pod *corev1.Pod) *podState {
	return &podState{
		pod: core.Pod{Tier: tiering.Classify(pod, pl.thresholds).Tier, RequestMilli: tiering.PodCPU(pod).RequestMilli},
		now: pl.clock.Now(),
		raw: pod,
		th:  pl.thresholds,
	}
}

// readState returns the state PreFilter or PreScore wrote, or computes it
// when neither ran for this CycleState. Filter and Score call it for every
// node: the state of the cycle in progress is found by comparing the
// CycleState's identity with the last one written (the scheduler runs one
// cycle of a profile at a time), without the CycleState's map lookup; a
// copy of the CycleState (a preemption dry run) is read the slow way.
func (pl *InferaDensity) readState(state fwk.CycleState, pod *corev1.Pod) *podState {
	if state == nil {
		return pl.podStateFor(pod)
	}
	if e := pl.last.Load(); e != nil && e.state == state && e.s.raw == pod {
		return e.s
	}
	if d, err := state.Read(stateKey); err == nil {
		if s, ok := d.(*podState); ok {
			return s
		}
	}
	return pl.podStateFor(pod)
}

// writeState stores the pod's state in the CycleState and remembers it as
// the cycle in progress.
func (pl *InferaDensity) writeState(state fwk.CycleState, s *podState) {
	state.Write(stateKey, s)
	pl.last.Store(&cycleEntry{state: state, s: s})
}

// PreFilter records the pod's tier and request. Only critical pods can be
// filtered, so for a pod that is not critical under the plugin's thresholds
// nor under the priority mapping of any node it returns Skip and Filter
// never runs.
func (pl *InferaDensity) PreFilter(_ context.Context, state fwk.CycleState, pod *corev1.Pod, nodes []fwk.NodeInfo) (*fwk.PreFilterResult, *fwk.Status) {
	s := pl.podStateFor(pod)
	pl.writeState(state, s)
	if s.pod.Tier == wellknown.TierCritical || pl.criticalOnSomeNode(s, nodes) {
		return nil, nil
	}
	return nil, fwk.NewStatus(fwk.Skip)
}

// criticalOnSomeNode reports whether some node's priority mapping makes the
// pod critical there. Each distinct annotation value is parsed once.
func (pl *InferaDensity) criticalOnSomeNode(s *podState, nodes []fwk.NodeInfo) bool {
	if s.pod.Tier == wellknown.TierSystem {
		return false // system whatever the mapping
	}
	if pl.mappings != nil {
		if values, ok := pl.mappings.values(); ok {
			for _, th := range values {
				if s.on(th).Tier == wellknown.TierCritical {
					return true
				}
			}
			return false
		}
	}
	var seen map[string]struct{}
	for _, ni := range nodes {
		n := ni.Node()
		if n == nil {
			continue
		}
		v, ok := n.Annotations[wellknown.PriorityMappingAnnotation]
		if !ok {
			continue
		}
		if _, done := seen[v]; done {
			continue
		}
		if seen == nil {
			seen = map[string]struct{}{}
		}
		seen[v] = struct{}{}
		if m, err := tiering.ParseNodeMapping(v); err == nil && s.on(m.Thresholds).Tier == wellknown.TierCritical {
			return true
		}
	}
	return false
}

// PreFilterExtensions returns nil: Filter reads the pods of the NodeInfo it
// is given, so there is no pre-computed state to adjust.
func (pl *InferaDensity) PreFilterExtensions() fwk.PreFilterExtensions { return nil }

// Filter rejects a critical pod from a node whose fresh annotation says its
// whole-core request cannot be fenced there. Preempting other pods frees no
// fence capacity, so the rejection is unresolvable.
func (pl *InferaDensity) Filter(ctx context.Context, state fwk.CycleState, pod *corev1.Pod, nodeInfo fwk.NodeInfo) *fwk.Status {
	s := pl.readState(state, pod)
	n := pl.nodes.get(nodeInfo, pl.thresholds)
	if n == nil {
		return nil
	}
	v := core.CheckFence(pl.params, s.on(n.thresholds), n.status(s.now, pl.maxAge), n.summary)
	if v.OK {
		return nil
	}
	// Only a fresh annotation filters; once it turns stale this node will
	// take the pod, whether or not anything else changes.
	s.staleAt.note(n.ts.Add(pl.maxAge + expirySlack))
	reason := pl.reasons.of(v)
	if v := klog.FromContext(ctx).V(5); v.Enabled() {
		v.Info("Filtered node", "plugin", Name, "ExtensionPoint", "Filter", "pod", klog.KObj(pod), "node", klog.KObj(nodeInfo.Node()), "reason", reason)
	}
	return fwk.NewStatus(fwk.UnschedulableAndUnresolvable, reason)
}

// reasonCache keeps the text of each distinct rejection, so Filter on a
// packed node formats no string: in a cluster of equal nodes a burst of
// critical pods meets the same few verdicts on every node. It holds at most
// maxReasons texts (verdicts differ only in whole-core counts, so a real
// cluster has far fewer); beyond that it formats each time.
type reasonCache struct {
	m    sync.Map // core.FenceVerdict → string
	size atomic.Int32
}

const maxReasons = 1024

func (c *reasonCache) of(v core.FenceVerdict) string {
	if r, ok := c.m.Load(v); ok {
		return r.(string)
	}
	r := v.Reason()
	if c.size.Load() < maxReasons {
		if _, loaded := c.m.LoadOrStore(v, r); !loaded {
			c.size.Add(1)
		}
	}
	return r
}

// PostFilter runs when no node passed Filter. It changes nothing in this
// cycle (it returns Unschedulable, as an informational PostFilter must),
// but if this plugin filtered the pod anywhere it has the pod activated
// when the first of the annotations that did turns stale: no cluster event
// marks that, and the pod would otherwise wait for the scheduler's
// unschedulable-pool flush.
func (pl *InferaDensity) PostFilter(_ context.Context, state fwk.CycleState, pod *corev1.Pod, _ fwk.NodeToStatusReader) (*fwk.PostFilterResult, *fwk.Status) {
	if pl.stale != nil {
		if at, ok := pl.readState(state, pod).staleAt.get(); ok {
			pl.stale.add(pod, at)
		}
	}
	return nil, fwk.NewStatus(fwk.Unschedulable)
}

// PreScore records the pod's state when PreFilter did not, and skips
// scoring for system-tier pods, which the tier rules do not place.
func (pl *InferaDensity) PreScore(_ context.Context, state fwk.CycleState, pod *corev1.Pod, _ []fwk.NodeInfo) *fwk.Status {
	s := pl.readState(state, pod)
	pl.writeState(state, s)
	if s.pod.Tier == wellknown.TierSystem {
		return fwk.NewStatus(fwk.Skip)
	}
	return nil
}

// Score rates the node for the pod (core.Score). A node whose annotation
// is missing, stale or malformed gets core.NoOpinion, which NormalizeScore
// replaces.
func (pl *InferaDensity) Score(_ context.Context, state fwk.CycleState, pod *corev1.Pod, nodeInfo fwk.NodeInfo) (int64, *fwk.Status) {
	s := pl.readState(state, pod)
	n := pl.nodes.get(nodeInfo, pl.thresholds)
	if n == nil {
		return core.NoOpinion, nil
	}
	return core.Score(pl.params, s.on(n.thresholds), n.status(s.now, pl.maxAge), n.summary), nil
}

// ScoreExtensions returns the plugin: NormalizeScore gives the nodes it
// could not judge the cycle's neutral score.
func (pl *InferaDensity) ScoreExtensions() fwk.ScoreExtensions { return pl }

// NormalizeScore replaces core.NoOpinion with the median score of the nodes
// that were judged in this cycle (core.Normalize), so unjudged nodes are
// neutral: the other plugins decide about them.
func (pl *InferaDensity) NormalizeScore(_ context.Context, _ fwk.CycleState, _ *corev1.Pod, scores fwk.NodeScoreList) *fwk.Status {
	core.NormalizeBy(scores, func(s *fwk.NodeScore) *int64 { return &s.Score })
	return nil
}

// signFragmentKey names what the plugin's result depends on, beyond the
// nodes: the pod's tier and CPU request, and what its tier under another
// node's priority mapping depends on.
const signFragmentKey = "v1.Pod.InferaTierAndCPURequest()"

// podSign is the signature value: pods with equal values get the same
// tier under every mapping and the same request.
type podSign struct {
	core.Pod
	// Priority is the pod's priority when its tier comes from it (zero for
	// a pod tiered by QoS class, whose tier no mapping changes).
	Priority int32
	// Annotation is its infera.io/tier value, which may lower the tier.
	Annotation string
}

// SignPod lets the scheduler batch pods with the same tier and CPU request
// (and the same priority and tier annotation, which decide their tier under
// a node's priority mapping): for them this plugin filters and scores every
// node alike.
func (pl *InferaDensity) SignPod(_ context.Context, pod *corev1.Pod) ([]fwk.SignFragment, *fwk.Status) {
	s := pl.podStateFor(pod)
	sign := podSign{Pod: s.pod, Annotation: pod.Annotations[wellknown.TierAnnotation]}
	if pod.Spec.Priority != nil && (pod.Spec.PriorityClassName != "" || *pod.Spec.Priority != 0) {
		sign.Priority = *pod.Spec.Priority
	}
	return []fwk.SignFragment{{Key: signFragmentKey, Value: sign}}, nil
}

// EventsToRegister lists what can make a critical pod this plugin filtered
// schedulable: a node added or its annotation or allocatable changed (new
// tier-load or priority mapping), or a critical pod leaving a node or
// scaling its requests down (fence freed). The one change without an event,
// a filtering annotation turning stale, is handled by PostFilter.
func (pl *InferaDensity) EventsToRegister(_ context.Context) ([]fwk.ClusterEventWithHint, error) {
	return []fwk.ClusterEventWithHint{
		{Event: fwk.ClusterEvent{Resource: fwk.Node, ActionType: fwk.Add | fwk.UpdateNodeAnnotation | fwk.UpdateNodeAllocatable}, QueueingHintFn: pl.isSchedulableAfterNodeChange},
		{Event: fwk.ClusterEvent{Resource: fwk.AssignedPod, ActionType: fwk.Delete | fwk.UpdatePodScaleDown}, QueueingHintFn: pl.isSchedulableAfterPodDeleted},
	}, nil
}

var errUnexpectedObject = errors.New("unexpected object")

// isSchedulableAfterNodeChange requeues the pod when the changed node could
// now take it by this plugin's rule. Pods bound since the annotation are not
// known here, so the hint errs towards Queue.
func (pl *InferaDensity) isSchedulableAfterNodeChange(logger klog.Logger, pod *corev1.Pod, _, newObj any) (fwk.QueueingHint, error) {
	node, ok := newObj.(*corev1.Node)
	if !ok {
		return fwk.Queue, fmt.Errorf("%w %T, want *v1.Node", errUnexpectedObject, newObj)
	}
	s := pl.podStateFor(pod)
	value, present := node.Annotations[wellknown.TierLoadAnnotation]
	load, status, _ := core.Assess(value, present, s.now, pl.maxAge)
	n := core.Summarize(load, nil, node.Status.Allocatable.Cpu().MilliValue())
	th, _ := tiering.ForNode(node.Annotations, pl.thresholds)
	if ok, reason := core.CanFence(pl.params, s.on(th), status, n); !ok {
		logger.V(5).Info("Node change does not make the pod schedulable", "plugin", Name, "pod", klog.KObj(pod), "node", klog.KObj(node), "reason", reason)
		return fwk.QueueSkip, nil
	}
	return fwk.Queue, nil
}

// isSchedulableAfterPodDeleted requeues the pod when a critical pod left a
// node or requested less CPU: its cores can be fenced again. That pod is
// tiered by its node's priority mapping when the plugin has seen that node.
func (pl *InferaDensity) isSchedulableAfterPodDeleted(_ klog.Logger, _ *corev1.Pod, oldObj, _ any) (fwk.QueueingHint, error) {
	deleted, ok := oldObj.(*corev1.Pod)
	if !ok {
		return fwk.Queue, fmt.Errorf("%w %T, want *v1.Pod", errUnexpectedObject, oldObj)
	}
	if tiering.Classify(deleted, pl.nodes.thresholdsOf(deleted.Spec.NodeName, pl.thresholds)).Tier != wellknown.TierCritical {
		return fwk.QueueSkip, nil
	}
	return fwk.Queue, nil
}
