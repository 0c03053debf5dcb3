package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/go-logr/logr/funcr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/schedulerplugin/schedulertest"
	"github.com/infera-io/temper/test/envtest"
	"github.com/infera-io/temper/webhooks/overcommit"
)

// DensityReport is what -density writes to -out.
type DensityReport struct {
	Command string    `json:"command"`
	Date    time.Time `json:"date"`
	Machine Machine   `json:"machine"`
	Setup   Setup     `json:"setup"`
	// Settings are the overcommit ratios and floor applied to the batch
	// tiers in the "with overcommit" arm.
	Settings overcommit.Settings `json:"overcommitSettings"`
	Arms     []DensityArm        `json:"arms"`
	// ExtraPodsPercent is how many more workload pods the overcommit arm
	// bound than the plain one, in percent of the plain arm's.
	ExtraPodsPercent float64 `json:"extraPodsPercent"`
}

// DensityArm is one arm: the same backlog, with or without deflation.
type DensityArm struct {
	Name        string         `json:"name"`
	Profile     string         `json:"profile"`
	Created     int            `json:"created"`
	Bound       int            `json:"bound"`
	BoundByTier map[string]int `json:"boundByTier"`
	// RequestedCores is the CPU the bound pods request as admitted
	// (deflated in the overcommit arm), OriginalCores as written.
	RequestedCores float64   `json:"requestedCores"`
	OriginalCores  float64   `json:"originalCores"`
	Placement      Placement `json:"placement"`
}

// runDensity measures how many more pods of the workload mix fit on the
// same simulated nodes when the overcommit webhook's Compute deflates the
// batch tiers' requests by the OvercommitProfile defaults (the profile
// applied to every batch pod's namespace) than without it. Both arms use the
// infera profile; each fills the nodes with the mix in batches (fillArm)
// until more than 2 % of the created pods stay unbound.
func runDensity(ctx context.Context, o options) error {
	report := DensityReport{Command: commandLine(), Date: time.Now().UTC().Truncate(time.Second), Machine: machine(), Settings: overcommit.DefaultSettings()}
	env, err := envtest.Start(envtest.Options{PriorityClasses: true})
	if err != nil {
		return err
	}
	defer func() {
		if err := env.Stop(); err != nil {
			logf("envtest: %v", err)
		}
	}()
	cfgPath := o.config
	if !filepath.IsAbs(cfgPath) {
		cfgPath = filepath.Join(env.Root, cfgPath)
	}
	reserve, err := fenceReserve(cfgPath)
	if err != nil {
		return err
	}
	rc := rest.CopyConfig(env.Config)
	rc.QPS, rc.Burst = 10000, 10000
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("failed to create client: %w", err)
	}
	if err := ensureNamespace(ctx, cs, namespace); err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(o.seed, 0x7e3))
	nodes := genNodes(rng, o.nodes, reserve)
	workload := genWorkload(rng, o.pods)
	deflated, err := deflate(workload, report.Settings)
	if err != nil {
		return err
	}
	report.Setup = describe(o, nodes, workload, reserve)
	logf("Creating %d nodes (%d cores) with %d resident pods", o.nodes, report.Setup.AllocatableCores, report.Setup.ResidentPods)
	if err := createNodes(ctx, cs, nodes, o.workers); err != nil {
		return err
	}
	if err := bindResident(ctx, cs, namespace, nodes, o.workers); err != nil {
		return err
	}
	time.Sleep(1100 * time.Millisecond)

	dir, err := os.MkdirTemp("", "temper-bench-")
	if err != nil {
		return fmt.Errorf("failed to create temp dir: %w", err)
	}
	defer func() { _ = os.RemoveAll(dir) }()
	runCfg, err := schedulertest.WriteConfig(cfgPath, dir, schedulertest.ConfigOverrides{Kubeconfig: env.Kubeconfig, QPS: float32(o.qps), Burst: int32(o.qps)})
	if err != nil {
		return err
	}
	schedLog := funcr.New(func(prefix, args string) { fmt.Fprintln(os.Stderr, "scheduler:", prefix, args) }, funcr.Options{Verbosity: 0})
	startScheduler := func() func() error { return schedulertest.Start(klog.NewContext(ctx, schedLog), runCfg) }

	arms := []struct {
		name string
		pods []podSpec
	}{{"plain", workload}, {"overcommit", deflated}}
	for i, arm := range arms {
		if err := annotate(ctx, cs, nodes, reserve, o.workers); err != nil {
			return err
		}
		logf("Density arm %s: %d pods on %d nodes", arm.name, len(arm.pods), o.nodes)
		placed, created, err := fillArm(ctx, cs, namespace, fmt.Sprintf("%s-r%d", inferaProfile, i+1), arm.pods, 100, o.workers, 10*time.Second, 0.02, startScheduler)
		if err != nil {
			return err
		}
		d := DensityArm{Name: arm.name, Profile: inferaProfile, Created: created, Bound: len(placed.Order), BoundByTier: map[string]int{},
			Placement: judge(nodes, workload, placed, reserve)}
		spec := map[string]podSpec{}
		for _, p := range arm.pods {
			spec[p.name] = p
		}
		var req, orig int64
		for _, name := range placed.Order {
			p := spec[name]
			d.BoundByTier[string(p.tier)]++
			orig += p.milli
			if p.deflated > 0 {
				req += p.deflated
			} else {
				req += p.milli
			}
		}
		d.RequestedCores, d.OriginalCores = round1(float64(req)/1000), round1(float64(orig)/1000)
		report.Arms = append(report.Arms, d)
		logf("  %s: %d/%d bound %v; requested %.1f cores (%.1f as written); critical unfenceable %d/%d",
			arm.name, d.Bound, d.Created, d.BoundByTier, d.RequestedCores, d.OriginalCores, d.Placement.CriticalUnfenceable, d.Placement.CriticalPods)
		if err := cleanArm(ctx, cs, inferaProfile, i+1); err != nil {
			return err
		}
	}
	if p := report.Arms[0].Bound; p > 0 {
		report.ExtraPodsPercent = round1(float64(report.Arms[1].Bound-p) / float64(p) * 100)
	}
	report.Machine.LoadAfter = loadavg()
	logf("density: %+.1f %% workload pods with overcommit (%d vs %d); loadavg %s -> %s",
		report.ExtraPodsPercent, report.Arms[1].Bound, report.Arms[0].Bound, report.Machine.LoadBefore, report.Machine.LoadAfter)
	if o.out != "" {
		b, err := json.MarshalIndent(report, "", "  ")
		if err != nil {
			return fmt.Errorf("failed to render report: %w", err)
		}
		path := o.out
		if !filepath.IsAbs(path) {
			path = filepath.Join(env.Root, path)
		}
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			return fmt.Errorf("failed to write report: %w", err)
		}
		logf("Wrote %s", path)
	}
	return nil
}

