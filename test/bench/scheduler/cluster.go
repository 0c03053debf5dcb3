package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/infera-io/temper/apis/wellknown"
)

// annotationKind is what a simulated node's agent publishes.
type annotationKind string

const (
	kindEnforcing   annotationKind = "fresh, enforcing"
	kindObserveOnly annotationKind = "fresh, observe-only"
	kindStale       annotationKind = "stale"
	kindMissing     annotationKind = "missing"
	kindMalformed   annotationKind = "malformed"
)

// podSpec is one pod of the simulation: resident or workload.
type podSpec struct {
	name  string
	tier  wellknown.Tier
	milli int64
	// deflated, when not zero, is the CPU request the overcommit
	// webhook's Compute left (-density), and originals its
	// infera.io/original-cpu-requests value; milli stays the original.
	deflated  int64
	originals string
}

// nodeSpec is one simulated node and the pods already running on it.
type nodeSpec struct {
	name     string
	cores    int64
	kind     annotationKind
	backend  string
	resident []podSpec
}

func (n nodeSpec) allocMilli() int64 { return n.cores * 1000 }

// residentUsage sums the resident pods per tier, as the agent reports them.
func (n nodeSpec) residentUsage() map[wellknown.Tier]wellknown.TierUsage {
	u := map[wellknown.Tier]wellknown.TierUsage{}
	for _, p := range n.resident {
		t := u[p.tier]
		t.Pods++
		t.RequestMilli += p.milli
		u[p.tier] = t
	}
	return u
}

// pick returns one of choices with the given weights.
func pick[T any](rng *rand.Rand, choices []T, weights []float64) T {
	var sum float64
	for _, w := range weights {
		sum += w
	}
	r := rng.Float64() * sum
	for i, w := range weights {
		if r < w {
			return choices[i]
		}
		r -= w
	}
	return choices[len(choices)-1]
}

// genNodes builds n nodes with varied sizes, agents and resident load:
// about one node in seven has its critical fence (nearly) full, the rest
// carry up to half their fenceable cores in critical pods, plus high and
// batch load.
func genNodes(rng *rand.Rand, n int, reserveMilli int64) []nodeSpec {
	nodes := make([]nodeSpec, n)
	for i := range nodes {
		nd := nodeSpec{name: fmt.Sprintf("sim-%03d", i)}
		nd.cores = pick(rng, []int64{8, 16, 32, 64}, []float64{0.2, 0.4, 0.3, 0.1})
		nd.kind = pick(rng, []annotationKind{kindEnforcing, kindObserveOnly, kindStale, kindMissing, kindMalformed}, []float64{0.85, 0.05, 0.04, 0.04, 0.02})
		nd.backend = pick(rng, []string{wellknown.BackendSCXLayered, wellknown.BackendCgroup}, []float64{0.7, 0.3})
		if nd.kind == kindObserveOnly {
			nd.backend = wellknown.BackendObserveOnly
		}
		alloc := nd.allocMilli()
		fenceCores := max(0, (alloc-reserveMilli)/1000)
		critCores := int64(rng.IntN(int(fenceCores/2) + 1))
		if rng.Float64() < 0.15 {
			critCores = max(0, fenceCores-int64(rng.IntN(2)))
		}
		add := func(tier wellknown.Tier, budget int64, sizes []int64) int64 {
			var used int64
			for {
				m := sizes[rng.IntN(len(sizes))]
				if used+m > budget {
					return used
				}
				used += m
				nd.resident = append(nd.resident, podSpec{name: fmt.Sprintf("%s-r%d", nd.name, len(nd.resident)), tier: tier, milli: m})
			}
		}
		used := add(wellknown.TierCritical, critCores*1000, []int64{1000, 2000, 3000, 4000})
		// Leave room on the node: high up to 15 %, batch up to 25 % of
		// allocatable, never past 80 % in all.
		used += add(wellknown.TierHigh, min(alloc*15/100, alloc*80/100-used), []int64{250, 500, 1000, 2000})
		batchTier := pick(rng, []wellknown.Tier{wellknown.TierNormal, wellknown.TierLow, wellknown.TierBackground}, []float64{0.5, 0.3, 0.2})
		add(batchTier, min(int64(rng.Float64()*float64(alloc)*0.25), alloc*80/100-used), []int64{100, 250, 500, 1000})
		nodes[i] = nd
	}
	return nodes
}

// genWorkload builds the pods to schedule: 10 % critical, 20 % high, 35 %
// normal, 20 % low, 15 % background, with per-tier request sizes.
func genWorkload(rng *rand.Rand, n int) []podSpec {
	tiers := []wellknown.Tier{wellknown.TierCritical, wellknown.TierHigh, wellknown.TierNormal, wellknown.TierLow, wellknown.TierBackground}
	weights := []float64{0.10, 0.20, 0.35, 0.20, 0.15}
	sizes := map[wellknown.Tier][]int64{
		wellknown.TierCritical:   {1000, 1500, 2000, 3000, 4000},
		wellknown.TierHigh:       {250, 500, 1000, 2000},
		wellknown.TierNormal:     {100, 250, 500, 1000, 2000},
		wellknown.TierLow:        {100, 250, 500, 1000},
		wellknown.TierBackground: {100, 250, 500},
	}
	pods := make([]podSpec, n)
	for i := range pods {
		t := pick(rng, tiers, weights)
		s := sizes[t]
		pods[i] = podSpec{name: fmt.Sprintf("w-%05d", i), tier: t, milli: s[rng.IntN(len(s))]}
	}
	return pods
}

