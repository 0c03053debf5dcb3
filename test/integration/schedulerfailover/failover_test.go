// Package schedulerfailover proves what happens to pods that ask for
// infera-scheduler when it dies, with the real binary: two replicas with
// leader election (as the chart runs them), the leader SIGKILLed, the other
// taking over; and with no replica left, pods waiting Pending — kube-scheduler
// never schedules a pod that names another scheduler — until one starts.
package schedulerfailover

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/infera-io/temper/internal/localcluster"
	"github.com/infera-io/temper/test/envtest"
)

const (
	leaseName = "infera-scheduler-failover"
	// Short leases so the test takes seconds; the chart keeps
	// kube-scheduler's defaults (15 s lease, 10 s renew, 2 s retry).
	leaseDuration = 4 * time.Second
)

var (
	env    *envtest.Env
	binary string
	config string
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	e, err := envtest.Start(envtest.Options{PriorityClasses: true})
	if err != nil {
		fmt.Fprintf(os.Stderr, "envtest: %v\n", err)
		return 1
	}
	env = e
	defer func() { _ = e.Stop() }()
	dir, err := os.MkdirTemp("", "temper-sched-failover-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = os.RemoveAll(dir) }()
	binary = filepath.Join(dir, "infera-scheduler")
	build := exec.Command("go", "build", "-o", binary, "./cmd/infera-scheduler")
	build.Dir, build.Stdout, build.Stderr = e.Root, os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "building infera-scheduler: %v\n", err)
		return 1
	}
	cfg := map[string]any{
		"apiVersion":       "kubescheduler.config.k8s.io/v1",
		"kind":             "KubeSchedulerConfiguration",
		"clientConnection": map[string]any{"kubeconfig": e.Kubeconfig},
		"leaderElection": map[string]any{
			"leaderElect": true, "resourceName": leaseName, "resourceNamespace": "default",
			"leaseDuration": leaseDuration.String(), "renewDeadline": "3s", "retryPeriod": "500ms",
		},
		"profiles": []any{map[string]any{
			"schedulerName": "infera-scheduler",
			"plugins":       map[string]any{"multiPoint": map[string]any{"enabled": []any{map[string]any{"name": "InferaDensity", "weight": 3}}}},
		}},
	}
	b, _ := yaml.Marshal(cfg)
	config = filepath.Join(dir, "scheduler.yaml")
	if err := os.WriteFile(config, b, 0o600); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// replica is one infera-scheduler process.
type replica struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
}

func start(t *testing.T, name string) *replica {
	t.Helper()
	log, err := os.Create(filepath.Join(t.TempDir(), name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, "--config", config, "--secure-port", "0", "--v", "2")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := &replica{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); _ = log.Close(); close(r.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-r.done
		if t.Failed() {
			b, _ := os.ReadFile(log.Name())
			t.Logf("%s log:\n%s", name, tail(b, 4000))
		}
	})
	return r
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

func (r *replica) kill(t *testing.T) {
	t.Helper()
	if err := r.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-r.done
}

// holder returns the Lease's holder identity ("" when none).
func holder(ctx context.Context) string {
	var l coordinationv1.Lease
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: "default", Name: leaseName}, &l); err != nil || l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

func pod(t *testing.T, name string) *corev1.Pod {
	t.Helper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec: corev1.PodSpec{SchedulerName: "infera-scheduler", Containers: []corev1.Container{{
			Name: "app", Image: "registry.invalid/app",
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}},
		}}},
	}
	if err := env.Client.Create(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), p) })
	return p
}

// scheduledWithin waits up to d for p to be bound and returns how long it
// took, or false. The bounds are generous: they fail only when nobody
// schedules the pod, not when a loaded machine is slow.
func scheduledWithin(t *testing.T, p *corev1.Pod, d time.Duration) (time.Duration, bool) {
	t.Helper()
	start := time.Now()
	for time.Since(start) < d {
		var got corev1.Pod
		if err := env.Client.Get(context.Background(), client.ObjectKeyFromObject(p), &got); err == nil && got.Spec.NodeName != "" {
			return time.Since(start), true
		}
		time.Sleep(200 * time.Millisecond)
	}
	return d, false
}

func TestLeaderKilledAnotherReplicaSchedules(t *testing.T) {
	ctx := t.Context()
	capacity := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("8"), corev1.ResourceMemory: resource.MustParse("16Gi"), corev1.ResourcePods: resource.MustParse("110")}
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "failover-n1", Labels: map[string]string{corev1.LabelHostname: "failover-n1"}},
		Status: corev1.NodeStatus{Capacity: capacity, Allocatable: capacity.DeepCopy()}}
	if err := localcluster.RegisterNode(ctx, env.Client, n); err != nil {
		t.Fatal(err)
	}

	a := start(t, "replica-a")
	if _, ok := scheduledWithin(t, pod(t, "before"), 2*time.Minute); !ok {
		t.Fatal("one replica never scheduled a pod")
	}
	leaderA := holder(ctx)
	b := start(t, "replica-b")

	// The leader dies without releasing its lease (SIGKILL): the other
	// replica takes over once the lease expires.
	a.kill(t)
	took, ok := scheduledWithin(t, pod(t, "after-leader-killed"), 2*time.Minute)
	if !ok {
		t.Fatalf("the second replica did not take over (lease holder %q)", holder(ctx))
	}
	if h := holder(ctx); h == leaderA || h == "" {
		t.Errorf("lease holder after the failover = %q, want the second replica (first was %q)", h, leaderA)
	}
	t.Logf("failover: pod scheduled %v after the leader was SIGKILLed (lease %v)", took.Round(100*time.Millisecond), leaseDuration)

	// No replica left: the pod waits Pending; kube-scheduler (if any) does
	// not take pods that name another scheduler. It is not lost.
	b.kill(t)
	waiting := pod(t, "no-scheduler")
	if _, ok := scheduledWithin(t, waiting, 3*leaseDuration); ok {
		t.Fatal("a pod was scheduled with no infera-scheduler running")
	}
	start(t, "replica-c")
	if _, ok := scheduledWithin(t, waiting, 2*time.Minute); !ok {
		t.Fatal("the waiting pod was not scheduled once a replica came back")
	}
}
