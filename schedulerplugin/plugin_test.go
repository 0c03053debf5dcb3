package schedulerplugin

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	clocktesting "k8s.io/utils/clock/testing"

	configv1alpha1 "github.com/infera-io/temper/apis/config/v1alpha1"
	"github.com/infera-io/temper/apis/tiering"
	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/schedulerplugin/core"
)

var t0 = time.Date(2026, 11, 26, 18, 0, 0, 0, time.UTC)

// priorityOf is the priority of a workload tier's PriorityClass.
func priorityOf(tier wellknown.Tier) int32 {
	for _, pc := range wellknown.PriorityClasses() {
		if pc.Tier == tier {
			return pc.Value
		}
	}
	panic("no PriorityClass for tier " + tier)
}

// makePod returns a pod of tier requesting milli CPU. boundAt zero means
// assumed (no PodScheduled condition).
func makePod(name string, tier wellknown.Tier, milli int64, boundAt time.Time) *corev1.Pod {
	prio := priorityOf(tier)
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID(name)},
		Spec: corev1.PodSpec{
			PriorityClassName: "infera-" + string(tier),
			Priority:          &prio,
			Containers: []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: *resource.NewMilliQuantity(milli, resource.DecimalSI)},
			}}},
		},
	}
	if !boundAt.IsZero() {
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(boundAt)}}
	}
	return p
}

func tierLoad(t testing.TB, ts time.Time, allocMilli int64, tiers map[wellknown.Tier]wellknown.TierUsage) string {
	t.Helper()
	fenced := int64(0)
	if c, ok := tiers[wellknown.TierCritical]; ok {
		fenced = (c.RequestMilli + 999) / 1000 * 1000
	}
	v, err := wellknown.TierLoad{TS: ts, Gen: 1, Backend: wellknown.BackendSCXLayered,
		AllocatableMilli: allocMilli, FencedMilli: fenced, Tiers: tiers}.Marshal()
	if err != nil {
		t.Fatalf("marshal tier-load: %v", err)
	}
	return v
}

// nodeInfo builds a NodeInfo for a node of allocMilli CPU carrying the
// annotation value (none when value is "-") and pods.
func nodeInfo(name string, allocMilli int64, value string, pods ...*corev1.Pod) *framework.NodeInfo {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{}}}
	if value != "-" {
		n.Annotations[wellknown.TierLoadAnnotation] = value
	}
	n.Status.Allocatable = corev1.ResourceList{corev1.ResourceCPU: *resource.NewMilliQuantity(allocMilli, resource.DecimalSI), corev1.ResourcePods: resource.MustParse("110")}
	ni := framework.NewNodeInfo(pods...)
	ni.SetNode(n)
	return ni
}

// logSink records the messages and "node" values the plugin logs.
type logSink struct {
	mu    sync.Mutex
	lines []string
}

func (s *logSink) logger() logr.Logger {
	return funcr.New(func(prefix, args string) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.lines = append(s.lines, args)
	}, funcr.Options{Verbosity: 2})
}

func (s *logSink) count(substr string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, l := range s.lines {
		if strings.Contains(l, substr) {
			n++
		}
	}
	return n
}

func newTestPlugin(t testing.TB, sink *logSink, now time.Time) *InferaDensity {
	t.Helper()
	args, err := DecodeArgs(nil)
	if err != nil {
		t.Fatalf("DecodeArgs(nil): %v", err)
	}
	logger := logr.Discard()
	if sink != nil {
		logger = sink.logger()
	}
	return newPlugin(logger, args, clocktesting.NewFakePassiveClock(now))
}

