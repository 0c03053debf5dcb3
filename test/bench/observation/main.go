// Command observation measures what the agent's observation layer costs
// (issue 5) and prints JSON for docs/bench/observation.json:
//
//   - agent CPU and RSS with observation on and off, both arms in one run
//     and at the same time: two real infera-agent processes, each for its
//     own node of N pods whose cgroups (in a private subtree of this
//     machine's real cgroup v1 hierarchy) hold processes that work in
//     short bursts, so the sampler reads their threads on every tick;
//     CPU is utime+stime from /proc/<pid>/stat over the window, RSS the
//     peak VmRSS;
//   - scrape latency of /metrics and /observe of the observing agent.
//
// Both agents run the cgroup backend, so everything but observation is the
// same in both arms. It needs root and cgroup v1 (this machine); the pods'
// cgroups and processes are removed at the end.
//
//	KUBEBUILDER_ASSETS=$PWD/bin go run ./test/bench/observation -duration 60s
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	configv1alpha1 "github.com/infera-io/temper/apis/config/v1alpha1"
	"github.com/infera-io/temper/internal/localcluster"
	"github.com/infera-io/temper/nodeagent/cgroupfs"
	"github.com/infera-io/temper/test/bench/internal/hosttree"
	"github.com/infera-io/temper/test/envtest"
)

type arm struct {
	Observation bool    `json:"observation"`
	CPUSeconds  float64 `json:"cpuSeconds"`
	// CorePercent is CPU seconds per wall second × 100: percent of one core.
	CorePercent float64 `json:"corePercentOfOneCore"`
	PeakRSSMiB  float64 `json:"peakRSSMiB"`
}

type scrape struct {
	Requests int     `json:"requests"`
	Bytes    int     `json:"bytes"`
	P50Ms    float64 `json:"p50Ms"`
	P99Ms    float64 `json:"p99Ms"`
	MaxMs    float64 `json:"maxMs"`
}

type result struct {
	Machine struct {
		CPUs   int    `json:"cpus"`
		Model  string `json:"model"`
		Kernel string `json:"kernel"`
		Cgroup string `json:"cgroup"`
		Go     string `json:"go"`
	} `json:"machine"`
	Command        string            `json:"command"`
	Pods           int               `json:"podsPerAgent"`
	WindowSeconds  float64           `json:"windowSeconds"`
	SampleInterval string            `json:"sampleInterval"`
	Arms           map[string]arm    `json:"arms"`
	AddedCorePct   float64           `json:"addedCorePercentOfOneCore"`
	Scrape         map[string]scrape `json:"scrapeLatency"`
	Goal           map[string]any    `json:"goal"`
	Notes          []string          `json:"notes"`
}

func main() {
	duration := flag.Duration("duration", 60*time.Second, "measurement window (both arms at once)")
	pods := flag.Int("pods", 110, "pods per agent")
	interval := flag.Duration("sample-interval", configv1alpha1.DefaultSampleInterval, "observation sample interval")
	scrapes := flag.Int("scrapes", 50, "requests per endpoint for the scrape latency")
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "bench: needs root (real cgroups)")
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	res, err := run(ctx, *duration, *pods, *interval, *scrapes)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	out, _ := json.MarshalIndent(res, "", "  ")
	fmt.Println(string(out))
}

// newSandbox is a private subtree of the real cgroup v1 cpu, cpuset and
// (when mounted apart) cpuacct hierarchies.
func newSandbox() (*hosttree.Tree, error) {
	l, err := cgroupfs.Detect("/sys/fs/cgroup", cgroupfs.DetectOptions{Driver: cgroupfs.DriverCgroupfs})
	if err != nil {
		return nil, err
	}
	if l.Version != cgroupfs.V1 {
		return nil, errors.New("this bench builds cgroup v1 trees; the host is not v1")
	}
	cpuH, cpusetH := l.Hierarchies[cgroupfs.CPU], l.Hierarchies[cgroupfs.CPUSet]
	t := &hosttree.Tree{Hierarchies: []string{cpuH, cpusetH}, CPUSet: cpusetH, Base: "temper-bench-" + hosttree.RandomHex(6)}
	if _, err := os.Stat(filepath.Join(cpuH, "cpuacct.usage")); err != nil {
		t.Hierarchies = append(t.Hierarchies, "/sys/fs/cgroup/cpuacct")
	}
	return t, t.Mkdir(t.Base)
}

