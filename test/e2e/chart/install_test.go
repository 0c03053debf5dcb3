package chart

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	crenvtest "sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/internal/localcluster"
	"github.com/infera-io/temper/test/envtest"
)

const (
	namespace    = "infera-system"
	canaryLabel  = "infera.io/agent-channel"
	fakeNodeAnno = "kwok.x-k8s.io/node"
)

// cluster is a control plane with a controller manager, a scheduler and
// kwok playing the kubelets of fake nodes.
type cluster struct {
	root, bin, kubeconfig string
	cs                    kubernetes.Interface
}

// TestHelmInstallUpgradeUninstall installs the chart with `helm install
// --wait` on three kwok nodes (one labelled for the canary channel),
// upgrades the canary tag, and uninstalls.
func TestHelmInstallUpgradeUninstall(t *testing.T) {
	if os.Getenv("TEMPER_TEST_CHART") == "" {
		t.Skip("run by make test-chart (TEMPER_TEST_CHART=1): needs kube-controller-manager, kube-scheduler, kwok and helm in bin/")
	}
	c := startCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	t.Cleanup(cancel)

	nodes := []string{"fake-0", "fake-1", "fake-2"}
	for i, n := range nodes {
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{
			Name:        n,
			Labels:      map[string]string{corev1.LabelHostname: n, corev1.LabelOSStable: "linux", corev1.LabelArchStable: "amd64"},
			Annotations: map[string]string{fakeNodeAnno: "fake"},
		}, Status: corev1.NodeStatus{Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("8")}}}
		if i == 2 {
			node.Labels[canaryLabel] = "canary"
		}
		if _, err := c.cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	c.waitNodesReady(ctx, t, nodes)

	start := time.Now()
	c.helm(t, "install", "temper", "charts/temper", "--namespace", namespace, "--create-namespace", "--wait", "--timeout", "5m",
		"--set", "imageTag=v1", "--set", "agent.canary.enabled=true", "--set", "agent.canary.tag=v1-rc", "--set", "agent.minReadySeconds=1",
		"--set", "gateway.enabled=true")
	t.Logf("helm install --wait: %s", time.Since(start).Round(time.Millisecond))

	before := c.agentPods(ctx, t)
	want := map[string]string{"fake-0": "infera-agent:v1", "fake-1": "infera-agent:v1", "fake-2": "infera-agent:v1-rc"}
	if d := images(before); !equal(d, want) {
		t.Fatalf("agent pods after install: %v, want %v", d, want)
	}
	if ds, err := c.cs.AppsV1().DaemonSets(namespace).Get(ctx, "infera-agent-canary", metav1.GetOptions{}); err != nil || ds.Status.NumberReady != 1 {
		t.Fatalf("canary DaemonSet: %+v %v", ds.Status, err)
	}
	managers := c.podUIDs(ctx, t, "app.kubernetes.io/name=infera-manager")
	if len(managers) != 2 {
		t.Errorf("%d manager pods, want 2", len(managers))
	}

	// A new canary tag replaces only the canary pod.
	if d, err := c.cs.AppsV1().Deployments(namespace).Get(ctx, "infera-gateway", metav1.GetOptions{}); err != nil || d.Status.ReadyReplicas != 1 {
		t.Errorf("gateway Deployment: %+v %v", d.Status, err)
	}
	tlsBefore, err := c.cs.CoreV1().Secrets(namespace).Get(ctx, "infera-agent-grpc-tls", metav1.GetOptions{})
	if err != nil || len(tlsBefore.Data["tls.crt"]) == 0 {
		t.Fatalf("the agents' gRPC TLS Secret after install: %v", err)
	}

	start = time.Now()
	c.helm(t, "upgrade", "temper", "charts/temper", "--namespace", namespace, "--reuse-values", "--wait", "--timeout", "5m",
		"--set", "agent.canary.tag=v2-rc")
	t.Logf("helm upgrade --wait: %s", time.Since(start).Round(time.Millisecond))
	after := c.agentPods(ctx, t)
	want["fake-2"] = "infera-agent:v2-rc"
	if d := images(after); !equal(d, want) {
		t.Fatalf("agent pods after the canary upgrade: %v, want %v", d, want)
	}
	for _, n := range []string{"fake-0", "fake-1"} {
		if before[n].UID != after[n].UID {
			t.Errorf("the stable agent pod on %s was replaced by a canary-only upgrade", n)
		}
	}
	if before["fake-2"].UID == after["fake-2"].UID {
		t.Errorf("the canary pod was not replaced")
	}
	if got := c.podUIDs(ctx, t, "app.kubernetes.io/name=infera-manager"); !slices.Equal(got, managers) {
		t.Errorf("manager pods changed on a canary upgrade: %v -> %v", managers, got)
	}
	// The generated certificate survives an upgrade (lookup), so agents
	// and gateway keep trusting each other.
	if tlsAfter, err := c.cs.CoreV1().Secrets(namespace).Get(ctx, "infera-agent-grpc-tls", metav1.GetOptions{}); err != nil ||
		!bytes.Equal(tlsAfter.Data["tls.crt"], tlsBefore.Data["tls.crt"]) || !bytes.Equal(tlsAfter.Data["ca.crt"], tlsBefore.Data["ca.crt"]) {
		t.Errorf("the agents' gRPC TLS Secret changed on upgrade (err %v)", err)
	}

	// Uninstall keeps the CRDs and the PriorityClasses.
	start = time.Now()
	c.helm(t, "uninstall", "temper", "--namespace", namespace, "--wait", "--timeout", "3m")
	t.Logf("helm uninstall --wait: %s", time.Since(start).Round(time.Millisecond))
	if _, err := c.cs.AppsV1().DaemonSets(namespace).Get(ctx, "infera-agent", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("DaemonSet infera-agent after uninstall: %v", err)
	}
	for _, pc := range wellknown.PriorityClasses() {
		if _, err := c.cs.SchedulingV1().PriorityClasses().Get(ctx, pc.Name, metav1.GetOptions{}); err != nil {
			t.Errorf("PriorityClass %s after uninstall: %v", pc.Name, err)
		}
	}
	out, err := c.kubectl(ctx, "get", "crd", "-o", "name")
	if err != nil {
		t.Fatal(err)
	}
	for _, crd := range []string{"inferapolicies.infera.io", "nodeqosreports.infera.io", "overcommitprofiles.infera.io"} {
		if !strings.Contains(out, crd) {
			t.Errorf("CRD %s gone after uninstall: %s", crd, out)
		}
	}
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	root, err := envtest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := envtest.BinDir(root)
	for _, b := range []string{"kube-apiserver", "etcd", "kube-controller-manager", "kube-scheduler", "kwok", "helm", "kubectl"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			t.Fatalf("%s is missing from %s: run make tools controlplane", b, bin)
		}
	}
	// No CRDs yet: the chart installs them.
	env := &crenvtest.Environment{BinaryAssetsDirectory: bin, ControlPlaneStartTimeout: 90 * time.Second, ControlPlaneStopTimeout: 30 * time.Second}
	if _, err := env.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	admin, err := localcluster.AddAdmin(env, kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(admin)
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{root: root, bin: bin, kubeconfig: kubeconfig, cs: cs}
	c.run(t, dir, "kube-controller-manager", "--kubeconfig="+kubeconfig, "--leader-elect=false", "--secure-port=0",
		"--controllers=daemonset,deployment,replicaset,garbagecollector,nodelifecycle,serviceaccount,namespace,disruption",
		"--node-monitor-grace-period=5m")
	c.run(t, dir, "kube-scheduler", "--kubeconfig="+kubeconfig, "--leader-elect=false", "--secure-port=0")
	c.run(t, dir, "kwok", "--kubeconfig="+kubeconfig, "--config="+filepath.Join(root, "test/e2e/chart/testdata/kwok-stages.yaml"),
		"--manage-nodes-with-annotation-selector="+fakeNodeAnno+"=fake",
		"--cidr=10.244.0.0/16", "--node-ip=10.0.0.1")
	return c
}

