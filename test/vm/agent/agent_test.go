package agent_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	configv1alpha1 "github.com/infera-io/temper/apis/config/v1alpha1"
	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/internal/localcluster"
	scxenf "github.com/infera-io/temper/nodeagent/enforcement/scx"
	"github.com/infera-io/temper/nodeagent/enforcement/tiersched"
	"github.com/infera-io/temper/test/envtest"
)

const (
	nodeName  = "vm-node"
	namespace = "vm"
	// cgroupRoot is the VM's real cgroup2 mount; the kubelet-shaped tree
	// (systemd driver) is made under it as a kubelet would.
	cgroupRoot = "/sys/fs/cgroup"
	kubepods   = "kubepods.slice"
	burstable  = "kubepods.slice/kubepods-burstable.slice"
	// advertiseAddress is on the guest's loopback (hack/vm/guest/init).
	advertiseAddress = "192.0.2.1"
	// waitLimit bounds every wait; generous for TCG.
	waitLimit = 3 * time.Minute
)

var sysfs = scxenf.SysFS{Root: scxenf.DefaultSysFSRoot}

// The agent process end to end on the VM's sched_ext kernel: the project's
// etcd and kube-apiserver run in the guest (loopback only), the real
// infera-agent binary runs with backend auto against them, pods created
// through the API server get their cgroup ids into the built-in tier
// scheduler's tiers map (read here from the kernel, not from the agent),
// the Node's agent-status says so, safe mode detaches the scheduler and
// clearing it attaches it again, and a clean stop detaches it.
func TestAgentEndToEnd(t *testing.T) {
	if os.Getenv("TEMPER_VM_SCHEDULERS") == "" {
		t.Skip("runs inside `make test-vm` only (TEMPER_VM_SCHEDULERS is unset)")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	root, err := envtest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	agentBin := filepath.Join(envtest.BinDir(root), "infera-agent")
	if _, err := os.Stat(agentBin); err != nil {
		t.Fatalf("the agent binary is missing (hack/vm/test-vm.sh builds it into the payload): %v", err)
	}
	if k := kernelState(t); k.State != scxenf.StateDisabled {
		t.Fatalf("sched_ext is %s before the test", k.State)
	}
	// auto must not find scx_layered: the default binary path is absent.
	if _, err := os.Stat(configv1alpha1.DefaultSCXBinary); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s exists (or cannot be checked: %v); the test needs it absent", configv1alpha1.DefaultSCXBinary, err)
	}

	start := time.Now()
	env, err := envtest.Start(envtest.Options{
		PriorityClasses: true, APIServerOnly: true, StartTimeout: 20 * time.Minute,
		// The guest has no NIC and no default route, from which
		// kube-apiserver would pick the address it advertises; hack/vm's
		// init puts this documentation address (RFC 5737) on loopback.
		APIServerArgs: map[string]string{"advertise-address": advertiseAddress},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	t.Logf("etcd and kube-apiserver up in the guest in %s", time.Since(start).Round(time.Millisecond))
	ctx := context.Background()
	c := env.Client
	if err := localcluster.RegisterNode(ctx, c, &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: nodeName},
		Status: corev1.NodeStatus{Allocatable: corev1.ResourceList{
			corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourcePods: resource.MustParse("250")}},
	}); err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}); err != nil {
		t.Fatal(err)
	}
	kubeletTree(t)

	dir := t.TempDir()
	port := freePort(t)
	cfgFile := filepath.Join(dir, "agent.toml")
	// Backend auto and the default scx binary path; observation off (its
	// eBPF programs cost emulated CPU and are tested elsewhere); the
	// shortest coalescing window, as in test/bench/agent.
	cfg := fmt.Sprintf(`api_version = %q
kind = %q
backend = "auto"
coalesce_window = %q
state_dir = %q
[cgroup]
root = %q
[scx]
config_path = %q
[server]
address = "127.0.0.1:%d"
grpc_socket = %q
[observation]
enabled = false
trace_dir = %q
`, configv1alpha1.AgentAPIVersion, configv1alpha1.AgentKind, configv1alpha1.MinCoalesceWindow.String(),
		filepath.Join(dir, "state"), cgroupRoot, filepath.Join(dir, "layered.json"), port,
		filepath.Join(dir, "agent.sock"), filepath.Join(dir, "traces"))
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}

	// --probe says which backend and why, and changes nothing.
	out, err := exec.Command(agentBin, "--probe", "--config", cfgFile).CombinedOutput()
	if err != nil {
		t.Fatalf("infera-agent --probe: %v\n%s", err, out)
	}
	t.Logf("infera-agent --probe:\n%s", out)
	if !strings.Contains(string(out), "backend: "+wellknown.BackendTierSched+"\n") {
		t.Fatalf("--probe did not select %s:\n%s", wellknown.BackendTierSched, out)
	}

	// Five pods before the agent starts, one per tier.
	var pods []pod
	for i, pc := range wellknown.PriorityClasses() {
		pods = append(pods, createPod(ctx, t, c, fmt.Sprintf("tier-%d", i), pc))
	}

	agent, exited := startAgent(t, agentBin, cfgFile, env.Kubeconfig, dir)
	started := time.Now()
	waitFor(t, "the agent to attach the tier scheduler and publish agent-status "+wellknown.AgentStatusEnforcingTiers, func() bool {
		k := kernelState(t)
		return k.State == scxenf.StateEnabled && k.Ops == tiersched.OpsName &&
			agentStatus(ctx, t, c) == wellknown.AgentStatusEnforcingTiers
	})
	t.Logf("agent started: tier scheduler attached and agent-status %q published %s after the agent was started",
		wellknown.AgentStatusEnforcingTiers, time.Since(started).Round(time.Millisecond))
	m := tiersMap(t)
	waitTiers(t, m, pods)
	_ = m.Close()

	// The tiers are enforced: a task in the critical pod's cgroup is
	// enqueued by the scheduler in the critical tier (the agent's own
	// counters on its loopback /metrics).
	metrics := fmt.Sprintf("http://127.0.0.1:%d/metrics", port)
	before := tierEvents(t, metrics, wellknown.TierCritical, "enqueued")
	spawnIn(t, pods[0].dir)
	waitFor(t, "critical-tier enqueues counted by the agent's tier scheduler", func() bool {
		return tierEvents(t, metrics, wellknown.TierCritical, "enqueued") > before+10
	})

	// Safe mode detaches the scheduler; the kernel returns every task to
	// the fair class. Clearing it attaches it again with every pod.
	seq := kernelState(t).EnableSeq
	setSafeMode(ctx, t, c, true)
	t0 := time.Now()
	waitFor(t, "safe mode: sched_ext disabled and agent-status "+wellknown.AgentStatusSafeMode, func() bool {
		return kernelState(t).State == scxenf.StateDisabled && agentStatus(ctx, t, c) == wellknown.AgentStatusSafeMode
	})
	t.Logf("safe mode: detached and published %s after the annotation was set", time.Since(t0).Round(time.Millisecond))
	setSafeMode(ctx, t, c, false)
	t0 = time.Now()
	waitFor(t, "safe mode cleared: the tier scheduler attached again", func() bool {
		k := kernelState(t)
		return k.State == scxenf.StateEnabled && k.Ops == tiersched.OpsName && k.EnableSeq == seq+1 &&
			agentStatus(ctx, t, c) == wellknown.AgentStatusEnforcingTiers
	})
	t.Logf("safe mode cleared: re-attached and published %s after the annotation was removed", time.Since(t0).Round(time.Millisecond))
	m = tiersMap(t)
	defer func() { _ = m.Close() }()
	waitTiers(t, m, pods)

	// Pod event -> tier enforced: from the create call to the pod's cgroup
	// id holding its tier in the kernel's map. The cgroup is made right
	// after the create call returns, as the kubelet would make it.
	const n = 50
	var lat []time.Duration
	classes := wellknown.PriorityClasses()
	for i := range n {
		t0 := time.Now()
		p := createPod(ctx, t, c, fmt.Sprintf("lat-%03d", i), classes[i%len(classes)])
		want, _ := tiersched.TierIndex(p.tier)
		var got uint32
		for m.Lookup(p.cgroupID, &got) != nil || got != want {
			if time.Since(t0) > waitLimit {
				t.Fatalf("pod %s (cgroup %d) never reached tier %s in the tiers map", p.name, p.cgroupID, p.tier)
			}
			time.Sleep(time.Millisecond)
		}
		lat = append(lat, time.Since(t0))
		pods = append(pods, p)
	}
	slices.Sort(lat)
	pct := func(q float64) time.Duration { return lat[min(len(lat)-1, int(q*float64(len(lat))))] }
	t.Logf("pod event -> tier enforced (create call to the cgroup id's tier in the kernel's tiers map, coalescing window %s included), %d pods: p50 %s, p90 %s, p99 %s, max %s",
		configv1alpha1.MinCoalesceWindow, len(lat), pct(0.50).Round(time.Millisecond), pct(0.90).Round(time.Millisecond),
		pct(0.99).Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond))
	if k := kernelState(t); k.EnableSeq != seq+1 {
		t.Errorf("enable_seq %d after the pod events, want %d: a pod change must be a map update, not a re-attach", k.EnableSeq, seq+1)
	}

	// A clean stop detaches: stock behaviour stays behind.
	t0 = time.Now()
	if err := agent.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(waitLimit):
		t.Fatalf("the agent did not exit within %s of SIGTERM", waitLimit)
	}
	if !agent.ProcessState.Success() {
		t.Errorf("the agent exited with %s on SIGTERM", agent.ProcessState)
	}
	if k := kernelState(t); k.State != scxenf.StateDisabled {
		t.Errorf("sched_ext is %s after the agent stopped; want disabled", k.State)
	}
	t.Logf("clean stop: exited and detached in %s", time.Since(t0).Round(time.Millisecond))
}