// cycle runs PreFilter (and Filter when PreFilter does not skip) and
// PreScore + Score over the nodes the way the framework does, returning
// the score of every feasible node.
func cycle(t testing.TB, pl *InferaDensity, pod *corev1.Pod, nodes ...fwk.NodeInfo) map[string]int64 {
	t.Helper()
	ctx := context.Background()
	state := framework.NewCycleState()
	_, st := pl.PreFilter(ctx, state, pod, nodes)
	var feasible []fwk.NodeInfo
	for _, ni := range nodes {
		if st.IsSkip() || pl.Filter(ctx, state, pod, ni).IsSuccess() {
			feasible = append(feasible, ni)
		}
	}
	scores := map[string]int64{}
	if st := pl.PreScore(ctx, state, pod, feasible); st.IsSkip() {
		return scores
	} else if !st.IsSuccess() {
		t.Fatalf("PreScore: %v", st)
	}
	list := make(fwk.NodeScoreList, 0, len(feasible))
	for _, ni := range feasible {
		s, st := pl.Score(ctx, state, pod, ni)
		if !st.IsSuccess() {
			t.Fatalf("Score(%s): %v", ni.Node().Name, st)
		}
		list = append(list, fwk.NodeScore{Name: ni.Node().Name, Score: s})
	}
	if st := pl.ScoreExtensions().NormalizeScore(ctx, state, pod, list); !st.IsSuccess() {
		t.Fatalf("NormalizeScore: %v", st)
	}
	for _, s := range list {
		if s.Score < 0 || s.Score > fwk.MaxScore {
			t.Fatalf("normalized score of %s = %d, outside [0, %d]", s.Name, s.Score, fwk.MaxScore)
		}
		scores[s.Name] = s.Score
	}
	return scores
}

func TestScoreScaleIsTheFrameworks(t *testing.T) {
	if core.MaxScore != fwk.MaxScore {
		t.Fatalf("core.MaxScore = %d, the framework's is %d", core.MaxScore, fwk.MaxScore)
	}
}

func TestDecodeArgs(t *testing.T) {
	reserve := int64(2000)
	tests := map[string]struct {
		obj         runtime.Object
		wantReserve int64
		wantErr     string
	}{
		"nil means defaults": {obj: nil, wantReserve: 2000},
		"typed args":         {obj: &configv1alpha1.InferaDensityArgs{FenceReserveMilli: &reserve}, wantReserve: 2000},
		"raw JSON from the configuration file": {
			obj: &runtime.Unknown{Raw: []byte(`{"fenceReserveMilli":1500,"tierLoadMaxAge":"2m"}`)}, wantReserve: 1500,
		},
		"raw with apiVersion and kind": {
			obj:         &runtime.Unknown{Raw: []byte(`{"apiVersion":"kubescheduler.config.k8s.io/v1","kind":"InferaDensityArgs","fenceReserveMilli":500}`)},
			wantReserve: 500,
		},
		"unknown field is an error": {
			obj: &runtime.Unknown{Raw: []byte(`{"fenceReserveMillis":1500}`)}, wantErr: `unknown field "fenceReserveMillis"`,
		},
		"wrong kind is an error": {
			obj: &runtime.Unknown{Raw: []byte(`{"kind":"NodeResourcesFitArgs"}`)}, wantErr: `kind is "NodeResourcesFitArgs"`,
		},
		"invalid value names the field": {
			obj: &runtime.Unknown{Raw: []byte(`{"fenceReserveMilli":-5}`)}, wantErr: "fenceReserveMilli",
		},
		"another plugin's args": {obj: &corev1.Pod{}, wantErr: "want InferaDensityArgs, got *v1.Pod"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			args, err := DecodeArgs(tc.obj)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("DecodeArgs() error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("DecodeArgs() error = %v", err)
			}
			if *args.FenceReserveMilli != tc.wantReserve {
				t.Errorf("fenceReserveMilli = %d, want %d", *args.FenceReserveMilli, tc.wantReserve)
			}
			if args.TierLoadMaxAge == nil || args.PriorityMapping == nil {
				t.Errorf("DecodeArgs() left fields undefaulted: %+v", args)
			}
		})
	}
}

