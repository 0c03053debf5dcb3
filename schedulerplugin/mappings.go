package schedulerplugin

import (
	"sync"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/infera-io/temper/apis/tiering"
	"github.com/infera-io/temper/apis/wellknown"
)

// mappingIndex keeps the distinct infera.io/priority-mapping values of the
// cluster's nodes, from node events, so PreFilter can ask "is this pod
// critical under any node's mapping?" by classifying it once per distinct
// value (usually none or a handful) instead of looking up an annotation on
// every node for every pod: that scan was the plugin's largest cost in the
// 500-node benchmark profile. Until the node handler has seen the
// informer's initial list, values reports false and PreFilter scans.
type mappingIndex struct {
	synced func() bool
	ready  atomic.Bool

	mu     sync.Mutex
	byNode map[string]string
	counts map[string]int
	// distinct holds the thresholds of the current distinct values that
	// parse (a malformed value tiers the node's pods by the plugin's own
	// thresholds), replaced on change.
	distinct atomic.Pointer[[]tiering.Thresholds]
}

func newMappingIndex() *mappingIndex {
	x := &mappingIndex{byNode: map[string]string{}, counts: map[string]int{}}
	x.distinct.Store(&[]tiering.Thresholds{})
	return x
}

// values returns the distinct mappings' thresholds, or false while the
// index is not complete yet.
func (x *mappingIndex) values() ([]tiering.Thresholds, bool) {
	if !x.ready.Load() {
		if x.synced == nil || !x.synced() {
			return nil, false
		}
		x.ready.Store(true)
	}
	return *x.distinct.Load(), true
}

// update records node's value (node nil: the named node was deleted).
func (x *mappingIndex) update(name string, node *corev1.Node) {
	value, present := "", false
	if node != nil {
		value, present = node.Annotations[wellknown.PriorityMappingAnnotation]
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	old, had := x.byNode[name]
	if had == present && old == value {
		return
	}
	if had {
		if x.counts[old]--; x.counts[old] == 0 {
			delete(x.counts, old)
		}
		delete(x.byNode, name)
	}
	if present {
		x.byNode[name] = value
		x.counts[value]++
	}
	distinct := make([]tiering.Thresholds, 0, len(x.counts))
	for v := range x.counts {
		if m, err := tiering.ParseNodeMapping(v); err == nil {
			distinct = append(distinct, m.Thresholds)
		}
	}
	x.distinct.Store(&distinct)
}

// handler feeds the index (and forget, for deleted nodes) from the node
// informer.
func (x *mappingIndex) handler(forget func(string)) cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if n, ok := obj.(*corev1.Node); ok {
				x.update(n.Name, n)
			}
		},
		UpdateFunc: func(_, obj any) {
			if n, ok := obj.(*corev1.Node); ok {
				x.update(n.Name, n)
			}
		},
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if n, ok := obj.(*corev1.Node); ok {
				x.update(n.Name, nil)
				forget(n.Name)
			}
		},
	}
}
