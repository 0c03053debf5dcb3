// Command agent measures the node agent (issue 3) and prints JSON for
// docs/bench/agent.json:
//
//   - pod event → config applied latency: one pod created at a time; the
//     time from the create call returning to the scx_layered STAND-IN
//     running a config that matches the pod, minus the coalescing window;
//   - steady-state agent CPU and RSS with 110 pods over a fixed duration.
//
// It runs a real kube-apiserver (test/envtest) and the real infera-agent
// binary as its own process, on a faked cgroup v2 tree and a faked /sys
// (sched_ext state, CPU topology) with the scx_layered STAND-IN. CPU is
// utime+stime of the agent process from /proc/<pid>/stat, RSS its VmRSS.
//
//	KUBEBUILDER_ASSETS=$PWD/bin go run ./test/bench/agent -duration 60s
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	configv1alpha1 "github.com/infera-io/temper/apis/config/v1alpha1"
	"github.com/infera-io/temper/internal/localcluster"
	"github.com/infera-io/temper/nodeagent/cgroupfs"
	"github.com/infera-io/temper/nodeagent/cgroupfs/cgrouptest"
	"github.com/infera-io/temper/test/envtest"
	"github.com/infera-io/temper/test/standin/standintest"
)

type result struct {
	Machine struct {
		CPUs   int    `json:"cpus"`
		Kernel string `json:"kernel"`
		Go     string `json:"go"`
	} `json:"machine"`
	Command       string  `json:"command"`
	Backend       string  `json:"backend"`
	ApplyLatency  latency `json:"podEventToConfigApplied"`
	SteadyPods    int     `json:"steadyStatePods"`
	SteadySeconds float64 `json:"steadyStateSeconds"`
	CPUMillicores float64 `json:"agentCPUMillicores"`
	RSSMiB        float64 `json:"agentRSSMiB"`
}

type latency struct {
	Samples  int     `json:"samples"`
	WindowMs float64 `json:"coalescingWindowMs"`
	P50Ms    float64 `json:"p50Ms"`
	P90Ms    float64 `json:"p90Ms"`
	P99Ms    float64 `json:"p99Ms"`
	// SlowestMs are the five slowest samples, slowest first.
	SlowestMs []float64 `json:"slowestMs"`
	MaxMs     float64   `json:"maxMs"`
	Note      string    `json:"note"`
}