type pod struct {
	name     string
	tier     wellknown.Tier
	dir      string
	cgroupID uint64
}

// createPod creates a pod bound to the node through the API server, then
// its pod cgroup where the kubelet (systemd driver) would make it.
func createPod(ctx context.Context, t *testing.T, c client.Client, name string, pc wellknown.PriorityClass) pod {
	t.Helper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Spec: corev1.PodSpec{NodeName: nodeName, PriorityClassName: pc.Name, Containers: []corev1.Container{{
			Name: "c", Image: "registry.invalid/c",
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}},
		}}},
	}
	if err := c.Create(ctx, p); err != nil {
		t.Fatalf("failed to create pod %s: %v", name, err)
	}
	if p.Status.QOSClass != corev1.PodQOSBurstable {
		t.Fatalf("pod %s has QoS class %q, want Burstable", name, p.Status.QOSClass)
	}
	dir := filepath.Join(cgroupRoot, burstable, "kubepods-burstable-pod"+strings.ReplaceAll(string(p.UID), "-", "_")+".slice")
	mkCgroup(t, dir)
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	return pod{name: name, tier: pc.Tier, dir: dir, cgroupID: st.Ino}
}

// kubeletTree makes the kubelet's pod root and burstable QoS cgroup on the
// real cgroup2 tree, with cpu and cpuset delegated as the kubelet has them.
func kubeletTree(t *testing.T) {
	t.Helper()
	for _, rel := range []string{kubepods, burstable} {
		dir := filepath.Join(cgroupRoot, rel)
		mkCgroup(t, dir)
		if err := os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+cpu +cpuset"), 0o644); err != nil {
			t.Fatalf("failed to delegate cpu and cpuset in %s: %v", dir, err)
		}
	}
}