// TestPodsBoundSinceTimestampCount: a pod bound before the annotation's
// timestamp is in the annotation already; one bound after it, or assumed
// and not bound yet, is not, and must count against the node.
func TestPodsBoundSinceTimestampCount(t *testing.T) {
	pl := newTestPlugin(t, nil, t0)
	ts := t0.Add(-time.Minute)
	// 8 cores, reserve 1 → 7 fenceable; the annotation has 3 critical cores.
	value := tierLoad(t, ts, 8000, map[wellknown.Tier]wellknown.TierUsage{
		wellknown.TierCritical: {Pods: 1, RequestMilli: 3000, LimitMilli: 3000},
	})
	counted := makePod("counted", wellknown.TierCritical, 3000, time.Time{})
	incoming := makePod("incoming", wellknown.TierCritical, 2000, time.Time{})

	tests := map[string]struct {
		pods     []*corev1.Pod
		feasible bool
	}{
		"no other pods: 3+2 cores fit":                 {feasible: true},
		"pod bound before ts is in the annotation":     {pods: []*corev1.Pod{makePod("old", wellknown.TierCritical, 3000, ts.Add(-time.Second))}, feasible: true},
		"pod bound after ts counts: 3+3+2 > 7":         {pods: []*corev1.Pod{makePod("new", wellknown.TierCritical, 3000, ts.Add(time.Second))}, feasible: false},
		"pod bound in ts's second counts":              {pods: []*corev1.Pod{makePod("same", wellknown.TierCritical, 3000, ts)}, feasible: false},
		"assumed pod counts":                           {pods: []*corev1.Pod{counted}, feasible: false},
		"recent batch pods do not take fence capacity": {pods: []*corev1.Pod{makePod("batch", wellknown.TierNormal, 3000, time.Time{})}, feasible: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			scores := cycle(t, pl, incoming, nodeInfo("n1", 8000, value, tc.pods...))
			if _, got := scores["n1"]; got != tc.feasible {
				t.Errorf("node feasible = %v, want %v", got, tc.feasible)
			}
		})
	}
}

// TestChangedPodIsReclassified: the state of a node reuses the
// classification of pods it has seen, but a pod whose object changed (a
// resize, a binding confirmed) is read again.
func TestChangedPodIsReclassified(t *testing.T) {
	pl := newTestPlugin(t, nil, t0)
	value := tierLoad(t, t0.Add(-time.Minute), 8000, nil)
	big := makePod("resized", wellknown.TierCritical, 6000, time.Time{})
	ni := nodeInfo("n1", 8000, value, big)
	incoming := makePod("incoming", wellknown.TierCritical, 2000, time.Time{})
	// 6 + 2 cores > 7 fenceable.
	if s := cycle(t, pl, incoming, ni); len(s) != 0 {
		t.Fatalf("scores %v, want the node filtered", s)
	}
	small := makePod("resized", wellknown.TierCritical, 1000, time.Time{})
	if err := ni.RemovePod(logr.Discard(), big); err != nil {
		t.Fatal(err)
	}
	ni.AddPod(small)
	// 1 + 2 cores fit.
	if s := cycle(t, pl, incoming, ni); len(s) != 1 {
		t.Fatalf("scores %v after the resize, want the node feasible", s)
	}
}

// TestBurstDoesNotPileUp schedules a burst of identical pods onto nodes with
// identical, unchanging annotations, adding each pod to the NodeInfo of the
// node it lands on as the scheduler's cache does. Without counting the pods
// bound since the annotation, every pod would land on the same node.
func TestBurstDoesNotPileUp(t *testing.T) {
	for _, tier := range []wellknown.Tier{wellknown.TierCritical, wellknown.TierHigh} {
		t.Run(string(tier), func(t *testing.T) {
			pl := newTestPlugin(t, nil, t0)
			value := tierLoad(t, t0.Add(-30*time.Second), 16000, map[wellknown.Tier]wellknown.TierUsage{
				wellknown.TierNormal: {Pods: 2, RequestMilli: 2000},
			})
			nodes := []*framework.NodeInfo{nodeInfo("a", 16000, value), nodeInfo("b", 16000, value), nodeInfo("c", 16000, value)}
			placed := map[string]int{}
			for i := range 9 {
				pod := makePod(fmt.Sprintf("p%d", i), tier, 1500, time.Time{})
				var fwNodes []fwk.NodeInfo
				for _, n := range nodes {
					fwNodes = append(fwNodes, n)
				}
				scores := cycle(t, pl, pod, fwNodes...)
				best, bestScore := -1, int64(-1)
				for j, n := range nodes {
					if s, ok := scores[n.Node().Name]; ok && s > bestScore {
						best, bestScore = j, s
					}
				}
				if best < 0 {
					t.Fatalf("pod %d fits nowhere", i)
				}
				nodes[best].AddPod(pod)
				placed[nodes[best].Node().Name]++
			}
			for _, n := range []string{"a", "b", "c"} {
				if placed[n] != 3 {
					t.Errorf("placement = %v, want 3 pods on each node", placed)
					break
				}
			}
		})
	}
}

