// Command webhook measures infera-manager against a real kube-apiserver
// (envtest), side by side in one run:
//
//  1. admission handler latency over TLS at fixed request rates (open loop:
//     requests are sent on schedule whether or not earlier ones returned),
//     for a pod the webhook deflates and for one it passes through;
//  2. end-to-end pod-create latency through the API server with the webhook
//     called (opted-in namespace) and not called (plain namespace),
//     interleaved;
//  3. reconcile latency from a Node annotation change to the NodeQoSReport
//     status, with N nodes.
//
// It prints a summary and writes JSON (docs/bench/webhook.json). Run it
// from the repository root:
//
//	go run ./test/bench/webhook -out docs/bench/webhook.json
//
// It talks only to 127.0.0.1 and stops by itself.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	configv1alpha1 "github.com/infera-io/temper/apis/config/v1alpha1"
	inferav1alpha1 "github.com/infera-io/temper/apis/infera/v1alpha1"
	"github.com/infera-io/temper/apis/wellknown"
	managerapp "github.com/infera-io/temper/cmd/infera-manager/app"
	"github.com/infera-io/temper/internal/certrotation"
	"github.com/infera-io/temper/test/envtest"
	"github.com/infera-io/temper/webhooks/overcommit"
)

type latency struct {
	Count  int     `json:"count"`
	Errors int     `json:"errors"`
	P50ms  float64 `json:"p50_ms"`
	P90ms  float64 `json:"p90_ms"`
	P99ms  float64 `json:"p99_ms"`
	MaxMs  float64 `json:"max_ms"`
	MeanMs float64 `json:"mean_ms"`
}

func summarize(ds []time.Duration, errs int) latency {
	if len(ds) == 0 {
		return latency{Errors: errs}
	}
	slices.Sort(ds)
	q := func(p float64) float64 {
		i := min(int(float64(len(ds))*p), len(ds)-1)
		return float64(ds[i].Microseconds()) / 1000
	}
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return latency{Count: len(ds), Errors: errs, P50ms: q(0.50), P90ms: q(0.90), P99ms: q(0.99),
		MaxMs: float64(ds[len(ds)-1].Microseconds()) / 1000, MeanMs: float64((sum / time.Duration(len(ds))).Microseconds()) / 1000}
}

type rateResult struct {
	Run        int     `json:"run"`
	RatePerSec int     `json:"rate_per_s"`
	Seconds    float64 `json:"seconds"`
	Deflated   latency `json:"deflated"`
	PassedBy   latency `json:"passed_through"`
}

type result struct {
	Command string            `json:"command"`
	Machine map[string]string `json:"machine"`
	Date    string            `json:"date"`
	Handler []rateResult      `json:"admission_handler_over_tls"`
	// HandlerSummary is, per rate, the median and spread over the runs of
	// each run's p99 (both arms pooled by taking the worse of the two).
	HandlerSummary []rateSummary  `json:"admission_handler_summary"`
	PodE2E         map[string]any `json:"pod_create_end_to_end"`
	Reconcil       map[string]any `json:"reconcile_nodeqosreport"`
	Notes          []string       `json:"notes"`
}

// rateSummary is one rate's p99 over the repeated runs.
type rateSummary struct {
	RatePerSec   int      `json:"rate_per_s"`
	Runs         int      `json:"runs"`
	P99MedianMs  float64  `json:"p99_median_ms"`
	P99MinMs     float64  `json:"p99_min_ms"`
	P99MaxMs     float64  `json:"p99_max_ms"`
	P50MedianMs  float64  `json:"p50_median_ms"`
	GoalP99Ms    float64  `json:"goal_p99_ms"`
	GoalP99Met   bool     `json:"goal_p99_met"`
	LoadAverages []string `json:"loadavg_per_run"`
}