// mkCgroup makes a cgroup and removes it at cleanup (after the cgroups
// made later, which t.Cleanup runs first).
func mkCgroup(t *testing.T, dir string) {
	t.Helper()
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// A killed task leaves its cgroup when its exit completes, a moment
		// after the kill: EBUSY until then.
		err := os.Remove(dir)
		for deadline := time.Now().Add(5 * time.Second); errors.Is(err, syscall.EBUSY) && time.Now().Before(deadline); err = os.Remove(dir) {
			time.Sleep(50 * time.Millisecond)
		}
		if err != nil {
			t.Errorf("failed to remove cgroup %s: %v", dir, err)
		}
	})
}

// spawnIn starts a task that keeps waking in the cgroup dir and kills it
// at cleanup.
func spawnIn(t *testing.T, dir string) {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", "while :; do usleep 2000; done")
	// Its own process group, killed whole at cleanup: killing only the
	// shell left its usleep child in the cgroup, whose removal then failed
	// with EBUSY.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
		t.Fatalf("failed to move %d into %s: %v", cmd.Process.Pid, dir, err)
	}
}

// startAgent runs the agent binary; the channel closes when it has exited.
func startAgent(t *testing.T, bin, cfgFile, kubeconfig, dir string) (*exec.Cmd, <-chan struct{}) {
	t.Helper()
	logPath := filepath.Join(dir, "agent.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config", cfgFile, "--kubeconfig", kubeconfig)
	cmd.Env = append(os.Environ(), "NODE_NAME="+nodeName)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-done:
			case <-time.After(waitLimit):
				_ = cmd.Process.Kill()
				<-done
			}
		}
		_ = logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			t.Logf("agent log, last %d lines:\n%s", min(60, len(lines)), strings.Join(lines[max(0, len(lines)-60):], "\n"))
		}
	})
	return cmd, done
}