// deflate returns the workload as the overcommit webhook admits it in a
// namespace whose OvercommitProfile has settings s: each pod goes through
// the webhook's own Compute (the admission server around it is not run
// here), with spec.priority resolved from its PriorityClass as the API
// server does before mutating webhooks.
func deflate(workload []podSpec, s overcommit.Settings) ([]podSpec, error) {
	prio := map[wellknown.Tier]int32{}
	for _, pc := range wellknown.PriorityClasses() {
		prio[pc.Tier] = pc.Value
	}
	out := make([]podSpec, len(workload))
	for i, p := range workload {
		out[i] = p
		obj := podObject(namespace, p, inferaProfile, nil)
		v := prio[p.tier]
		obj.Spec.Priority = &v
		plan := overcommit.Compute(obj, s, nil)
		if len(plan.Changes) == 0 {
			continue
		}
		if len(plan.Changes) != 1 || plan.Changes[0].Container != obj.Spec.Containers[0].Name {
			return nil, fmt.Errorf("pod %s: unexpected overcommit plan %+v", p.name, plan)
		}
		out[i].deflated = plan.Changes[0].To.MilliValue()
		out[i].originals = plan.Originals
	}
	return out, nil
}

// fillArm runs the scheduler and creates the workload in batches of batch
// pods, in its (mixed) order, letting each batch settle (no binding for
// settle) before the next, until more than maxUnbound of the created pods
// stay unbound: the nodes are full for this mix. Filling in batches keeps
// the mix: a single backlog would be drained in priority order, critical
// and high first, and measure only what is left for batch pods.
func fillArm(ctx context.Context, cs kubernetes.Interface, ns, armLabel string, workload []podSpec, batch, workers int, settle time.Duration, maxUnbound float64,
	startScheduler func() (stop func() error)) (Placed, int, error) {
	var (
		mu     sync.Mutex
		nodeOf = map[string]string{}
		order  []string
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
		mu.Lock()
		defer mu.Unlock()
		if _, seen := nodeOf[p.Name]; !seen {
			nodeOf[p.Name] = p.Spec.NodeName
			order = append(order, p.Name)
		}
	}
	if _, err := factory.Core().V1().Pods().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    observe,
		UpdateFunc: func(_, n any) { observe(n) },
	}); err != nil {
		return Placed{}, 0, fmt.Errorf("failed to watch pods: %w", err)
	}
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	factory.Start(watchCtx.Done())
	factory.WaitForCacheSync(watchCtx.Done())
	stop := startScheduler()

	bound := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(order)
	}
	created := 0
	for created < len(workload) && ctx.Err() == nil {
		next := workload[created:min(created+batch, len(workload))]
		err := parallel(len(next), workers, func(i int) error {
			obj := podObject(ns, next[i], inferaProfile, map[string]string{benchLabel: armLabel})
			if _, err := cs.CoreV1().Pods(ns).Create(ctx, obj, metav1.CreateOptions{}); err != nil {
				return fmt.Errorf("failed to create pod %s: %w", obj.Name, err)
			}
			return nil
		})
		if err != nil {
			_ = stop()
			return Placed{}, created, err
		}
		created += len(next)
		last, lastChange := -1, time.Now()
		for ctx.Err() == nil {
			n := bound()
			if n != last {
				last, lastChange = n, time.Now()
			}
			if n == created || time.Since(lastChange) > settle {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if float64(created-bound()) > maxUnbound*float64(created) {
			break
		}
	}
	if err := stop(); err != nil {
		return Placed{}, created, err
	}
	mu.Lock()
	defer mu.Unlock()
	return Placed{Order: append([]string(nil), order...), Node: nodeOf}, created, nil
}
