// Command failover measures what an agent crash costs a latency-critical
// server (issue #18, `make bench-failover`): memcached in a critical-tier
// pod under the isolation bench's top-of-ladder background load (CPU
// burners in background-tier pods), driven by the isolation bench's own
// open-loop load generator (test/bench/isolation, run as `-role loadgen`),
// on a kubelet-shaped tree in this machine's real cgroup v1 hierarchies
// (test/realnode), enforced by the real infera-agent binary against
// envtest's kube-apiserver.
//
// Each round measures three segments back to back: before (the agent
// enforcing), during (the agent SIGKILLed shortly after the segment starts
// and restarted after -down), and after. It reports each segment's p99 and
// the time from the restart until the new agent's /readyz says enforcement
// is verified again (every cgroup value written and read back).
//
//	sudo go run ./test/bench/failover -rounds 3
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/infera-io/temper/internal/localcluster"
	"github.com/infera-io/temper/test/envtest"
	"github.com/infera-io/temper/test/realnode"
)

type options struct {
	rounds  int
	segment time.Duration
	rate    float64
	conns   int
	burners int
	killAt  time.Duration
	down    time.Duration
	out     string
	// agentInPod runs the agent in a pod cgroup shaped like the chart's
	// DaemonSet pod (system-node-critical, Burstable, 50m CPU request), as
	// on a node; off, it runs in the bench's own cgroup (the root).
	agentInPod bool
}

func main() {
	var o options
	flag.IntVar(&o.rounds, "rounds", 3, "before/during/after rounds")
	flag.DurationVar(&o.segment, "duration", 10*time.Second, "one measuring segment")
	flag.Float64Var(&o.rate, "rate", 2000, "memcached requests per second")
	flag.IntVar(&o.conns, "conns", 4, "load generator connections")
	flag.IntVar(&o.burners, "burners", 8, "CPU burners in background-tier pods (the isolation bench's top of ladder)")
	flag.DurationVar(&o.killAt, "kill-at", 500*time.Millisecond, "when in the during segment the agent is SIGKILLed")
	flag.DurationVar(&o.down, "down", time.Second, "how long the agent stays dead before it is restarted")
	flag.StringVar(&o.out, "out", "", "write the JSON result here too")
	flag.BoolVar(&o.agentInPod, "agent-in-pod", true, "run the agent in a pod cgroup shaped like the chart's DaemonSet pod (system-node-critical, 50m CPU request); false: in the bench's cgroup")
	flag.Parse()
	ctrllog.SetLogger(logr.Discard())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	res, err := run(ctx, o)
	stop()
	b, _ := json.MarshalIndent(res, "", "  ")
	fmt.Println(string(b))
	if o.out != "" {
		_ = os.WriteFile(o.out, append(b, '\n'), 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "failover:", err)
		os.Exit(1)
	}
}

type round struct {
	BeforeP99ms float64 `json:"beforeP99ms"`
	DuringP99ms float64 `json:"duringP99ms"`
	AfterP99ms  float64 `json:"afterP99ms"`
	BeforeP50ms float64 `json:"beforeP50ms"`
	DuringP50ms float64 `json:"duringP50ms"`
	AfterP50ms  float64 `json:"afterP50ms"`
	// ReverifiedSeconds is from the restart to the new agent's /readyz 200.
	ReverifiedSeconds float64 `json:"reverifiedSeconds"`
	// ValuesKept says the critical pod's cpu.shares was the enforced value
	// all through the outage (sampled every 10 ms).
	ValuesKept bool `json:"valuesKeptThroughTheOutage"`
}

type result struct {
	Command        string  `json:"command"`
	AgentInPod     bool    `json:"agentInPod"`
	Rounds         []round `json:"rounds"`
	MedianBefore   float64 `json:"medianBeforeP99ms"`
	MedianDuring   float64 `json:"medianDuringP99ms"`
	MedianAfter    float64 `json:"medianAfterP99ms"`
	DuringOverMax  float64 `json:"duringOverBeforeMax"`
	DuringOverMed  float64 `json:"duringOverBeforeMedianRatio"`
	ReverifyMedian float64 `json:"reverifiedMedianSeconds"`
	ReverifyMax    float64 `json:"reverifiedMaxSeconds"`
	LoadAvgStart   string  `json:"loadavgStart"`
	LoadAvgEnd     string  `json:"loadavgEnd"`
}

type bench struct {
	o        options
	env      *envtest.Env
	node     *realnode.Node
	agent    *realnode.Agent
	isoBin   string
	addr     string
	loadPod  *realnode.Pod
	critical *realnode.Pod
	agentPod *realnode.Pod
}