// TestBatchFillsUp: normal, low and background pods go to the fuller node
// while it has idle headroom.
func TestBatchFillsUp(t *testing.T) {
	pl := newTestPlugin(t, nil, t0)
	ts := t0.Add(-30 * time.Second)
	empty := nodeInfo("empty", 16000, tierLoad(t, ts, 16000, nil))
	half := nodeInfo("half", 16000, tierLoad(t, ts, 16000, map[wellknown.Tier]wellknown.TierUsage{wellknown.TierLow: {Pods: 8, RequestMilli: 8000}}))
	full := nodeInfo("full", 16000, tierLoad(t, ts, 16000, map[wellknown.Tier]wellknown.TierUsage{wellknown.TierLow: {Pods: 15, RequestMilli: 15500}}))
	for _, tier := range []wellknown.Tier{wellknown.TierNormal, wellknown.TierLow, wellknown.TierBackground} {
		s := cycle(t, pl, makePod("p", tier, 1000, time.Time{}), empty, half, full)
		if s["half"] <= s["empty"] || s["empty"] <= s["full"] {
			t.Errorf("%s scores = %v, want half > empty > full (no headroom)", tier, s)
		}
	}
}

// TestUnusableAnnotationsAreNeutral: missing, stale and malformed
// annotations never filter, even a critical pod far larger than the node,
// and score neutral: 50 when no node can be judged, the median of the
// judged nodes otherwise.
func TestUnusableAnnotationsAreNeutral(t *testing.T) {
	sink := &logSink{}
	pl := newTestPlugin(t, sink, t0)
	full := map[wellknown.Tier]wellknown.TierUsage{wellknown.TierCritical: {Pods: 4, RequestMilli: 7000}}
	unusable := []fwk.NodeInfo{
		nodeInfo("missing", 8000, "-"),
		nodeInfo("stale", 8000, tierLoad(t, t0.Add(-wellknown.TierLoadMaxAge-time.Second), 8000, full)),
		nodeInfo("malformed", 8000, `{"v":1,"ts":"yesterday"}`),
		nodeInfo("empty-value", 8000, ""),
		nodeInfo("future", 8000, tierLoad(t, t0.Add(10*time.Minute), 8000, full)),
	}
	for _, tier := range wellknown.WorkloadTiers() {
		scores := cycle(t, pl, makePod("p", tier, 64000, time.Time{}), unusable...)
		for _, n := range unusable {
			if got, ok := scores[n.Node().Name]; !ok || got != core.NeutralScore {
				t.Errorf("%s pod on %s: score %d (feasible %v), want %d", tier, n.Node().Name, got, ok, core.NeutralScore)
			}
		}
	}

	// Among judged nodes scoring 6, 75 and 94 for a high pod, the
	// unusable ones score the median, 75.
	ts := t0.Add(-time.Minute)
	judged := []fwk.NodeInfo{
		nodeInfo("poor", 16000, tierLoad(t, ts, 16000, map[wellknown.Tier]wellknown.TierUsage{
			wellknown.TierCritical: {Pods: 1, RequestMilli: 4000}, wellknown.TierHigh: {Pods: 10, RequestMilli: 10000}})),
		nodeInfo("middling", 16000, tierLoad(t, ts, 16000, map[wellknown.Tier]wellknown.TierUsage{
			wellknown.TierCritical: {Pods: 1, RequestMilli: 4000}, wellknown.TierHigh: {Pods: 2, RequestMilli: 2000}})),
		nodeInfo("good", 16000, tierLoad(t, ts, 16000, nil)),
	}
	scores := cycle(t, pl, makePod("p", wellknown.TierHigh, 1000, time.Time{}), append(judged, unusable...)...)
	want := map[string]int64{"poor": 8, "middling": 75, "good": 94, "missing": 75, "stale": 75, "malformed": 75, "empty-value": 75, "future": 75}
	if d := cmp.Diff(want, scores); d != "" {
		t.Errorf("scores mismatch (-want +got):\n%s", d)
	}

	// The same full node with a fresh annotation does filter the pod, and
	// so does one dated a little ahead (agent clocks may run ahead).
	for name, ts := range map[string]time.Time{"fresh": t0.Add(-time.Minute), "slightly-ahead": t0.Add(10 * time.Second), "just-before-max-age": t0.Add(-wellknown.TierLoadMaxAge)} {
		n := nodeInfo(name, 8000, tierLoad(t, ts, 8000, full))
		if s := cycle(t, pl, makePod("p", wellknown.TierCritical, 1000, time.Time{}), n); len(s) != 0 {
			t.Errorf("critical pod on a %s full node: scores %v, want filtered", name, s)
		}
	}
}

