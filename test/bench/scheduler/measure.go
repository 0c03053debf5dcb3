package main

import (
	"context"
	"fmt"
	"math"
	"runtime/pprof"
	"slices"
	"sort"
	"sync"
	"syscall"
	"time"

	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/component-base/metrics/legacyregistry"

	"github.com/infera-io/temper/apis/wellknown"
)

const benchLabel = "bench.infera.io/role"

// Quantiles of a distribution, in milliseconds.
type Quantiles struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90,omitempty"`
	P99 float64 `json:"p99"`
}

// Placement is the quality of one arm's placement, judged with the ground
// truth of the simulation (every node's real size, agent and resident load),
// not with what the annotations said.
type Placement struct {
	// CriticalPods is how many critical pods were bound.
	CriticalPods int `json:"criticalPods"`
	// CriticalUnfenceable counts the critical pods bound where their whole
	// cores cannot be fenced: the node's agent does not enforce
	// (observe-only), or the critical tier's requests, in bind order,
	// rounded up to cores, exceed allocatable minus the reserve.
	CriticalUnfenceable int `json:"criticalUnfenceable"`
	// CriticalUnfenceableOnUnreadableNodes is the part of
	// CriticalUnfenceable on nodes whose annotation was stale, missing or
	// malformed, where the plugin deliberately scores neutral.
	CriticalUnfenceableOnUnreadableNodes int `json:"criticalUnfenceableOnUnreadableNodes"`
	// BatchPods is how many normal, low and background pods were bound.
	BatchPods int `json:"batchPods"`
	// BatchNodes is how many nodes received at least one of them: the
	// nodes needed for the batch share (lower is denser).
	BatchNodes int `json:"batchNodes"`
	// HighPodContention is, averaged over the high pods, the share of its
	// node's shared (unfenced) cores requested by the protected tiers that
	// run there (system and high) once everything is placed: what a high
	// pod contends with under Temper (lower is better; above 1 the
	// protected tiers alone overcommit the shared cores).
	HighPodContention float64 `json:"highPodContention"`
}

// ArmResult is one arm of one round.
type ArmResult struct {
	Round   int    `json:"round"`
	Profile string `json:"profile"`
	Pods    int    `json:"pods"`
	Bound   int    `json:"bound"`
	// CreateSeconds is how long creating the backlog took, before the
	// scheduler started.
	CreateSeconds float64 `json:"createSeconds"`
	// StartupSeconds is from starting the scheduler to the first binding
	// (informer sync included).
	StartupSeconds float64 `json:"startupSeconds"`
	// Seconds is from the first binding to the last.
	Seconds float64 `json:"seconds"`
	// PodsPerSecond is the drain rate of the backlog: (Bound-1) / Seconds.
	PodsPerSecond float64 `json:"podsPerSecond"`
	// AttemptMs is kube-scheduler's scheduling_attempt_duration_seconds
	// for this profile: one pod's scheduling cycle plus its binding call,
	// interpolated from the histogram's buckets. This is the per-pod
	// scheduling latency.
	AttemptMs Quantiles `json:"attemptMs"`
	// AlgorithmMs is scheduling_algorithm_duration_seconds over this arm:
	// filtering and scoring one pod, no API call.
	AlgorithmMs Quantiles `json:"algorithmMs"`
	// FilterMs and ScoreMs are framework_extension_point_duration_seconds
	// of the Filter and Score extension points for this profile: all
	// plugins over all nodes of one cycle.
	FilterMs Quantiles `json:"filterMs"`
	ScoreMs  Quantiles `json:"scoreMs"`
	// CPUSeconds is the CPU time of this process (user and system) while
	// the scheduler drained the backlog: the scheduler, plus the arm's own
	// watch of its pods, which is the same for both profiles. The API
	// server and etcd run in other processes.
	CPUSeconds float64 `json:"cpuSeconds"`
	// DrainLatencyMs is per pod, from the scheduler's start to the pod's
	// binding being seen through a watch: how long a pod of a 5,000-pod
	// burst waits, queueing included.
	DrainLatencyMs Quantiles `json:"drainLatencyMs"`
	Placement      Placement `json:"placement"`
}

// Placed is where an arm's pods landed, in binding order.
type Placed struct {
	Order []string
	Node  map[string]string
}

