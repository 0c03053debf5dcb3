package cgroup

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/infera-io/temper/nodeagent/cpuset"

	"github.com/go-logr/logr/testr"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/nodeagent/cgroupfs"
	"github.com/infera-io/temper/nodeagent/cgroupfs/cgrouptest/hostcg"
	"github.com/infera-io/temper/nodeagent/cgroupfs/writer"
)

// TestPrivilegedBackendV1 enforces every tier, with a fence, on
// kubelet-shaped cgroups with running processes in a private subtree of
// this machine's cgroup v1 hierarchies, checks the kernel's view (weights,
// idle, the processes' allowed CPUs), stands down and checks the
// configuration is back byte for byte.
func TestPrivilegedBackendV1(t *testing.T) {
	hostcg.RequireRoot(t)
	const root = "/sys/fs/cgroup"
	if v, err := cgroupfs.DetectVersion(root); err != nil || v != cgroupfs.V1 {
		t.Skipf("%s is not cgroup v1 here (%v, %v)", root, v, err)
	}
	host, err := cgroupfs.Detect(root, cgroupfs.DetectOptions{Driver: cgroupfs.DriverCgroupfs})
	if err != nil {
		t.Fatal(err)
	}
	cpuH, cpusetH := host.Hierarchies[cgroupfs.CPU], host.Hierarchies[cgroupfs.CPUSet]
	if cpusetH == "" {
		t.Skip("no v1 cpuset hierarchy")
	}
	nodeCPUs, err := cpuset.Parse(hostcg.ReadTrimmed(t, filepath.Join(cpusetH, "cpuset.cpus")))
	if err != nil || len(nodeCPUs) < 2 {
		t.Skipf("need at least 2 CPUs to fence (%v, %v)", nodeCPUs, err)
	}
	last := 0
	for c := range nodeCPUs {
		last = max(last, c)
	}
	fence := cpuset.Set{last: true}

	base := hostcg.RandomName(t)
	kp := base + "/kubepods"
	sb := hostcg.New(t)
	for _, h := range []string{cpuH, cpusetH} {
		for _, rel := range []string{base, kp, kp + "/burstable", kp + "/besteffort"} {
			sb.Mkdir(filepath.Join(h, rel), h == cpusetH)
		}
	}
	// The kubelet's QoS-level values.
	for rel, v := range map[string]string{kp + "/burstable": "1024", kp + "/besteffort": "2"} {
		if err := os.WriteFile(filepath.Join(cpuH, rel, "cpu.shares"), []byte(v), 0); err != nil {
			t.Fatal(err)
		}
	}
	type podSpec struct {
		tier   wellknown.Tier
		qos    corev1.PodQOSClass
		uid    string
		shares string
	}
	specs := []podSpec{
		{wellknown.TierCritical, corev1.PodQOSGuaranteed, "00000000-0000-4000-8000-000000000002", "1024"},
		{wellknown.TierHigh, corev1.PodQOSBurstable, "00000000-0000-4000-8000-000000000003", "512"},
		{wellknown.TierNormal, corev1.PodQOSBurstable, "00000000-0000-4000-8000-000000000004", "512"},
		{wellknown.TierLow, corev1.PodQOSBurstable, "00000000-0000-4000-8000-000000000005", "512"},
		{wellknown.TierBackground, corev1.PodQOSBurstable, "00000000-0000-4000-8000-000000000006", "512"},
		{wellknown.TierBackground, corev1.PodQOSBestEffort, "00000000-0000-4000-8000-000000000007", "2"},
	}
	l, err := cgroupfs.Detect(root, cgroupfs.DetectOptions{KubepodsDir: kp})
	if err != nil {
		t.Fatal(err)
	}
	pids := map[string]int{}
	var pods []Pod
	for i, s := range specs {
		cid := strings.Repeat(string(rune('a'+i)), 64)
		rel, err := l.PodRelPath(s.uid, s.qos)
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range []string{cpuH, cpusetH} {
			sb.Mkdir(filepath.Join(h, rel), h == cpusetH)
			sb.Mkdir(filepath.Join(h, rel, cid), h == cpusetH)
		}
		if err := os.WriteFile(filepath.Join(cpuH, rel, "cpu.shares"), []byte(s.shares), 0); err != nil {
			t.Fatal(err)
		}
		pids[s.uid] = sb.Start(filepath.Join(cpuH, rel, cid), filepath.Join(cpusetH, rel, cid)).Process.Pid
		found, err := l.FindPod(cgroupfs.PodRef{UID: s.uid, QOSClass: s.qos, ContainerIDs: []string{"containerd://" + cid}})
		if err != nil || len(found.Containers) != 1 {
			t.Fatalf("FindPod(%s) = %+v, %v", s.uid, found, err)
		}
		pods = append(pods, Pod{Name: "ns/" + string(s.tier) + "-" + string(s.qos), Tier: s.tier, Cgroup: found})
	}
	before := hostcg.ConfigSnapshot(t, sb.Created())

	w, err := writer.New(writer.Options{Root: root, StateDir: t.TempDir(), Log: testr.New(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	b, err := New(Options{Layout: l, Writer: w, CPUManagerStateFile: filepath.Join(t.TempDir(), "absent"), Log: testr.New(t)})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := b.Apply(Plan{Pods: pods, FenceCPUs: fence, NodeCPUs: nodeCPUs})
	if err != nil {
		t.Fatalf("Apply() error = %v", err)
	}
	t.Logf("apply: %+v", rep)
	shared := nodeCPUs.Minus(fence).String()
	hasIdle := fileExists(filepath.Join(cpuH, base, "cpu.idle"))
	for _, p := range pods {
		d := p.Cgroup.Dirs[cgroupfs.CPU]
		shares, idle := hostcg.ReadTrimmed(t, filepath.Join(d, "cpu.shares")), "0"
		if hasIdle {
			idle = hostcg.ReadTrimmed(t, filepath.Join(d, "cpu.idle"))
		}
		allowed := hostcg.ProcStatus(t, pids[p.Cgroup.UID], "Cpus_allowed_list")
		wantAllowed := shared
		if p.Tier == wellknown.TierCritical {
			wantAllowed = fence.String()
		}
		// The kernel shows an idle group's weight as 3.
		want := map[wellknown.Tier]string{wellknown.TierCritical: "4096", wellknown.TierHigh: "1024", wellknown.TierNormal: "512", wellknown.TierLow: "128", wellknown.TierBackground: "3"}[p.Tier]
		wantIdle := "0"
		if p.Tier == wellknown.TierBackground {
			wantIdle = "1"
			if !hasIdle {
				want, wantIdle = "2", "0"
			}
		}
		if shares != want || idle != wantIdle || allowed != wantAllowed {
			t.Errorf("%s: cpu.shares %s, cpu.idle %s, process may run on %s; want %s, %s, %s", p.Name, shares, idle, allowed, want, wantIdle, wantAllowed)
		}
	}
	// Re-applying writes nothing; reconciling finds no drift.
	if rep, err := b.Apply(Plan{Pods: pods, FenceCPUs: fence, NodeCPUs: nodeCPUs}); err != nil || rep.Changed {
		t.Errorf("second Apply() = %+v, %v; want no change", rep, err)
	}
	if res, err := b.Reconcile(); err != nil || res.Drifted != 0 {
		t.Errorf("Reconcile() = %+v, %v; want no drift", res, err)
	}

	res, err := b.StandDown()
	if err != nil {
		t.Fatalf("StandDown() error = %v", err)
	}
	t.Logf("stand down: %+v", res)
	if diff := cmp.Diff(before, hostcg.ConfigSnapshot(t, sb.Created())); diff != "" {
		t.Errorf("configuration after StandDown() differs (-before +after):\n%s", diff)
	}
	for _, p := range pods {
		if got := hostcg.ProcStatus(t, pids[p.Cgroup.UID], "Cpus_allowed_list"); got != nodeCPUs.String() {
			t.Errorf("%s after StandDown() may run on %s, want %s", p.Name, got, nodeCPUs)
		}
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// TestPrivilegedBackendV2 is TestPrivilegedBackendV1 on a real cgroup v2
// tree, in both kubelet layouts (systemd's kubepods.slice/... and
// cgroupfs's kubepods/...): every tier's knobs (cpu.weight scaled from the
// kubelet's value, cpu.idle for background), the fence, drift re-assertion
// after another writer changes a weight and a cpuset, and the stand-down
// leaving the configuration byte for byte as found, with a running process
// in every container. It runs where /sys/fs/cgroup is cgroup2 with cpu and
// cpuset delegated from the root: in `make test-vm` (hack/vm), on Debian's
// 7.2 kernel.
func TestPrivilegedBackendV2(t *testing.T) {
	hostcg.RequireRoot(t)
	const root = "/sys/fs/cgroup"
	if v, err := cgroupfs.DetectVersion(root); err != nil || v != cgroupfs.V2 {
		t.Skipf("%s is not a cgroup2 mount here (%v, %v); `make test-vm` runs this on a v2 kernel", root, v, err)
	}
	enabled := strings.Fields(hostcg.ReadTrimmed(t, filepath.Join(root, "cgroup.subtree_control")))
	if !slices.Contains(enabled, "cpu") || !slices.Contains(enabled, "cpuset") {
		t.Skipf("%s/cgroup.subtree_control delegates %v, need cpu and cpuset; not changing the root's delegation", root, enabled)
	}
	for _, layout := range []struct {
		name, kubepods string
		container      func(cid string) string
	}{
		{"systemd", "kubepods.slice", func(cid string) string { return "cri-containerd-" + cid + ".scope" }},
		{"cgroupfs", "kubepods", func(cid string) string { return cid }},
	} {
		t.Run(layout.name, func(t *testing.T) {
			backendV2(t, root, layout.kubepods, layout.container)
		})
	}
}

func backendV2(t *testing.T, root, kubepods string, containerDir func(cid string) string) {
	base := hostcg.RandomName(t)
	kp := base + "/" + kubepods
	sb := hostcg.New(t)
	// Inner cgroups delegate cpu and cpuset; only container leaves hold
	// processes (v2's no-internal-processes rule).
	inner := func(rel string) {
		dir := filepath.Join(root, rel)
		sb.Mkdir(dir, false)
		if err := os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+cpu +cpuset"), 0); err != nil {
			t.Fatalf("failed to delegate cpu and cpuset in %s: %v", dir, err)
		}
	}
	inner(base)
	inner(kp)
	l, err := cgroupfs.Detect(root, cgroupfs.DetectOptions{KubepodsDir: kp})
	if err != nil {
		t.Fatalf("Detect(KubepodsDir=%s) error = %v", kp, err)
	}
	for _, q := range []corev1.PodQOSClass{corev1.PodQOSBurstable, corev1.PodQOSBestEffort} {
		rel, err := l.QOSRelPath(q)
		if err != nil {
			t.Fatal(err)
		}
		inner(rel)
	}
	nodeCPUs, err := cpuset.Parse(hostcg.ReadTrimmed(t, filepath.Join(root, kp, "cpuset.cpus.effective")))
	if err != nil || len(nodeCPUs) < 2 {
		t.Skipf("need at least 2 CPUs to fence (%v, %v)", nodeCPUs, err)
	}
	last := 0
	for c := range nodeCPUs {
		last = max(last, c)
	}
	fence := cpuset.Set{last: true}
	shared := nodeCPUs.Minus(fence)

	// cpu.weight as the kubelet sets it on v2 (converted from the requests'
	// shares): 1024 shares → 39, 512 → 20, BestEffort → 1.
	specs := []struct {
		tier   wellknown.Tier
		qos    corev1.PodQOSClass
		uid    string
		weight string
	}{
		{wellknown.TierCritical, corev1.PodQOSGuaranteed, "00000000-0000-4000-8000-000000000012", "39"},
		{wellknown.TierHigh, corev1.PodQOSBurstable, "00000000-0000-4000-8000-000000000013", "20"},
		{wellknown.TierNormal, corev1.PodQOSBurstable, "00000000-0000-4000-8000-000000000014", "20"},
		{wellknown.TierLow, corev1.PodQOSBurstable, "00000000-0000-4000-8000-000000000015", "20"},
		{wellknown.TierBackground, corev1.PodQOSBurstable, "00000000-0000-4000-8000-000000000016", "20"},
		{wellknown.TierBackground, corev1.PodQOSBestEffort, "00000000-0000-4000-8000-000000000017", "1"},
	}
	pids := map[string]int{}
	var pods []Pod
	for i, s := range specs {
		cid := strings.Repeat(string(rune('a'+i)), 64)
		rel, err := l.PodRelPath(s.uid, s.qos)
		if err != nil {
			t.Fatal(err)
		}
		inner(rel)
		cdir := filepath.Join(root, rel, containerDir(cid))
		sb.Mkdir(cdir, false)
		if err := os.WriteFile(filepath.Join(root, rel, "cpu.weight"), []byte(s.weight), 0); err != nil {
			t.Fatal(err)
		}
		pids[s.uid] = sb.Start(cdir).Process.Pid
		found, err := l.FindPod(cgroupfs.PodRef{UID: s.uid, QOSClass: s.qos, ContainerIDs: []string{"containerd://" + cid}})
		if err != nil || len(found.Containers) != 1 || found.Containers[0].Dirs[cgroupfs.CPU] != cdir {
			t.Fatalf("FindPod(%s) = %+v, %v; want container %s", s.uid, found, err, cdir)
		}
		pods = append(pods, Pod{Name: "ns/" + string(s.tier) + "-" + string(s.qos), Tier: s.tier, Cgroup: found})
	}
	before := hostcg.ConfigSnapshot(t, sb.Created())

	w, err := writer.New(writer.Options{Root: root, StateDir: t.TempDir(), Log: testr.New(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	b, err := New(Options{Layout: l, Writer: w, CPUManagerStateFile: filepath.Join(t.TempDir(), "absent"), Log: testr.New(t)})
	if err != nil {
		t.Fatal(err)
	}
	a := Plan{Pods: pods, FenceCPUs: fence, NodeCPUs: nodeCPUs}
	rep, err := b.Apply(a)
	if err != nil {
		t.Fatalf("Apply() error = %v", err)
	}
	t.Logf("apply: %+v", rep)
	if rep.Enforced != len(pods) || rep.Fenced.String() != fence.String() {
		t.Errorf("Apply() = %+v, want %d pods enforced and CPU %s fenced", rep, len(pods), fence)
	}
	check := func(when string) {
		t.Helper()
		for _, p := range pods {
			d := p.Cgroup.Dirs[cgroupfs.CPU]
			weight, idle := hostcg.ReadTrimmed(t, filepath.Join(d, "cpu.weight")), hostcg.ReadTrimmed(t, filepath.Join(d, "cpu.idle"))
			allowed := hostcg.ProcStatus(t, pids[p.Cgroup.UID], "Cpus_allowed_list")
			wantAllowed := shared.String()
			if p.Tier == wellknown.TierCritical {
				wantAllowed = fence.String()
			}
			// 39×4, 20×2, untouched, 20/4; the kernel shows an idle
			// group's weight as 1.
			want := map[wellknown.Tier]string{wellknown.TierCritical: "156", wellknown.TierHigh: "40", wellknown.TierNormal: "20", wellknown.TierLow: "5", wellknown.TierBackground: "1"}[p.Tier]
			wantIdle := "0"
			if p.Tier == wellknown.TierBackground {
				wantIdle = "1"
			}
			if weight != want || idle != wantIdle || allowed != wantAllowed {
				t.Errorf("%s %s: cpu.weight %s, cpu.idle %s, process may run on %s; want %s, %s, %s", when, p.Name, weight, idle, allowed, want, wantIdle, wantAllowed)
			}
		}
	}
	check("after Apply()")
	if rep, err := b.Apply(a); err != nil || rep.Changed {
		t.Errorf("second Apply() = %+v, %v; want no change", rep, err)
	}
	if res, err := b.Reconcile(); err != nil || res.Drifted != 0 {
		t.Errorf("Reconcile() = %+v, %v; want no drift", res, err)
	}

	// Drift: another writer (the kubelet resizing a pod, an operator) puts
	// the high pod's weight back and widens the critical pod and its
	// container onto every CPU (on v2 a cgroup's effective CPUs are within
	// its parent's, so both); the next reconcile re-asserts all three.
	high, critical := pods[1].Cgroup, pods[0].Cgroup
	for f, v := range map[string]string{
		filepath.Join(high.Dirs[cgroupfs.CPU], "cpu.weight"):                       "20",
		filepath.Join(critical.Dirs[cgroupfs.CPUSet], "cpuset.cpus"):               nodeCPUs.String(),
		filepath.Join(critical.Containers[0].Dirs[cgroupfs.CPUSet], "cpuset.cpus"): nodeCPUs.String(),
	} {
		if err := os.WriteFile(f, []byte(v), 0); err != nil {
			t.Fatalf("failed to drift %s: %v", f, err)
		}
	}
	if got := hostcg.ProcStatus(t, pids[critical.UID], "Cpus_allowed_list"); got != nodeCPUs.String() {
		t.Fatalf("drift did not take: the critical process may run on %s, want %s", got, nodeCPUs)
	}
	res, err := b.Reconcile()
	if err != nil || res.Drifted != 3 {
		t.Errorf("Reconcile() after drift = %+v, %v; want 3 drifted", res, err)
	}
	check("after drift and Reconcile()")

	sres, err := b.StandDown()
	if err != nil {
		t.Fatalf("StandDown() error = %v", err)
	}
	t.Logf("stand down: %+v", sres)
	if diff := cmp.Diff(before, hostcg.ConfigSnapshot(t, sb.Created())); diff != "" {
		t.Errorf("configuration after StandDown() differs (-before +after):\n%s", diff)
	}
	for _, p := range pods {
		if got := hostcg.ProcStatus(t, pids[p.Cgroup.UID], "Cpus_allowed_list"); got != nodeCPUs.String() {
			t.Errorf("%s after StandDown() may run on %s, want %s", p.Name, got, nodeCPUs)
		}
	}
}
