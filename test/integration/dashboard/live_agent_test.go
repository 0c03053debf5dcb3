package dashboard

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/go-logr/logr"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	configv1alpha1 "github.com/infera-io/temper/apis/config/v1alpha1"
	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/gateway"
	"github.com/infera-io/temper/nodeagent"
	"github.com/infera-io/temper/nodeagent/cgroupfs"
	"github.com/infera-io/temper/nodeagent/cgroupfs/cgrouptest"
	"github.com/infera-io/temper/test/testcerts"
)

const (
	liveNode = "dash-obs"
	liveNS   = "obs"
	// liveCritCores and liveThrottled are the rates at which the stand-in
	// kernel advances live-crit's cpu.stat (see advanceCPUStat).
	liveCritCores = 0.6
	liveThrottled = 0.05
)

// liveAgent is a real infera-agent (nodeagent.Agent) with the cgroup
// backend on a faked cgroup v2 tree (cgrouptest: this machine's cgroups are
// not a kubelet's), its gRPC API on TLS, and a gateway configured to reach
// it; the pods' cgroup.procs hold a real busy process, so the agent's thread
// sampler reads real threads from /proc.
type liveAgent struct {
	server  *httptest.Server
	busyPID int
	tree    *cgrouptest.Tree
	crit    cgrouptest.Pod
}

