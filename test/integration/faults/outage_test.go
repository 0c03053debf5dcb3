// The failure-matrix row "API server unreachable" with real components:
// the infera-agent binary on this machine's real cgroup v1 kernel (a
// kubelet-shaped tree with real processes, test/realnode) against envtest's
// kube-apiserver, which the test freezes (SIGSTOP: connections accepted,
// never answered), stops and starts again on the same etcd, port and
// certificates.

package faults

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/internal/localcluster"
	"github.com/infera-io/temper/test/envtest"
	"github.com/infera-io/temper/test/realnode"
)

var (
	env   *envtest.Env
	agent string // the infera-agent binary
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	e, err := envtest.Start(envtest.Options{PriorityClasses: true, Restartable: true})
	if err != nil {
		fmt.Fprintf(os.Stderr, "envtest: %v\n", err)
		return 1
	}
	env = e
	defer func() { _ = e.Stop() }()
	dir, err := os.MkdirTemp("", "temper-apiserver-outage-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = os.RemoveAll(dir) }()
	if agent, err = realnode.BuildAgent(e.Root, dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

type podSpec struct {
	name, class, cpu string
	guaranteed       bool
}

func (s podSpec) pod(ns, node string) *corev1.Pod {
	c := corev1.Container{Name: "app", Image: "registry.invalid/app:1"}
	if s.cpu != "" {
		c.Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(s.cpu)}
		if s.guaranteed {
			c.Resources.Requests[corev1.ResourceMemory] = resource.MustParse("32Mi")
			c.Resources.Limits = c.Resources.Requests.DeepCopy()
		}
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: s.name, Namespace: ns},
		Spec:       corev1.PodSpec{NodeName: node, PriorityClassName: s.class, Containers: []corev1.Container{c}},
	}
}

// The agent across a control-plane outage (issue #18, defect 6):
//
//  1. API server frozen: a drifted weight is re-asserted, pods whose
//     cgroups appear meanwhile are enforced by the main loop while a
//     publish hangs, and the publish gives up after its 10 s timeout;
//     /readyz stays 200.
//  2. API server stopped: enforcement and drift re-assertion go on; the
//     agent is SIGKILLed, the kubelet's values come back behind its back,
//     and a new agent started while the API server is still down enforces
//     the assignment it persisted (and is ready).
//  3. API server started again (same etcd, port, certificates): the agent
//     republishes its annotations, and a pod created afterwards is
//     enforced (the informers are back).
//  4. Safe mode leaves every cgroup file byte for byte as the kubelet made it.
func TestAgentAcrossAPIServerOutage(t *testing.T) {
	ctx := context.Background()
	node, err := realnode.NewNode("/sys/fs/cgroup")
	if errors.Is(err, realnode.ErrNotV1) || (err != nil && os.Geteuid() != 0) {
		t.Skipf("needs root on a cgroup v1 host: %v", err)
	}
	must(t, err)
	t.Cleanup(func() {
		if err := node.Cleanup(); err != nil {
			t.Error(err)
		}
	})
	const name = "outage-node"
	must(t, localcluster.RegisterNode(ctx, env.Client, &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Status: corev1.NodeStatus{
			Capacity:    corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourcePods: resource.MustParse("110")},
			Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourcePods: resource.MustParse("110")},
		},
	}))
	must(t, env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}))

	pods := map[string]*realnode.Pod{}
	create := func(s podSpec) *corev1.Pod {
		t.Helper()
		p := s.pod(name, name)
		must(t, env.Client.Create(ctx, p))
		return p
	}
	addCgroup := func(p *corev1.Pod) {
		t.Helper()
		cg, err := node.AddPod(p, false)
		must(t, err)
		pods[p.Name] = cg
	}
	for _, s := range []podSpec{
		{name: "crit", class: "infera-critical", cpu: "500m", guaranteed: true}, // 512 → ×4
		{name: "high", class: "infera-high", cpu: "200m"},                       // 204 → ×2
		{name: "bg", class: "infera-background", cpu: "250m"},                   // cpu.idle 1
	} {
		addCgroup(create(s))
	}
	// Pods the kubelet has admitted whose cgroups it makes only while the
	// API server is frozen.
	late := create(podSpec{name: "late", class: "infera-low", cpu: "200m"})    // 204 → ÷4
	late2 := create(podSpec{name: "late2", class: "infera-high", cpu: "300m"}) // 307 → ×2
	stock, err := realnode.Snapshot(node.ConfigDirs())
	must(t, err)

	a, err := realnode.NewAgent(realnode.AgentOptions{Binary: agent, Kubeconfig: env.Kubeconfig, NodeName: name, Node: node, Dir: t.TempDir()})
	must(t, err)
	must(t, a.Start())
	t.Cleanup(func() {
		if err := a.Stop(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			t.Logf("agent log (tail):\n%s", a.LogTail(8000))
		}
	})
	waitAnnotations(t, name, "enforcement", func(s string, l wellknown.TierLoad) bool {
		return s == wellknown.AgentStatusEnforcingCgroup && l.Tiers[wellknown.TierCritical].Pods == 1 && l.Tiers[wellknown.TierLow].Pods == 1
	})
	waitFile(t, pods["crit"].CPUDir, "cpu.shares", "2048")
	waitFile(t, pods["high"].CPUDir, "cpu.shares", "408")
	waitFile(t, pods["bg"].CPUDir, "cpu.idle", "1")
	waitReady(t, a)

	// 1. Frozen: the API server accepts and never answers.
	pid, err := env.APIServerPID()
	must(t, err)
	if pid == 0 {
		t.Fatal("no kube-apiserver process found for the Env")
	}
	must(t, syscall.Kill(pid, syscall.SIGSTOP))
	thawed := false
	thaw := func() {
		if !thawed {
			thawed = true
			must(t, syscall.Kill(pid, syscall.SIGCONT))
		}
	}
	t.Cleanup(thaw)
	frozenAt, logAt := time.Now(), a.LogSize()
	writeFile(t, pods["crit"].CPUDir, "cpu.shares", "512") // back to the kubelet's value: drift
	waitFile(t, pods["crit"].CPUDir, "cpu.shares", "2048")
	want := addStock(t, stock, late, addCgroup, pods)
	// The main loop finds the new cgroup (its 1 s retry) and enforces it;
	// the change asks for a publish, which hangs on the frozen server.
	waitFile(t, pods["late"].CPUDir, "cpu.shares", "51")
	time.Sleep(3 * time.Second)
	want = addStock(t, want, late2, addCgroup, pods)
	// Still enforced within seconds while that publish is in flight.
	waitFile(t, pods["late2"].CPUDir, "cpu.shares", "614")
	if code, body, err := a.Get(ctx, "/readyz"); err != nil || code != 200 {
		t.Errorf("/readyz with the API server frozen = %d %q %v, want 200", code, body, err)
	}
	eventually(t, 30*time.Second, "a publish that timed out", func() (bool, string) {
		l := a.LogSince(logAt)
		return strings.Contains(l, "Failed to publish node annotations") && strings.Contains(l, "context deadline exceeded"), l
	})
	t.Logf("a publish gave up %.1f s after the freeze", time.Since(frozenAt).Seconds())
	thaw()
	waitAnnotations(t, name, "the late pods published after the thaw", func(s string, l wellknown.TierLoad) bool {
		return s == wellknown.AgentStatusEnforcingCgroup && l.Tiers[wellknown.TierLow].Pods == 1 && l.Tiers[wellknown.TierHigh].Pods == 2
	})

	// 2. Stopped.
	must(t, env.StopAPIServer())
	stopped := true
	t.Cleanup(func() {
		if stopped {
			_ = env.StartAPIServer()
		}
	})
	writeFile(t, pods["bg"].CPUDir, "cpu.idle", "0")
	waitFile(t, pods["bg"].CPUDir, "cpu.idle", "1")
	must(t, a.Kill())
	for dir, kv := range map[string][2]string{
		pods["crit"].CPUDir: {"cpu.shares", "512"}, pods["bg"].CPUDir: {"cpu.idle", "0"}, pods["late"].CPUDir: {"cpu.shares", "204"},
	} {
		writeFile(t, dir, kv[0], kv[1])
	}
	logAt = a.LogSize()
	must(t, a.Start())
	waitFile(t, pods["crit"].CPUDir, "cpu.shares", "2048")
	waitFile(t, pods["bg"].CPUDir, "cpu.idle", "1")
	waitFile(t, pods["late"].CPUDir, "cpu.shares", "51")
	if l := a.LogSince(logAt); !strings.Contains(l, "Enforcing the persisted assignment until the API server answers") {
		t.Errorf("the agent started without an API server did not say it enforces the persisted assignment:\n%s", l)
	}
	waitReady(t, a)

	// 3. Back.
	restartedAt := time.Now()
	must(t, env.StartAPIServer())
	stopped = false
	t.Logf("kube-apiserver restarted in %.1f s", time.Since(restartedAt).Seconds())
	waitAnnotations(t, name, "republished after the restart", func(s string, l wellknown.TierLoad) bool {
		return s == wellknown.AgentStatusEnforcingCgroup && !l.TS.Before(restartedAt.Truncate(time.Second)) &&
			l.Tiers[wellknown.TierCritical].Pods == 1 && l.Tiers[wellknown.TierHigh].Pods == 2 &&
			l.Tiers[wellknown.TierLow].Pods == 1 && l.Tiers[wellknown.TierBackground].Pods == 1
	})
	after := create(podSpec{name: "after"}) // BestEffort: background
	want = addStock(t, want, after, addCgroup, pods)
	waitFile(t, pods["after"].CPUDir, "cpu.idle", "1")

	// 4. Stand down.
	setSafeMode(t, name)
	waitAnnotations(t, name, "safe mode", func(s string, _ wellknown.TierLoad) bool { return s == wellknown.AgentStatusSafeMode })
	now, err := realnode.Snapshot(node.ConfigDirs())
	must(t, err)
	if diff := cmp.Diff(want, now); diff != "" {
		t.Errorf("real cgroups after safe mode differ from the kubelet's values (-kubelet +now):\n%s", diff)
	}
}