// runArm creates the workload as a backlog of pending pods for profile
// while no scheduler runs, then starts the scheduler and measures how it
// drains the backlog. Measuring a backlog makes the scheduler the
// bottleneck; creating pods while it runs would measure the API server's
// create rate on this machine's two shared cores.
func runArm(ctx context.Context, cs kubernetes.Interface, ns, profile string, round int, workload []podSpec, workers int, timeout time.Duration,
	startScheduler func() (stop func() error), logf func(string, ...any)) (ArmResult, Placed, error) {
	armLabel := fmt.Sprintf("%s-r%d", profile, round)
	res := ArmResult{Round: round, Profile: profile, Pods: len(workload)}

	start := time.Now()
	err := parallel(len(workload), workers, func(i int) error {
		obj := podObject(ns, workload[i], profile, map[string]string{benchLabel: armLabel})
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, obj, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("failed to create pod %s: %w", obj.Name, err)
		}
		return nil
	})
	if err != nil {
		return res, Placed{}, err
	}
	res.CreateSeconds = round1(time.Since(start).Seconds())

	// Watch the arm's pods and note when each is first seen bound.
	var (
		mu      sync.Mutex
		boundAt = map[string]time.Time{}
		nodeOf  = map[string]string{}
	)
	factory := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(ns),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.LabelSelector = labels.SelectorFromSet(labels.Set{benchLabel: armLabel}).String()
		}))
	observe := func(obj any) {
		p, ok := obj.(*corev1.Pod)
		if !ok || p.Spec.NodeName == "" {
			return
		}
		now := time.Now()
		mu.Lock()
		defer mu.Unlock()
		if _, seen := boundAt[p.Name]; !seen {
			boundAt[p.Name], nodeOf[p.Name] = now, p.Spec.NodeName
		}
	}
	if _, err := factory.Core().V1().Pods().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    observe,
		UpdateFunc: func(_, n any) { observe(n) },
	}); err != nil {
		return res, Placed{}, fmt.Errorf("failed to watch pods: %w", err)
	}
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	factory.Start(watchCtx.Done())
	factory.WaitForCacheSync(watchCtx.Done())

	before, err := gatherHistograms()
	if err != nil {
		return res, Placed{}, err
	}
	logf("  %s round %d: %d pending pods created in %.1fs; starting the scheduler", profile, round, len(workload), res.CreateSeconds)
	started, cpuBefore := time.Now(), processCPU()
	var stop func() error
	// The scheduler's goroutines inherit the label, so a -cpuprofile can be
	// split by arm (go tool pprof -tagfocus profile=...).
	pprof.Do(ctx, pprof.Labels("profile", profile), func(context.Context) { stop = startScheduler() })

	// Wait until every pod is bound, or none got bound for a while (the
	// rest are unschedulable), or the deadline passes. The wait for the
	// first binding is longer: on a loaded machine the scheduler's initial
	// list of 10,000 pods can take more than the 30 s allowed between two
	// bindings.
	deadline := started.Add(timeout)
	last, lastChange := 0, time.Now()
	for {
		mu.Lock()
		n := len(boundAt)
		mu.Unlock()
		if n != last {
			last, lastChange = n, time.Now()
		}
		idle := 30 * time.Second
		if n == 0 {
			idle = 3 * time.Minute
		}
		if n == len(workload) || time.Since(lastChange) > idle || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := stop(); err != nil {
		return res, Placed{}, err
	}
	res.CPUSeconds = round1(processCPU() - cpuBefore)
	stopWatch()
	if ctx.Err() != nil {
		return res, Placed{}, ctx.Err()
	}
	after, err := gatherHistograms()
	if err != nil {
		return res, Placed{}, err
	}

	mu.Lock()
	defer mu.Unlock()
	res.Bound = len(boundAt)
	order := make([]string, 0, len(boundAt))
	lat := make([]float64, 0, len(boundAt))
	for name, t := range boundAt {
		order = append(order, name)
		lat = append(lat, float64(t.Sub(started).Microseconds())/1000)
	}
	sort.Slice(order, func(a, b int) bool { return boundAt[order[a]].Before(boundAt[order[b]]) })
	if res.Bound > 1 {
		first, lastBound := boundAt[order[0]], boundAt[order[len(order)-1]]
		res.StartupSeconds = round1(first.Sub(started).Seconds())
		res.Seconds = round1(lastBound.Sub(first).Seconds())
		res.PodsPerSecond = round1(float64(res.Bound-1) / lastBound.Sub(first).Seconds())
	}
	res.DrainLatencyMs = exact(lat)
	res.AttemptMs = after.quantiles(before, "scheduler_scheduling_attempt_duration_seconds", map[string]string{"profile": profile, "result": "scheduled"})
	res.AlgorithmMs = after.quantiles(before, "scheduler_scheduling_algorithm_duration_seconds", nil)
	res.FilterMs = after.quantiles(before, "scheduler_framework_extension_point_duration_seconds", map[string]string{"profile": profile, "extension_point": "Filter", "status": "Success"})
	res.ScoreMs = after.quantiles(before, "scheduler_framework_extension_point_duration_seconds", map[string]string{"profile": profile, "extension_point": "Score", "status": "Success"})
	return res, Placed{Order: order, Node: nodeOf}, nil
}