// tiersMap finds the tier scheduler's cgroup id -> tier map in the kernel
// (the newest map of that name), as bpftool would.
func tiersMap(t *testing.T) *ebpf.Map {
	t.Helper()
	var found *ebpf.Map
	var id ebpf.MapID
	for {
		next, err := ebpf.MapGetNextID(id)
		if errors.Is(err, os.ErrNotExist) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		id = next
		m, err := ebpf.NewMapFromID(id)
		if err != nil {
			continue // gone meanwhile
		}
		info, err := m.Info()
		if err == nil && info.Name == tiersched.TiersMapName && info.Type == ebpf.Hash && info.KeySize == 8 && info.ValueSize == 4 {
			if found != nil {
				_ = found.Close()
			}
			found = m
			continue
		}
		_ = m.Close()
	}
	if found == nil {
		t.Fatalf("no BPF map named %q in the kernel", tiersched.TiersMapName)
	}
	return found
}

// waitTiers waits until every pod's cgroup id holds its tier in m.
func waitTiers(t *testing.T, m *ebpf.Map, pods []pod) {
	t.Helper()
	waitFor(t, fmt.Sprintf("the tiers of %d pods in the tiers map", len(pods)), func() bool {
		for _, p := range pods {
			want, ok := tiersched.TierIndex(p.tier)
			if !ok {
				t.Fatalf("no index for tier %q", p.tier)
			}
			var got uint32
			if err := m.Lookup(p.cgroupID, &got); err != nil || got != want {
				return false
			}
		}
		return true
	})
}

func agentStatus(ctx context.Context, t *testing.T, c client.Client) string {
	t.Helper()
	var n corev1.Node
	if err := c.Get(ctx, types.NamespacedName{Name: nodeName}, &n); err != nil {
		t.Fatal(err)
	}
	return n.Annotations[wellknown.AgentStatusAnnotation]
}

func setSafeMode(ctx context.Context, t *testing.T, c client.Client, on bool) {
	t.Helper()
	v := "null"
	if on {
		v = strconv.Quote(wellknown.SafeModeRequestedValue)
	}
	patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%s}}}`, wellknown.SafeModeRequestedAnnotation, v)
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName}}
	if err := c.Patch(ctx, n, client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
		t.Fatal(err)
	}
}

// tierEvents reads infera_tier_scheduler_events_total{tier,event} from
// the agent's /metrics (0 when absent).
func tierEvents(t *testing.T, url string, tier wellknown.Tier, event string) float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %s: %s", url, resp.Status, b)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if !strings.HasPrefix(l, "infera_tier_scheduler_events_total{") ||
			!strings.Contains(l, `tier="`+string(tier)+`"`) || !strings.Contains(l, `event="`+event+`"`) {
			continue
		}
		v, err := strconv.ParseFloat(l[strings.LastIndexByte(l, ' ')+1:], 64)
		if err != nil {
			t.Fatalf("bad metric line %q: %v", l, err)
		}
		return v
	}
	return 0
}

func kernelState(t *testing.T) scxenf.KernelState {
	t.Helper()
	k, err := sysfs.Read()
	if err != nil {
		t.Fatalf("failed to read %s: %v", sysfs.Root, err)
	}
	return k
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s (kernel %+v)", waitLimit, what, kernelState(t))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port
}
