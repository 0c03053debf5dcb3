// Command soak is the churn soak of issue #18 (`make soak`): the real
// infera-agent binary on a kubelet-shaped tree in this machine's real
// cgroup v1 hierarchies (test/realnode), against envtest's kube-apiserver
// and etcd, while
//
//   - pods of every tier are created and deleted at a steady rate (their
//     cgroups made and removed as the kubelet would, with a real process
//     in each), keeping a steady population;
//   - the agent is SIGKILLed and restarted at random intervals (during the
//     first 60 % of the run; the rest is the leak window, one agent process
//     sampled for goroutines and RSS);
//   - kube-apiserver is stopped and started again (same etcd and port);
//   - safe mode is switched on and off.
//
// At the end it checks that every pod left is enforced at its tier's value,
// that the agent reports no enforcement error (agent-status, /readyz), that
// goroutines and RSS did not grow over the leak window, and, after safe
// mode, that every cgroup file is byte for byte what the kubelet-shaped
// tree had. It prints a JSON summary and exits 1 when a check fails.
//
//	sudo go run ./test/soak -duration 3m
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/go-logr/logr"

	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/internal/localcluster"
	"github.com/infera-io/temper/test/envtest"
	"github.com/infera-io/temper/test/realnode"
)

type options struct {
	duration     time.Duration
	pods         int
	rate         float64
	seed         uint64
	out          string
	killMin      time.Duration
	killMax      time.Duration
	apiRestarts  int
	safeModeGap  time.Duration
	sampleEvery  time.Duration
	leakFraction float64
}