func main() {
	duration := flag.Duration("duration", 60*time.Second, "steady-state measurement window")
	samples := flag.Int("samples", 60, "pod events for the latency measurement")
	pods := flag.Int("pods", 110, "pods at steady state")
	backend := flag.String("backend", "scx", `the agent's backend: "scx" (the scx_layered STAND-IN) or "cgroup" (cgroup knobs on the faked tree)`)
	flag.Parse()
	if *backend != "scx" && *backend != "cgroup" {
		fmt.Fprintf(os.Stderr, "bench: -backend %q: want scx or cgroup\n", *backend)
		os.Exit(2)
	}
	if err := run(*backend, *duration, *samples, *pods); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(backend string, duration time.Duration, samples, nPods int) error {
	ctx := context.Background()
	tb := &testing.B{} // only as a testing.TB for the faked-tree helpers
	dir, err := os.MkdirTemp("", "agent-bench-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()

	standin, err := standintest.Build(dir)
	if err != nil {
		return err
	}
	env, err := envtest.Start(envtest.Options{PriorityClasses: true})
	if err != nil {
		return err
	}
	defer func() { _ = env.Stop() }()

	const node = "bench-node"
	if err := localcluster.RegisterNode(ctx, env.Client, &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: node},
		Status:     corev1.NodeStatus{Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("32"), corev1.ResourcePods: resource.MustParse("250")}},
	}); err != nil {
		return err
	}
	if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "bench"}}); err != nil {
		return err
	}
	tree := cgrouptest.NewV2(tb, cgrouptest.Options{CPUs: "0-31"})
	tree.Kubelet(tb, cgroupfs.DriverSystemd)
	sysfs := filepath.Join(dir, "sched_ext")
	cpuRoot := filepath.Join(dir, "cpu")
	for _, d := range []string{sysfs, cpuRoot} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if err := standintest.FakeSchedExt(sysfs); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(cpuRoot, "online"), []byte("0-31\n"), 0o644); err != nil {
		return err
	}
	_ = os.Setenv("STANDIN_SYSFS", sysfs)

	sysRoot := filepath.Join(dir, "sys")
	if err := os.Rename(sysfs, filepath.Join(dir, "sched_ext_tmp")); err != nil {
		return err
	}
	sysfs = filepath.Join(sysRoot, "kernel", "sched_ext")
	if err := os.MkdirAll(filepath.Dir(sysfs), 0o755); err != nil {
		return err
	}
	if err := os.Rename(filepath.Join(dir, "sched_ext_tmp"), sysfs); err != nil {
		return err
	}
	cpuDir := filepath.Join(sysRoot, "devices", "system", "cpu")
	if err := os.MkdirAll(filepath.Dir(cpuDir), 0o755); err != nil {
		return err
	}
	if err := os.Rename(cpuRoot, cpuDir); err != nil {
		return err
	}

	cfg := configv1alpha1.DefaultAgentConfiguration()
	cfg.Cgroup.Root = tree.Root
	cfg.SCX.Binary = standin
	cfg.SCX.ConfigPath = filepath.Join(dir, "layered.json")
	cfg.StateDir = filepath.Join(dir, "state")
	cfg.SysRoot = sysRoot
	cfg.CoalesceWindow.Duration = configv1alpha1.MinCoalesceWindow
	cfgFile := filepath.Join(dir, "agent.toml")
	backendLine := ""
	if backend == "cgroup" {
		backendLine = "backend = \"cgroup\"\n"
	}
	if err := os.WriteFile(cfgFile, []byte(backendLine+fmt.Sprintf(`api_version = %q
kind = %q
coalesce_window = %q
state_dir = %q
sys_root = %q
[cgroup]
root = %q
[scx]
binary = %q
config_path = %q
`, configv1alpha1.AgentAPIVersion, configv1alpha1.AgentKind, cfg.CoalesceWindow.String(), cfg.StateDir, sysRoot, tree.Root, standin, cfg.SCX.ConfigPath)), 0o644); err != nil {
		return err
	}
	agentBin := filepath.Join(dir, "infera-agent")
	if out, err := exec.Command("go", "build", "-o", agentBin, "github.com/infera-io/temper/cmd/infera-agent").CombinedOutput(); err != nil {
		return fmt.Errorf("build agent: %w: %s", err, out)
	}
	agentLog, err := os.Create(filepath.Join(dir, "agent.log"))
	if err != nil {
		return err
	}
	agent := exec.Command(agentBin, "--config", cfgFile, "--kubeconfig", env.Kubeconfig)
	agent.Env = append(os.Environ(), "NODE_NAME="+node, "STANDIN_SYSFS="+sysfs)
	agent.Stdout, agent.Stderr = agentLog, agentLog
	if err := agent.Start(); err != nil {
		return err
	}
	defer func() {
		_ = agent.Process.Signal(syscall.SIGTERM)
		_ = agent.Wait()
		// The stand-in runs in its own session; stop it too.
		_ = exec.Command("pkill", "-f", "f:"+cfg.SCX.ConfigPath).Run()
	}()
	pid := agent.Process.Pid

	var lastRel string // the cgroup of the pod mkPod made last
	mkPod := func(i int) (*corev1.Pod, error) {
		classes := []string{"infera-critical", "infera-high", "infera-normal", "infera-low", "infera-background"}
		cpu := "100m"
		if i%len(classes) == 0 {
			cpu = "50m"
		}
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p-%03d", i), Namespace: "bench"},
			Spec: corev1.PodSpec{NodeName: node, PriorityClassName: classes[i%len(classes)], Containers: []corev1.Container{{
				Name: "c", Image: "registry.invalid/c", Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu)}},
			}}},
		}
		if err := env.Client.Create(ctx, p); err != nil {
			return nil, err
		}
		lastRel = tree.AddPod(tb, cgroupfs.DriverSystemd, string(p.UID), p.Status.QOSClass, cgroupfs.RuntimeContainerd).RelPath
		return p, nil
	}

	// Latency: critical pods are matched one by one, so each new one changes
	// the config; wait for the supervisor to have applied a config that
	// names the pod's cgroup.
	var lat []time.Duration
	for i := 0; i < samples; i++ {
		idx := i * 5 // a critical pod each time (index divisible by 5)
		start := time.Now()
		p, err := mkPod(idx)
		if err != nil {
			return err
		}
		rel, err := podRel(p)
		if err != nil {
			return err
		}
		for {
			if backend == "cgroup" {
				// The kubelet's cpu.weight of a Burstable pod on the faked
				// tree is 20; the critical tier scales it.
				w, _ := os.ReadFile(tree.Path(cgroupfs.CPU, lastRel, "cpu.weight"))
				if len(w) > 0 && strings.TrimSpace(string(w)) != "20" {
					break
				}
			} else {
				b, _ := os.ReadFile(cfg.SCX.ConfigPath)
				st, _ := os.ReadFile(filepath.Join(sysfs, "state"))
				if strings.Contains(string(b), rel) && strings.TrimSpace(string(st)) == "enabled" {
					break
				}
			}
			if time.Since(start) > 30*time.Second {
				return fmt.Errorf("pod %s never reached the config", p.Name)
			}
			time.Sleep(2 * time.Millisecond)
		}
		lat = append(lat, time.Since(start)-cfg.CoalesceWindow.Duration)
	}
	// Fill up to nPods with other tiers.
	created := samples
	for i := 0; created < nPods; i++ {
		if i*5 < samples*5 && i%5 == 0 {
			continue
		}
		if _, err := mkPod(samples*5 + i); err != nil {
			return err
		}
		created++
	}
	time.Sleep(3 * time.Second) // settle: coalescing, restarts, first publish

	cpu0, t0 := procCPU(pid), time.Now()
	time.Sleep(duration)
	cpu1, t1 := procCPU(pid), time.Now()

	var r result
	r.Machine.CPUs, r.Machine.Go = runtime.NumCPU(), runtime.Version()
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		r.Machine.Kernel = strings.TrimSpace(string(b))
	}
	r.Command = "KUBEBUILDER_ASSETS=$PWD/bin go run ./test/bench/agent -backend " + backend + " -duration " + duration.String()
	r.Backend = backend
	r.ApplyLatency = summarize(lat, cfg.CoalesceWindow.Duration)
	if backend == "cgroup" {
		r.ApplyLatency.Note = "from the pod create call returning to the pod's cpu.weight on the faked cgroup v2 tree holding the critical tier's value, minus the coalescing window; includes the API server watch, the cgroup lookup and the write"
	}
	r.SteadyPods = created
	r.SteadySeconds = t1.Sub(t0).Seconds()
	r.CPUMillicores = (cpu1 - cpu0).Seconds() / t1.Sub(t0).Seconds() * 1000
	r.RSSMiB = float64(procRSS(pid)) / (1 << 20)
	out, _ := json.MarshalIndent(r, "", "  ")
	fmt.Println(string(out))
	return nil
}

