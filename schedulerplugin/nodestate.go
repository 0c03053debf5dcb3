package schedulerplugin

import (
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"

	"github.com/infera-io/temper/apis/tiering"
	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/schedulerplugin/core"
)

// nodeState is what the plugin knows about one node at one NodeInfo
// generation. It is immutable once stored.
type nodeState struct {
	// node is the node object the state was computed from.
	node *corev1.Node
	// generation is the NodeInfo generation it was computed from. The
	// scheduler bumps it whenever the node object or its pods change, so
	// an equal generation means nothing the state depends on has changed.
	generation int64
	// value and present are the raw annotation.
	value   string
	present bool
	// load and parseErr are the parsed annotation.
	load     wellknown.TierLoad
	parseErr error
	// summary folds load with the pods bound since load.TS; valid when the
	// annotation parsed.
	summary core.Node
	// thresholds tier the node's pods: its infera.io/priority-mapping, or
	// the plugin's own when absent or unusable (mappingErr says why).
	thresholds tiering.Thresholds
	mappingErr error
	// recent holds the tier and request of each pod counted in summary, by
	// pod object: the scheduler shares pod objects until they change, so
	// the next generation classifies only the pods that are new.
	recent map[*corev1.Pod]core.Pod
}

// status judges the annotation's age at now. Only the age depends on the
// cycle; everything else was computed once for this generation. It runs
// for every node of every cycle, so the common cases skip CheckFresh,
// which builds an error for a stale value.
func (s *nodeState) status(now time.Time, maxAge time.Duration) core.Status {
	switch {
	case !s.present:
		return core.Missing
	case s.parseErr != nil:
		return core.Malformed
	case now.Sub(s.load.TS) > maxAge:
		return core.Stale
	case now.Before(s.load.TS) && s.load.CheckFresh(now, maxAge) != nil:
		// Dated in the future beyond the clock skew wellknown allows.
		return core.Stale
	}
	return core.Fresh
}

// nodeCache holds one nodeState per node, so that scoring 500 nodes parses
// no annotation and walks no pod list unless that node changed since the
// last cycle. The scheduler calls it from its parallel Filter and Score
// workers for every node of every cycle, so the lookup of an unchanged node
// is keyed by the node object's pointer (the scheduler's snapshot shares
// node objects until they change): it hashes no string, takes no lock and
// does not touch the node object. The map from node objects to slots is
// immutable and replaced (copied) only when a node object changes, which
// the agents' heartbeats make a few times a second at most in a 500-node
// cluster; a pod bound to a node changes only the state in its slot. A
// plain map read this way costs a fraction of a sync.Map load, and Score
// does it for every candidate node. Its size is bounded by the number of
// nodes: each node has one entry, replaced when the node object changes and
// dropped when the node is deleted.
type nodeCache struct {
	logger klog.Logger

	// byNode maps the *corev1.Node a state was computed from to the slot
	// holding its latest state. The map is never modified once stored.
	byNode atomic.Pointer[map[*corev1.Node]*nodeSlot]

	mu sync.Mutex
	// byName holds the latest state of each node by name, to find the
	// entry a changed node object replaces.
	byName map[string]*nodeState
	// malformed holds the nodes whose malformed annotation was logged, so
	// each is logged once until it parses again or the node goes.
	malformed map[string]struct{}
}

// nodeSlot holds the latest state computed for one node object.
type nodeSlot struct{ state atomic.Pointer[nodeState] }

func newNodeCache(logger klog.Logger) *nodeCache {
	c := &nodeCache{logger: logger, byName: map[string]*nodeState{}, malformed: map[string]struct{}{}}
	c.byNode.Store(&map[*corev1.Node]*nodeSlot{})
	return c
}

// replaceLocked publishes a copy of the node map without drop (when not
// nil) and with add (when not nil), and returns add's slot. c.mu is held.
func (c *nodeCache) replaceLocked(drop, add *corev1.Node) *nodeSlot {
	old := *c.byNode.Load()
	m := make(map[*corev1.Node]*nodeSlot, len(old)+1)
	for n, slot := range old {
		if n != drop {
			m[n] = slot
		}
	}
	var slot *nodeSlot
	if add != nil {
		slot = &nodeSlot{}
		m[add] = slot
	}
	c.byNode.Store(&m)
	return slot
}

