package podstate

import (
	"context"
	"fmt"
	"maps"
	"sort"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/infera-io/temper/apis/wellknown"
)

// Options configure a Store.
type Options struct {
	Client   kubernetes.Interface
	NodeName string
	// Resync re-delivers every object periodically (0: never).
	Resync time.Duration
	Log    logr.Logger
}

// Store is the agent's view of its node and its pods.
type Store struct {
	o         Options
	pods      corelisters.PodLister
	nodes     corelisters.NodeLister
	factories []informers.SharedInformerFactory
	synced    []cache.InformerSynced
	changes   chan struct{}
}

// New builds the informers; nothing runs until Start.
func New(o Options) (*Store, error) {
	if o.NodeName == "" {
		return nil, fmt.Errorf("node name is empty: set NODE_NAME (the downward API's spec.nodeName)")
	}
	s := &Store{o: o, changes: make(chan struct{}, 1)}
	podFactory := informers.NewSharedInformerFactoryWithOptions(o.Client, o.Resync,
		informers.WithTweakListOptions(func(lo *metav1.ListOptions) {
			lo.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", o.NodeName).String()
		}))
	nodeFactory := informers.NewSharedInformerFactoryWithOptions(o.Client, o.Resync,
		informers.WithTweakListOptions(func(lo *metav1.ListOptions) {
			lo.FieldSelector = fields.OneTermEqualSelector("metadata.name", o.NodeName).String()
		}))
	podInf := podFactory.Core().V1().Pods()
	nodeInf := nodeFactory.Core().V1().Nodes()
	// Drop what the agent never reads before it is cached: managed fields
	// are most of a pod object's bytes.
	for _, inf := range []cache.SharedIndexInformer{podInf.Informer(), nodeInf.Informer()} {
		if err := inf.SetTransform(stripManagedFields); err != nil {
			return nil, fmt.Errorf("failed to set informer transform: %w", err)
		}
		update := func(any, any) { s.notify() }
		if inf == nodeInf.Informer() {
			update = func(oldObj, newObj any) {
				if NodeChangeMatters(oldObj, newObj) {
					s.notify()
				}
			}
		}
		if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(any) { s.notify() },
			UpdateFunc: update,
			DeleteFunc: func(any) { s.notify() },
		}); err != nil {
			return nil, fmt.Errorf("failed to add informer handler: %w", err)
		}
		s.synced = append(s.synced, inf.HasSynced)
	}
	s.pods, s.nodes = podInf.Lister(), nodeInf.Lister()
	s.factories = []informers.SharedInformerFactory{podFactory, nodeFactory}
	return s, nil
}

// NodeChangeMatters says whether a Node update can change what the agent
// computes from its Node: its labels, its annotations (safe mode, the
// priority mapping) but the two the agent itself publishes, its spec and
// its allocatable resources. The kubelet's status heartbeats (conditions,
// images, addresses) and the agent's own infera.io/agent-status and
// infera.io/tier-load patches do not; without this filter every heartbeat
// of either would recompute and re-apply the whole assignment.
func NodeChangeMatters(oldObj, newObj any) bool {
	o, ok1 := oldObj.(*corev1.Node)
	n, ok2 := newObj.(*corev1.Node)
	if !ok1 || !ok2 {
		return true
	}
	if o.UID != n.UID || !maps.Equal(o.Labels, n.Labels) || !equality.Semantic.DeepEqual(o.Spec, n.Spec) ||
		!equality.Semantic.DeepEqual(o.Status.Allocatable, n.Status.Allocatable) {
		return true
	}
	own := func(k string) bool { return k == wellknown.AgentStatusAnnotation || k == wellknown.TierLoadAnnotation }
	for k, v := range n.Annotations {
		if ov, ok := o.Annotations[k]; (!ok || ov != v) && !own(k) {
			return true
		}
	}
	for k := range o.Annotations {
		if _, ok := n.Annotations[k]; !ok && !own(k) {
			return true
		}
	}
	return false
}

func stripManagedFields(obj any) (any, error) {
	if m, ok := obj.(metav1.Object); ok {
		m.SetManagedFields(nil)
	}
	return obj, nil
}

func (s *Store) notify() {
	select {
	case s.changes <- struct{}{}:
	default: // a change is already pending: coalesce
	}
}

// Changes delivers one token after any number of changes since the last
// receive.
func (s *Store) Changes() <-chan struct{} { return s.changes }

// Start runs the informers and waits until both have synced.
func (s *Store) Start(ctx context.Context) error {
	for _, f := range s.factories {
		f.Start(ctx.Done())
	}
	if !cache.WaitForCacheSync(ctx.Done(), s.synced...) {
		return fmt.Errorf("failed to sync the pod and node informers of node %s: %w", s.o.NodeName, ctx.Err())
	}
	return nil
}

// Shutdown stops the informers.
func (s *Store) Shutdown() {
	for _, f := range s.factories {
		f.Shutdown()
	}
}

// Pods returns the pods bound to this node that can still run (neither
// Succeeded nor Failed), sorted by namespace and name. The objects are
// shared with the cache: do not modify them.
func (s *Store) Pods() []*corev1.Pod {
	all, err := s.pods.List(labels.Everything())
	if err != nil {
		return nil
	}
	out := all[:0:0]
	for _, p := range all {
		if p.Spec.NodeName != s.o.NodeName || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Namespace != out[j].Namespace {
			return out[i].Namespace < out[j].Namespace
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// Node returns this node's object, or nil while it is unknown.
func (s *Store) Node() *corev1.Node {
	n, err := s.nodes.Get(s.o.NodeName)
	if err != nil {
		return nil
	}
	return n
}