func main() {
	var o options
	flag.DurationVar(&o.duration, "duration", 3*time.Minute, "how long to churn")
	flag.IntVar(&o.pods, "pods", 24, "steady pod population")
	flag.Float64Var(&o.rate, "rate", 1, "pod creations or deletions per second")
	flag.Uint64Var(&o.seed, "seed", 0, "random seed (0: from the clock); printed in the summary")
	flag.StringVar(&o.out, "out", "", "write the JSON summary here too")
	flag.DurationVar(&o.killMin, "kill-min", 10*time.Second, "shortest interval between agent SIGKILLs")
	flag.DurationVar(&o.killMax, "kill-max", 30*time.Second, "longest interval between agent SIGKILLs")
	flag.IntVar(&o.apiRestarts, "apiserver-restarts", 2, "kube-apiserver stop/start cycles, spread over the run")
	flag.DurationVar(&o.safeModeGap, "safe-mode-every", 40*time.Second, "mean interval between safe-mode periods (each 4-8 s)")
	flag.DurationVar(&o.sampleEvery, "sample-every", 3*time.Second, "goroutine and RSS sampling interval")
	flag.Float64Var(&o.leakFraction, "leak-window", 0.4, "final fraction of the run without agent kills, for the goroutine and RSS trend")
	flag.Parse()
	if o.seed == 0 {
		o.seed = uint64(time.Now().UnixNano())
	}
	ctrllog.SetLogger(logr.Discard())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	sum, err := run(ctx, o)
	stop()
	b, _ := json.MarshalIndent(sum, "", "  ")
	fmt.Println(string(b))
	if o.out != "" {
		_ = os.WriteFile(o.out, append(b, '\n'), 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
}

// summary is what a run reports.
type summary struct {
	Seed               uint64    `json:"seed"`
	Duration           string    `json:"duration"`
	Started            time.Time `json:"started"`
	PodsCreated        int       `json:"podsCreated"`
	PodsDeleted        int       `json:"podsDeleted"`
	PodsAtEnd          int       `json:"podsAtEnd"`
	ChurnSkipped       int       `json:"churnSkippedAPIServerDown"`
	AgentKills         int       `json:"agentKills"`
	APIServerRestarts  int       `json:"apiserverRestarts"`
	SafeModePeriods    int       `json:"safeModePeriods"`
	ReadyzSamples      int       `json:"readyzSamples"`
	ReadyzNot200       int       `json:"readyzNot200"`
	Goroutines         []float64 `json:"goroutines"`
	RSSMiB             []float64 `json:"rssMiB"`
	GoroutinesFirstQ   float64   `json:"goroutinesFirstQuarterMedian"`
	GoroutinesLastQ    float64   `json:"goroutinesLastQuarterMedian"`
	RSSFirstQMiB       float64   `json:"rssFirstQuarterMedianMiB"`
	RSSLastQMiB        float64   `json:"rssLastQuarterMedianMiB"`
	WriteErrors        float64   `json:"cgroupWriteErrorsLastAgent"`
	FinalStatus        string    `json:"finalAgentStatus"`
	MismatchedPods     []string  `json:"mismatchedPods,omitempty"`
	RestoreDiffs       int       `json:"filesNotAsTheKubeletHadThem"`
	Failures           []string  `json:"failures,omitempty"`
	LoadAvgStart       string    `json:"loadavgStart"`
	LoadAvgEnd         string    `json:"loadavgEnd"`
	WallSeconds        float64   `json:"wallSeconds"`
	AgentLogTailOnFail string    `json:"agentLogTail,omitempty"`
}

// tierSpec is a pod shape per tier and the value the agent must enforce.
type tierSpec struct {
	name       string
	class      string
	cpu        string
	guaranteed bool
	file, want string // the enforced value of the pod cgroup
}

var tiers = []tierSpec{
	{name: "critical", class: "infera-critical", cpu: "500m", guaranteed: true, file: "cpu.shares", want: "2048"}, // 512 ×4
	{name: "high", class: "infera-high", cpu: "200m", file: "cpu.shares", want: "408"},                            // 204 ×2
	{name: "normal", class: "infera-normal", cpu: "300m", file: "cpu.shares", want: "307"},                        // untouched
	{name: "low", class: "infera-low", cpu: "500m", file: "cpu.shares", want: "128"},                              // 512 ÷4
	{name: "background", class: "infera-background", cpu: "250m", file: "cpu.idle", want: "1"},
	{name: "besteffort", file: "cpu.idle", want: "1"}, // BestEffort: background
}

type livePod struct {
	obj   *corev1.Pod
	cg    *realnode.Pod
	tier  tierSpec
	stock map[string]string
}

type soak struct {
	o     options
	rng   *rand.Rand
	env   *envtest.Env
	node  *realnode.Node
	agent *realnode.Agent
	name  string
	pods  map[string]*livePod
	seq   int
	sum   *summary
	apiUp bool
	mu    sync.Mutex // sum's samples, written by the sampler
}

func run(ctx context.Context, o options) (sum *summary, err error) {
	start := time.Now()
	sum = &summary{Seed: o.seed, Duration: o.duration.String(), Started: start.UTC(), LoadAvgStart: loadavg()}
	defer func() {
		sum.WallSeconds = time.Since(start).Seconds()
		sum.LoadAvgEnd = loadavg()
		if err == nil && len(sum.Failures) > 0 {
			err = fmt.Errorf("%d checks failed: %s", len(sum.Failures), strings.Join(sum.Failures, "; "))
		}
	}()
	env, err := envtest.Start(envtest.Options{PriorityClasses: true, Restartable: true})
	if err != nil {
		return sum, err
	}
	s := &soak{o: o, rng: rand.New(rand.NewPCG(o.seed, o.seed^0x9e3779b97f4a7c15)), env: env, name: "soak-node",
		pods: map[string]*livePod{}, sum: sum, apiUp: true}
	defer func() {
		if !s.apiUp {
			_ = env.StartAPIServer()
		}
		_ = env.Stop()
	}()
	if s.node, err = realnode.NewNode("/sys/fs/cgroup"); err != nil {
		return sum, err
	}
	defer func() {
		if cerr := s.node.Cleanup(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	dir, err := os.MkdirTemp("", "temper-soak-")
	if err != nil {
		return sum, err
	}
	defer os.RemoveAll(dir)
	bin, err := realnode.BuildAgent(env.Root, dir)
	if err != nil {
		return sum, err
	}
	if err := localcluster.RegisterNode(ctx, env.Client, &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: s.name},
		Status: corev1.NodeStatus{
			Capacity:    corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("64"), corev1.ResourcePods: resource.MustParse("250")},
			Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("64"), corev1.ResourcePods: resource.MustParse("250")},
		},
	}); err != nil {
		return sum, err
	}
	if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: s.name}}); err != nil {
		return sum, err
	}
	baseStock, err := realnode.Snapshot(s.node.ConfigDirs())
	if err != nil {
		return sum, err
	}
	if s.agent, err = realnode.NewAgent(realnode.AgentOptions{Binary: bin, Kubeconfig: env.Kubeconfig, NodeName: s.name,
		Node: s.node, Dir: filepath.Join(dir, "agent")}); err != nil {
		return sum, err
	}
	if err := s.agent.Start(); err != nil {
		return sum, err
	}
	defer func() {
		if err != nil || len(sum.Failures) > 0 {
			sum.AgentLogTailOnFail = s.agent.LogTail(6000)
		}
		_ = s.agent.Stop()
	}()
	if err := s.waitStatus(ctx, 60*time.Second, func(st string) bool { return st == wellknown.AgentStatusEnforcingCgroup }); err != nil {
		return sum, fmt.Errorf("the agent did not start enforcing: %w", err)
	}

	if err := s.churn(ctx, time.Now()); err != nil {
		return sum, err
	}
	s.finish(ctx, baseStock)
	return sum, nil
}

