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
//
// Filter and Score read it for every node of every cycle, so the fields
// they read come first and together (two cache lines); the rest is what the
// next generation's state is built from.
type nodeState struct {
	// generation is the NodeInfo generation it was computed from. The
	// scheduler bumps it whenever the node object or its pods change, so
	// an equal generation means nothing the state depends on has changed.
	generation int64
	// class is what the annotation is worth before its age is judged:
	// core.Missing, core.Malformed, or core.Fresh for one that parsed.
	class core.Status
	// ts is the parsed annotation's timestamp.
	ts time.Time
	// thresholds tier the node's pods: its infera.io/priority-mapping, or
	// the plugin's own when absent or unusable (mappingErr says why).
	thresholds tiering.Thresholds
	// summary folds the annotation with the pods bound since ts; valid
	// when the annotation parsed.
	summary core.Node

	// node is the node object the state was computed from.
	node *corev1.Node
	// value is the raw annotation; load and parseErr are its parse.
	value      string
	load       wellknown.TierLoad
	parseErr   error
	mappingErr error
	// base is summary without the recent pods: it depends on the node
	// object only, so a new generation that changed only pods reuses it.
	base core.Node
	// pods holds each of the NodeInfo's pods, in its order, with whether it
	// counts on top of the annotation and its tier and request: the next
	// generation reads only the pods that are new (the scheduler shares pod
	// objects until they change, and appends a pod it adds).
	pods []podEntry
}

// podEntry is one pod of a node as its state sees it.
type podEntry struct {
	pod *corev1.Pod
	// counted is true for a pod the annotation cannot include yet (see
	// podEntries); c is then its tier and CPU request.
	counted bool
	c       core.Pod
}

// status judges the annotation's age at now. Only the age depends on the
// cycle; everything else was computed once for this generation. It runs
// for every node of every cycle, so the common cases skip CheckFresh,
// which builds an error for a stale value.
func (s *nodeState) status(now time.Time, maxAge time.Duration) core.Status {
	switch {
	case s.class != core.Fresh:
		return s.class
	case now.Sub(s.ts) > maxAge:
		return core.Stale
	case now.Before(s.ts) && (wellknown.TierLoad{TS: s.ts}).CheckFresh(now, maxAge) != nil:
		// Dated in the future beyond the clock skew wellknown allows.
		return core.Stale
	}
	return core.Fresh
}

// withPods returns the state of the same node object with the pods of ni,
// at generation gen: the annotation's parse, the priority mapping and the
// base summary carry over, and only pods that are new since s are read.
func (s *nodeState) withPods(ni fwk.NodeInfo, gen int64) *nodeState {
	n := *s
	n.generation = gen
	if n.class == core.Fresh {
		n.pods = podEntries(ni, n.ts, n.thresholds, s.pods)
		n.summary = summarize(n.base, n.pods)
	}
	return &n
}

// summarize adds the counted pods to base (core.Summarize's order: the
// annotation's tiers, then the recent pods).
func summarize(base core.Node, pods []podEntry) core.Node {
	for i := range pods {
		if pods[i].counted {
			base.AddPod(pods[i].c)
		}
	}
	return base
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
// cluster; a pod bound to a node changes only the state in its slot, and
// that rebuild takes no lock either (withPods). A plain map read this way
// costs a fraction of a sync.Map load, and Score does it for every
// candidate node. Its size is bounded by the number of nodes: each node has
// one entry, replaced when the node object changes and dropped when the
// node is deleted.
type nodeCache struct {
	logger klog.Logger

	// byNode maps the *corev1.Node a state was computed from to the slot
	// holding its latest state. The map is never modified once stored.
	byNode atomic.Pointer[map[*corev1.Node]*nodeSlot]

	mu sync.Mutex
	// byName holds each node's current slot by name, to find the entry a
	// changed node object replaces.
	byName map[string]*nodeSlot
	// malformed holds the nodes whose malformed annotation was logged, so
	// each is logged once until it parses again or the node goes.
	malformed map[string]struct{}
}

// nodeSlot holds the latest state computed for one node object; it is
// published with a state, so state is never nil for a slot in byNode.
type nodeSlot struct{ state atomic.Pointer[nodeState] }

func newNodeCache(logger klog.Logger) *nodeCache {
	c := &nodeCache{logger: logger, byName: map[string]*nodeSlot{}, malformed: map[string]struct{}{}}
	c.byNode.Store(&map[*corev1.Node]*nodeSlot{})
	return c
}

// replaceLocked publishes a copy of the node map without drop (when not
// nil) and with add's slot (when add is not nil). c.mu is held.
func (c *nodeCache) replaceLocked(drop, add *corev1.Node, slot *nodeSlot) {
	old := *c.byNode.Load()
	m := make(map[*corev1.Node]*nodeSlot, len(old)+1)
	for n, sl := range old {
		if n != drop {
			m[n] = sl
		}
	}
	if add != nil {
		m[add] = slot
	}
	c.byNode.Store(&m)
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
		s := slot.state.Load()
		// Generations are unique: the same one means the same node object
		// and the same pods.
		if s.generation == gen {
			return s
		}
		// The same node object with other pods: workers that race here
		// compute the same state, or states of different generations
		// (a preemption dry run), each complete; the next get of the
		// other generation rebuilds it again.
		s = s.withPods(ni, gen)
		slot.state.Store(s)
		return s
	}
	return c.rebuild(ni, node, gen, th)
}

