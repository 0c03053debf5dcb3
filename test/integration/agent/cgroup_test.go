package agent

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	inferav1 "github.com/infera-io/temper/apis/proto/infera/v1"
	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/nodeagent"
	"github.com/infera-io/temper/nodeagent/cgroupfs"
	"github.com/infera-io/temper/nodeagent/cgroupfs/cgrouptest"
)

// byPod indexes the agent's assignment by pod name, waiting until every
// pod's cgroup is found.
func (r *rig) assignedCgroups(n int) map[string]nodeagent.Assignment {
	r.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out := map[string]nodeagent.Assignment{}
		pending := 0
		for _, a := range r.agent.Assignments() {
			out[a.Pod.Name] = a
			if a.Pending() {
				pending++
			}
		}
		if len(out) == n && pending == 0 {
			return out
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("timed out waiting for %d pods with cgroups: have %d, %d pending", n, len(out), pending)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func readFile(t *testing.T, dir, file string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func waitFile(t *testing.T, dir, file, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for readFile(t, dir, file) != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s/%s = %q, want %q", dir, file, readFile(t, dir, file), want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// On a kernel without sched_ext, auto enforces the tiers with cgroup knobs
// on pod cgroups (faked cgroup v2 tree, systemd driver, 8 CPUs), re-asserts
// drift, and safe mode and a clean stop leave the tree byte-for-byte as the
// kubelet made it.
func TestAgentCgroupBackend(t *testing.T) {
	r := newRigWith(t, "agent-node-cgroup", 200*time.Millisecond, rigOptions{noSchedExt: true, safeMode: true})
	r.waitAnnotations("safe mode at start", func(s string, _ wellknown.TierLoad) bool { return s == wellknown.AgentStatusSafeMode })

	specs := mixedPods()
	r.createPods(specs)
	want := wantCounts(specs)
	r.waitAnnotations("30 pods counted in safe mode", func(s string, l wellknown.TierLoad) bool {
		return s == wellknown.AgentStatusSafeMode && countsMatch(l, want)
	})
	pods := r.assignedCgroups(len(specs))
	stock := cgrouptest.Snapshot(t, r.tree.Root)

	// Watch the agent's events over its gRPC socket from here on.
	conn, err := grpc.NewClient("unix://"+r.cfg.Server.GRPCSocket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	must(t, err)
	defer func() { _ = conn.Close() }()
	wctx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	stream, err := inferav1.NewAgentServiceClient(conn).WatchEvents(wctx, &inferav1.WatchEventsRequest{Types: []inferav1.EventType{
		inferav1.EventType_EVENT_TYPE_SAFE_MODE_LEFT, inferav1.EventType_EVENT_TYPE_DRIFT_REASSERTED}})
	must(t, err)
	// The stream is open once the agent has the subscriber; events before
	// that are not the stream's.
	for deadline := time.Now().Add(10 * time.Second); r.agent.EventStats().Subscribers == 0; {
		if time.Now().After(deadline) {
			t.Fatal("WatchEvents did not subscribe")
		}
		time.Sleep(10 * time.Millisecond)
	}

	r.setSafeMode(false)
	_, load := r.waitAnnotations("cgroup enforcement", func(s string, l wellknown.TierLoad) bool {
		return s == wellknown.AgentStatusEnforcingCgroup && l.Backend == wellknown.BackendCgroup
	})
	// 3 critical pods × 1 CPU on 8 single-thread cores: 3 whole cores,
	// leaving the system core and the shared pool.
	if load.FencedMilli != 3000 {
		t.Errorf("fencedMilli = %d, want 3000", load.FencedMilli)
	}
	cpuDir := func(name string) string { return pods[name].Cgroup.Dirs[cgroupfs.CPU] }
	setDir := func(name string) string { return pods[name].Cgroup.Dirs[cgroupfs.CPUSet] }
	checks := []struct{ pod, file, want string }{
		{"background-0", "cpu.idle", "1"},            // background: idle class
		{"besteffort-0", "cpu.idle", "1"},            // BestEffort is background
		{"volunteer-0", "cpu.idle", "1"},             // opted down by annotation
		{"low-0", "cpu.weight", "5"},                 // 20 ÷ 4
		{"high-0", "cpu.weight", "40"},               // 20 × 2
		{"critical-0", "cpu.weight", "156"},          // 39 × 4
		{"normal-0", "cpu.weight", "20"},             // the kubelet's
		{"climber-0", "cpu.weight", "5"},             // low: the annotation cannot raise it
		{"critical-0", "cpuset.cpus", "5-7"},         // fenced on the top cores
		{"normal-0", "cpuset.cpus", "0-4"},           // everyone else off the fence
		{"background-0", "cpuset.cpus", "0-4"},       //
		{"noclass-guaranteed-0", "cpu.idle", "0"},    // normal: untouched
		{"noclass-guaranteed-0", "cpu.weight", "39"}, //
	}
	for _, c := range checks {
		dir := cpuDir(c.pod)
		if strings.HasPrefix(c.file, "cpuset.") {
			dir = setDir(c.pod)
		}
		waitFile(t, dir, c.file, c.want)
	}
	// The kubelet's QoS cgroups are never written.
	now := cgrouptest.Snapshot(t, r.tree.Root)
	for _, rel := range []string{"kubepods.slice", "kubepods.slice/kubepods-burstable.slice", "kubepods.slice/kubepods-besteffort.slice"} {
		for _, f := range []string{"cpu.weight", "cpu.idle", "cpuset.cpus"} {
			if k := rel + "/" + f; stock[k] != now[k] {
				t.Errorf("QoS cgroup file %s changed: %q → %q", k, stock[k], now[k])
			}
		}
	}

	// Something else (the kubelet) rewrites a value: the reconcile timer
	// (1 s here) puts it back.
	crit := cpuDir("critical-0")
	if err := os.WriteFile(filepath.Join(crit, "cpu.weight"), []byte("39\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFile(t, crit, "cpu.weight", "156")

	// The stream carried the lift of safe mode and the re-asserted value.
	var left, drift bool
	for !left || !drift {
		ev, err := stream.Recv()
		if err != nil {
			t.Fatalf("WatchEvents: %v (safe mode left %v, drift %v)", err, left, drift)
		}
		switch ev.GetType() {
		case inferav1.EventType_EVENT_TYPE_SAFE_MODE_LEFT:
			left = true
		case inferav1.EventType_EVENT_TYPE_DRIFT_REASSERTED:
			d := ev.GetDriftReasserted()
			drift = drift || d.GetCgroupPath() == crit && d.GetFile() == "cpu.weight" && d.GetFound() == "39" && d.GetExpected() == "156"
		}
	}
	stopWatch()

	// Safe mode: byte-for-byte the kubelet's tree again.
	r.setSafeMode(true)
	r.waitAnnotations("safe mode", func(s string, _ wellknown.TierLoad) bool { return s == wellknown.AgentStatusSafeMode })
	if diff := cmp.Diff(stock, cgrouptest.Snapshot(t, r.tree.Root)); diff != "" {
		t.Errorf("tree after safe mode differs from the stock tree (-stock +now):\n%s", diff)
	}

	// Lifted, enforced again; a clean stop restores too.
	r.setSafeMode(false)
	r.waitAnnotations("re-engaged", func(s string, _ wellknown.TierLoad) bool { return s == wellknown.AgentStatusEnforcingCgroup })
	waitFile(t, cpuDir("background-0"), "cpu.idle", "1")
	r.stop()
	if diff := cmp.Diff(stock, cgrouptest.Snapshot(t, r.tree.Root)); diff != "" {
		t.Errorf("tree after a clean stop differs from the stock tree (-stock +now):\n%s", diff)
	}
}

// While scx_layered is down and cannot come back (it fails to load), the
// cgroup backend covers the gap with the same assignment; once scx_layered
// is attached again the cgroup values go back to the kubelet's.
func TestAgentCoversSCXOutageWithCgroups(t *testing.T) {
	failFile := filepath.Join(t.TempDir(), "fail")
	t.Setenv("STANDIN_FAIL_FILE", failFile)
	r := newRig(t, "agent-node-cover", 200*time.Millisecond)
	specs := []podSpec{
		{name: "batch", class: "infera-background", cpu: "500m", want: wellknown.TierBackground},
		{name: "api", class: "infera-high", cpu: "500m", want: wellknown.TierHigh},
	}
	r.createPods(specs)
	r.waitAnnotations("scx enforcement", func(s string, l wellknown.TierLoad) bool {
		return s == wellknown.AgentStatusEnforcingSCX && countsMatch(l, wantCounts(specs))
	})
	pods := r.assignedCgroups(len(specs))
	batch := pods["batch"].Cgroup.Dirs[cgroupfs.CPU]
	if got := readFile(t, batch, "cpu.idle"); got != "0" {
		t.Fatalf("cpu.idle = %s while scx_layered enforces, want the kubelet's 0", got)
	}

	// scx_layered is ejected and every restart fails.
	must(t, os.WriteFile(failFile, nil, 0o644))
	if out, err := exec.Command("pkill", "-USR1", "-f", "f:"+r.cfg.SCX.ConfigPath).CombinedOutput(); err != nil {
		t.Fatalf("pkill: %v: %s", err, out)
	}
	r.waitAnnotations("cgroup cover", func(s string, _ wellknown.TierLoad) bool {
		return strings.HasPrefix(s, wellknown.AgentStatusDegradedPrefix) && strings.Contains(s, "cgroup backend covering")
	})
	waitFile(t, batch, "cpu.idle", "1")
	waitFile(t, pods["api"].Cgroup.Dirs[cgroupfs.CPU], "cpu.weight", "40")

	// scx_layered loads again: the cover stands down.
	must(t, os.Remove(failFile))
	r.waitAnnotations("scx back", func(s string, _ wellknown.TierLoad) bool { return s == wellknown.AgentStatusEnforcingSCX })
	waitFile(t, batch, "cpu.idle", "0")
	waitFile(t, pods["api"].Cgroup.Dirs[cgroupfs.CPU], "cpu.weight", "20")
}