// get returns the node's state for this NodeInfo, computing it if the
// NodeInfo changed since the cached one. It returns nil when the NodeInfo
// has no node.
func (c *nodeCache) get(ni fwk.NodeInfo, th tiering.Thresholds) *nodeState {
	node := ni.Node()
	if node == nil {
		return nil
	}
	gen := ni.GetGeneration()
	if slot := (*c.byNode.Load())[node]; slot != nil {
		// Generations are unique: the same one means the same node object
		// and the same pods.
		if s := slot.state.Load(); s != nil && s.generation == gen {
			return s
		}
	}

	c.mu.Lock()
	old := c.byName[node.Name]
	c.mu.Unlock()
	value, present := node.Annotations[wellknown.TierLoadAnnotation]
	s := &nodeState{node: node, generation: gen, value: value, present: present}
	s.thresholds, s.mappingErr = tiering.ForNode(node.Annotations, th)
	if present {
		if old != nil && old.present && old.value == value {
			// Only pods or other fields changed: keep the parse.
			s.load, s.parseErr = old.load, old.parseErr
		} else {
			s.load, s.parseErr = wellknown.ParseTierLoad(value)
		}
		if s.parseErr == nil {
			var known map[*corev1.Pod]core.Pod
			if old != nil && old.parseErr == nil && old.load.TS.Equal(s.load.TS) && old.thresholds == s.thresholds {
				known = old.recent
			}
			var pods []core.Pod
			pods, s.recent = recentPods(ni, s.load.TS, s.thresholds, known)
			s.summary = core.Summarize(s.load, pods, ni.GetAllocatable().GetMilliCPU())
		}
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	slot := (*c.byNode.Load())[node]
	if slot == nil {
		var drop *corev1.Node
		if prev := c.byName[node.Name]; prev != nil && prev.node != node {
			drop = prev.node
		}
		slot = c.replaceLocked(drop, node)
	}
	c.byName[node.Name] = s
	slot.state.Store(s)
	_, logged := c.malformed[node.Name]
	switch {
	case s.parseErr != nil && !logged:
		c.malformed[node.Name] = struct{}{}
		c.logger.Error(s.parseErr, "Ignoring malformed tier-load annotation: the node scores neutral and is never filtered until it parses", "node", klog.KObj(node))
	case s.parseErr == nil && logged:
		delete(c.malformed, node.Name)
	}
	if s.mappingErr != nil && (old == nil || old.mappingErr == nil || old.node.Annotations[wellknown.PriorityMappingAnnotation] != node.Annotations[wellknown.PriorityMappingAnnotation]) {
		c.logger.Error(s.mappingErr, "Ignoring the node's priority mapping: its pods are tiered by the plugin's priorityMapping", "node", klog.KObj(node))
	}
	return s
}

// thresholdsOf returns the thresholds of the named node's last seen state,
// or fallback when the node is unknown.
func (c *nodeCache) thresholdsOf(name string, fallback tiering.Thresholds) tiering.Thresholds {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s := c.byName[name]; s != nil {
		return s.thresholds
	}
	return fallback
}

// forget drops a deleted node.
func (c *nodeCache) forget(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if prev := c.byName[name]; prev != nil {
		c.replaceLocked(prev.node, nil)
	}
	delete(c.byName, name)
	delete(c.malformed, name)
}

// len is the number of entries (for tests).
func (c *nodeCache) len() int {
	return len(*c.byNode.Load())
}

// recentPods returns the tier and CPU request of the node's pods that the
// annotation dated ts cannot include yet: pods bound at or after ts, and
// pods the scheduler assumed onto the node but whose binding it has not
// seen confirmed. Counting them keeps a burst of pods from piling onto the
// node that looked emptiest when its agent last wrote. known holds pods
// classified for the same ts before; the second result is the same for
// this NodeInfo.
func recentPods(ni fwk.NodeInfo, ts time.Time, th tiering.Thresholds, known map[*corev1.Pod]core.Pod) ([]core.Pod, map[*corev1.Pod]core.Pod) {
	var (
		out []core.Pod
		m   map[*corev1.Pod]core.Pod
	)
	for _, pi := range ni.GetPods() {
		p := pi.GetPod()
		if boundAt, ok := scheduledAt(p); ok && boundAt.Before(ts) {
			continue
		}
		c, ok := known[p]
		if !ok {
			c = core.Pod{Tier: tiering.Classify(p, th).Tier, RequestMilli: tiering.PodCPU(p).RequestMilli}
		}
		if m == nil {
			m = make(map[*corev1.Pod]core.Pod, len(known)+1)
		}
		m[p] = c
		out = append(out, c)
	}
	return out, m
}

// scheduledAt is when the API server bound the pod: the binding sets the
// PodScheduled condition to True with that time (and so does a kubelet for
// pods created with spec.nodeName). A pod without it is assumed by the
// scheduler and not bound yet.
func scheduledAt(p *corev1.Pod) (time.Time, bool) {
	for i := range p.Status.Conditions {
		c := &p.Status.Conditions[i]
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionTrue && !c.LastTransitionTime.IsZero() {
			return c.LastTransitionTime.Time, true
		}
	}
	return time.Time{}, false
}
