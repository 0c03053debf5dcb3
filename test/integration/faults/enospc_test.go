// The failure-matrix row "state directory full (ENOSPC)" on a real tmpfs.

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

	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/internal/localcluster"
	"github.com/infera-io/temper/test/realnode"
)

// mountTmpfs mounts a tmpfs of size bytes at a new directory and unmounts
// it on cleanup.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "state")
	must(t, os.Mkdir(dir, 0o700))
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("failed to unmount %s: %v", dir, err)
		}
	})
	return dir
}

// fill writes a file until the filesystem refuses with ENOSPC.
func fill(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "filler")
	f, err := os.Create(p)
	must(t, err)
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling %s: %v, want ENOSPC", dir, err)
			}
			return p
		}
	}
}

// The agent's state directory on a small real tmpfs that fills up
// (issue #18): a pod that arrives while the state file cannot be written
// is not touched (its original would not be on disk) and the agent says
// so — agent-status degraded naming ENOSPC, /readyz 503 — while the pods
// already enforced stay enforced and drift is still re-asserted. A
// SIGKILLed agent restarted on the full disk adopts the originals it has:
// the critical pod's weight stays ×4, never ×16 (no compounding). Once
// there is space again the waiting pod is enforced and the status clears;
// safe mode leaves every file as the kubelet made it.
func TestAgentStateDirectoryFull(t *testing.T) {
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
	state := mountTmpfs(t, "256k")
	const name = "enospc-node"
	must(t, localcluster.RegisterNode(ctx, env.Client, &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Status: corev1.NodeStatus{
			Capacity:    corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourcePods: resource.MustParse("110")},
			Allocatable: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourcePods: resource.MustParse("110")},
		},
	}))
	must(t, env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}))
	pods := map[string]*realnode.Pod{}
	add := func(s podSpec) {
		t.Helper()
		p := s.pod(name, name)
		must(t, env.Client.Create(ctx, p))
		cg, err := node.AddPod(p, false)
		must(t, err)
		pods[p.Name] = cg
	}
	add(podSpec{name: "crit", class: "infera-critical", cpu: "500m", guaranteed: true}) // 512 → ×4
	add(podSpec{name: "bg", class: "infera-background", cpu: "250m"})                   // cpu.idle 1
	stock, err := realnode.Snapshot(node.ConfigDirs())
	must(t, err)

	a, err := realnode.NewAgent(realnode.AgentOptions{Binary: agent, Kubeconfig: env.Kubeconfig, NodeName: name, Node: node,
		Dir: t.TempDir(), StateDir: state})
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
		return s == wellknown.AgentStatusEnforcingCgroup && l.Tiers[wellknown.TierBackground].Pods == 1
	})
	waitFile(t, pods["crit"].CPUDir, "cpu.shares", "2048")
	waitFile(t, pods["bg"].CPUDir, "cpu.idle", "1")

	filler := fill(t, state)
	add(podSpec{name: "high", class: "infera-high", cpu: "200m"}) // 204 → ×2, once it can be recorded
	want, err := realnode.Snapshot(node.ConfigDirs())
	must(t, err)
	for k, v := range stock {
		want[k] = v
	}
	degraded := func(s string, _ wellknown.TierLoad) bool {
		return strings.HasPrefix(s, wellknown.AgentStatusDegradedPrefix) && strings.Contains(s, "no space left on device")
	}
	waitAnnotations(t, name, "degraded: no space left on device", degraded)
	if got, _ := realnode.ReadTrimmed(pods["high"].CPUDir, "cpu.shares"); got != "204" {
		t.Errorf("the pod whose original cannot be recorded has cpu.shares %s, want the kubelet's 204 untouched", got)
	}
	if code, body, err := a.Get(ctx, "/readyz"); err != nil || code != 503 || !strings.Contains(body, "no space left on device") {
		t.Errorf("/readyz on a full state directory = %d %q %v, want 503 naming ENOSPC", code, body, err)
	}
	// What is enforced stays enforced, drift included.
	writeFile(t, pods["crit"].CPUDir, "cpu.shares", "512")
	waitFile(t, pods["crit"].CPUDir, "cpu.shares", "2048")

	// A crash and a restart on the full disk: the originals on disk are
	// adopted, nothing is scaled twice.
	must(t, a.Kill())
	logAt := a.LogSize()
	must(t, a.Start())
	// The Node still carries the first agent's status: ask the new one.
	eventually(t, 30*time.Second, "the restarted agent's /readyz 503 naming ENOSPC", func() (bool, string) {
		code, body, err := a.Get(ctx, "/readyz")
		return err == nil && code == 503 && strings.Contains(body, "no space left on device"), fmt.Sprintf("%d %q %v", code, body, err)
	})
	if l := a.LogSince(logAt); !strings.Contains(l, "Adopted cgroup originals") {
		t.Errorf("the restarted agent did not adopt the originals on disk:\n%s", l)
	}
	for _, c := range []struct{ pod, file, want string }{
		{"crit", "cpu.shares", "2048"}, {"bg", "cpu.idle", "1"}, {"high", "cpu.shares", "204"},
	} {
		if got, _ := realnode.ReadTrimmed(pods[c.pod].CPUDir, c.file); got != c.want {
			t.Errorf("after a restart on a full disk %s %s = %s, want %s", c.pod, c.file, got, c.want)
		}
	}

	// Space again: the waiting pod is enforced, the status clears.
	must(t, os.Remove(filler))
	waitFile(t, pods["high"].CPUDir, "cpu.shares", "408")
	waitAnnotations(t, name, "enforcing again", func(s string, _ wellknown.TierLoad) bool {
		return s == wellknown.AgentStatusEnforcingCgroup
	})
	waitReady(t, a)

	setSafeMode(t, name)
	waitAnnotations(t, name, "safe mode", func(s string, _ wellknown.TierLoad) bool { return s == wellknown.AgentStatusSafeMode })
	now, err := realnode.Snapshot(node.ConfigDirs())
	must(t, err)
	if diff := cmp.Diff(want, now); diff != "" {
		t.Errorf("real cgroups after safe mode differ from the kubelet's values (-kubelet +now):\n%s", diff)
	}
}