// burst is a process that works in short bursts (100 loop iterations, then
// 0.5 s asleep), so the sampler finds it busy at every tick.
func burst() *exec.Cmd {
	return exec.Command("sh", "-c", "while :; do i=0; while [ $i -lt 100 ]; do i=$((i+1)); done; sleep 0.5; done")
}

func run(ctx context.Context, duration time.Duration, nPods int, interval time.Duration, nScrapes int) (*result, error) {
	dir, err := os.MkdirTemp("", "observation-bench-")
	if err != nil {
		return nil, err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	sb, err := newSandbox()
	if err != nil {
		return nil, err
	}
	defer func() { _ = sb.Cleanup() }()

	env, err := envtest.Start(envtest.Options{PriorityClasses: true})
	if err != nil {
		return nil, err
	}
	defer func() { _ = env.Stop() }()
	agentBin := filepath.Join(dir, "infera-agent")
	if out, err := exec.Command("go", "build", "-o", agentBin, "github.com/infera-io/temper/cmd/infera-agent").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build agent: %w: %s", err, out)
	}

	type agentProc struct {
		cmd  *exec.Cmd
		addr string
	}
	agents := map[bool]*agentProc{}
	classes := []string{"infera-critical", "infera-high", "infera-normal", "infera-low", "infera-background"}
	for _, observe := range []bool{true, false} {
		node := map[bool]string{true: "obs-on", false: "obs-off"}[observe]
		if err := localcluster.RegisterNode(ctx, env.Client, &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: node},
			Status:     corev1.NodeStatus{Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourcePods: resource.MustParse("250")}},
		}); err != nil {
			return nil, err
		}
		if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: node}}); err != nil {
			return nil, err
		}
		kp := sb.Base + "/" + node
		for _, rel := range []string{kp, kp + "/burstable", kp + "/besteffort"} {
			if err := sb.Mkdir(rel); err != nil {
				return nil, err
			}
		}
		layout, err := cgroupfs.Detect("/sys/fs/cgroup", cgroupfs.DetectOptions{Driver: cgroupfs.DriverCgroupfs, KubepodsDir: kp})
		if err != nil {
			return nil, err
		}
		for i := range nPods {
			p := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p-%03d", i), Namespace: node},
				Spec: corev1.PodSpec{NodeName: node, PriorityClassName: classes[i%len(classes)], Containers: []corev1.Container{{
					Name: "c", Image: "registry.invalid/c",
					Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m")}},
				}}},
			}
			if err := env.Client.Create(ctx, p); err != nil {
				return nil, err
			}
			rel, err := layout.PodRelPath(string(p.UID), p.Status.QOSClass)
			if err != nil {
				return nil, err
			}
			if err := sb.Mkdir(rel); err != nil {
				return nil, err
			}
			if err := sb.Start(burst(), rel); err != nil {
				return nil, err
			}
		}
		addr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		cfgFile := filepath.Join(dir, node+".toml")
		if err := os.WriteFile(cfgFile, []byte(fmt.Sprintf(`api_version = %q
kind = %q
backend = "cgroup"
state_dir = %q
[cgroup]
driver = "cgroupfs"
kubepods_path = %q
cpu_manager_state = %q
[server]
address = %q
grpc_socket = %q
[observation]
enabled = %t
sample_interval = %q
trace_dir = %q
`, configv1alpha1.AgentAPIVersion, configv1alpha1.AgentKind, filepath.Join(dir, node, "state"), kp, filepath.Join(dir, "none"),
			addr, filepath.Join(dir, node+".sock"), observe, interval.String(), filepath.Join(dir, node, "traces"))), 0o644); err != nil {
			return nil, err
		}
		logf, err := os.Create(filepath.Join(dir, node+".log"))
		if err != nil {
			return nil, err
		}
		cmd := exec.Command(agentBin, "--config", cfgFile, "--kubeconfig", env.Kubeconfig)
		cmd.Env = append(os.Environ(), "NODE_NAME="+node)
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		defer func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			_ = cmd.Wait()
		}()
		agents[observe] = &agentProc{cmd: cmd, addr: addr}
	}
	// Both agents enforcing and (for one) sampling before the window.
	for _, a := range agents {
		if err := waitReady(ctx, a.addr); err != nil {
			return nil, err
		}
	}
	warm := 2*interval + 2*time.Second
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(warm):
	}

	start := time.Now()
	cpu0 := map[bool]float64{}
	for k, a := range agents {
		c, err := cpuSeconds(a.cmd.Process.Pid)
		if err != nil {
			return nil, err
		}
		cpu0[k] = c
	}
	peak := map[bool]float64{}
	tick := time.NewTicker(time.Second)
	deadline := time.After(duration)