func podRel(p *corev1.Pod) (string, error) {
	uid := strings.ReplaceAll(string(p.UID), "-", "_")
	switch p.Status.QOSClass {
	case corev1.PodQOSGuaranteed:
		return "kubepods-pod" + uid + ".slice", nil
	case corev1.PodQOSBurstable:
		return "kubepods-burstable-pod" + uid + ".slice", nil
	default:
		return "kubepods-besteffort-pod" + uid + ".slice", nil
	}
}

func summarize(d []time.Duration, window time.Duration) latency {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	ms := func(x time.Duration) float64 { return float64(x.Microseconds()) / 1000 }
	pct := func(p float64) time.Duration { return d[min(len(d)-1, int(p*float64(len(d))))] }
	var slowest []float64
	for i := len(d) - 1; i >= 0 && len(slowest) < 5; i-- {
		slowest = append(slowest, ms(d[i]))
	}
	return latency{
		Samples: len(d), WindowMs: ms(window), P50Ms: ms(pct(0.50)), P90Ms: ms(pct(0.90)), P99Ms: ms(pct(0.99)), MaxMs: ms(d[len(d)-1]),
		SlowestMs: slowest,
		Note:      "from the pod create call returning to the stand-in attached on a config naming the pod, minus the coalescing window; includes the API server watch, generation, stop of the old instance and start of the new one",
	}
}

// procCPU is a process's user+system CPU time from /proc/<pid>/stat.
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the parenthesised comm: state is field 3, utime 14,
	// stime 15 (1-based), in clock ticks (USER_HZ = 100 on Linux).
	rest := string(b[strings.LastIndexByte(string(b), ')')+2:])
	f := strings.Fields(rest)
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// procRSS is a process's resident set size from /proc/<pid>/status.
func procRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb * 1024
		}
	}
	return 0
}
