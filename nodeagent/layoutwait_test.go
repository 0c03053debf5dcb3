package nodeagent

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/infera-io/temper/apis/wellknown"

	"github.com/infera-io/temper/nodeagent/cgroupfs"
	"github.com/infera-io/temper/nodeagent/cgroupfs/cgrouptest"
)

// Issue 16: an agent started before the kubelet made its cgroup tree
// reports the detection's progress while it waits, and enforces once the
// tree appears, without a restart.
func TestAgentDetectsLayoutLate(t *testing.T) {
	tree := cgrouptest.NewV2(t, cgrouptest.Options{CPUs: "0-3"}) // no kubepods yet
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "crit", Namespace: "ns", UID: types.UID("8a1e0c2e-0000-4000-8000-000000000009")},
		Spec: corev1.PodSpec{NodeName: "n1", PriorityClassName: "infera-critical", Priority: ptr(int32(1000000)),
			Containers: []corev1.Container{{Name: "app", Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("64Mi")},
				Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("64Mi")},
			}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, QOSClass: corev1.PodQOSGuaranteed},
	}
	cs := fake.NewClientset(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}, pod.DeepCopy())
	r := startExitRigWith(t, tree, t.TempDir(), pod, "", cs)
	status := func() string {
		n, err := cs.CoreV1().Nodes().Get(context.Background(), "n1", metav1.GetOptions{})
		if err != nil {
			return err.Error()
		}
		return n.Annotations[wellknown.AgentStatusAnnotation]
	}
	readyz := func() (int, string) {
		resp, err := http.Get("http://" + r.agent.o.Config.Server.Address + "/readyz")
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	var code int
	var rep string
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if code, rep = readyz(); code == http.StatusServiceUnavailable && strings.Contains(rep, "no cgroup layout yet (attempt ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz = %d %q; want 503 with the detection's progress", code, rep)
		}
	}
	t.Logf("waiting: %s", rep)
	for deadline := time.Now().Add(20 * time.Second); !strings.HasPrefix(status(), "degraded: no cgroup layout yet (attempt "); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("agent-status while waiting = %q; want degraded with the detection's progress", status())
		}
	}

	// The kubelet starts: its tree and the pod's cgroup appear.
	tree.Kubelet(t, cgroupfs.DriverSystemd)
	cp := tree.AddPod(t, cgroupfs.DriverSystemd, string(pod.UID), corev1.PodQOSGuaranteed, cgroupfs.RuntimeContainerd)
	r.podDir = tree.Path(cgroupfs.CPU, cp.RelPath, "")
	r.waitWeight(t, "156") // the kubelet's 39 × 4 for critical
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if code, rep = readyz(); code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz after the layout appeared = %d %q, want 200", code, rep)
		}
	}
	if strings.Contains(rep, "no cgroup layout") {
		t.Errorf("/readyz after the layout appeared: %q", rep)
	}
	for deadline := time.Now().Add(20 * time.Second); status() != wellknown.AgentStatusEnforcingCgroup; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("agent-status after the layout appeared = %q, want %q", status(), wellknown.AgentStatusEnforcingCgroup)
		}
	}
	r.cancel()
	if err := <-r.done; err != nil {
		t.Fatalf("clean stop: Run returned %v", err)
	}
	if got := r.weight(t); got != "39" {
		t.Errorf("after a clean stop cpu.weight = %s, want the kubelet's 39", got)
	}
}

// The cpuacct dir of a cpu cgroup is its path moved to the cpuacct
// hierarchy, as filepath.Rel and Join would give it.
func TestCPUAcctDir(t *testing.T) {
	st := &cgroupState{
		layout:  &cgroupfs.Layout{Hierarchies: map[cgroupfs.Controller]string{cgroupfs.CPU: "/sys/fs/cgroup/cpu"}},
		cpuacct: "/sys/fs/cgroup/cpuacct",
	}
	for dir, want := range map[string]string{
		"/sys/fs/cgroup/cpu/kubepods/burstable/pod1": "/sys/fs/cgroup/cpuacct/kubepods/burstable/pod1",
		"/sys/fs/cgroup/cpu":                         "/sys/fs/cgroup/cpuacct",
		"/sys/fs/cgroup/cpuset/kubepods":             "/sys/fs/cgroup/cpuset/kubepods", // not under cpu: Rel and Join
		"":                                           "",
	} {
		if got := st.cpuacctDir(dir); got != want {
			t.Errorf("cpuacctDir(%q) = %q, want %q", dir, got, want)
		}
	}
	if got := (&cgroupState{layout: st.layout}).cpuacctDir("/sys/fs/cgroup/cpu/kubepods"); got != "" {
		t.Errorf("co-mounted cpuacct: %q, want \"\"", got)
	}
}