// TestMalformedLoggedOncePerNode: the malformed annotation of each node is
// logged once, however often the node is scored and whatever else changes
// on it; a node whose annotation parses again is logged again if it breaks
// again; a deleted node is forgotten.
func TestMalformedLoggedOncePerNode(t *testing.T) {
	sink := &logSink{}
	pl := newTestPlugin(t, sink, t0)
	const msg = "Ignoring malformed tier-load annotation"
	good := tierLoad(t, t0.Add(-time.Minute), 8000, nil)
	bad1 := nodeInfo("bad-1", 8000, `not json`)
	bad2 := nodeInfo("bad-2", 8000, `{"v":7}`)
	ok := nodeInfo("ok", 8000, good)
	for i := range 20 {
		// New pods bump the NodeInfo generations, so states are recomputed.
		bad1.AddPod(makePod(fmt.Sprintf("x%d", i), wellknown.TierLow, 10, time.Time{}))
		bad2.AddPod(makePod(fmt.Sprintf("y%d", i), wellknown.TierLow, 10, time.Time{}))
		cycle(t, pl, makePod("p", wellknown.TierNormal, 100, time.Time{}), bad1, bad2, ok)
	}
	if got := sink.count(msg); got != 2 {
		t.Fatalf("logged %d times, want 2 (once per malformed node):\n%s", got, strings.Join(sink.lines, "\n"))
	}
	for _, node := range []string{"bad-1", "bad-2"} {
		if sink.count(`"name"="`+node+`"`) != 1 {
			t.Errorf("node %s not named exactly once in the logs:\n%s", node, strings.Join(sink.lines, "\n"))
		}
	}

	// A different malformed value on the same node is not logged again.
	n := bad1.Node().DeepCopy()
	n.Annotations[wellknown.TierLoadAnnotation] = `{"v":1`
	bad1.SetNode(n)
	cycle(t, pl, makePod("p", wellknown.TierNormal, 100, time.Time{}), bad1)
	if got := sink.count(msg); got != 2 {
		t.Errorf("after a second malformed value: logged %d times, want 2", got)
	}

	// Parses again, then breaks again: logged again.
	n = n.DeepCopy()
	n.Annotations[wellknown.TierLoadAnnotation] = good
	bad1.SetNode(n)
	cycle(t, pl, makePod("p", wellknown.TierNormal, 100, time.Time{}), bad1)
	n = n.DeepCopy()
	n.Annotations[wellknown.TierLoadAnnotation] = `broken again`
	bad1.SetNode(n)
	cycle(t, pl, makePod("p", wellknown.TierNormal, 100, time.Time{}), bad1)
	if got := sink.count(msg); got != 3 {
		t.Errorf("after repair and new breakage: logged %d times, want 3", got)
	}

	// bad-1's node object was replaced three times: still one entry each.
	if got := pl.nodes.len(); got != 3 {
		t.Errorf("cache holds %d entries for 3 nodes", got)
	}
	pl.nodes.forget("bad-1")
	pl.nodes.forget("bad-2")
	pl.nodes.forget("ok")
	pl.nodes.mu.Lock()
	defer pl.nodes.mu.Unlock()
	if pl.nodes.len() != 0 || len(pl.nodes.byName) != 0 || len(pl.nodes.malformed) != 0 {
		t.Errorf("cache after forgetting every node: %d entries, %d by name, %d malformed, want none", pl.nodes.len(), len(pl.nodes.byName), len(pl.nodes.malformed))
	}
}