func main() {
	out := flag.String("out", "", "write the JSON result here")
	runs := flag.Int("runs", 3, "repetitions of the fixed-rate runs (rates interleaved within each)")
	seconds := flag.Duration("duration", 10*time.Second, "duration of each fixed-rate run")
	rates := flag.String("rates", "200,1000", "request rates per second")
	pods := flag.Int("pods", 200, "pods created per arm of the end-to-end run")
	nodes := flag.Int("nodes", 500, "nodes in the reconcile run")
	changes := flag.Int("changes", 200, "annotation changes timed in the reconcile run")
	flag.Parse()
	ctrllog.SetLogger(logr.Discard())
	if err := run(*out, *runs, *seconds, *rates, *pods, *nodes, *changes); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func machine() map[string]string {
	uname, _ := exec.Command("uname", "-r").Output()
	nproc, _ := exec.Command("nproc").Output()
	cpu := ""
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				cpu = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
				break
			}
		}
	}
	return map[string]string{"nproc": strings.TrimSpace(string(nproc)), "uname_r": strings.TrimSpace(string(uname)),
		"cpu": cpu, "go": runtime.Version(), "GOMAXPROCS": fmt.Sprint(runtime.GOMAXPROCS(0)), "loadavg_at_start": loadavg()}
}

// loadavg is /proc/loadavg's first three fields: the machine is shared, and
// the numbers mean little without it.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

