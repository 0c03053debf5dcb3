package schedulerplugin

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"

	"github.com/infera-io/temper/apis/wellknown"
)

// The hot paths of a scheduling cycle, as the framework drives them on a
// 500-node cluster shaped like test/bench/scheduler's: most nodes fresh,
// one in seven with its critical fence full ("packed"), each with resident
// pods bound before its annotation. Run with
//
//	go test -run '^$' -bench 'Cycle|Rebuild|Normalize' -benchmem ./schedulerplugin/
//
// Allocations per operation are the stable figure on a shared machine.

// benchNodes returns 500 NodeInfos: every seventh has its critical fence
// full (8 of 8 fenceable cores used), the others carry a mix of tiers.
func benchNodes(b *testing.B) []fwk.NodeInfo {
	b.Helper()
	ts := t0.Add(-time.Minute)
	packed := tierLoad(b, ts, 16000, map[wellknown.Tier]wellknown.TierUsage{
		wellknown.TierCritical: {Pods: 4, RequestMilli: 14000},
		wellknown.TierNormal:   {Pods: 2, RequestMilli: 2000},
	})
	mixed := tierLoad(b, ts, 32000, map[wellknown.Tier]wellknown.TierUsage{
		wellknown.TierCritical: {Pods: 2, RequestMilli: 4000},
		wellknown.TierHigh:     {Pods: 3, RequestMilli: 3000},
		wellknown.TierNormal:   {Pods: 10, RequestMilli: 8000},
	})
	nodes := make([]fwk.NodeInfo, 0, 500)
	for i := range 500 {
		var pods []*corev1.Pod
		for j := range 12 {
			pods = append(pods, makePod(fmt.Sprintf("n%d-p%d", i, j), wellknown.TierLow, 500, ts.Add(-time.Hour)))
		}
		// Two pods bound since the annotation: they count on top of it.
		pods = append(pods, makePod(fmt.Sprintf("n%d-new", i), wellknown.TierNormal, 1000, ts.Add(time.Second)),
			makePod(fmt.Sprintf("n%d-assumed", i), wellknown.TierHigh, 500, time.Time{}))
		if i%7 == 0 {
			nodes = append(nodes, nodeInfo(fmt.Sprintf("n%d", i), 16000, packed, pods...))
		} else {
			nodes = append(nodes, nodeInfo(fmt.Sprintf("n%d", i), 32000, mixed, pods...))
		}
	}
	return nodes
}

// BenchmarkScoreCycle500Nodes is one scoring cycle of a high pod: PreScore
// and Score over 500 cached nodes, then NormalizeScore.
func BenchmarkScoreCycle500Nodes(b *testing.B) {
	pl := newTestPlugin(b, nil, t0)
	nodes := benchNodes(b)
	pod := makePod("incoming", wellknown.TierHigh, 1000, time.Time{})
	ctx := context.Background()
	scores := make(fwk.NodeScoreList, len(nodes))
	cycle(b, pl, pod, nodes...) // warm the node cache
	b.ReportAllocs()
	for b.Loop() {
		state := framework.NewCycleState()
		pl.PreScore(ctx, state, pod, nodes)
		for i, ni := range nodes {
			scores[i].Score, _ = pl.Score(ctx, state, pod, ni)
		}
		pl.NormalizeScore(ctx, state, pod, scores)
	}
}

// BenchmarkFilterCycle500Nodes is the filtering of a critical pod: PreFilter
// and Filter over 500 cached nodes, one in seven of which rejects it.
func BenchmarkFilterCycle500Nodes(b *testing.B) {
	pl := newTestPlugin(b, nil, t0)
	nodes := benchNodes(b)
	pod := makePod("incoming", wellknown.TierCritical, 2000, time.Time{})
	ctx := context.Background()
	cycle(b, pl, pod, nodes...)
	b.ReportAllocs()
	for b.Loop() {
		state := framework.NewCycleState()
		pl.PreFilter(ctx, state, pod, nodes)
		rejected := 0
		for _, ni := range nodes {
			if !pl.Filter(ctx, state, pod, ni).IsSuccess() {
				rejected++
			}
		}
		if rejected != 72 {
			b.Fatalf("%d nodes rejected the critical pod, want the 72 packed ones", rejected)
		}
	}
}