loop:
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-deadline:
			break loop
		case <-tick.C:
			for k, a := range agents {
				if r, err := rssMiB(a.cmd.Process.Pid); err == nil && r > peak[k] {
					peak[k] = r
				}
			}
		}
	}
	tick.Stop()
	wall := time.Since(start).Seconds()

	res := &result{Pods: nPods, WindowSeconds: wall, SampleInterval: interval.String(), Arms: map[string]arm{}, Scrape: map[string]scrape{}}
	res.Command = "KUBEBUILDER_ASSETS=$PWD/bin go run ./test/bench/observation -duration " + duration.String() + " -pods " + strconv.Itoa(nPods)
	machine(res)
	for k, a := range agents {
		c, err := cpuSeconds(a.cmd.Process.Pid)
		if err != nil {
			return nil, err
		}
		name := map[bool]string{true: "on", false: "off"}[k]
		res.Arms[name] = arm{Observation: k, CPUSeconds: c - cpu0[k], CorePercent: (c - cpu0[k]) / wall * 100, PeakRSSMiB: peak[k]}
	}
	res.AddedCorePct = res.Arms["on"].CorePercent - res.Arms["off"].CorePercent
	for _, ep := range []string{"/metrics", "/observe"} {
		s, err := measureScrape(agents[true].addr+ep, nScrapes)
		if err != nil {
			return nil, err
		}
		res.Scrape[ep] = s
	}
	res.Goal = map[string]any{
		"addedCorePercentMax": 0.1, "addedMet": res.AddedCorePct <= 0.1,
		"rssMiBMax": 60.0, "rssMet": res.Arms["on"].PeakRSSMiB <= 60,
	}
	res.Notes = []string{
		"Both arms ran at the same time on this shared 2-core VM, so they saw the same load; CPU is utime+stime of each agent process.",
		"Kernel-side eBPF cost (if loaded) is spent in the context of the tasks being scheduled, not the agent; it is measured per event separately.",
		"CPU clock ticks are 10 ms (USER_HZ 100), so a 60 s window resolves 0.017% of a core.",
	}
	return res, nil
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer func() { _ = l.Close() }()
	return l.Addr().String(), nil
}

func waitReady(ctx context.Context, addr string) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("agent at %s not ready within 60s", addr)
}

func measureScrape(url string, n int) (scrape, error) {
	var ds []float64
	size := 0
	for range n {
		t0 := time.Now()
		resp, err := http.Get("http://" + url)
		if err != nil {
			return scrape{}, err
		}
		b, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil {
			return scrape{}, fmt.Errorf("GET %s: %w", url, err)
		}
		if resp.StatusCode != 200 {
			return scrape{}, fmt.Errorf("GET %s: status %d", url, resp.StatusCode)
		}
		ds = append(ds, float64(time.Since(t0).Microseconds())/1000)
		size = len(b)
	}
	sort.Float64s(ds)
	q := func(p float64) float64 { return ds[min(len(ds)-1, int(p*float64(len(ds))))] }
	return scrape{Requests: n, Bytes: size, P50Ms: q(0.5), P99Ms: q(0.99), MaxMs: ds[len(ds)-1]}, nil
}

// cpuSeconds is utime+stime of pid.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, err1 := strconv.ParseFloat(f[11], 64)
	st, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("failed to parse /proc/%d/stat", pid)
	}
	return (ut + st) / 100, nil // USER_HZ
}

func rssMiB(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024, err
		}
	}
	return 0, errors.New("no VmRSS")
}

func machine(r *result) {
	r.Machine.CPUs = runtime.NumCPU()
	r.Machine.Go = runtime.Version()
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		r.Machine.Kernel = strings.TrimSpace(string(b))
	}
	r.Machine.Cgroup = "v1"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				r.Machine.Model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
}