// podObject renders a pod. Memory is requested at 2 GiB per core so that
// NodeResourcesBalancedAllocation sees realistic pods.
func podObject(ns string, p podSpec, schedulerName string, labels map[string]string) *corev1.Pod {
	cpu := p.milli
	var annotations map[string]string
	if p.deflated > 0 {
		cpu = p.deflated
		annotations = map[string]string{wellknown.OriginalCPURequestsAnnotation: p.originals}
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: p.name, Namespace: ns, Labels: labels, Annotations: annotations},
		Spec: corev1.PodSpec{
			SchedulerName:     schedulerName,
			PriorityClassName: "infera-" + string(p.tier),
			Containers: []corev1.Container{{
				Name: "app", Image: "registry.invalid/app:never-pulled",
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
					corev1.ResourceCPU:    *resource.NewMilliQuantity(cpu, resource.DecimalSI),
					corev1.ResourceMemory: *resource.NewQuantity(p.milli*2<<20, resource.BinarySI),
				}},
			}},
		},
	}
}

// createNodes registers the nodes: Ready, untainted (no node-lifecycle
// controller runs to lift the not-ready taint), 4 GiB per core.
func createNodes(ctx context.Context, cs kubernetes.Interface, nodes []nodeSpec, workers int) error {
	return parallel(len(nodes), workers, func(i int) error {
		nd := nodes[i]
		capacity := corev1.ResourceList{
			corev1.ResourceCPU:    *resource.NewQuantity(nd.cores, resource.DecimalSI),
			corev1.ResourceMemory: *resource.NewQuantity(nd.cores*4<<30, resource.BinarySI),
			corev1.ResourcePods:   resource.MustParse("250"),
		}
		obj := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nd.name, Labels: map[string]string{
			corev1.LabelHostname: nd.name, benchLabel: "true",
		}}}
		created, err := cs.CoreV1().Nodes().Create(ctx, obj, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("failed to create node %s: %w", nd.name, err)
		}
		now := metav1.Now()
		created.Status.Capacity, created.Status.Allocatable = capacity, capacity.DeepCopy()
		created.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "Simulated", LastHeartbeatTime: now, LastTransitionTime: now}}
		updated, err := cs.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{})
		if err != nil {
			return fmt.Errorf("failed to set status of node %s: %w", nd.name, err)
		}
		updated.Spec.Taints = nil
		if _, err := cs.CoreV1().Nodes().Update(ctx, updated, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("failed to lift taints of node %s: %w", nd.name, err)
		}
		return nil
	})
}

// bindResident creates each node's resident pods and binds them through
// the binding subresource, as a scheduler would, so they carry the
// PodScheduled condition with their binding time.
func bindResident(ctx context.Context, cs kubernetes.Interface, ns string, nodes []nodeSpec, workers int) error {
	type job struct {
		node string
		pod  podSpec
	}
	var jobs []job
	for _, nd := range nodes {
		for _, p := range nd.resident {
			jobs = append(jobs, job{nd.name, p})
		}
	}
	return parallel(len(jobs), workers, func(i int) error {
		j := jobs[i]
		obj := podObject(ns, j.pod, "no-scheduler", map[string]string{benchLabel: "resident"})
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, obj, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("failed to create resident pod %s: %w", obj.Name, err)
		}
		b := &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Name: obj.Name, Namespace: ns}, Target: corev1.ObjectReference{Kind: "Node", Name: j.node}}
		if err := cs.CoreV1().Pods(ns).Bind(ctx, b, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("failed to bind resident pod %s: %w", obj.Name, err)
		}
		return nil
	})
}

// annotate writes every node's tier-load as its agent would right now:
// fresh for enforcing and observe-only agents, ten minutes old for stale
// ones, garbage for malformed ones, nothing for missing ones.
func annotate(ctx context.Context, cs kubernetes.Interface, nodes []nodeSpec, reserveMilli int64, workers int) error {
	now := time.Now()
	return parallel(len(nodes), workers, func(i int) error {
		nd := nodes[i]
		var value string
		switch nd.kind {
		case kindMissing:
			return nil
		case kindMalformed:
			value = `{"v":1,"ts":"not a time","tiers":{"critical":{}}}`
		default:
			ts := now
			if nd.kind == kindStale {
				ts = now.Add(-10 * time.Minute)
			}
			u := nd.residentUsage()
			var fenced int64
			if nd.backend != wellknown.BackendObserveOnly {
				fenced = (u[wellknown.TierCritical].RequestMilli + 999) / 1000 * 1000
			}
			v, err := wellknown.TierLoad{TS: ts, Gen: 1, Backend: nd.backend, AllocatableMilli: nd.allocMilli(), FencedMilli: fenced, Tiers: u}.Marshal()
			if err != nil {
				return fmt.Errorf("failed to render tier-load of %s: %w", nd.name, err)
			}
			value = v
		}
		patch := fmt.Appendf(nil, `{"metadata":{"annotations":{%q:%q}}}`, wellknown.TierLoadAnnotation, value)
		if _, err := cs.CoreV1().Nodes().Patch(ctx, nd.name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			return fmt.Errorf("failed to annotate node %s: %w", nd.name, err)
		}
		return nil
	})
}

// ensureNamespace creates ns if it does not exist.
func ensureNamespace(ctx context.Context, cs kubernetes.Interface, ns string) error {
	_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("failed to create namespace %s: %w", ns, err)
	}
	return nil
}

// parallel runs f(0..n-1) on workers goroutines and returns the first error.
func parallel(n, workers int, f func(int) error) error {
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
		next  = make(chan int)
	)
	for range workers {
		wg.Go(func() {
			for i := range next {
				if err := f(i); err != nil {
					once.Do(func() { first = err })
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return first
}
