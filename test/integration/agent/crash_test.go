package agent

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	configv1alpha1 "github.com/infera-io/temper/apis/config/v1alpha1"
	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/internal/localcluster"
	"github.com/infera-io/temper/nodeagent/cgroupfs"
	"github.com/infera-io/temper/nodeagent/cgroupfs/cgrouptest"
)

// buildAgent builds cmd/infera-agent.
func buildAgent(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "infera-agent")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/infera-io/temper/cmd/infera-agent").CombinedOutput(); err != nil {
		t.Fatalf("build infera-agent: %v: %s", err, out)
	}
	return bin
}

// agentProc is the real infera-agent binary as its own process.
type agentProc struct {
	t   *testing.T
	cmd *exec.Cmd
	log string
}

func startAgent(t *testing.T, bin, cfgFile, node, logFile string) *agentProc {
	t.Helper()
	f, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	must(t, err)
	cmd := exec.Command(bin, "--config", cfgFile, "--kubeconfig", env.Kubeconfig)
	cmd.Env = append(os.Environ(), "NODE_NAME="+node)
	cmd.Stdout, cmd.Stderr = f, f
	must(t, cmd.Start())
	_ = f.Close()
	p := &agentProc{t: t, cmd: cmd, log: logFile}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return p
}

// crash kills the agent with no chance to clean up.
func (p *agentProc) crash() {
	must(p.t, p.cmd.Process.Signal(syscall.SIGKILL))
	_ = p.cmd.Wait()
}

