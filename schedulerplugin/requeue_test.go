package schedulerplugin

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/infera-io/temper/apis/wellknown"
)

// activations records what staleWatch activated.
type activations struct {
	mu   sync.Mutex
	pods []string
}

func (a *activations) activate(_ klog.Logger, pods map[string]*corev1.Pod) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for k := range pods {
		a.pods = append(a.pods, k)
	}
}

func (a *activations) take() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := a.pods
	a.pods = nil
	return out
}

// TestFilteredPodActivatedWhenAnnotationTurnsStale: a critical pod that
// every node filtered on a fresh annotation is activated when the earliest
// of those annotations turns stale (then that node no longer filters), and
// not before; a pod that some node could take is not watched at all.
func TestFilteredPodActivatedWhenAnnotationTurnsStale(t *testing.T) {
	clk := clocktesting.NewFakeClock(t0)
	pl := newTestPlugin(t, nil, t0)
	acts := &activations{}
	pl.stale = newStaleWatch(logr.Discard(), clk, acts.activate)
	full := map[wellknown.Tier]wellknown.TierUsage{wellknown.TierCritical: {Pods: 3, RequestMilli: 6000}}
	// Confirmed 100 s and 20 s ago: stale at t0+80s and t0+160s (max age 180 s).
	older := nodeInfo("older", 8000, tierLoad(t, t0.Add(-100*time.Second), 8000, full))
	newer := nodeInfo("newer", 8000, tierLoad(t, t0.Add(-20*time.Second), 8000, full))
	crit := makePod("crit", wellknown.TierCritical, 1000, time.Time{})

	ctx := context.Background()
	filterAll := func(pod *corev1.Pod, nodes ...fwk.NodeInfo) bool {
		state := framework.NewCycleState()
		if _, st := pl.PreFilter(ctx, state, pod, nodes); st.IsSkip() {
			return true
		}
		feasible := false
		for _, ni := range nodes {
			feasible = pl.Filter(ctx, state, pod, ni).IsSuccess() || feasible
		}
		if !feasible {
			if _, st := pl.PostFilter(ctx, state, pod, nil); st.Code() != fwk.Unschedulable {
				t.Fatalf("PostFilter status %v, want Unschedulable", st)
			}
		}
		return feasible
	}
	if filterAll(crit, older, newer) {
		t.Fatal("a node took the critical pod; want both full")
	}
	if pl.stale.len() != 1 {
		t.Fatalf("%d pods watched, want 1", pl.stale.len())
	}
	clk.Step(80 * time.Second) // older is exactly 180 s old: not stale yet
	pl.stale.firing.Wait()
	if got := acts.take(); len(got) != 0 {
		t.Fatalf("activated %v before any annotation was stale", got)
	}
	clk.Step(expirySlack)
	pl.stale.firing.Wait()
	if d := cmp.Diff([]string{"default/crit"}, acts.take()); d != "" {
		t.Errorf("activations after the older annotation turned stale (-want +got):\n%s", d)
	}
	if pl.stale.len() != 0 {
		t.Errorf("%d pods still watched after activation", pl.stale.len())
	}
	clk.Step(time.Hour)
	pl.stale.firing.Wait()
	if got := acts.take(); len(got) != 0 {
		t.Errorf("activated again: %v", got)
	}

	// A node with room: the pod is schedulable, nothing to watch.
	roomy := nodeInfo("roomy", 8000, tierLoad(t, t0, 8000, nil))
	if !filterAll(makePod("crit-2", wellknown.TierCritical, 1000, time.Time{}), older, roomy) {
		t.Fatal("roomy node filtered the pod")
	}
	if pl.stale.len() != 0 {
		t.Errorf("%d pods watched, want none: the pod was schedulable", pl.stale.len())
	}
}

// TestStaleWatchKeepsTheEarliestInstant: a pod noted twice is activated at
// the earlier instant; pods due at different instants fire separately.
func TestStaleWatchKeepsTheEarliestInstant(t *testing.T) {
	clk := clocktesting.NewFakeClock(t0)
	acts := &activations{}
	w := newStaleWatch(logr.Discard(), clk, acts.activate)
	a := makePod("a", wellknown.TierCritical, 1000, time.Time{})
	b := makePod("b", wellknown.TierCritical, 1000, time.Time{})
	w.add(a, t0.Add(30*time.Second))
	w.add(a, t0.Add(10*time.Second))
	w.add(a, t0.Add(50*time.Second))
	w.add(b, t0.Add(20*time.Second))
	for _, step := range []struct {
		by   time.Duration
		want []string
	}{
		{9 * time.Second, nil},
		{time.Second, []string{"default/a"}},
		{10 * time.Second, []string{"default/b"}},
		{time.Minute, nil},
	} {
		clk.Step(step.by)
		w.firing.Wait()
		if d := cmp.Diff(step.want, acts.take()); d != "" {
			t.Errorf("at %s (-want +got):\n%s", clk.Now().Sub(t0), d)
		}
	}
}