// addStock makes p's cgroup and adds its files, as the kubelet wrote them,
// to a copy of stock.
func addStock(t *testing.T, stock map[string]string, p *corev1.Pod, add func(*corev1.Pod), pods map[string]*realnode.Pod) map[string]string {
	t.Helper()
	add(p)
	cg := pods[p.Name]
	snap, err := realnode.Snapshot([]string{cg.CPUDir, cg.CPUSetDir})
	must(t, err)
	out := map[string]string{}
	for k, v := range stock {
		out[k] = v
	}
	for k, v := range snap {
		out[k] = v
	}
	// The agent may have enforced the new cgroup before the snapshot (it
	// retries a pending pod within 50 ms): the kubelet's values of the files
	// it writes are known, so they are not taken from the snapshot.
	for file, v := range map[string]string{"cpu.shares": realnode.KubeletShares(p), "cpu.idle": "0"} {
		if k := filepath.Join(cg.CPUDir, file); out[k] != "" {
			out[k] = v + "\n"
		}
	}
	return out
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, dir, file, v string) {
	t.Helper()
	must(t, os.WriteFile(filepath.Join(dir, file), []byte(v), 0))
}

func waitFile(t *testing.T, dir, file, want string) {
	t.Helper()
	eventually(t, 20*time.Second, dir+"/"+file+" = "+want, func() (bool, string) {
		got, err := realnode.ReadTrimmed(dir, file)
		return err == nil && got == want, got
	})
}