func (p *agentProc) logTail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// A crashed agent leaves its cgroup values; the next agent adopts their
// originals from the state file and puts back what no pod asks for any
// more (a pod deleted while no agent ran); `infera-agent --restore` then
// leaves the tree byte-for-byte as the kubelet made it, and refuses while an
// agent runs.
func TestAgentCrashAdoptAndRestore(t *testing.T) {
	bin := buildAgent(t)
	ctx := context.Background()
	node := "agent-node-crash"
	dir := t.TempDir()
	r := &rig{t: t, node: node, ns: node, stopped: true}
	must(t, localcluster.RegisterNode(ctx, env.Client, &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: node},
		Status: corev1.NodeStatus{
			Capacity:    corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourcePods: resource.MustParse("110")},
			Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourcePods: resource.MustParse("110")},
		},
	}))
	must(t, env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: r.ns}}))
	r.tree = cgrouptest.NewV1(t, cgrouptest.Options{CPUs: "0-3"})
	r.tree.Kubelet(t, cgroupfs.DriverCgroupfs)

	specs := []podSpec{
		{name: "bg-0", class: "infera-background", cpu: "500m", want: wellknown.TierBackground},
		{name: "bg-1", class: "infera-background", cpu: "500m", want: wellknown.TierBackground},
		{name: "low-0", class: "infera-low", cpu: "100m", want: wellknown.TierLow},
		{name: "crit-0", class: "infera-critical", cpu: "1", mem: "64Mi", limitCPU: "=", want: wellknown.TierCritical},
	}
	pods := map[string]*corev1.Pod{}
	for _, s := range specs {
		p := s.pod(r.ns, node)
		must(t, env.Client.Create(ctx, p))
		pods[s.name] = p
	}
	dirs := map[string]string{}
	for name, p := range pods {
		fp := r.tree.AddPod(t, cgroupfs.DriverCgroupfs, string(p.UID), p.Status.QOSClass, cgroupfs.RuntimeContainerd)
		dirs[name] = r.tree.Path(cgroupfs.CPU, fp.RelPath, "")
	}
	stock := cgrouptest.Snapshot(t, r.tree.Root)

	sysRoot := filepath.Join(dir, "sys") // no kernel/sched_ext: the cgroup backend
	must(t, os.MkdirAll(filepath.Join(sysRoot, "devices", "system", "cpu"), 0o755))
	must(t, os.WriteFile(filepath.Join(sysRoot, "devices", "system", "cpu", "online"), []byte("0-3\n"), 0o644))
	cfgFile := filepath.Join(dir, "agent.toml")
	must(t, os.WriteFile(cfgFile, []byte(fmt.Sprintf(`api_version = %q
kind = %q
coalesce_window = "200ms"
state_dir = %q
sys_root = %q
[cgroup]
root = %q
driver = "cgroupfs"
cpu_manager_state = %q
[scx]
config_path = %q
[server]
address = %q
grpc_socket = %q
`, configv1alpha1.AgentAPIVersion, configv1alpha1.AgentKind, filepath.Join(dir, "state"), sysRoot, r.tree.Root,
		filepath.Join(dir, "no-cpu-manager-state"), filepath.Join(dir, "layered.json"), freeAddr(t), filepath.Join(dir, "agent.sock"))), 0o644))
	logFile := filepath.Join(dir, "agent.log")

	enforced := func(s string, l wellknown.TierLoad) bool { return s == wellknown.AgentStatusEnforcingCgroup }
	a := startAgent(t, bin, cfgFile, node, logFile)
	r.waitAnnotations("cgroup enforcement", func(s string, l wellknown.TierLoad) bool {
		return enforced(s, l) && l.Tiers[wellknown.TierBackground].Pods == 2
	})
	waitFile(t, dirs["bg-0"], "cpu.idle", "1")
	waitFile(t, dirs["bg-1"], "cpu.idle", "1")
	waitFile(t, dirs["low-0"], "cpu.shares", "128") // 512 ÷ 4
	waitFile(t, dirs["crit-0"], "cpu.shares", "4096")

	// --restore refuses while the agent holds the state.
	out, err := exec.Command(bin, "--restore", "--config", cfgFile).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "an infera-agent is running on this node") {
		t.Fatalf("--restore with a running agent: err %v, output:\n%s", err, out)
	}

	// Crash: the values stay.
	a.crash()
	if got := readFile(t, dirs["bg-0"], "cpu.idle"); got != "1" {
		t.Fatalf("cpu.idle after a crash = %s, want the enforced 1 kept", got)
	}
	// While no agent runs, bg-1 leaves the node (its cgroup lingers here,
	// as it would until the kubelet removes it).
	must(t, env.Client.Delete(ctx, pods["bg-1"], client.GracePeriodSeconds(0)))

	// The next agent adopts: bg-1 goes back, the others stay enforced
	// without a blip to stock values.
	a = startAgent(t, bin, cfgFile, node, logFile)
	r.waitAnnotations("re-enforced after the crash", func(s string, l wellknown.TierLoad) bool {
		return enforced(s, l) && l.Tiers[wellknown.TierBackground].Pods == 1
	})
	waitFile(t, dirs["bg-1"], "cpu.idle", "0")
	waitFile(t, dirs["bg-1"], "cpu.shares", "512")
	if got := readFile(t, dirs["bg-0"], "cpu.idle"); got != "1" {
		t.Errorf("bg-0 cpu.idle = %s after the restart, want 1", got)
	}
	if !strings.Contains(a.logTail(), "Adopted cgroup originals") {
		t.Errorf("the second agent did not report adopting originals; log:\n%s", a.logTail())
	}

	// Crash again, then uninstall.
	a.crash()
	out, err = exec.Command(bin, "--restore", "--config", cfgFile).CombinedOutput()
	if err != nil {
		t.Fatalf("--restore: %v\n%s", err, out)
	}
	t.Logf("--restore:\n%s", out)
	if diff := cmp.Diff(stock, cgrouptest.Snapshot(t, r.tree.Root)); diff != "" {
		t.Errorf("tree after --restore differs from the stock tree (-stock +now):\n%s", diff)
	}
	// Twice is harmless.
	if out, err := exec.Command(bin, "--restore", "--config", cfgFile).CombinedOutput(); err != nil || !strings.Contains(string(out), "0 restored") {
		t.Errorf("second --restore: %v\n%s", err, out)
	}
}