func run(out string, runs int, dur time.Duration, rateList string, nPods, nNodes, nChanges int) error {
	res := result{Command: "go run ./test/bench/webhook " + strings.Join(os.Args[1:], " "), Machine: machine(), Date: time.Now().UTC().Format(time.RFC3339)}
	fmt.Println("machine:", res.Machine)

	env, err := envtest.Start(envtest.Options{PriorityClasses: true})
	if err != nil {
		return err
	}
	defer func() { _ = env.Stop() }()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	port, probes := freePort(), freePort()
	stop, err := startManagerProcess(ctx, env, port, probes)
	if err != nil {
		return err
	}
	defer stop()
	c := env.Client
	for _, ns := range []*corev1.Namespace{
		{ObjectMeta: metav1.ObjectMeta{Name: "bench-in", Labels: map[string]string{wellknown.OvercommitLabel: wellknown.OvercommitEnabledValue}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "bench-out"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "bench-high", Labels: map[string]string{wellknown.OvercommitLabel: wellknown.OvercommitEnabledValue}}},
	} {
		if err := c.Create(ctx, ns); err != nil {
			return err
		}
	}
	time.Sleep(2 * time.Second) // caches and the webhook configuration settle

	// 1. Handler latency over TLS.
	var secret corev1.Secret
	if err := c.Get(ctx, client.ObjectKey{Namespace: configv1alpha1.DefaultPlatformNamespace, Name: configv1alpha1.DefaultWebhookSecretName}, &secret); err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(secret.Data[certrotation.CABundleKey])
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 64,
	}}
	url := fmt.Sprintf("https://127.0.0.1:%d%s", port, overcommit.Path)
	deflate, err := review(pod("bench-in", "infera-low", -100), "bench-in")
	if err != nil {
		return err
	}
	pass, err := review(pod("bench-high", "infera-critical", 1_000_000), "bench-high")
	if err != nil {
		return err
	}
	if err := checkReview(hc, url, deflate, true); err != nil {
		return err
	}
	if err := checkReview(hc, url, pass, false); err != nil {
		return err
	}
	// Warm up: connections, TLS sessions, caches, the manager's heap.
	for i := range 500 {
		body := deflate
		if i%2 == 1 {
			body = pass
		}
		if _, err := post(hc, url, body); err != nil {
			return err
		}
	}
	var rates []int
	for _, r := range strings.Split(rateList, ",") {
		var rate int
		if _, err := fmt.Sscan(r, &rate); err != nil || rate <= 0 {
			return fmt.Errorf("bad rate %q", r)
		}
		rates = append(rates, rate)
	}
	loads := map[int][]string{}
	for run := 1; run <= runs; run++ {
		for _, rate := range rates {
			la := loadavg()
			rr := fixedRate(hc, url, rate, dur, deflate, pass)
			rr.Run = run
			loads[rate] = append(loads[rate], la)
			res.Handler = append(res.Handler, rr)
			fmt.Printf("run %d: handler over TLS at %d/s for %s (load %s): deflated p50 %.2f ms p99 %.2f ms (%d, %d errors); passed through p50 %.2f ms p99 %.2f ms\n",
				run, rate, dur, la, rr.Deflated.P50ms, rr.Deflated.P99ms, rr.Deflated.Count, rr.Deflated.Errors, rr.PassedBy.P50ms, rr.PassedBy.P99ms)
		}
	}
	for _, rate := range rates {
		var p99, p50 []float64
		for _, rr := range res.Handler {
			if rr.RatePerSec == rate {
				p99 = append(p99, max(rr.Deflated.P99ms, rr.PassedBy.P99ms))
				p50 = append(p50, max(rr.Deflated.P50ms, rr.PassedBy.P50ms))
			}
		}
		slices.Sort(p99)
		slices.Sort(p50)
		s := rateSummary{RatePerSec: rate, Runs: len(p99), P99MedianMs: p99[len(p99)/2], P99MinMs: p99[0], P99MaxMs: p99[len(p99)-1],
			P50MedianMs: p50[len(p50)/2], GoalP99Ms: 2, LoadAverages: loads[rate]}
		s.GoalP99Met = s.P99MedianMs < s.GoalP99Ms
		res.HandlerSummary = append(res.HandlerSummary, s)
		fmt.Printf("summary at %d/s over %d runs: p99 median %.2f ms (min %.2f, max %.2f), p50 median %.2f ms; goal p99 < 2 ms met: %v\n",
			rate, s.Runs, s.P99MedianMs, s.P99MinMs, s.P99MaxMs, s.P50MedianMs, s.GoalP99Met)
	}

	// 2. End-to-end pod create through the API server, interleaved.
	var with, without []time.Duration
	for i := range nPods {
		for _, arm := range []string{"bench-in", "bench-out"} {
			p := pod(arm, "infera-low", -100)
			p.GenerateName, p.Name = "", fmt.Sprintf("e2e-%d", i)
			p.Spec.Priority = nil // the API server resolves it
			start := time.Now()
			if err := c.Create(ctx, p); err != nil {
				return err
			}
			d := time.Since(start)
			_, deflated := p.Annotations[wellknown.OriginalCPURequestsAnnotation]
			if deflated != (arm == "bench-in") {
				return fmt.Errorf("pod %s/%s: deflated=%v", arm, p.Name, deflated)
			}
			if arm == "bench-in" {
				with = append(with, d)
			} else {
				without = append(without, d)
			}
		}
	}
	sw, so := summarize(with, 0), summarize(without, 0)
	res.PodE2E = map[string]any{"webhook_called": sw, "webhook_not_called": so,
		"added_p50_ms": round(sw.P50ms - so.P50ms), "added_p99_ms": round(sw.P99ms - so.P99ms), "pods_per_arm": nPods}
	fmt.Printf("pod create end to end (%d per arm, interleaved): with webhook p50 %.2f ms p99 %.2f ms; without p50 %.2f ms p99 %.2f ms; added p50 %.2f ms\n",
		nPods, sw.P50ms, sw.P99ms, so.P50ms, so.P99ms, sw.P50ms-so.P50ms)

	// 3. Reconcile latency with nNodes nodes.
	rec, err := reconcileLatency(ctx, env, nNodes, nChanges)
	if err != nil {
		return err
	}
	res.Reconcil = rec
	res.Notes = []string{
		"Everything shares the machine's cores: etcd, kube-apiserver, infera-manager (its own process, built from cmd/infera-manager) and the load generator run on the same host.",
		"Handler runs are open loop over one HTTP/2 TLS connection pool; deflated and passed-through requests alternate within each run.",
		"End-to-end latency is a sequential client.Create through the API server; the webhook arm includes the API server's TLS call to the webhook.",
	}
	res.Machine["loadavg_at_end"] = loadavg()
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if out != "" {
		if err := os.WriteFile(out, append(b, '\n'), 0o644); err != nil {
			return err
		}
		fmt.Println("wrote", out)
	}
	return nil
}