// processCPU is this process's user and system CPU time in seconds.
func processCPU() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// judge computes the placement quality of an arm from where each workload
// pod landed and the simulation's ground truth.
func judge(nodes []nodeSpec, workload []podSpec, placed Placed, reserveMilli int64) Placement {
	byName := make(map[string]nodeSpec, len(nodes))
	critical := map[string]int64{}
	high := map[string]int64{}
	for _, nd := range nodes {
		byName[nd.name] = nd
		u := nd.residentUsage()
		critical[nd.name] = u[wellknown.TierCritical].RequestMilli
		high[nd.name] = u[wellknown.TierHigh].RequestMilli + u[wellknown.TierSystem].RequestMilli
	}
	spec := make(map[string]podSpec, len(workload))
	for _, p := range workload {
		spec[p.name] = p
	}
	var pl Placement
	batchNodes := map[string]bool{}
	var highPods []string
	for _, name := range placed.Order {
		node, p := placed.Node[name], spec[name]
		nd := byName[node]
		switch p.tier {
		case wellknown.TierCritical:
			pl.CriticalPods++
			critical[node] += p.milli
			fenceCores := max(0, (nd.allocMilli()-reserveMilli)/1000)
			if nd.kind == kindObserveOnly || (critical[node]+999)/1000 > fenceCores {
				pl.CriticalUnfenceable++
				if nd.kind == kindStale || nd.kind == kindMissing || nd.kind == kindMalformed {
					pl.CriticalUnfenceableOnUnreadableNodes++
				}
			}
		case wellknown.TierHigh:
			high[node] += p.milli
			highPods = append(highPods, name)
		default:
			pl.BatchPods++
			batchNodes[node] = true
		}
	}
	pl.BatchNodes = len(batchNodes)
	if len(highPods) > 0 {
		var sum float64
		for _, name := range highPods {
			node := placed.Node[name]
			shared := byName[node].allocMilli() - (critical[node]+999)/1000*1000
			if shared <= 0 {
				sum += 2 // no shared cores left: count as heavily overcommitted
				continue
			}
			sum += float64(high[node]) / float64(shared)
		}
		pl.HighPodContention = math.Round(sum/float64(len(highPods))*1000) / 1000
	}
	return pl
}

// exact returns exact quantiles of samples (milliseconds).
func exact(samples []float64) Quantiles {
	if len(samples) == 0 {
		return Quantiles{}
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	at := func(q float64) float64 {
		i := int(math.Ceil(q*float64(len(s)))) - 1
		return round1(s[min(max(i, 0), len(s)-1)])
	}
	return Quantiles{P50: at(0.50), P90: at(0.90), P99: at(0.99)}
}

func round1(v float64) float64 { return math.Round(v*10) / 10 }

// histograms is a snapshot of the in-process scheduler's histograms:
// metric name → series.
type histograms map[string][]*dto.Metric

func gatherHistograms() (histograms, error) {
	families, err := legacyregistry.DefaultGatherer.Gather()
	if err != nil {
		return nil, fmt.Errorf("failed to gather scheduler metrics: %w", err)
	}
	h := histograms{}
	for _, f := range families {
		if f.GetType() == dto.MetricType_HISTOGRAM {
			h[f.GetName()] = f.GetMetric()
		}
	}
	return h, nil
}

// quantiles returns p50/p90/p99 (ms) of the observations the series
// matching want gained since before, interpolated linearly inside buckets
// as Prometheus' histogram_quantile does.
func (h histograms) quantiles(before histograms, name string, want map[string]string) Quantiles {
	find := func(set histograms) *dto.Histogram {
		for _, m := range set[name] {
			match := true
			for k, v := range want {
				found := false
				for _, l := range m.GetLabel() {
					if l.GetName() == k && l.GetValue() == v {
						found = true
					}
				}
				match = match && found
			}
			if match {
				return m.GetHistogram()
			}
		}
		return nil
	}
	now := find(h)
	if now == nil {
		return Quantiles{}
	}
	prev := find(before)
	type bucket struct{ upper, count float64 }
	var buckets []bucket
	for i, b := range now.GetBucket() {
		c := float64(b.GetCumulativeCount())
		if prev != nil && i < len(prev.GetBucket()) {
			c -= float64(prev.GetBucket()[i].GetCumulativeCount())
		}
		buckets = append(buckets, bucket{b.GetUpperBound(), c})
	}
	total := float64(now.GetSampleCount())
	if prev != nil {
		total -= float64(prev.GetSampleCount())
	}
	if total <= 0 {
		return Quantiles{}
	}
	q := func(q float64) float64 {
		rank := q * total
		lower, lowerCount := 0.0, 0.0
		for _, b := range buckets {
			if b.count >= rank {
				if b.count == lowerCount {
					return round1(b.upper * 1000)
				}
				return round1((lower + (b.upper-lower)*(rank-lowerCount)/(b.count-lowerCount)) * 1000)
			}
			lower, lowerCount = b.upper, b.count
		}
		// Beyond the last bucket: report its bound.
		return round1(lower * 1000)
	}
	return Quantiles{P50: q(0.50), P90: q(0.90), P99: q(0.99)}
}