// churn runs the faults and the pod churn until the duration is over.
func (s *soak) churn(ctx context.Context, start time.Time) error {
	end := start.Add(s.o.duration)
	leakFrom := start.Add(time.Duration(float64(s.o.duration) * (1 - s.o.leakFraction)))
	nextKill := time.Now().Add(s.between(s.o.killMin, s.o.killMax))
	var apiAt []time.Time
	for i := 1; i <= s.o.apiRestarts; i++ {
		// Spread over the run, jittered by ±10 % of a slot.
		slot := s.o.duration / time.Duration(s.o.apiRestarts+1)
		apiAt = append(apiAt, start.Add(slot*time.Duration(i)+time.Duration((s.rng.Float64()-0.5)*0.2*float64(slot))))
	}
	nextSafe := time.Now().Add(s.between(s.o.safeModeGap/2, s.o.safeModeGap*3/2))
	var safeUntil, apiUpAt time.Time
	// Sampling runs beside the loop, which blocks while kube-apiserver
	// stops or starts.
	sctx, stopSampling := context.WithCancel(ctx)
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(s.o.sampleEvery)
		defer t.Stop()
		for {
			select {
			case <-sctx.Done():
				return
			case now := <-t.C:
				s.sample(sctx, now.After(leakFrom))
			}
		}
	}()
	defer func() { stopSampling(); <-sampled }()
	tick := time.NewTicker(time.Duration(float64(time.Second) / s.o.rate))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		now := time.Now()
		if now.After(end) {
			if !safeUntil.IsZero() {
				s.setSafeMode(ctx, false)
			}
			if !s.apiUp {
				if err := s.env.StartAPIServer(); err != nil {
					return err
				}
				s.apiUp = true
			}
			return nil
		}
		// kube-apiserver: stop at its time, start 5-15 s later.
		if s.apiUp && len(apiAt) > 0 && now.After(apiAt[0]) {
			apiAt = apiAt[1:]
			s.logf("stopping kube-apiserver")
			if err := s.env.StopAPIServer(); err != nil {
				return err
			}
			s.apiUp, apiUpAt = false, time.Now().Add(s.between(5*time.Second, 15*time.Second))
		}
		if !s.apiUp && now.After(apiUpAt) {
			s.logf("starting kube-apiserver")
			if err := s.env.StartAPIServer(); err != nil {
				return err
			}
			s.apiUp = true
			s.sum.APIServerRestarts++
		}
		// The agent: SIGKILL and restart, outside the leak window.
		if now.Before(leakFrom) && now.After(nextKill) {
			s.logf("SIGKILL agent")
			if err := s.agent.Kill(); err != nil {
				return err
			}
			time.Sleep(s.between(0, 2*time.Second))
			if err := s.agent.Start(); err != nil {
				return err
			}
			s.sum.AgentKills++
			nextKill = time.Now().Add(s.between(s.o.killMin, s.o.killMax))
		}
		// Safe mode on for 4-8 s now and then (needs the API server).
		if s.apiUp && safeUntil.IsZero() && now.After(nextSafe) {
			if s.setSafeMode(ctx, true) {
				safeUntil = now.Add(s.between(4*time.Second, 8*time.Second))
				s.sum.SafeModePeriods++
			}
		}
		if s.apiUp && !safeUntil.IsZero() && now.After(safeUntil) {
			if s.setSafeMode(ctx, false) {
				safeUntil = time.Time{}
				nextSafe = time.Now().Add(s.between(s.o.safeModeGap/2, s.o.safeModeGap*3/2))
			}
		}
		// One pod created or deleted.
		if !s.apiUp {
			s.sum.ChurnSkipped++
		} else if err := s.step(ctx); err != nil {
			return err
		}
	}
}

func (s *soak) between(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(s.rng.Int64N(int64(hi-lo)))
}

func (s *soak) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s soak: %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

// step creates a pod below the target population (and with probability
// ½ at it), else deletes a random one.
func (s *soak) step(ctx context.Context) error {
	if len(s.pods) < s.o.pods/2 || (len(s.pods) < s.o.pods*3/2 && s.rng.IntN(2) == 0) {
		return s.create(ctx)
	}
	return s.delete(ctx)
}

