// Command gateway measures infera-gateway against a real kube-apiserver
// (envtest): it creates N Nodes carrying agent-status and fresh tier-load
// annotations, starts the built bin/infera-agent for the first node
// (observe-only, its gRPC API on TLS at 127.0.0.1, the node's InternalIP)
// with -pods pods bound to it, starts the built bin/infera-gateway as a
// child process with the admin kubeconfig and a configuration that reaches
// the agent with a token of a ServiceAccount bound to infera-gateway, mints
// a token for a ServiceAccount bound to infera-viewer, and times GET
// /api/v1/fleet, GET /api/v1/nodes (one page of up to 500) and GET
// /api/v1/nodes/<first node>/pods (the node's pods merged with what its
// live agent enforces, over TLS) with that token, in interleaved rounds. It
// reports p50/p99 per round, the median and spread over rounds, the
// gateway's RSS (VmRSS and peak VmHWM from /proc) and the load average, and
// writes JSON. Run from the repository root after `make build`:
//
//	go run ./test/bench/gateway -nodes 500 -pods 60 -rounds 5 -requests 400 -out docs/bench/gateway.json
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/infera-io/temper/test/envtest"
)

type round struct {
	Endpoint string  `json:"endpoint"`
	Round    int     `json:"round"`
	P50Ms    float64 `json:"p50Ms"`
	P99Ms    float64 `json:"p99Ms"`
	MaxMs    float64 `json:"maxMs"`
}

type summary struct {
	Endpoint  string  `json:"endpoint"`
	P50Median float64 `json:"p50MedianMs"`
	P99Median float64 `json:"p99MedianMs"`
	P99Min    float64 `json:"p99MinMs"`
	P99Max    float64 `json:"p99MaxMs"`
}

type report struct {
	Command     string            `json:"command"`
	Nodes       int               `json:"nodes"`
	AgentPods   int               `json:"agentNodePods"`
	Requests    int               `json:"requestsPerRound"`
	Rounds      []round           `json:"rounds"`
	Summary     []summary         `json:"summary"`
	RSSMiB      float64           `json:"gatewayRSSMiB"`
	PeakRSSMiB  float64           `json:"gatewayPeakRSSMiB"`
	Machine     map[string]string `json:"machine"`
	FleetSample json.RawMessage   `json:"fleetSample"`
}

func main() {
	nodes := flag.Int("nodes", 500, "Nodes to create")
	rounds := flag.Int("rounds", 5, "interleaved rounds per endpoint")
	requests := flag.Int("requests", 400, "sequential requests per endpoint and round")
	out := flag.String("out", "", "write the JSON report here")
	bin := flag.String("gateway", "bin/infera-gateway", "the infera-gateway binary")
	agentBin := flag.String("agent", "bin/infera-agent", "the infera-agent binary")
	pods := flag.Int("pods", 60, "pods on the node with the live agent")
	flag.Parse()
	if err := run(*nodes, *pods, *rounds, *requests, *out, *bin, *agentBin); err != nil {
		fmt.Fprintln(os.Stderr, "bench-gateway:", err)
		os.Exit(1)
	}
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// rssMiB reads VmRSS and VmHWM of pid.
func rssMiB(pid int) (rss, hwm float64) {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb / 1024
		case "VmHWM:":
			hwm = kb / 1024
		}
	}
	return rss, hwm
}

