package nodeagent

import (
	"context"
	"errors"
	"net"
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
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"

	configv1alpha1 "github.com/infera-io/temper/apis/config/v1alpha1"
	"github.com/infera-io/temper/nodeagent/cgroupfs"
	"github.com/infera-io/temper/nodeagent/cgroupfs/cgrouptest"
)

// failingRun makes the real backend's Run fail once told to: the agent's
// error exit (a crash-loop iteration) on cue.
type failingRun struct {
	backend
	fail chan error
}

func (f failingRun) Run(ctx context.Context) error {
	go func() { _ = f.backend.Run(ctx) }()
	select {
	case err := <-f.fail:
		return err
	case <-ctx.Done():
		return nil
	}
}

// exitRig runs one agent with the real cgroup backend on a faked cgroup v2
// tree. The API server plays no part in the exit policy under test, so
// client-go's fake clientset stands in for it here (the envtest suites in
// test/integration/agent run the agent against a real one).
type exitRig struct {
	tree   *cgrouptest.Tree
	dir    string
	pod    *corev1.Pod
	cpRel  string
	podDir string
	fail   chan error
	cancel context.CancelFunc
	done   chan error
	agent  *Agent
}

func newExitRig(t *testing.T) *exitRig { return newExitRigOn(t, nil) }

// newExitRigOn starts an agent on prev's node (tree and state directory),
// or on a new node when prev is nil.
func newExitRigOn(t *testing.T, prev *exitRig) *exitRig {
	t.Helper()
	if prev != nil {
		return startExitRig(t, prev.tree, prev.dir, prev.pod, prev.cpRel)
	}
	tree := cgrouptest.NewV2(t, cgrouptest.Options{CPUs: "0-3"})
	tree.Kubelet(t, cgroupfs.DriverSystemd)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "crit", Namespace: "ns", UID: types.UID("8a1e0c2e-0000-4000-8000-000000000001")},
		Spec: corev1.PodSpec{NodeName: "n1", PriorityClassName: "infera-critical", Priority: ptr(int32(1000000)),
			Containers: []corev1.Container{{Name: "app", Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("64Mi")},
				Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("64Mi")},
			}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, QOSClass: corev1.PodQOSGuaranteed},
	}
	cp := tree.AddPod(t, cgroupfs.DriverSystemd, string(pod.UID), corev1.PodQOSGuaranteed, cgroupfs.RuntimeContainerd)
	return startExitRig(t, tree, t.TempDir(), pod, cp.RelPath)
}

func startExitRig(t *testing.T, tree *cgrouptest.Tree, dir string, pod *corev1.Pod, podRel string) *exitRig {
	t.Helper()
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}
	return startExitRigWith(t, tree, dir, pod, podRel, fake.NewClientset(node, pod.DeepCopy()))
}

func startExitRigWith(t *testing.T, tree *cgrouptest.Tree, dir string, pod *corev1.Pod, podRel string, cs kubernetes.Interface) *exitRig {
	t.Helper()
	cfg := configv1alpha1.DefaultAgentConfiguration()
	cfg.Backend = configv1alpha1.AgentBackendCgroup
	cfg.Cgroup.Root = tree.Root
	cfg.Cgroup.FenceCritical = false
	cfg.Cgroup.CPUManagerState = filepath.Join(dir, "no-cpu-manager-state")
	cfg.StateDir = filepath.Join(dir, "state")
	cfg.CoalesceWindow.Duration = 100 * time.Millisecond
	cfg.Observation.EBPF = false
	cfg.Server.Address = freePort(t)
	cfg.Server.GRPCSocket = filepath.Join(dir, "agent.sock")
	bootID := filepath.Join(dir, "boot_id")
	cpuRoot := filepath.Join(dir, "cpu")
	if err := os.MkdirAll(cpuRoot, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bootID, []byte("boot-1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cpuRoot, "online"), []byte("0-3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := &exitRig{tree: tree, dir: dir, pod: pod, cpRel: podRel, podDir: tree.Path(cgroupfs.CPU, podRel, ""), fail: make(chan error, 1), done: make(chan error, 1)}
	a, err := New(Options{Config: cfg, NodeName: "n1", Client: cs, Log: testr.New(t),
		SchedExtRoot: filepath.Join(dir, "no-sched-ext"), SysCPURoot: cpuRoot, BootIDFile: bootID,
		wrapBackend: func(b backend) backend { return failingRun{backend: b, fail: r.fail} }})
	if err != nil {
		t.Fatal(err)
	}
	r.agent = a
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	t.Cleanup(cancel)
	go func() { r.done <- a.Run(ctx) }()
	return r
}

func (r *exitRig) weight(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(r.podDir, "cpu.weight"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func (r *exitRig) waitWeight(t *testing.T, want string) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); r.weight(t) != want; {
		if time.Now().After(deadline) {
			t.Fatalf("cpu.weight = %s, want %s", r.weight(t), want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func ptr[T any](v T) *T { return &v }

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Issue #18, defect 7: an error exit keeps every value as set (the next
// agent adopts them), so a crash-looping agent does not flip the node
// between stock and enforced; a clean stop restores.
func TestAgentErrorExitKeepsEnforcement(t *testing.T) {
	r := newExitRig(t)
	r.waitWeight(t, "156") // the kubelet's 39 × 4 for critical
	r.fail <- errors.New("injected: the backend failed")
	select {
	case err := <-r.done:
		if err == nil {
			t.Fatal("Run returned nil after the backend failed")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after the backend failed")
	}
	if got := r.weight(t); got != "156" {
		t.Errorf("after an error exit cpu.weight = %s, want 156 (kept for the next agent)", got)
	}

	// The next agent adopts the originals and a clean stop restores them.
	r2 := newExitRigOn(t, r)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		r2.agent.mu.Lock()
		applied := !r2.agent.appliedAt.IsZero()
		r2.agent.mu.Unlock()
		if applied {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the next agent did not apply the assignment")
		}
	}
	if got := r2.weight(t); got != "156" {
		t.Errorf("the next agent: cpu.weight = %s, want 156 (adopted, scaled once)", got)
	}
	r2.cancel()
	if err := <-r2.done; err != nil {
		t.Fatalf("clean stop: Run returned %v", err)
	}
	if got := r2.weight(t); got != "39" {
		t.Errorf("after a clean stop cpu.weight = %s, want the kubelet's 39", got)
	}
}

// Issue #18, defect 6: an agent that starts while the API server is
// unreachable enforces the last assignment it persisted (drift
// re-assertion included) instead of waiting for its informers to sync.
// The API server here is an address nothing listens on.
func TestAgentStartsFromPersistedAssignmentWithoutAPIServer(t *testing.T) {
	r := newExitRig(t)
	r.waitWeight(t, "156")
	r.fail <- errors.New("injected: the backend failed")
	if err := <-r.done; err == nil {
		t.Fatal("Run returned nil after the backend failed")
	}
	// Behind the agent's back, the weight goes back to the kubelet's.
	if err := os.WriteFile(filepath.Join(r.podDir, "cpu.weight"), []byte("39\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r2 := startExitRigWith(t, r.tree, r.dir, r.pod, r.cpRel, unreachableClient(t))
	r2.waitWeight(t, "156")
	r2.cancel()
	select {
	case err := <-r2.done:
		if err != nil {
			t.Fatalf("clean stop: Run returned %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the agent did not stop")
	}
}

// unreachableClient is a real client-go clientset for an API server that
// does not answer (a closed port).
func unreachableClient(t *testing.T) kubernetes.Interface {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	cs, err := kubernetes.NewForConfig(&rest.Config{Host: "http://" + addr, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return cs
}