// rebuild computes the state of a node object the cache has not seen: a new
// node, or a changed annotation, label or status.
func (c *nodeCache) rebuild(ni fwk.NodeInfo, node *corev1.Node, gen int64, th tiering.Thresholds) *nodeState {
	var old *nodeState
	c.mu.Lock()
	if slot := c.byName[node.Name]; slot != nil {
		old = slot.state.Load()
	}
	c.mu.Unlock()

	value, present := node.Annotations[wellknown.TierLoadAnnotation]
	s := &nodeState{node: node, generation: gen, value: value, class: core.Missing}
	s.thresholds, s.mappingErr = tiering.ForNode(node.Annotations, th)
	if present {
		if old != nil && old.class != core.Missing && old.value == value {
			// Only pods or other fields changed: keep the parse.
			s.load, s.parseErr = old.load, old.parseErr
		} else {
			s.load, s.parseErr = wellknown.ParseTierLoad(value)
		}
		s.class = core.Fresh
		if s.parseErr != nil {
			s.class = core.Malformed
		} else {
			s.ts = s.load.TS
			s.base = core.Summarize(s.load, nil, ni.GetAllocatable().GetMilliCPU())
		}
		if s.class == core.Fresh {
			var known []podEntry
			if old != nil && old.class == core.Fresh && old.ts.Equal(s.ts) && old.thresholds == s.thresholds {
				known = old.pods
			}
			s.pods = podEntries(ni, s.ts, s.thresholds, known)
			s.summary = summarize(s.base, s.pods)
		}
	}
	slot := &nodeSlot{}
	slot.state.Store(s)

	c.mu.Lock()
	defer c.mu.Unlock()
	var drop *corev1.Node
	if prev := c.byName[node.Name]; prev != nil {
		drop = prev.state.Load().node
	}
	if cur := (*c.byNode.Load())[node]; cur != nil {
		// Another worker published this node object meanwhile.
		cur.state.Store(s)
		slot = cur
	} else {
		c.replaceLocked(drop, node, slot)
	}
	c.byName[node.Name] = slot
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
	if slot := c.byName[name]; slot != nil {
		return slot.state.Load().thresholds
	}
	return fallback
}

// forget drops a deleted node.
func (c *nodeCache) forget(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if slot := c.byName[name]; slot != nil {
		c.replaceLocked(slot.state.Load().node, nil, nil)
	}
	delete(c.byName, name)
	delete(c.malformed, name)
}

// len is the number of entries (for tests).
func (c *nodeCache) len() int {
	return len(*c.byNode.Load())
}

// podEntries reads the node's pods: a pod counts on top of the annotation
// dated ts when it was bound at or after ts, or when the scheduler assumed
// it onto the node but has not seen its binding confirmed. Counting them
// keeps a burst of pods from piling onto the node that looked emptiest when
// its agent last wrote. prev holds the entries of an earlier generation for
// the same ts and thresholds: a pod object found there is not read again.
// The scheduler appends the pods it adds and moves the last pod into the
// place of one it removes, so prev is matched position by position first.
func podEntries(ni fwk.NodeInfo, ts time.Time, th tiering.Thresholds, prev []podEntry) []podEntry {
	pods := ni.GetPods()
	if len(pods) == 0 {
		return nil
	}
	out := make([]podEntry, len(pods))
	for i, pi := range pods {
		p := pi.GetPod()
		if i < len(prev) && prev[i].pod == p {
			out[i] = prev[i]
			continue
		}
		if j := indexOfPod(prev, p); j >= 0 {
			out[i] = prev[j]
			continue
		}
		e := podEntry{pod: p}
		if boundAt, ok := scheduledAt(p); !ok || !boundAt.Before(ts) {
			e.counted = true
			e.c = core.Pod{Tier: tiering.Classify(p, th).Tier, RequestMilli: tiering.PodCPU(p).RequestMilli}
		}
		out[i] = e
	}
	return out
}

// indexOfPod returns the index of p's entry in entries, or -1. It scans
// from the end, where the scheduler's removals move pods from.
func indexOfPod(entries []podEntry, p *corev1.Pod) int {
	for j := len(entries) - 1; j >= 0; j-- {
		if entries[j].pod == p {
			return j
		}
	}
	return -1
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