func (s *soak) create(ctx context.Context) error {
	t := tiers[s.rng.IntN(len(tiers))]
	s.seq++
	c := corev1.Container{Name: "app", Image: "registry.invalid/app:1"}
	if t.cpu != "" {
		c.Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(t.cpu)}
		if t.guaranteed {
			c.Resources.Requests[corev1.ResourceMemory] = resource.MustParse("32Mi")
			c.Resources.Limits = c.Resources.Requests.DeepCopy()
		}
	}
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%d", t.name, s.seq), Namespace: s.name},
		Spec:       corev1.PodSpec{NodeName: s.name, PriorityClassName: t.class, Containers: []corev1.Container{c}},
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := s.env.Client.Create(cctx, p); err != nil {
		s.sum.ChurnSkipped++
		return nil //nolint:nilerr // the API server may be on its way down; the churn goes on
	}
	cg, err := s.node.AddPod(p, false)
	if err != nil {
		return err
	}
	stock, err := realnode.Snapshot([]string{cg.CPUDir, cg.CPUSetDir})
	if err != nil {
		return err
	}
	s.pods[p.Name] = &livePod{obj: p, cg: cg, tier: t, stock: stock}
	s.sum.PodsCreated++
	return nil
}

// delete removes a random pod: its cgroup and its API object, in either
// order (the kubelet may clean up the cgroup after the object is gone).
func (s *soak) delete(ctx context.Context) error {
	names := make([]string, 0, len(s.pods))
	for n := range s.pods {
		names = append(names, n)
	}
	if len(names) == 0 {
		return nil
	}
	sort.Strings(names)
	lp := s.pods[names[s.rng.IntN(len(names))]]
	cgroupFirst := s.rng.IntN(2) == 0 || lp.cg == nil
	if cgroupFirst && lp.cg != nil {
		if err := s.node.RemovePod(lp.cg); err != nil {
			return err
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	// NotFound: an earlier try timed out on the client but deleted it.
	if err := s.env.Client.Delete(cctx, lp.obj, client.GracePeriodSeconds(0)); err != nil && !apierrors.IsNotFound(err) {
		if !cgroupFirst {
			s.sum.ChurnSkipped++
			return nil //nolint:nilerr // try another time
		}
		// The cgroup is gone already; the object goes on a later try.
		s.logf("deleting pod %s after its cgroup: %v (retried at the end)", lp.obj.Name, err)
		lp.cg = nil
		return nil
	}
	if !cgroupFirst {
		if err := s.node.RemovePod(lp.cg); err != nil {
			return err
		}
	}
	delete(s.pods, lp.obj.Name)
	s.sum.PodsDeleted++
	return nil
}

// sample reads /readyz, and in the leak window (where no SIGKILL comes)
// the agent's goroutines and RSS. The agent's HTTP address and pid only
// change on a restart, which the leak window has none of.
func (s *soak) sample(ctx context.Context, leakWindow bool) {
	code, _, err := s.agent.Get(ctx, "/readyz")
	var g float64
	var rss int64
	var gerr, rerr error
	if leakWindow {
		g, gerr = s.agent.Metric(ctx, "infera_agent_goroutines")
		rss, rerr = s.agent.RSS()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sum.ReadyzSamples++
	if err != nil || code != 200 {
		s.sum.ReadyzNot200++
	}
	if leakWindow && gerr == nil && rerr == nil {
		s.sum.Goroutines = append(s.sum.Goroutines, g)
		s.sum.RSSMiB = append(s.sum.RSSMiB, float64(rss)/(1<<20))
	}
}

func (s *soak) setSafeMode(ctx context.Context, on bool) bool {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var n corev1.Node
	if err := s.env.Client.Get(cctx, types.NamespacedName{Name: s.name}, &n); err != nil {
		return false
	}
	patch := client.MergeFrom(n.DeepCopy())
	if n.Annotations == nil {
		n.Annotations = map[string]string{}
	}
	if on {
		n.Annotations[wellknown.SafeModeRequestedAnnotation] = wellknown.SafeModeRequestedValue
	} else {
		delete(n.Annotations, wellknown.SafeModeRequestedAnnotation)
	}
	if err := s.env.Client.Patch(cctx, &n, patch); err != nil {
		return false
	}
	s.logf("safe mode %v", on)
	return true
}

func (s *soak) status(ctx context.Context) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var n corev1.Node
	if err := s.env.Client.Get(cctx, types.NamespacedName{Name: s.name}, &n); err != nil {
		return "", err
	}
	return n.Annotations[wellknown.AgentStatusAnnotation], nil
}

func (s *soak) waitStatus(ctx context.Context, timeout time.Duration, ok func(string) bool) error {
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		st, err := s.status(ctx)
		if err == nil && ok(st) {
			return nil
		}
		last = st
		if err != nil {
			last = err.Error()
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("timed out after %v; agent-status %q", timeout, last)
}

// finish runs the end checks.
func (s *soak) finish(ctx context.Context, baseStock map[string]string) {
	fail := func(format string, args ...any) {
		s.sum.Failures = append(s.sum.Failures, fmt.Sprintf(format, args...))
	}
	// Pods whose object could not be deleted after their cgroup went.
	for name, lp := range s.pods {
		if lp.cg == nil {
			if err := s.env.Client.Delete(ctx, lp.obj, client.GracePeriodSeconds(0)); err != nil && !apierrors.IsNotFound(err) {
				fail("delete pod %s: %v", name, err)
			}
			delete(s.pods, name)
			s.sum.PodsDeleted++
		}
	}
	s.sum.PodsAtEnd = len(s.pods)

	// Every pod at its tier's value, and a clean status.
	deadline := time.Now().Add(60 * time.Second)
	var bad []string
	for {
		bad = bad[:0]
		for name, lp := range s.pods {
			if got, err := realnode.ReadTrimmed(lp.cg.CPUDir, lp.tier.file); err != nil || got != lp.tier.want {
				bad = append(bad, fmt.Sprintf("%s %s=%s want %s", name, lp.tier.file, got, lp.tier.want))
			}
		}
		st, _ := s.status(ctx)
		code, body, _ := s.agent.Get(ctx, "/readyz")
		s.sum.FinalStatus = st
		if len(bad) == 0 && st == wellknown.AgentStatusEnforcingCgroup && code == 200 {
			break
		}
		if time.Now().After(deadline) {
			sort.Strings(bad)
			s.sum.MismatchedPods = slices.Clone(bad)
			fail("60 s after the churn: %d pods not at their tier's value, agent-status %q, /readyz %d %q", len(bad), st, code, body)
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if v, err := s.agent.Metric(ctx, "infera_cgroup_write_errors_total"); err == nil {
		s.sum.WriteErrors = v
	}

	// No growth over the leak window.
	if n := len(s.sum.Goroutines); n >= 8 {
		q := n / 4
		s.sum.GoroutinesFirstQ, s.sum.GoroutinesLastQ = median(s.sum.Goroutines[:q]), median(s.sum.Goroutines[n-q:])
		s.sum.RSSFirstQMiB, s.sum.RSSLastQMiB = median(s.sum.RSSMiB[:q]), median(s.sum.RSSMiB[n-q:])
		if s.sum.GoroutinesLastQ > s.sum.GoroutinesFirstQ*1.2+10 {
			fail("goroutines grew over the leak window: median %.0f → %.0f", s.sum.GoroutinesFirstQ, s.sum.GoroutinesLastQ)
		}
		if s.sum.RSSLastQMiB > s.sum.RSSFirstQMiB*1.3+4 {
			fail("RSS grew over the leak window: median %.1f → %.1f MiB", s.sum.RSSFirstQMiB, s.sum.RSSLastQMiB)
		}
	} else {
		fail("only %d goroutine/RSS samples in the leak window; run longer", n)
	}

	// Safe mode: every file as the kubelet-shaped tree had it.
	if !s.setSafeMode(ctx, true) {
		fail("could not request safe mode")
		return
	}
	if err := s.waitStatus(ctx, 60*time.Second, func(st string) bool { return st == wellknown.AgentStatusSafeMode }); err != nil {
		fail("safe mode: %v", err)
		return
	}
	want := map[string]string{}
	for k, v := range baseStock {
		want[k] = v
	}
	for _, lp := range s.pods {
		for k, v := range lp.stock {
			want[k] = v
		}
	}
	now, err := realnode.Snapshot(s.node.ConfigDirs())
	if err != nil {
		fail("snapshot: %v", err)
		return
	}
	if diff := cmp.Diff(want, now); diff != "" {
		for k := range want {
			if want[k] != now[k] {
				s.sum.RestoreDiffs++
			}
		}
		for k := range now {
			if _, ok := want[k]; !ok {
				s.sum.RestoreDiffs++
			}
		}
		fail("after safe mode %d cgroup files differ from the kubelet's (-kubelet +now):\n%s", s.sum.RestoreDiffs, diff)
	}
}

func median(v []float64) float64 {
	c := slices.Clone(v)
	slices.Sort(c)
	if len(c) == 0 {
		return 0
	}
	if len(c)%2 == 1 {
		return c[len(c)/2]
	}
	return (c[len(c)/2-1] + c[len(c)/2]) / 2
}

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