func run(ctx context.Context, o options) (*result, error) {
	res := &result{Command: strings.Join(os.Args, " "), AgentInPod: o.agentInPod, LoadAvgStart: loadavg()}
	defer func() { res.LoadAvgEnd = loadavg() }()
	memcached, err := exec.LookPath("memcached")
	if err != nil {
		return res, fmt.Errorf("memcached is not installed (apt-get install -y memcached): %w", err)
	}
	env, err := envtest.Start(envtest.Options{PriorityClasses: true})
	if err != nil {
		return res, err
	}
	defer func() { _ = env.Stop() }()
	b := &bench{o: o, env: env}
	if b.node, err = realnode.NewNode("/sys/fs/cgroup"); err != nil {
		return res, err
	}
	defer func() { _ = b.node.Cleanup() }()
	dir, err := os.MkdirTemp("", "temper-failover-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	agentBin, err := realnode.BuildAgent(env.Root, dir)
	if err != nil {
		return res, err
	}
	b.isoBin = filepath.Join(dir, "isolation")
	build := exec.Command("go", "build", "-o", b.isoBin, "./test/bench/isolation")
	build.Dir = env.Root
	if out, err := build.CombinedOutput(); err != nil {
		return res, fmt.Errorf("failed to build the isolation bench: %w: %s", err, out)
	}
	if err := b.setup(ctx, memcached); err != nil {
		return res, err
	}
	if b.agent, err = realnode.NewAgent(realnode.AgentOptions{Binary: agentBin, Kubeconfig: env.Kubeconfig, NodeName: "failover-node",
		Node: b.node, Dir: filepath.Join(dir, "agent"), Pod: b.agentPod}); err != nil {
		return res, err
	}
	if err := b.agent.Start(); err != nil {
		return res, err
	}
	defer func() { _ = b.agent.Stop() }()
	if _, err := b.waitReady(ctx, 60*time.Second); err != nil {
		return res, fmt.Errorf("the agent did not verify enforcement: %w", err)
	}
	enforced, err := realnode.ReadTrimmed(b.critical.CPUDir, "cpu.shares")
	if err != nil {
		return res, err
	}
	fmt.Fprintf(os.Stderr, "enforcing: memcached's pod cpu.shares %s (kubelet's %s), %d burners\n", enforced, b.critical.Shares, o.burners)

	for i := range o.rounds {
		var r round
		before, err := b.segment(nil)
		if err != nil {
			return res, err
		}
		kept := true
		during, err := b.segment(func(start time.Time) error {
			time.Sleep(time.Until(start.Add(o.killAt)))
			if err := b.agent.Kill(); err != nil {
				return err
			}
			// Watch the critical pod's value while no agent runs.
			watchEnd := time.Now().Add(o.down)
			for time.Now().Before(watchEnd) {
				if v, _ := realnode.ReadTrimmed(b.critical.CPUDir, "cpu.shares"); v != enforced {
					kept = false
				}
				time.Sleep(10 * time.Millisecond)
			}
			restart := time.Now()
			if err := b.agent.Start(); err != nil {
				return err
			}
			if _, err := b.waitReady(ctx, 60*time.Second); err != nil {
				return err
			}
			r.ReverifiedSeconds = math.Round(time.Since(restart).Seconds()*1000) / 1000
			return nil
		})
		if err != nil {
			return res, err
		}
		after, err := b.segment(nil)
		if err != nil {
			return res, err
		}
		r.BeforeP99ms, r.DuringP99ms, r.AfterP99ms = ms(before.q(0.99)), ms(during.q(0.99)), ms(after.q(0.99))
		r.BeforeP50ms, r.DuringP50ms, r.AfterP50ms = ms(before.q(0.5)), ms(during.q(0.5)), ms(after.q(0.5))
		r.ValuesKept = kept
		fmt.Fprintf(os.Stderr, "round %d: p99 %.3f → %.3f → %.3f ms, re-verified %.2f s after the restart, values kept %v\n",
			i+1, r.BeforeP99ms, r.DuringP99ms, r.AfterP99ms, r.ReverifiedSeconds, kept)
		res.Rounds = append(res.Rounds, r)
	}
	var bs, ds, as, rv, ratios []float64
	for _, r := range res.Rounds {
		bs, ds, as, rv = append(bs, r.BeforeP99ms), append(ds, r.DuringP99ms), append(as, r.AfterP99ms), append(rv, r.ReverifiedSeconds)
		ratios = append(ratios, r.DuringP99ms/r.BeforeP99ms)
	}
	res.MedianBefore, res.MedianDuring, res.MedianAfter = median(bs), median(ds), median(as)
	res.DuringOverMed = median(ratios)
	res.DuringOverMax = slices.Max(ratios)
	res.ReverifyMedian, res.ReverifyMax = median(rv), slices.Max(rv)
	return res, nil
}

// setup registers the node and makes the pods: memcached (critical,
// Guaranteed), the load generator's pod (high) and the burners
// (background).
func (b *bench) setup(ctx context.Context, memcached string) error {
	const node = "failover-node"
	if err := localcluster.RegisterNode(ctx, b.env.Client, &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: node},
		Status: corev1.NodeStatus{
			Capacity:    corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourcePods: resource.MustParse("110")},
			Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourcePods: resource.MustParse("110")},
		},
	}); err != nil {
		return err
	}
	if err := b.env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: node}}); err != nil {
		return err
	}
	mk := func(name, class, cpu string, guaranteed bool) (*realnode.Pod, error) {
		c := corev1.Container{Name: "app", Image: "registry.invalid/app:1"}
		if cpu != "" {
			c.Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu)}
			if guaranteed {
				c.Resources.Requests[corev1.ResourceMemory] = resource.MustParse("64Mi")
				c.Resources.Limits = c.Resources.Requests.DeepCopy()
			}
		}
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: node},
			Spec: corev1.PodSpec{NodeName: node, PriorityClassName: class, Containers: []corev1.Container{c}}}
		if err := b.env.Client.Create(ctx, p); err != nil {
			return nil, err
		}
		return b.node.AddCgroup(p)
	}
	var err error
	if b.critical, err = mk("memcached", "infera-critical", "1", true); err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	b.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if err := b.node.StartInPod(b.critical, exec.Command(memcached, "-u", "nobody", "-l", "127.0.0.1", "-p", strconv.Itoa(port),
		"-U", "0", "-t", "2", "-m", "64")); err != nil {
		return err
	}
	if b.loadPod, err = mk("loadgen", "infera-high", "500m", false); err != nil {
		return err
	}
	if b.o.agentInPod {
		// The chart's agent pod: system-node-critical, 50m CPU request.
		if b.agentPod, err = mk("infera-agent", "system-node-critical", "50m", false); err != nil {
			return err
		}
	}
	for i := range b.o.burners {
		bp, err := mk(fmt.Sprintf("burner-%d", i), "infera-background", "", false)
		if err != nil {
			return err
		}
		if err := b.node.StartInPod(bp, exec.Command("sh", "-c", "while :; do :; done")); err != nil {
			return err
		}
	}
	// memcached listening.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", b.addr)
		if err == nil {
			_ = c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("memcached does not listen on %s: %w", b.addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitReady waits for /readyz 200 and returns how long it took.
func (b *bench) waitReady(ctx context.Context, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	for time.Since(start) < timeout {
		if code, _, err := b.agent.Get(ctx, "/readyz"); err == nil && code == 200 {
			return time.Since(start), nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	code, body, err := b.agent.Get(ctx, "/readyz")
	if err != nil {
		return 0, fmt.Errorf("/readyz after %v: %w", timeout, err)
	}
	return 0, fmt.Errorf("/readyz = %d %q after %v", code, body, timeout)
}

// hist is the isolation bench's histogram as its load generator prints it
// (non-empty buckets of a log-linear histogram with 2^7 sub-buckets).
type hist struct {
	Buckets [][2]uint64 `json:"buckets"`
	Max     int64       `json:"max_ns"`
}

const subBits = 7

// upper is the largest value of bucket i (the isolation bench's layout).
func upper(i int) int64 {
	const sub = 1 << subBits
	if i < sub {
		return int64(i)
	}
	shift := (i-sub)/(sub/2) + 1
	lo := int64((i-sub)%(sub/2)+sub/2) << uint(shift)
	return lo + (int64(1) << uint(shift)) - 1
}

func (h *hist) q(q float64) time.Duration {
	var total uint64
	for _, b := range h.Buckets {
		total += b[1]
	}
	if total == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(total)))
	rank = min(max(rank, 1), total)
	var seen uint64
	for _, b := range h.Buckets {
		seen += b[1]
		if seen >= rank {
			return time.Duration(min(upper(int(b[0])), h.Max))
		}
	}
	return time.Duration(h.Max)
}

// segment runs the load generator in its pod for one segment; during, if
// set, runs beside it from the segment's start.
func (b *bench) segment(during func(start time.Time) error) (*hist, error) {
	cmd := exec.Command(b.isoBin, "-role", "loadgen", "-addr", b.addr, "-rate", strconv.FormatFloat(b.o.rate, 'f', -1, 64),
		"-conns", strconv.Itoa(b.o.conns), "-duration", b.o.segment.String())
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = os.Stderr
	if err := b.node.StartInPod(b.loadPod, cmd); err != nil {
		return nil, err
	}
	defer b.node.Forget(b.loadPod, cmd)
	start := time.Now()
	if _, err := io.WriteString(stdin, "go\n"); err != nil {
		return nil, err
	}
	errc := make(chan error, 1)
	if during != nil {
		go func() { errc <- during(start) }()
	} else {
		errc <- nil
	}
	var out struct {
		Hist     *hist  `json:"hist"`
		Sent     int64  `json:"sent"`
		Received int64  `json:"received"`
		Error    string `json:"error"`
	}
	decErr := json.NewDecoder(bufio.NewReader(stdout)).Decode(&out)
	waitErr := cmd.Wait()
	if err := <-errc; err != nil {
		return nil, err
	}
	if decErr != nil || waitErr != nil {
		return nil, fmt.Errorf("load generator: %w", errors.Join(decErr, waitErr))
	}
	if out.Error != "" || out.Hist == nil {
		return nil, fmt.Errorf("load generator: %s", out.Error)
	}
	return out.Hist, nil
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

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