// run starts bin/<name> until the test ends; its output is shown when the
// test fails.
func (c *cluster) run(t *testing.T, dir, name string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, filepath.Join(c.bin, name), args...)
	logPath := filepath.Join(dir, name+".log")
	lf, err := os.Create(logPath)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		_ = lf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			if len(b) > 4000 {
				b = b[len(b)-4000:]
			}
			t.Logf("%s (tail):\n%s", name, b)
		}
	})
}

func (c *cluster) helm(t *testing.T, args ...string) {
	t.Helper()
	home := t.TempDir()
	cmd := exec.Command(filepath.Join(c.bin, "helm"), append(args, "--kubeconfig", c.kubeconfig)...)
	cmd.Dir = c.root
	cmd.Env = append(os.Environ(), "HELM_CONFIG_HOME="+home, "HELM_CACHE_HOME="+home, "HELM_DATA_HOME="+home)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		kc, _ := c.kubectl(context.Background(), "get", "nodes,pods,ds,deploy", "-A", "-o", "wide")
		t.Fatalf("helm %s: %v\n%s\n%s", args[0], err, out.String(), kc)
	}
}

func (c *cluster) kubectl(ctx context.Context, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, filepath.Join(c.bin, "kubectl"), append([]string{"--kubeconfig", c.kubeconfig}, args...)...).CombinedOutput()
	return string(out), err
}

func (c *cluster) waitNodesReady(ctx context.Context, t *testing.T, nodes []string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		for _, n := range nodes {
			node, err := c.cs.CoreV1().Nodes().Get(ctx, n, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			ready := false
			for _, cond := range node.Status.Conditions {
				ready = ready || cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue
			}
			if !ready {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("kwok nodes never became Ready: %v", err)
	}
}

// agentPods maps node → the agent pod on it, failing on two.
func (c *cluster) agentPods(ctx context.Context, t *testing.T) map[string]corev1.Pod {
	t.Helper()
	pods, err := c.cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=infera-agent"})
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]corev1.Pod{}
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil {
			continue
		}
		if prev, ok := m[p.Spec.NodeName]; ok {
			t.Fatalf("two agent pods on %s: %s and %s", p.Spec.NodeName, prev.Name, p.Name)
		}
		m[p.Spec.NodeName] = p
	}
	return m
}

func (c *cluster) podUIDs(ctx context.Context, t *testing.T, selector string) []types.UID {
	t.Helper()
	pods, err := c.cs.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Fatal(err)
	}
	var uids []types.UID
	for _, p := range pods.Items {
		uids = append(uids, p.UID)
	}
	slices.Sort(uids)
	return uids
}

func images(pods map[string]corev1.Pod) map[string]string {
	m := map[string]string{}
	for n, p := range pods {
		m[n] = p.Spec.Containers[0].Image
	}
	return m
}

func equal(a, b map[string]string) bool {
	return fmt.Sprint(a) == fmt.Sprint(b)
}