// BenchmarkRebuildAfterBinding is what a binding costs the plugin: the node
// the previous pod went to has a new NodeInfo generation (one more pod),
// so its state is rebuilt on the next Score.
func BenchmarkRebuildAfterBinding(b *testing.B) {
	pl := newTestPlugin(b, nil, t0)
	before := benchNodes(b)[1].(*framework.NodeInfo)
	// The next snapshot of the node: the same node object, one pod more.
	after := before.Snapshot().(*framework.NodeInfo)
	after.AddPod(makePod("extra", wellknown.TierNormal, 100, time.Time{}))
	pod := makePod("incoming", wellknown.TierHigh, 1000, time.Time{})
	ctx := context.Background()
	state := framework.NewCycleState()
	pl.PreScore(ctx, state, pod, []fwk.NodeInfo{before})
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		// Alternate the two generations: each Score rebuilds the state.
		ni := before
		if i%2 == 0 {
			ni = after
		}
		pl.Score(ctx, state, pod, ni)
	}
}

// BenchmarkNormalizeScore500 is NormalizeScore over 500 nodes, a tenth of
// which the plugin could not judge.
func BenchmarkNormalizeScore500(b *testing.B) {
	pl := newTestPlugin(b, nil, t0)
	ctx := context.Background()
	scores := make(fwk.NodeScoreList, 500)
	b.ReportAllocs()
	for b.Loop() {
		for i := range scores {
			scores[i].Score = int64(i % 100)
			if i%10 == 0 {
				scores[i].Score = -1
			}
		}
		pl.NormalizeScore(ctx, nil, nil, scores)
	}
}

// TestIncrementalStateMatchesFresh: a node's state rebuilt generation by
// generation from the previous one (withPods, which reads only new pod
// objects) equals the state a new cache computes from scratch, through
// pods added, removed and replaced in the order the scheduler's cache does
// it, and through a node object replaced under an unchanged annotation.
func TestIncrementalStateMatchesFresh(t *testing.T) {
	pl := newTestPlugin(t, nil, t0)
	ts := t0.Add(-time.Minute)
	value := tierLoad(t, ts, 32000, map[wellknown.Tier]wellknown.TierUsage{
		wellknown.TierCritical: {Pods: 1, RequestMilli: 2000},
		wellknown.TierNormal:   {Pods: 3, RequestMilli: 3000},
	})
	ni := nodeInfo("n", 32000, value)
	tiers := []wellknown.Tier{wellknown.TierCritical, wellknown.TierHigh, wellknown.TierNormal, wellknown.TierLow, wellknown.TierBackground}
	var pods []*corev1.Pod
	newPod := func(i int) *corev1.Pod {
		boundAt := time.Time{} // assumed
		switch i % 3 {
		case 1:
			boundAt = ts.Add(-time.Second) // in the annotation
		case 2:
			boundAt = ts.Add(time.Duration(i) * time.Second) // bound since
		}
		return makePod(fmt.Sprintf("p%d", i), tiers[i%len(tiers)], int64(100*(i%9+1)), boundAt)
	}
	check := func(step string) {
		t.Helper()
		got := pl.nodes.get(ni, pl.thresholds)
		want := newNodeCache(pl.logger).get(ni, pl.thresholds)
		if got.summary != want.summary || got.class != want.class || !got.ts.Equal(want.ts) || len(got.pods) != len(want.pods) {
			t.Fatalf("%s: incremental state %+v (%d pods), fresh %+v (%d pods)", step, got.summary, len(got.pods), want.summary, len(want.pods))
		}
		for i := range got.pods {
			if got.pods[i] != want.pods[i] {
				t.Fatalf("%s: pod %d: incremental %+v, fresh %+v", step, i, got.pods[i], want.pods[i])
			}
		}
	}
	check("empty")
	for i := range 60 {
		switch {
		case i%5 == 3 && len(pods) > 0: // remove one from the middle
			k := (i * 7) % len(pods)
			if err := ni.RemovePod(pl.logger, pods[k]); err != nil {
				t.Fatal(err)
			}
			pods = append(pods[:k], pods[k+1:]...)
		case i%5 == 4 && len(pods) > 0: // a pod object replaced (binding confirmed, resize)
			k := (i * 3) % len(pods)
			if err := ni.RemovePod(pl.logger, pods[k]); err != nil {
				t.Fatal(err)
			}
			repl := newPod(i)
			repl.Name, repl.UID = pods[k].Name, pods[k].UID
			ni.AddPod(repl)
			pods[k] = repl
		default:
			p := newPod(i)
			ni.AddPod(p)
			pods = append(pods, p)
		}
		check(fmt.Sprintf("step %d", i))
		if i == 30 {
			// A new node object with the same annotation and allocatable.
			ni.SetNode(ni.Node().DeepCopy())
			check("node replaced")
		}
	}
	if pl.nodes.len() != 1 {
		t.Errorf("cache holds %d node objects, want 1", pl.nodes.len())
	}
}