func startLiveAgent(t *testing.T) *liveAgent {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	dir := t.TempDir()
	la := &liveAgent{}

	// The node, at 127.0.0.1 (NodeAddress discovery), and its pods.
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: liveNS}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	node, err := kube.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: liveNode, Labels: map[string]string{"pool": "live"}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	node.Status = corev1.NodeStatus{
		Capacity:    corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourcePods: resource.MustParse("110")},
		Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourcePods: resource.MustParse("110")},
		Conditions:  []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}},
		Addresses:   []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}},
	}
	if _, err := kube.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kube.CoreV1().Nodes().Delete(context.Background(), liveNode, metav1.DeleteOptions{}) })

	// The faked tree: the kubelet's pod root and each pod's cgroup with
	// the values the kubelet sets (500m of requests: cpu.weight 20).
	la.tree = cgrouptest.NewV2(t, cgrouptest.Options{CPUs: "0-3"})
	la.tree.Kubelet(t, cgroupfs.DriverSystemd)
	pods := map[string]cgrouptest.Pod{}
	for _, p := range []struct{ name, class string }{{"live-crit", "infera-critical"}, {"live-low", "infera-low"}} {
		created, err := kube.CoreV1().Pods(liveNS).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: p.name, Namespace: liveNS},
			Spec: corev1.PodSpec{NodeName: liveNode, PriorityClassName: p.class, Containers: []corev1.Container{{
				Name: "app", Image: "registry.invalid/app",
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m")}},
			}}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pods[p.name] = la.tree.AddPod(t, cgroupfs.DriverSystemd, string(created.UID), created.Status.QOSClass, cgroupfs.RuntimeContainerd)
	}
	la.crit = pods["live-crit"]

	// A real busy process in live-crit's cgroup.procs (the runtime would
	// have put the container's there), at the lowest priority.
	busy := exec.Command("nice", "-n", "19", "sh", "-c", "while :; do :; done")
	busy.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := busy.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-busy.Process.Pid, syscall.SIGKILL)
		_ = busy.Wait()
	})
	la.busyPID = busy.Process.Pid
	// Pinned to CPU 0: the agent fences live-crit on the faked tree's CPU 3,
	// which a faked cpuset cannot enforce, so the placement linter must see
	// it run outside its fence on any machine.
	var cpu0 unix.CPUSet
	cpu0.Set(0)
	must(t, unix.SchedSetaffinity(la.busyPID, &cpu0))
	la.tree.Set(t, cgroupfs.CPU, la.crit.RelPath, "cgroup.procs", strconv.Itoa(la.busyPID)+"\n")
	go la.advanceCPUStat(ctx, la.tree.Path(cgroupfs.CPU, la.crit.RelPath, "cpu.stat"))

	// The agent: cgroup backend, observation every second with eBPF
	// run-queue latency where this host allows it, gRPC on TLS.
	certs, err := testcerts.Write(dir, "infera-agent.infera-system.svc")
	if err != nil {
		t.Fatal(err)
	}
	gwToken, err := token(ctx, "infera-system", "infera-gateway")
	if err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(dir, "gateway-token")
	must(t, os.WriteFile(tokenFile, []byte(gwToken), 0o600))
	grpcPort, httpPort := freePort(t), freePort(t)
	cfg := configv1alpha1.DefaultAgentConfiguration()
	cfg.Backend = configv1alpha1.AgentBackendCgroup
	cfg.Cgroup.Root = la.tree.Root
	cfg.Cgroup.CPUManagerState = filepath.Join(dir, "no-cpu-manager-state")
	cfg.Observation.SampleInterval.Duration = time.Second
	cfg.Cgroup.ReconcileInterval.Duration = time.Second
	cfg.Observation.TraceDir = filepath.Join(dir, "traces")
	cfg.StateDir = filepath.Join(dir, "state")
	cfg.SCX.ConfigPath = filepath.Join(dir, "run", "layered.json")
	cfg.Server.Address = "127.0.0.1:" + strconv.Itoa(httpPort)
	cfg.Server.GRPCSocket = filepath.Join(dir, "agent.sock")
	cfg.Server.GRPCAddress = "127.0.0.1:" + strconv.Itoa(grpcPort)
	cfg.Server.GRPCTLSCertFile, cfg.Server.GRPCTLSKeyFile = certs.Cert, certs.Key
	cpuRoot := filepath.Join(dir, "cpu")
	must(t, os.MkdirAll(cpuRoot, 0o755))
	must(t, os.WriteFile(filepath.Join(cpuRoot, "online"), []byte("0-3\n"), 0o644))
	agent, err := nodeagent.New(nodeagent.Options{Config: cfg, NodeName: liveNode, Client: kube, Log: logr.Discard(),
		SchedExtRoot: filepath.Join(dir, "no-sched-ext"), SysCPURoot: cpuRoot})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- agent.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent Run returned %v", err)
		}
	})
	deadline := time.Now().Add(waitTimeout)
	for {
		n, err := kube.CoreV1().Nodes().Get(ctx, liveNode, metav1.GetOptions{})
		if err == nil && n.Annotations[wellknown.AgentStatusAnnotation] == "enforcing/cgroup" && agent.GRPCAddress() != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent of %s did not enforce with the cgroup backend in %s (annotations %v)", liveNode, waitTimeout, n.GetAnnotations())
		}
		time.Sleep(100 * time.Millisecond)
	}

	// A gateway that reaches it, as its own ServiceAccount.
	rc := &rest.Config{Host: env.Config.Host, BearerToken: gwToken, TLSClientConfig: rest.TLSClientConfig{CAData: env.Config.CAData}, QPS: 200, Burst: 400}
	gcfg, err := gateway.LoadConfig("")
	if err != nil {
		t.Fatal(err)
	}
	gcfg.AuthCacheTTL = &metav1.Duration{Duration: time.Second}
	gcfg.Agents = &configv1alpha1.GatewayAgents{
		Discovery: configv1alpha1.AgentDiscoveryNodeAddress, Port: int32(grpcPort), CAFile: certs.CA,
		ServerName: "infera-agent.infera-system.svc", TokenFile: tokenFile,
		Timeout: &metav1.Duration{Duration: 5 * time.Second}, MaxConcurrent: 4,
	}
	g, err := gateway.New(gateway.Options{Config: gcfg, RestConfig: rc, Log: logr.Discard(), AuditWriter: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Start(ctx); err != nil {
		t.Fatal(err)
	}
	la.server = httptest.NewServer(g.Handler())
	t.Cleanup(func() {
		la.server.CloseClientConnections()
		la.server.Close()
	})
	return la
}

// advanceCPUStat is the stand-in kernel's accounting of live-crit's cgroup
// (a faked tree has none): usage grows at liveCritCores and throttled time
// at liveThrottled per second of wall time, so any two reads give those
// rates.
func (la *liveAgent) advanceCPUStat(ctx context.Context, path string) {
	start := time.Now()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		el := time.Since(start).Seconds()
		usage, thr := int64(el*liveCritCores*1e6), int64(el*liveThrottled*1e6)
		periods := int64(el * 10)
		body := fmt.Sprintf("usage_usec %d\nuser_usec %d\nsystem_usec 0\nnr_periods %d\nnr_throttled %d\nthrottled_usec %d\n",
			usage, usage, periods, periods/2, thr)
		tmp := path + ".tmp"
		if os.WriteFile(tmp, []byte(body), 0o644) == nil {
			_ = os.Rename(tmp, path)
		}
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestLiveAgent: the node view of a node whose real agent the gateway
// reaches: the cgroup knobs in force are the values the agent wrote into
// the pods' cgroups (read back from the files here), the top threads are
// the busy process's real thread, and the live performance panel turns the
// agent's counters into per-tier rates that follow the counters as they
// grow, with a chart of the samples so far.
func TestLiveAgent(t *testing.T) {
	if env == nil {
		t.Skip("run by make test-dashboard (TEMPER_TEST_DASHBOARD=1)")
	}
	la := startLiveAgent(t)
	ctx := browser(t)
	do(t, ctx, "sign in to the live gateway",
		chromedp.Navigate(la.server.URL+"/"),
		chromedp.WaitVisible(chromedp.ID("token")),
		fill("#token", tokens[operator]),
		chromedp.Click(chromedp.ID("signin")),
		waitFor(textOf("#fleet-table", liveNode)),
		chromedp.Navigate(la.server.URL+"/#/nodes/"+liveNode),
		waitFor(textOf("h1", "Node "+liveNode)),
	)

	// (d) The cgroup knobs in force: critical's weight is the kubelet's
	// 20 times 4, low's divided by 4, each as the file reads now.
	critWeight := readFile(t, la.tree.Path(cgroupfs.CPU, la.crit.RelPath, "cpu.weight"))
	if critWeight != "80" {
		t.Fatalf("the agent wrote cpu.weight %q for live-crit, want 80 (the kubelet's 20 × 4)", critWeight)
	}
	do(t, ctx, "the cgroup knobs in force",
		waitFor(textOf("#config-in-force", "enforcing/cgroup")),
		waitFor(textOf("#knobs-table", "obs/live-crit")),
	)
	rows, _ := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("#knobs-table tbody tr")].map(r => [...r.cells].map(c => c.innerText.trim()).join("|"))`))
	var critRow, lowRow bool
	for _, r := range rows {
		critRow = critRow || strings.HasPrefix(r, "obs/live-crit|critical|cpu.weight|80|same|") && strings.HasSuffix(r, la.crit.RelPath)
		lowRow = lowRow || strings.HasPrefix(r, "obs/live-low|low|cpu.weight|5|same|")
	}
	if !critRow || !lowRow {
		t.Errorf("knob rows %q: want live-crit's cpu.weight 80 at %s and live-low's 5, each read back the same", rows, la.crit.RelPath)
	}

	// Drift: a value changed behind the agent's back is put back, and the
	// drift counter under the knobs counts it.
	const driftJS = `parseInt(document.querySelector("#cgroup-writes [data-counter=drift]")?.innerText ?? "x")`
	do(t, ctx, "the drift counter", waitFor(driftJS+` >= 0`))
	before, _ := chromedp.Run(ctx, chromedp.Evaluate[int](driftJS))
	la.tree.Set(t, cgroupfs.CPU, la.crit.RelPath, "cpu.weight", "20\n")
	do(t, ctx, "the drift re-asserted and counted", waitFor(fmt.Sprintf(driftJS+` > %d`, before)))
	if w := readFile(t, la.tree.Path(cgroupfs.CPU, la.crit.RelPath, "cpu.weight")); w != "80" {
		t.Errorf("after drift, live-crit's cpu.weight reads %q, want 80 again", w)
	}

	// The placement linter: a verdict per invariant of the cgroup backend's
	// promise on the last sample. live-crit is fenced on CPU 3 of the faked
	// tree, whose cpuset confines nothing, and its busy thread is pinned to
	// CPU 0: protected_fallback is broken with that thread as the example;
	// the rest hold.
	do(t, ctx, "the placement linter's verdicts",
		waitFor(`document.querySelectorAll("#placement-table tbody tr").length === 4`),
		waitFor(`document.querySelector("#placement-table tr[data-invariant=protected_fallback]")?.cells[1].innerText.trim() === "broken"`))
	verdicts, _ := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("#placement-table tbody tr")].map(r => [...r.cells].map(c => c.innerText.trim()).join("|"))`))
	wantBroken := fmt.Sprintf("obs/live-crit sh (TID %d, CPU 0): ran on CPU 0, outside layer critical's CPUs 3", la.busyPID)
	for _, v := range verdicts {
		inv, rest, _ := strings.Cut(v, "|")
		switch {
		case inv == "protected_fallback":
			if !strings.HasPrefix(rest, "broken|1|1|") || !strings.HasSuffix(rest, wantBroken) {
				t.Errorf("protected_fallback reads %q, want broken by 1 of 1 threads with example %q", rest, wantBroken)
			}
		case !slices.Contains([]string{"smt_collision", "open_reserve", "layer_mismatch"}, inv) || !strings.HasPrefix(rest, "holds|"):
			t.Errorf("placement verdict %q: want one of the other three invariants, holding", v)
		}
	}

	// (c) Top threads: the busy process's thread, in live-crit.
	pid := strconv.Itoa(la.busyPID)
	do(t, ctx, "top threads",
		waitFor(fmt.Sprintf(`[...document.querySelectorAll("#threads-table tbody tr")].some(r => r.cells[0].innerText === "obs/live-crit" && r.cells[4].innerText === %q && r.cells[2].innerText === "sh")`, pid)),
	)
	milli, _ := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(`[...document.querySelectorAll("#threads-table tbody tr")].find(r => r.cells[4].innerText === %q).cells[6].innerText`, pid)))
	if v, err := strconv.ParseFloat(strings.TrimSuffix(milli, "m"), 64); err != nil || v <= 0 || v > 1100 {
		t.Errorf("the busy thread's CPU use reads %q, want (0, 1100] milli-CPUs (one CPU, and the jitter of the sample interval)", milli)
	}

	// (b) Live performance: critical's CPU rate from the counters, and it
	// keeps updating: the sample count grows and the chart gets a line.
	do(t, ctx, "live performance",
		waitFor(`document.querySelectorAll("#perf-table tr[data-tier=critical] td[data-metric=cpu] svg path").length === 1`),
		waitFor(`/^([4-9]|\d\d+) samples/.test(document.getElementById("perf-status").innerText)`),
	)
	cores, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector("#perf-table tr[data-tier=critical] td[data-metric=cpu] .perf-value").innerText`))
	if v, err := strconv.ParseFloat(cores, 64); err != nil || v < liveCritCores*0.5 || v > liveCritCores*1.5 {
		t.Errorf("critical's CPU rate reads %q cores, want about %.1f (the rate its cpu.stat grows at)", cores, liveCritCores)
	}
	thr, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector("#perf-table tr[data-tier=critical] td[data-metric=throttled] .perf-value").innerText`))
	if v, err := strconv.ParseFloat(thr, 64); err != nil || v < liveThrottled*0.5 || v > liveThrottled*1.5 {
		t.Errorf("critical's throttled rate reads %q s/s, want about %.2f", thr, liveThrottled)
	}
	label, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector("#perf-table tr[data-tier=critical] td[data-metric=cpu] svg").getAttribute("aria-label")`))
	if !strings.HasPrefix(label, "CPU use of tier critical: ") {
		t.Errorf("the CPU chart's label is %q", label)
	}
	// Run-queue latency: measured by the agent's eBPF programs where this
	// host lets it load them (root, BTF); otherwise the view says why.
	runq, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById("runq-unavailable")?.innerText ?? ""`))
	if runq != "" {
		t.Logf("run-queue latency not measured here: %s", runq)
	} else {
		do(t, ctx, "run-queue latency of the system tier (every task outside the pods)",
			waitFor(`/^\d+\.\d+ ms$/.test(document.querySelector("#perf-table tr[data-tier=system] td[data-metric=rq] .perf-value")?.innerText ?? "")`))
	}
	do(t, ctx, "a sample with the busy thread, for the screenshot",
		waitFor(textOf("#threads-table", "obs/live-crit")),
		chromedp.ScrollIntoView(chromedp.ID("agent-h")))
	screenshot(t, ctx, "node-live")
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}
