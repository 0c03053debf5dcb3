package schedulerplugin

import (
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
)

// A critical pod that Filter rejected waits in kube-scheduler's
// unschedulable pool until an event that EventsToRegister names makes a
// queueing hint say Queue, or until the pool's flush (5 minutes by
// default). Every way the pod can become schedulable by this plugin's rule
// comes with an event (a new or changed annotation, allocatable or priority
// mapping on a node; a critical pod deleted or scaled down) except one: a
// fresh annotation that rejected the pod turning stale because its agent
// stopped confirming it. Nothing changes in the API then, and a stale
// annotation no longer filters (the plugin fails open), so the pod would
// wait for the flush. staleWatch closes that gap: Filter notes when each
// rejecting annotation turns stale, PostFilter (which runs only when no
// node passed) hands the earliest of those instants to staleWatch, and a
// timer activates the pod then.

// expirySlack is added to an annotation's stale instant: the age check is
// strict ("older than maxAge"), and the timer should fire after it.
const expirySlack = time.Second

// minExpiry is an atomic "earliest instant" in Unix nanoseconds, zero while
// nothing was noted. Filter runs in parallel over nodes.
type minExpiry struct{ v atomic.Int64 }

func (m *minExpiry) note(t time.Time) {
	n := t.UnixNano()
	for {
		cur := m.v.Load()
		if cur != 0 && cur <= n {
			return
		}
		if m.v.CompareAndSwap(cur, n) {
			return
		}
	}
}

func (m *minExpiry) get() (time.Time, bool) {
	n := m.v.Load()
	if n == 0 {
		return time.Time{}, false
	}
	return time.Unix(0, n), true
}

// staleWatch activates pods when the annotations that rejected them turn
// stale. It holds one entry per pod (the earliest instant), each dropped
// when its timer fires, so it holds at most the critical pods rejected
// within the last tierLoadMaxAge.
type staleWatch struct {
	logger   klog.Logger
	clock    clock.WithDelayedExecution
	activate func(klog.Logger, map[string]*corev1.Pod)

	// firing counts timer callbacks not yet done (tests wait on it).
	firing sync.WaitGroup

	mu      sync.Mutex
	pods    map[types.UID]watchedPod
	timer   clock.Timer
	timerAt time.Time
}

type watchedPod struct {
	pod *corev1.Pod
	at  time.Time
}

func newStaleWatch(logger klog.Logger, clk clock.WithDelayedExecution, activate func(klog.Logger, map[string]*corev1.Pod)) *staleWatch {
	return &staleWatch{logger: logger, clock: clk, activate: activate, pods: map[types.UID]watchedPod{}}
}

// add activates pod at at, or earlier if it is already watched for an
// earlier instant.
func (w *staleWatch) add(pod *corev1.Pod, at time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if e, ok := w.pods[pod.UID]; ok && !at.Before(e.at) {
		w.pods[pod.UID] = watchedPod{pod: pod, at: e.at}
		return
	}
	w.pods[pod.UID] = watchedPod{pod: pod, at: at}
	if w.timer == nil || at.Before(w.timerAt) {
		w.armLocked(at)
	}
}

func (w *staleWatch) armLocked(at time.Time) {
	if w.timer != nil {
		w.timer.Stop()
	}
	w.timerAt = at
	// The callback runs fire on its own goroutine: a fake clock calls it
	// with its own lock held, and fire reads the clock.
	w.timer = w.clock.AfterFunc(max(at.Sub(w.clock.Now()), 0), func() {
		w.firing.Add(1)
		go func() {
			defer w.firing.Done()
			w.fire()
		}()
	})
}

// fire activates the pods that are due and arms the timer for the next.
func (w *staleWatch) fire() {
	w.mu.Lock()
	now := w.clock.Now()
	var (
		due  map[string]*corev1.Pod
		next time.Time
	)
	for uid, e := range w.pods {
		if e.at.After(now) {
			if next.IsZero() || e.at.Before(next) {
				next = e.at
			}
			continue
		}
		if due == nil {
			due = map[string]*corev1.Pod{}
		}
		due[e.pod.Namespace+"/"+e.pod.Name] = e.pod
		delete(w.pods, uid)
	}
	w.timer = nil
	if !next.IsZero() {
		w.armLocked(next)
	}
	w.mu.Unlock()
	if len(due) > 0 {
		w.logger.V(4).Info("Activating pods: the tier-load annotations that filtered them are stale now", "pods", len(due))
		w.activate(w.logger, due)
	}
}

// len is the number of watched pods (for tests).
func (w *staleWatch) len() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.pods)
}