func TestQueueingHints(t *testing.T) {
	pl := newTestPlugin(t, nil, t0)
	critical := makePod("crit", wellknown.TierCritical, 2000, time.Time{})
	node := func(value string) *corev1.Node {
		return nodeInfo("n", 8000, value).Node()
	}
	fullLoad := map[wellknown.Tier]wellknown.TierUsage{wellknown.TierCritical: {Pods: 3, RequestMilli: 7000}}
	roomy := map[wellknown.Tier]wellknown.TierUsage{wellknown.TierCritical: {Pods: 1, RequestMilli: 1000}}
	tests := map[string]struct {
		obj  *corev1.Node
		want fwk.QueueingHint
	}{
		"still full":            {obj: node(tierLoad(t, t0, 8000, fullLoad)), want: fwk.QueueSkip},
		"room freed":            {obj: node(tierLoad(t, t0, 8000, roomy)), want: fwk.Queue},
		"annotation went stale": {obj: node(tierLoad(t, t0.Add(-time.Hour), 8000, fullLoad)), want: fwk.Queue},
		"annotation removed":    {obj: node("-"), want: fwk.Queue},
		"annotation malformed":  {obj: node("{"), want: fwk.Queue},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := pl.isSchedulableAfterNodeChange(logr.Discard(), critical, nil, tc.obj)
			if err != nil || got != tc.want {
				t.Errorf("hint = %s (%v), want %s", got, err, tc.want)
			}
		})
	}
	if got, _ := pl.isSchedulableAfterPodDeleted(logr.Discard(), critical, makePod("gone", wellknown.TierCritical, 1000, t0), nil); got != fwk.Queue {
		t.Errorf("critical pod deleted: hint %s, want Queue", got)
	}
	if got, _ := pl.isSchedulableAfterPodDeleted(logr.Discard(), critical, makePod("gone", wellknown.TierNormal, 1000, t0), nil); got != fwk.QueueSkip {
		t.Errorf("normal pod deleted: hint %s, want QueueSkip", got)
	}

	events, err := pl.EventsToRegister(context.Background())
	if err != nil || len(events) == 0 {
		t.Fatalf("EventsToRegister() = %v, %v", events, err)
	}
	for _, e := range events {
		if e.QueueingHintFn == nil {
			t.Errorf("event %v has no queueing hint", e.Event)
		}
	}
}

func TestSignPodDistinguishesTierAndRequest(t *testing.T) {
	pl := newTestPlugin(t, nil, t0)
	sign := func(p *corev1.Pod) string {
		f, st := pl.SignPod(context.Background(), p)
		if !st.IsSuccess() || len(f) != 1 {
			t.Fatalf("SignPod() = %v, %v", f, st)
		}
		return fmt.Sprint(f[0].Value)
	}
	a := sign(makePod("a", wellknown.TierHigh, 1000, time.Time{}))
	if b := sign(makePod("b", wellknown.TierHigh, 1000, time.Time{})); a != b {
		t.Errorf("same tier and request signed differently: %s vs %s", a, b)
	}
	if c := sign(makePod("c", wellknown.TierLow, 1000, time.Time{})); a == c {
		t.Errorf("different tiers signed alike: %s", a)
	}
	if d := sign(makePod("d", wellknown.TierHigh, 1001, time.Time{})); a == d {
		t.Errorf("different requests signed alike: %s", a)
	}
}

// BenchmarkScore500Nodes is one scheduling cycle's PreScore and Score over
// 500 nodes whose states are cached, each with 10 pods bound since its
// annotation: the steady state of a burst.
func BenchmarkScore500Nodes(b *testing.B) {
	pl := newTestPlugin(b, nil, t0)
	value := tierLoad(b, t0.Add(-time.Minute), 32000, map[wellknown.Tier]wellknown.TierUsage{
		wellknown.TierCritical: {Pods: 2, RequestMilli: 4000},
		wellknown.TierNormal:   {Pods: 10, RequestMilli: 8000},
	})
	var nodes []fwk.NodeInfo
	for i := range 500 {
		var pods []*corev1.Pod
		for j := range 10 {
			pods = append(pods, makePod(fmt.Sprintf("n%d-p%d", i, j), wellknown.TierLow, 500, time.Time{}))
		}
		nodes = append(nodes, nodeInfo(fmt.Sprintf("n%d", i), 32000, value, pods...))
	}
	pod := makePod("incoming", wellknown.TierHigh, 1000, time.Time{})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		state := framework.NewCycleState()
		pl.PreScore(ctx, state, pod, nodes)
		for _, ni := range nodes {
			pl.Score(ctx, state, pod, ni)
		}
	}
}

// withMapping sets the node's infera.io/priority-mapping.
func withMapping(ni *framework.NodeInfo, value string) *framework.NodeInfo {
	ni.Node().Annotations[wellknown.PriorityMappingAnnotation] = value
	return ni
}