func waitReady(t *testing.T, a *realnode.Agent) {
	t.Helper()
	eventually(t, 20*time.Second, "/readyz 200", func() (bool, string) {
		code, body, err := a.Get(context.Background(), "/readyz")
		return err == nil && code == 200, fmt.Sprintf("%d %q %v", code, body, err)
	})
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			if len(last) > 4000 {
				last = last[len(last)-4000:]
			}
			t.Fatalf("timed out after %v waiting for %s; last: %s", timeout, what, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func waitAnnotations(t *testing.T, node, what string, cond func(string, wellknown.TierLoad) bool) {
	t.Helper()
	eventually(t, 45*time.Second, what, func() (bool, string) {
		var n corev1.Node
		if err := env.Client.Get(context.Background(), types.NamespacedName{Name: node}, &n); err != nil {
			return false, err.Error()
		}
		s := n.Annotations[wellknown.AgentStatusAnnotation]
		l, err := wellknown.ParseTierLoad(n.Annotations[wellknown.TierLoadAnnotation])
		return err == nil && cond(s, l), fmt.Sprintf("agent-status %q, tier-load %q", s, n.Annotations[wellknown.TierLoadAnnotation])
	})
}

func setSafeMode(t *testing.T, node string) {
	t.Helper()
	var n corev1.Node
	must(t, env.Client.Get(context.Background(), types.NamespacedName{Name: node}, &n))
	patch := client.MergeFrom(n.DeepCopy())
	if n.Annotations == nil {
		n.Annotations = map[string]string{}
	}
	n.Annotations[wellknown.SafeModeRequestedAnnotation] = wellknown.SafeModeRequestedValue
	must(t, env.Client.Patch(context.Background(), &n, patch))
}