func freePort() int32 {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer func() { _ = l.Close() }()
	return int32(l.Addr().(*net.TCPAddr).Port)
}

// startManagerProcess builds cmd/infera-manager and runs it as its own
// process, as in a cluster, so that the load generator's garbage collector
// and goroutines do not run inside the manager. It returns once /readyz
// answers 200.
func startManagerProcess(ctx context.Context, env *envtest.Env, port, probes int32) (func(), error) {
	dir, err := os.MkdirTemp("", "webhook-bench-")
	if err != nil {
		return nil, err
	}
	bin := filepath.Join(dir, "infera-manager")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/infera-manager").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build: %w: %s", err, out)
	}
	cfg := managerapp.LocalConfig(port)
	cfg.MetricsBindAddress = "0"
	cfg.HealthProbeBindAddress = fmt.Sprintf("127.0.0.1:%d", probes)
	b, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, b, 0o600); err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, bin, "--config="+cfgPath, "--kubeconfig="+env.Kubeconfig, "-v=0")
	logf, err := os.Create(filepath.Join(dir, "manager.log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	stop := func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		_ = logf.Close()
		_ = os.RemoveAll(dir)
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", probes))
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return stop, nil
			}
		}
		if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("infera-manager not ready after 90s (log in %s)", logf.Name())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func round(v float64) float64 { return float64(int(v*100+0.5*sign(v))) / 100 }

func sign(v float64) float64 {
	if v < 0 {
		return -1
	}
	return 1
}

func pod(ns, class string, prio int32) *corev1.Pod {
	always := corev1.ContainerRestartPolicyAlways
	c := func(name, req, lim string) corev1.Container {
		ct := corev1.Container{Name: name, Image: "registry.invalid/app:1", Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(req), corev1.ResourceMemory: resource.MustParse("128Mi")}}}
		if lim != "" {
			ct.Resources.Limits = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(lim)}
		}
		return ct
	}
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "web-7d9f-", Namespace: ns, Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{
			PriorityClassName: class, Priority: &prio,
			InitContainers: []corev1.Container{c("proxy", "200m", "1")},
			Containers:     []corev1.Container{c("app", "2", "4"), c("metrics", "100m", "")},
		},
	}
	p.Spec.InitContainers[0].RestartPolicy = &always
	return p
}

func review(p *corev1.Pod, ns string) ([]byte, error) {
	raw, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	return json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID: "bench", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Namespace: ns, Operation: admissionv1.Create, Object: k8sruntime.RawExtension{Raw: raw},
		},
	})
}

func post(hc *http.Client, url string, body []byte) (*admissionv1.AdmissionResponse, error) {
	resp, err := hc.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	var out admissionv1.AdmissionReview
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, err
	}
	if out.Response == nil || !out.Response.Allowed {
		return nil, fmt.Errorf("not allowed: %+v", out.Response)
	}
	return out.Response, nil
}

func checkReview(hc *http.Client, url string, body []byte, wantPatch bool) error {
	r, err := post(hc, url, body)
	if err != nil {
		return err
	}
	if (len(r.Patch) > 0) != wantPatch {
		return fmt.Errorf("patch %s, want patch=%v", r.Patch, wantPatch)
	}
	return nil
}

// fixedRate sends rate requests per second for dur, alternating the two
// bodies, each on its own goroutine at its scheduled time.
func fixedRate(hc *http.Client, url string, rate int, dur time.Duration, deflate, pass []byte) rateResult {
	n := int(dur.Seconds() * float64(rate))
	interval := time.Second / time.Duration(rate)
	var mu sync.Mutex
	var a, b []time.Duration
	var ea, eb int
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		body, isA := deflate, i%2 == 0
		if !isA {
			body = pass
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			t0 := time.Now()
			r, err := post(hc, url, body)
			d := time.Since(t0)
			ok := err == nil && (len(r.Patch) > 0) == isA
			mu.Lock()
			defer mu.Unlock()
			switch {
			case isA && ok:
				a = append(a, d)
			case isA:
				ea++
			case ok:
				b = append(b, d)
			default:
				eb++
			}
		}()
	}
	wg.Wait()
	return rateResult{RatePerSec: rate, Seconds: dur.Seconds(), Deflated: summarize(a, ea), PassedBy: summarize(b, eb)}
}