// TestNodePriorityMappingDecidesTheTier: a node's infera.io/priority-mapping
// (written by the manager from an InferaPolicy) tiers the incoming pod and
// the node's recent pods there, the way the node's agent will.
func TestNodePriorityMappingDecidesTheTier(t *testing.T) {
	pl := newTestPlugin(t, nil, t0)
	lowered := tiering.NodeMapping{Policy: "gpu", Thresholds: tiering.Thresholds{Critical: 500_000, High: 50_000, Normal: 0, Low: -100}}.Marshal()
	full := map[wellknown.Tier]wellknown.TierUsage{wellknown.TierCritical: {Pods: 3, RequestMilli: 6000}}
	load := tierLoad(t, t0.Add(-time.Minute), 8000, full)

	// Priority 600000: high by default, critical under the node's mapping.
	pod := makePod("p", wellknown.TierHigh, 2000, time.Time{})
	prio := int32(600_000)
	pod.Spec.Priority, pod.Spec.PriorityClassName = &prio, "custom"

	plain := nodeInfo("plain", 8000, load)
	mapped := withMapping(nodeInfo("mapped", 8000, load), lowered)
	scores := cycle(t, pl, pod, plain, mapped)
	if _, ok := scores["mapped"]; ok {
		t.Errorf("the pod is critical on the mapped node, which cannot fence 2 more cores, yet it was feasible: %v", scores)
	}
	if _, ok := scores["plain"]; !ok {
		t.Errorf("the pod is high on the plain node and must stay feasible: %v", scores)
	}

	// A malformed mapping is ignored: the plugin's thresholds apply there.
	bad := withMapping(nodeInfo("bad", 8000, load), `{"v":1,"critical":5}`)
	if scores := cycle(t, pl, pod, bad); len(scores) != 1 {
		t.Errorf("a malformed mapping must fall back to the plugin's thresholds (pod high, feasible): %v", scores)
	}

	// Recent pods on a mapped node are tiered by its mapping: two pods of
	// priority 600000 bound after the annotation are critical there and
	// take the fence capacity a real critical pod needs.
	empty := tierLoad(t, t0.Add(-time.Minute), 8000, map[wellknown.Tier]wellknown.TierUsage{})
	recent := func(name string) *corev1.Pod {
		p := makePod(name, wellknown.TierHigh, 2000, t0)
		p.Spec.Priority, p.Spec.PriorityClassName = &prio, "custom"
		return p
	}
	crit := makePod("crit", wellknown.TierCritical, 3000, time.Time{})
	plain2 := nodeInfo("plain2", 8000, empty, recent("r1"), recent("r2"))
	mapped2 := withMapping(nodeInfo("mapped2", 8000, empty, recent("r3"), recent("r4")), lowered)
	scores = cycle(t, pl, crit, plain2, mapped2)
	if _, ok := scores["mapped2"]; ok {
		t.Errorf("mapped2's recent pods are critical under its mapping and leave no room to fence 3 cores: %v", scores)
	}
	if _, ok := scores["plain2"]; !ok {
		t.Errorf("plain2's recent pods are high: the critical pod fits: %v", scores)
	}

	// The deleted-pod hint tiers by the node's mapping.
	gone := recent("gone")
	gone.Spec.NodeName = "mapped2"
	if got, _ := pl.isSchedulableAfterPodDeleted(logr.Discard(), crit, gone, nil); got != fwk.Queue {
		t.Errorf("a pod critical under its node's mapping left: hint %s, want Queue", got)
	}
	gone.Spec.NodeName = "plain2"
	if got, _ := pl.isSchedulableAfterPodDeleted(logr.Discard(), crit, gone, nil); got != fwk.QueueSkip {
		t.Errorf("a high pod left: hint %s, want QueueSkip", got)
	}
}

func TestSignPodDistinguishesPriorityUnderMappings(t *testing.T) {
	pl := newTestPlugin(t, nil, t0)
	sign := func(prio int32) string {
		p := makePod("a", wellknown.TierHigh, 1000, time.Time{})
		p.Spec.Priority = &prio
		f, _ := pl.SignPod(context.Background(), p)
		return fmt.Sprint(f[0].Value)
	}
	// Both high by default, but a node mapping can make one critical.
	if a, b := sign(150_000), sign(600_000); a == b {
		t.Errorf("pods of different priorities signed alike: %s", a)
	}
}
