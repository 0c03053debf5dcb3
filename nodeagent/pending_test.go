package nodeagent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/clock"
	clocktesting "k8s.io/utils/clock/testing"

	configv1alpha1 "github.com/infera-io/temper/apis/config/v1alpha1"
	"github.com/infera-io/temper/nodeagent/cgroupfs"
	"github.com/infera-io/temper/nodeagent/cgroupfs/cgrouptest"
)

// TestPendingPodIsRetriedSoon: a pod the agent knows before the kubelet
// made its cgroup is retried 50 ms after the reconcile that left it
// pending, then at 100, 200, 400 and 800 ms, not only by the 1 s retry. The
// agent runs on a fake clock that the test moves forward by at most 900 ms
// in all, so the 1 s retry never fires: the cgroup made after the agent
// found the pod pending is enforced by the short retries alone.
func TestPendingPodIsRetriedSoon(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC))
	tree, pod, a := startTestAgent(t, clk, nil)

	// The agent finds the pod, without a cgroup yet.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		as := a.Assignments()
		if len(as) == 1 && as[0].Pending() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agent did not find the pod pending its cgroup: %+v", as)
		}
	}
	// The kubelet makes the cgroup; fake time moves 10 ms per 20 ms of
	// real time, 900 ms at most.
	cp := tree.AddPod(t, cgroupfs.DriverSystemd, string(pod.UID), corev1.PodQOSGuaranteed, cgroupfs.RuntimeContainerd)
	weight := func() string {
		b, _ := os.ReadFile(tree.Path(cgroupfs.CPU, cp.RelPath, "cpu.weight"))
		return strings.TrimSpace(string(b))
	}
	var moved time.Duration
	for weight() != "156" { // the kubelet's 39 × 4 for critical
		if moved >= 900*time.Millisecond {
			t.Fatalf("cpu.weight = %s after %s of fake time, want 156: the pending pod was not retried before the 1 s retry", weight(), moved)
		}
		clk.Step(10 * time.Millisecond)
		moved += 10 * time.Millisecond
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("enforced after %s of fake time", moved)
}

// startTestAgent runs an agent with the cgroup backend on a faked cgroup
// v2 tree (no cgroup for its one critical Guaranteed pod yet) on clock
// clk, with mutate applied to its configuration; the API server is
// client-go's fake clientset.
func startTestAgent(t *testing.T, clk clock.WithTicker, mutate func(*configv1alpha1.AgentConfiguration)) (*cgrouptest.Tree, *corev1.Pod, *Agent) {
	t.Helper()
	tree := cgrouptest.NewV2(t, cgrouptest.Options{CPUs: "0-3"})
	tree.Kubelet(t, cgroupfs.DriverSystemd)
	dir := t.TempDir()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "crit", Namespace: "ns", UID: types.UID("8a1e0c2e-0000-4000-8000-000000000a01")},
		Spec: corev1.PodSpec{NodeName: "n1", PriorityClassName: "infera-critical", Priority: ptr(int32(1000000)),
			Containers: []corev1.Container{{Name: "app", Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("64Mi")},
				Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("64Mi")},
			}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, QOSClass: corev1.PodQOSGuaranteed},
	}
	cfg := configv1alpha1.DefaultAgentConfiguration()
	cfg.Backend = configv1alpha1.AgentBackendCgroup
	cfg.Cgroup.Root = tree.Root
	cfg.Cgroup.FenceCritical = false
	cfg.Cgroup.CPUManagerState = filepath.Join(dir, "no-cpu-manager-state")
	cfg.StateDir = filepath.Join(dir, "state")
	cfg.Observation.Enabled = false
	cfg.Server.Address = freePort(t)
	cfg.Server.GRPCSocket = filepath.Join(dir, "agent.sock")
	cpuRoot := filepath.Join(dir, "cpu")
	if err := os.MkdirAll(cpuRoot, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cpuRoot, "online"), []byte("0-3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if mutate != nil {
		mutate(cfg)
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}
	a, err := New(Options{Config: cfg, NodeName: "n1", Client: fake.NewClientset(node, pod.DeepCopy()), Log: testr.New(t),
		Clock: clk, SchedExtRoot: filepath.Join(dir, "no-sched-ext"), SysCPURoot: cpuRoot})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("agent Run returned %v", err)
		}
	})
	return tree, pod, a
}