// reconcileLatency creates n nodes with a tier-load, waits for their
// reports, then changes one node's tier-load at a time and times how long the
// new generation takes to reach the report's status, seen through a watch.
func reconcileLatency(ctx context.Context, env *envtest.Env, n, changes int) (map[string]any, error) {
	c := env.Client
	load := func(gen int64) string {
		v, _ := wellknown.TierLoad{TS: time.Now(), Gen: gen, Backend: wellknown.BackendCgroup, AllocatableMilli: 8000,
			Tiers: map[wellknown.Tier]wellknown.TierUsage{wellknown.TierNormal: {Pods: int32(gen % 50), RequestMilli: gen}}}.Marshal()
		return v
	}
	wc, err := client.NewWithWatch(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		return nil, err
	}
	var list inferav1alpha1.NodeQoSReportList
	w, err := wc.Watch(ctx, &list)
	if err != nil {
		return nil, err
	}
	defer w.Stop()
	type key struct {
		node string
		gen  int64
	}
	seen := make(chan key, 4096)
	go func() {
		for ev := range w.ResultChan() {
			if ev.Type != watch.Added && ev.Type != watch.Modified {
				continue
			}
			if r, ok := ev.Object.(*inferav1alpha1.NodeQoSReport); ok {
				seen <- key{r.Name, r.Status.EnforcementGeneration}
			}
		}
	}()

	start := time.Now()
	for i := range n {
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("bench-node-%03d", i),
			Annotations: map[string]string{wellknown.TierLoadAnnotation: load(1), wellknown.AgentStatusAnnotation: wellknown.AgentStatusEnforcingCgroup}}}
		if err := c.Create(ctx, node); err != nil {
			return nil, err
		}
	}
	created := time.Since(start)
	got := map[string]bool{}
	deadline := time.After(5 * time.Minute)
	for len(got) < n {
		select {
		case k := <-seen:
			if k.gen == 1 {
				got[k.node] = true
			}
		case <-deadline:
			return nil, fmt.Errorf("only %d of %d reports after 5 min", len(got), n)
		}
	}
	allReports := time.Since(start)
	fmt.Printf("reconcile: %d nodes created in %s, all %d reports mirrored %s after the first create\n", n, created.Round(time.Millisecond), n, allReports.Round(time.Millisecond))

	var ds []time.Duration
	for i := range changes {
		name := fmt.Sprintf("bench-node-%03d", (i*37)%n)
		gen := int64(100 + i)
		var node corev1.Node
		if err := c.Get(ctx, client.ObjectKey{Name: name}, &node); err != nil {
			return nil, err
		}
		before := node.DeepCopy()
		node.Annotations[wellknown.TierLoadAnnotation] = load(gen)
		t0 := time.Now()
		if err := c.Patch(ctx, &node, client.MergeFrom(before)); err != nil {
			return nil, err
		}
		timeout := time.After(30 * time.Second)
	wait:
		for {
			select {
			case k := <-seen:
				if k.node == name && k.gen == gen {
					ds = append(ds, time.Since(t0))
					break wait
				}
			case <-timeout:
				return nil, fmt.Errorf("report %s never reached gen %d", name, gen)
			}
		}
	}
	s := summarize(ds, 0)
	fmt.Printf("reconcile: annotation change → NodeQoSReport status with %d nodes: p50 %.2f ms p99 %.2f ms (%d changes)\n", n, s.P50ms, s.P99ms, changes)
	return map[string]any{"nodes": n, "create_all_nodes_s": created.Seconds(), "all_reports_mirrored_s": allReports.Seconds(),
		"annotation_change_to_status": s}, nil
}