func run(nNodes, nPods, nRounds, nReq int, out, bin, agentBin string) error {
	for _, b := range []string{bin, agentBin} {
		if _, err := os.Stat(b); err != nil {
			return fmt.Errorf("%s: %w (run make build first)", b, err)
		}
	}
	env, err := envtest.Start(envtest.Options{})
	if err != nil {
		return err
	}
	defer func() { _ = env.Stop() }()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	kube, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		return err
	}
	rep := report{Command: strings.Join(os.Args, " "), Nodes: nNodes, AgentPods: nPods, Requests: nReq,
		Machine: map[string]string{"cpus": strconv.Itoa(runtime.NumCPU()), "cpu": cpuModel(), "go": runtime.Version(), "loadavgStart": loadavg()}}

	fmt.Printf("creating %d nodes, %d pods on %s...\n", nNodes, nPods, agentNode)
	ts := time.Now().UTC().Format(time.RFC3339)
	for i := range nNodes {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{
			Name:   fmt.Sprintf("bench-node-%04d", i),
			Labels: map[string]string{"pool": fmt.Sprintf("p%d", i%5)},
			Annotations: map[string]string{
				"infera.io/agent-status": "enforcing/cgroup",
				"infera.io/tier-load": `{"v":1,"ts":"` + ts + `","gen":12,"backend":"cgroup","allocatableMilli":16000,"fencedMilli":4000,` +
					`"tiers":{"critical":{"pods":2,"requestMilli":4000,"limitMilli":4000},"high":{"pods":3,"requestMilli":1500,"limitMilli":0},` +
					`"normal":{"pods":20,"requestMilli":5000,"limitMilli":0},"background":{"pods":10,"requestMilli":1000,"limitMilli":0}}}`,
			}}}
		created, err := kube.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		created.Status.Allocatable = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("16")}
		created.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
		created.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: fmt.Sprintf("10.1.%d.%d", i/250, i%250+1)}}
		if i == 0 {
			// The node with the live agent, which listens on loopback.
			created.Status.Addresses[0].Address = "127.0.0.1"
		}
		if _, err := kube.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
			return err
		}
	}
	// The caller: a ServiceAccount bound to infera-viewer.
	if err := setupViewer(ctx, env, kube); err != nil {
		return err
	}
	tr, err := kube.CoreV1().ServiceAccounts("default").CreateToken(ctx, "bench-viewer", &authnv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	gwConfig, err := startAgent(ctx, env, kube, agentBin, nPods)
	if err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.CommandContext(ctx, bin, "--kubeconfig", env.Kubeconfig, "--bind-address", addr, "--audit-log", os.DevNull, "--config", gwConfig)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { cancel(); _ = cmd.Wait() }()
	base := "http://" + addr
	if err := waitReady(ctx, base+"/readyz"); err != nil {
		return err
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	get := func(path string) ([]byte, time.Duration, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+path, http.NoBody)
		req.Header.Set("Authorization", "Bearer "+tr.Status.Token)
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return nil, 0, err
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		d := time.Since(start)
		if resp.StatusCode != 200 {
			return nil, 0, fmt.Errorf("GET %s = %d %s", path, resp.StatusCode, b)
		}
		return b, d, err
	}
	sample, _, err := get("/api/v1/fleet")
	if err != nil {
		return err
	}
	var f struct {
		Nodes int `json:"nodes"`
	}
	if err := json.Unmarshal(sample, &f); err != nil || f.Nodes != nNodes {
		return fmt.Errorf("fleet view reports %d nodes, want %d (%w)", f.Nodes, nNodes, err)
	}
	rep.FleetSample = sample
	podsPath := "/api/v1/nodes/" + agentNode + "/pods?pageSize=500"
	// Wait until the agent answers with every pod.
	for deadline := time.Now().Add(60 * time.Second); ; {
		podsSample, _, err := get(podsPath)
		if err != nil {
			return err
		}
		var ps struct {
			Pods []struct {
				AgentTier string `json:"agentTier"`
			} `json:"pods"`
			Agent struct {
				Reached bool   `json:"reached"`
				Error   string `json:"error"`
			} `json:"agent"`
		}
		if err := json.Unmarshal(podsSample, &ps); err != nil {
			return err
		}
		known := 0
		for _, p := range ps.Pods {
			if p.AgentTier != "" {
				known++
			}
		}
		if ps.Agent.Reached && len(ps.Pods) == nPods && known == nPods {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("GET %s: %d pods, %d known to the agent, agent reached %v (%s); want %d", podsPath, len(ps.Pods), known, ps.Agent.Reached, ps.Agent.Error, nPods)
		}
		time.Sleep(200 * time.Millisecond)
	}
	endpoints := []string{"/api/v1/fleet", "/api/v1/nodes?pageSize=500", podsPath}
	for _, ep := range endpoints { // warm up
		for range 20 {
			if _, _, err := get(ep); err != nil {
				return err
			}
		}
	}
	for r := range nRounds {
		for _, ep := range endpoints {
			ds := make([]float64, 0, nReq)
			for range nReq {
				_, d, err := get(ep)
				if err != nil {
					return err
				}
				ds = append(ds, float64(d.Microseconds())/1000)
			}
			slices.Sort(ds)
			rd := round{Endpoint: ep, Round: r + 1, P50Ms: pct(ds, 50), P99Ms: pct(ds, 99), MaxMs: ds[len(ds)-1]}
			rep.Rounds = append(rep.Rounds, rd)
			fmt.Printf("round %d %-28s p50 %7.2f ms  p99 %7.2f ms  max %7.2f ms\n", rd.Round, ep, rd.P50Ms, rd.P99Ms, rd.MaxMs)
		}
	}
	rep.RSSMiB, rep.PeakRSSMiB = rssMiB(cmd.Process.Pid)
	for _, ep := range endpoints {
		var p50, p99 []float64
		for _, r := range rep.Rounds {
			if r.Endpoint == ep {
				p50, p99 = append(p50, r.P50Ms), append(p99, r.P99Ms)
			}
		}
		slices.Sort(p50)
		slices.Sort(p99)
		s := summary{Endpoint: ep, P50Median: p50[len(p50)/2], P99Median: p99[len(p99)/2], P99Min: p99[0], P99Max: p99[len(p99)-1]}
		rep.Summary = append(rep.Summary, s)
		fmt.Printf("%-28s p50 median %.2f ms, p99 median %.2f ms (rounds %.2f–%.2f)\n", ep, s.P50Median, s.P99Median, s.P99Min, s.P99Max)
	}
	rep.Machine["loadavgEnd"] = loadavg()
	fmt.Printf("gateway RSS %.1f MiB (peak %.1f MiB) with %d nodes; load average %s → %s\n",
		rep.RSSMiB, rep.PeakRSSMiB, nNodes, rep.Machine["loadavgStart"], rep.Machine["loadavgEnd"])
	if out != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
			return err
		}
		return os.WriteFile(out, append(b, '\n'), 0o644)
	}
	return nil
}

func pct(sorted []float64, p int) float64 {
	i := (len(sorted)*p + 99) / 100
	return sorted[max(0, min(i, len(sorted))-1)]
}

func waitReady(ctx context.Context, url string) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, http.NoBody)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready within 60s", url)
}

// setupViewer creates the infera-viewer role from the repository's
// manifest's rules and binds a ServiceAccount to it.
func setupViewer(ctx context.Context, env *envtest.Env, kube kubernetes.Interface) error {
	if _, err := kube.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "bench-viewer"}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	if _, err := env.Kubectl(ctx, "apply", "-f", filepath.Join(env.Root, "config", "rbac", "gateway", "user_roles.yaml")); err != nil {
		return err
	}
	_, err := kube.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "bench-viewer"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "infera-viewer"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "bench-viewer", Namespace: "default"}},
	}, metav1.CreateOptions{})
	return err
}
