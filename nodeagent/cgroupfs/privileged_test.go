package cgroupfs_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/go-logr/logr/testr"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/infera-io/temper/nodeagent/cgroupfs"
	"github.com/infera-io/temper/nodeagent/cgroupfs/cgrouptest/hostcg"
	"github.com/infera-io/temper/nodeagent/cgroupfs/writer"
)

// The TestPrivileged* tests build pod-shaped cgroups in a private subtree
// (temper-test-<random>) of this machine's real cgroup hierarchies, put
// real processes in them, and run discovery and the writer against the
// kernel. They need root and skip, saying why, where they cannot run. They
// always remove what they created, even when they fail.

const hostRoot = "/sys/fs/cgroup"

// realPod is one pod-shaped cgroup with one container and a process in it.
type realPod struct {
	ref  cgroupfs.PodRef
	rel  string // pod cgroup, relative to the hierarchy roots
	crel string // container cgroup
	proc *exec.Cmd
}

// procCgroup returns the cgroup of pid in the v1 hierarchy carrying
// controller c, or in the v2 tree when c is "".
func procCgroup(t *testing.T, pid int, c cgroupfs.Controller) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if (c == "" && parts[0] == "0" && parts[1] == "") || (c != "" && slices.Contains(strings.Split(parts[1], ","), string(c))) {
			return parts[2]
		}
	}
	t.Fatalf("pid %d has no %q cgroup in %s", pid, c, b)
	return ""
}

func cpuList(t *testing.T, s string) []int {
	t.Helper()
	var cpus []int
	for _, part := range strings.Split(strings.TrimSpace(s), ",") {
		if part == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			t.Fatalf("bad CPU list %q", s)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil {
				t.Fatalf("bad CPU list %q", s)
			}
		}
		for i := a; i <= b; i++ {
			cpus = append(cpus, i)
		}
	}
	return cpus
}

func mustApply(t *testing.T, w *writer.Writer, ops ...writer.Op) []writer.Change {
	t.Helper()
	var out []writer.Change
	for _, r := range w.Apply(ops...) {
		if r.Err != nil {
			t.Fatalf("Apply(%s %s=%s) error = %v", r.Op.Path, r.Op.File, r.Op.Value, r.Err)
		}
		out = append(out, r.Change)
	}
	return out
}

// TestPrivilegedV1 runs discovery, enforcement-shaped writes, drift, a
// writer restart, a vanishing pod and the restore on the real cgroup v1
// hierarchies (cpu and cpuset), with a sleeping process in every container.
func TestPrivilegedV1(t *testing.T) {
	hostcg.RequireRoot(t)
	if v, err := cgroupfs.DetectVersion(hostRoot); err != nil || v != cgroupfs.V1 {
		t.Skipf("%s is not cgroup v1 here (%v, %v); the v2 path is TestPrivilegedV2", hostRoot, v, err)
	}
	host, err := cgroupfs.Detect(hostRoot, cgroupfs.DetectOptions{Driver: cgroupfs.DriverCgroupfs})
	if err != nil {
		t.Fatalf("Detect(%s) error = %v", hostRoot, err)
	}
	cpuH := host.Hierarchies[cgroupfs.CPU]
	cpusetH, hasCpuset := host.Hierarchies[cgroupfs.CPUSet]
	if !hasCpuset {
		t.Skip("no v1 cpuset hierarchy on this host")
	}
	hasIdle := fileExists(filepath.Join(cpuH, "cpu.idle"))
	t.Logf("cpu hierarchy %s, cpuset hierarchy %s, cpu.idle present: %v", cpuH, cpusetH, hasIdle)

	base := hostcg.RandomName(t)
	sb := hostcg.New(t)
	// Two pod roots side by side, one per driver's naming.
	type podSpec struct {
		kubepods, rel, crel, cid string
		qos                      corev1.PodQOSClass
		uid                      string
	}
	specs := []podSpec{
		{base + "/kubepods", base + "/kubepods/pod" + uidG, base + "/kubepods/pod" + uidG + "/" + cid, "containerd://" + cid, corev1.PodQOSGuaranteed, uidG},
		{base + "/kubepods", base + "/kubepods/burstable/pod" + uidB, base + "/kubepods/burstable/pod" + uidB + "/" + cid, "containerd://" + cid, corev1.PodQOSBurstable, uidB},
		{base + "/kubepods.slice", base + "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-podc0ffee00_1234_4abc_8def_0123456789ab.slice",
			base + "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-podc0ffee00_1234_4abc_8def_0123456789ab.slice/crio-" + cid + ".scope",
			"cri-o://" + cid, corev1.PodQOSBestEffort, uidE},
	}
	for _, h := range []string{cpuH, cpusetH} {
		made := map[string]bool{}
		for _, rel := range []string{base, base + "/kubepods", base + "/kubepods/burstable", base + "/kubepods.slice", base + "/kubepods.slice/kubepods-besteffort.slice"} {
			sb.Mkdir(filepath.Join(h, rel), h == cpusetH)
			made[rel] = true
		}
		for _, s := range specs {
			for _, rel := range []string{s.rel, s.crel} {
				if !made[rel] {
					sb.Mkdir(filepath.Join(h, rel), h == cpusetH)
					made[rel] = true
				}
			}
		}
	}
	allDirs := sb.Created()
	// The values the kubelet sets on a node: minimal shares for BestEffort,
	// requests-based shares for the others, a quota for the Guaranteed pod.
	for rel, v := range map[string]string{
		base + "/kubepods/burstable":                       "1024",
		base + "/kubepods.slice/kubepods-besteffort.slice": "2",
		specs[0].rel: "1024", specs[1].rel: "512", specs[2].rel: "2",
	} {
		if err := os.WriteFile(filepath.Join(cpuH, rel, "cpu.shares"), []byte(v), 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(cpuH, specs[0].rel, "cpu.cfs_quota_us"), []byte("100000"), 0); err != nil {
		t.Fatal(err)
	}
	pods := map[corev1.PodQOSClass]*realPod{}
	for _, s := range specs {
		p := &realPod{ref: cgroupfs.PodRef{UID: s.uid, QOSClass: s.qos, ContainerIDs: []string{s.cid}}, rel: s.rel, crel: s.crel}
		p.proc = sb.Start(filepath.Join(cpuH, s.crel), filepath.Join(cpusetH, s.crel))
		pods[s.qos] = p
	}

	// Discovery finds each pod and container where the kernel says the
	// process is.
	for _, s := range specs {
		t.Run("discover/"+string(s.qos), func(t *testing.T) {
			l, err := cgroupfs.Detect(hostRoot, cgroupfs.DetectOptions{KubepodsDir: s.kubepods})
			if err != nil {
				t.Fatalf("Detect() error = %v", err)
			}
			got, err := l.FindPod(pods[s.qos].ref)
			if err != nil {
				t.Fatalf("FindPod() error = %v", err)
			}
			want := &cgroupfs.Pod{
				UID: s.uid, QOSClass: s.qos, RelPath: s.rel,
				Dirs: map[cgroupfs.Controller]string{cgroupfs.CPU: filepath.Join(cpuH, s.rel), cgroupfs.CPUSet: filepath.Join(cpusetH, s.rel)},
				Containers: []cgroupfs.Container{{
					ID: s.cid, Runtime: cgroupfs.Runtime(strings.SplitN(s.cid, ":", 2)[0]), RelPath: s.crel,
					Dirs: map[cgroupfs.Controller]string{cgroupfs.CPU: filepath.Join(cpuH, s.crel), cgroupfs.CPUSet: filepath.Join(cpusetH, s.crel)},
				}},
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("FindPod() mismatch (-want +got):\n%s", diff)
			}
			pid := pods[s.qos].proc.Process.Pid
			for _, c := range []cgroupfs.Controller{cgroupfs.CPU, cgroupfs.CPUSet} {
				if kernel := procCgroup(t, pid, c); kernel != "/"+got.Containers[0].RelPath {
					t.Errorf("/proc/%d/cgroup puts the process in %s for %s, discovery says /%s", pid, kernel, c, got.Containers[0].RelPath)
				}
			}
		})
	}
	t.Run("discover/not yet created", func(t *testing.T) {
		l, err := cgroupfs.Detect(hostRoot, cgroupfs.DetectOptions{KubepodsDir: base + "/kubepods"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.FindPod(cgroupfs.PodRef{UID: "00000000-0000-4000-8000-00000000beef", QOSClass: corev1.PodQOSBurstable}); !errors.Is(err, cgroupfs.ErrNotFound) {
			t.Errorf("FindPod() of a pod not created yet: error = %v, want ErrNotFound", err)
		}
	})

	before := hostcg.ConfigSnapshot(t, allDirs)
	stateDir := t.TempDir()
	w, err := writer.New(writer.Options{Root: hostRoot, StateDir: stateDir, Log: testr.New(t)})
	if err != nil {
		t.Fatalf("writer.New() error = %v", err)
	}
	g, b, e := pods[corev1.PodQOSGuaranteed], pods[corev1.PodQOSBurstable], pods[corev1.PodQOSBestEffort]
	cpu := func(rel string) string { return filepath.Join(cpuH, rel) }
	cpuset := func(rel string) string { return filepath.Join(cpusetH, rel) }

	// Weights: what is read back counts. The kernel clamps cpu.shares to 2.
	ch := mustApply(t, w,
		writer.Op{Path: cpu(g.rel), File: "cpu.shares", Value: "4096", Reason: "critical: raised weight"},
		writer.Op{Path: cpu(b.rel), File: "cpu.shares", Value: "1", Reason: "low: minimal weight"},
	)
	if ch[1].New != "2" || hostcg.ReadTrimmed(t, filepath.Join(cpu(b.rel), "cpu.shares")) != "2" {
		t.Errorf("cpu.shares=1 read back %q, want the kernel's clamp to 2", ch[1].New)
	}

	if hasIdle {
		// cpu.idle: the kernel then reports the idle weight (3) and rejects
		// weight writes.
		mustApply(t, w, writer.Op{Path: cpu(e.rel), File: "cpu.idle", Value: "1", Reason: "background: idle"})
		if got := hostcg.ReadTrimmed(t, filepath.Join(cpu(e.rel), "cpu.shares")); got != "3" {
			t.Errorf("cpu.shares of an idle group = %s, want 3", got)
		}
		if _, err := w.Set(cpu(e.rel), "cpu.shares", "100", "test"); !errors.Is(err, writer.ErrRejected) || !errors.Is(err, syscall.EINVAL) {
			t.Errorf("Set(cpu.shares) on an idle group: error = %v, want ErrRejected (EINVAL)", err)
		}
	} else {
		t.Log("no cpu.idle on this kernel; skipping the idle checks")
	}

	// Fence: the Guaranteed pod on the last CPU, the others off it.
	cpus := cpuList(t, hostcg.ReadTrimmed(t, filepath.Join(cpusetH, base, "cpuset.cpus")))
	if len(cpus) >= 2 {
		fence := strconv.Itoa(cpus[len(cpus)-1])
		var rest []string
		for _, c := range cpus[:len(cpus)-1] {
			rest = append(rest, strconv.Itoa(c))
		}
		shared := strings.Join(rest, ",")
		mems := hostcg.ReadTrimmed(t, filepath.Join(cpusetH, base, "cpuset.mems"))
		mustApply(t, w,
			writer.Op{Path: cpuset(g.crel), File: "cpuset.cpus", Value: fence, Reason: "critical: fenced"},
			writer.Op{Path: cpuset(g.rel), File: "cpuset.cpus", Value: fence, Reason: "critical: fenced"},
			writer.Op{Path: cpuset(g.rel), File: "cpuset.mems", Value: mems, Reason: "critical: fenced"},
			writer.Op{Path: cpuset(b.crel), File: "cpuset.cpus", Value: shared, Reason: "outside the fence"},
			writer.Op{Path: cpuset(b.rel), File: "cpuset.cpus", Value: shared, Reason: "outside the fence"},
			writer.Op{Path: cpuset(e.crel), File: "cpuset.cpus", Value: shared, Reason: "outside the fence"},
			writer.Op{Path: cpuset(e.rel), File: "cpuset.cpus", Value: shared, Reason: "outside the fence"},
		)
		if got := hostcg.ProcStatus(t, g.proc.Process.Pid, "Cpus_allowed_list"); got != fence {
			t.Errorf("fenced process may run on %s, want %s", got, fence)
		}
		if got := hostcg.ProcStatus(t, b.proc.Process.Pid, "Cpus_allowed_list"); slices.Contains(cpuList(t, got), cpus[len(cpus)-1]) {
			t.Errorf("unfenced process may run on %s, which includes the fenced CPU %s", got, fence)
		}
		// Widening a child beyond its parent is refused (EACCES on v1):
		// a rejected value, not a permission problem.
		if _, err := w.Set(cpuset(g.crel), "cpuset.cpus", hostcg.ReadTrimmed(t, filepath.Join(cpusetH, base, "cpuset.cpus")), "test"); !errors.Is(err, writer.ErrRejected) || errors.Is(err, writer.ErrNotWritable) {
			t.Errorf("Set(cpuset wider than the parent) error = %v, want ErrRejected", err)
		}
	} else {
		t.Logf("only %d CPU(s); skipping the fence", len(cpus))
	}

	// Drift: the kubelet rewrites a pod's shares; Reassert puts ours back.
	if err := os.WriteFile(filepath.Join(cpu(b.rel), "cpu.shares"), []byte("512"), 0); err != nil {
		t.Fatal(err)
	}
	res, err := w.Reassert()
	if err != nil {
		t.Fatalf("Reassert() error = %v", err)
	}
	if res.Drifted != 1 || hostcg.ReadTrimmed(t, filepath.Join(cpu(b.rel), "cpu.shares")) != "2" {
		t.Errorf("Reassert() = %+v, cpu.shares %s; want 1 drifted and 2 restored", res, hostcg.ReadTrimmed(t, filepath.Join(cpu(b.rel), "cpu.shares")))
	}

	// A pod that vanishes: its cgroup is removed under the writer.
	gone := filepath.Join(cpuH, base, "kubepods/burstable/pod00000000-0000-4000-8000-0000000000aa")
	sb.Mkdir(gone, false)
	mustApply(t, w, writer.Op{Path: gone, File: "cpu.shares", Value: "100", Reason: "low"})
	if err := syscall.Rmdir(gone); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Set(gone, "cpu.shares", "50", "low"); !errors.Is(err, writer.ErrGone) {
		t.Errorf("Set() on a removed cgroup: error = %v, want ErrGone", err)
	}
	// Another one vanishes while the agent is down, before the restore.
	gone2 := strings.TrimSuffix(gone, "aa") + "bb"
	sb.Mkdir(gone2, false)
	mustApply(t, w, writer.Op{Path: gone2, File: "cpu.shares", Value: "100", Reason: "low"})

	// The agent restarts: the new writer adopts the originals from the state
	// file and restores the tree as the first found it.
	recorded := len(w.Originals())
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w2, err := writer.New(writer.Options{Root: hostRoot, StateDir: stateDir, Log: testr.New(t)})
	if err != nil {
		t.Fatalf("writer.New() after a restart error = %v", err)
	}
	defer w2.Close()
	if err := syscall.Rmdir(gone2); err != nil {
		t.Fatal(err)
	}
	if rep := w2.StateReport(); rep.Adopted != recorded || rep.SetAside != "" {
		t.Errorf("StateReport() = %+v, want %d originals adopted", rep, recorded)
	}
	rres, err := w2.RestoreAll()
	if err != nil {
		t.Fatalf("RestoreAll() error = %v", err)
	}
	t.Logf("restore: %+v; writer stats %+v", rres, w2.Stats())
	if rres.Gone != 1 || len(rres.Failed) != 0 {
		t.Errorf("RestoreAll() = %+v, want the vanished pod counted as gone and no failure", rres)
	}
	if diff := cmp.Diff(before, hostcg.ConfigSnapshot(t, allDirs)); diff != "" {
		t.Errorf("cgroup configuration after RestoreAll() differs (-before +after):\n%s", diff)
	}
	if got, want := hostcg.ProcStatus(t, g.proc.Process.Pid, "Cpus_allowed_list"), hostcg.ReadTrimmed(t, filepath.Join(cpusetH, base, "cpuset.cpus")); got != want {
		t.Errorf("fenced process after restore may run on %s, want %s", got, want)
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// TestPrivilegedReadOnly writes through a read-only bind mount of a real
// cgroup: the writer reports ErrNotWritable (EROFS) with what to do, and
// records nothing.
func TestPrivilegedReadOnly(t *testing.T) {
	hostcg.RequireRoot(t)
	v, err := cgroupfs.DetectVersion(hostRoot)
	if err != nil {
		t.Skipf("no cgroup tree at %s: %v", hostRoot, err)
	}
	host, err := cgroupfs.Detect(hostRoot, cgroupfs.DetectOptions{Driver: cgroupfs.DriverCgroupfs})
	if err != nil {
		t.Fatalf("Detect(%s) error = %v", hostRoot, err)
	}
	cpuH, ok := host.Hierarchies[cgroupfs.CPU]
	if !ok {
		t.Skip("no cpu controller available")
	}
	weight := "cpu.shares"
	if v == cgroupfs.V2 {
		weight = "cpu.weight"
	}
	sb := hostcg.New(t)
	dir := filepath.Join(cpuH, hostcg.RandomName(t))
	sb.Mkdir(dir, false)
	mnt := t.TempDir()
	if err := syscall.Mount(dir, mnt, "", syscall.MS_BIND, ""); err != nil {
		t.Skipf("cannot bind-mount a cgroup here: %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(mnt, syscall.MNT_DETACH); err != nil {
			t.Errorf("failed to unmount %s: %v", mnt, err)
		}
	})
	if err := syscall.Mount("", mnt, "", syscall.MS_REMOUNT|syscall.MS_BIND|syscall.MS_RDONLY, ""); err != nil {
		t.Fatalf("failed to remount %s read-only: %v", mnt, err)
	}
	was := hostcg.ReadTrimmed(t, filepath.Join(mnt, weight))

	w, err := writer.New(writer.Options{Root: mnt, StateDir: t.TempDir(), Log: testr.New(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	_, err = w.Set(mnt, weight, "77", "test")
	if !errors.Is(err, writer.ErrNotWritable) || !errors.Is(err, syscall.EROFS) {
		t.Fatalf("Set() through a read-only mount: error = %v, want ErrNotWritable (EROFS)", err)
	}
	t.Logf("error as reported: %v", err)
	if got := hostcg.ReadTrimmed(t, filepath.Join(dir, weight)); got != was {
		t.Errorf("%s = %s, want untouched %s", weight, got, was)
	}
	if s := w.Stats(); s.Errors != 1 || s.Writes != 0 {
		t.Errorf("Stats() = %+v, want 1 error and no write", s)
	}
	if o := w.Originals(); len(o) != 0 {
		t.Errorf("Originals() = %+v after a failed write, want none", o)
	}
}

// TestPrivilegedV2 is TestPrivilegedV1 on a real cgroup v2 tree: it runs
// only where /sys/fs/cgroup is a cgroup2 mount whose root delegates the cpu
// controller to its children. The CI hosts are cgroup v1; it passed on
// Debian's 7.2.13 kernel under QEMU (shared/VM.md: a static `go test -c`
// binary in a busybox initramfs that mounts cgroup2 and writes
// "+cpu +cpuset" to the root's cgroup.subtree_control first).
func TestPrivilegedV2(t *testing.T) {
	hostcg.RequireRoot(t)
	if v, err := cgroupfs.DetectVersion(hostRoot); err != nil || v != cgroupfs.V2 {
		t.Skipf("%s is not a cgroup2 mount here (%v, %v): cgroup v2 is covered by the faked-tree tests", hostRoot, v, err)
	}
	enabled := strings.Fields(hostcg.ReadTrimmed(t, filepath.Join(hostRoot, "cgroup.subtree_control")))
	if !slices.Contains(enabled, "cpu") {
		t.Skipf("the cpu controller is not enabled in %s/cgroup.subtree_control (%v); not changing the root's delegation", hostRoot, enabled)
	}
	hasCpuset := slices.Contains(enabled, "cpuset")
	control := "+cpu"
	if hasCpuset {
		control += " +cpuset"
	}
	// The kubelet's two layouts: the systemd driver's slices and scopes, and
	// the cgroupfs driver's plain directories.
	t.Run("systemd", func(t *testing.T) {
		privilegedV2(t, control, hasCpuset, "kubepods.slice", []v2Pod{
			{"/kubepods-pod1b4e2c9a_7d1f_4c55_9a0e_3f1d2b6c8e70.slice", "cri-containerd-" + cid + ".scope", "containerd://" + cid, corev1.PodQOSGuaranteed, uidG, "39"},
			{"/kubepods-burstable.slice/kubepods-burstable-pod7f3a9d12_0c4e_4b8a_b1d2_5e6f7a8b9c0d.slice", "crio-" + cid + ".scope", "cri-o://" + cid, corev1.PodQOSBurstable, uidB, "20"},
			{"/kubepods-besteffort.slice/kubepods-besteffort-podc0ffee00_1234_4abc_8def_0123456789ab.slice", "docker-" + cid + ".scope", "docker://" + cid, corev1.PodQOSBestEffort, uidE, "1"},
		})
	})
	t.Run("cgroupfs", func(t *testing.T) {
		privilegedV2(t, control, hasCpuset, "kubepods", []v2Pod{
			{"/pod" + uidG, cid, "containerd://" + cid, corev1.PodQOSGuaranteed, uidG, "39"},
			{"/burstable/pod" + uidB, "crio-" + cid, "cri-o://" + cid, corev1.PodQOSBurstable, uidB, "20"},
			{"/besteffort/pod" + uidE, cid, "docker://" + cid, corev1.PodQOSBestEffort, uidE, "1"},
		})
	})
}

// v2Pod is one pod of TestPrivilegedV2: its cgroup below the pod root, its
// container's cgroup name, and the weight the kubelet gave it.
type v2Pod struct {
	rel, crel, cid string
	qos            corev1.PodQOSClass
	uid, weight    string
}

func privilegedV2(t *testing.T, control string, hasCpuset bool, kubepods string, specs []v2Pod) {
	base := hostcg.RandomName(t)
	sb := hostcg.New(t)
	kp := base + "/" + kubepods
	qosDirs := map[bool][]string{
		true:  {kp + "/kubepods-burstable.slice", kp + "/kubepods-besteffort.slice"},
		false: {kp + "/burstable", kp + "/besteffort"},
	}[strings.HasSuffix(kubepods, ".slice")]
	for i := range specs {
		specs[i].rel = kp + specs[i].rel
	}
	// Inner cgroups delegate cpu (and cpuset) to their children; only the
	// container leaves hold processes (v2's no-internal-processes rule).
	inner := func(rel string) {
		dir := filepath.Join(hostRoot, rel)
		sb.Mkdir(dir, false)
		if err := os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte(control), 0); err != nil {
			t.Fatalf("failed to enable %q in %s: %v", control, dir, err)
		}
	}
	for _, rel := range append([]string{base, kp}, qosDirs...) {
		inner(rel)
	}
	pods := map[corev1.PodQOSClass]*realPod{}
	for i := range specs {
		s := &specs[i]
		inner(s.rel)
		s.crel = s.rel + "/" + s.crel
		sb.Mkdir(filepath.Join(hostRoot, s.crel), false)
		p := &realPod{ref: cgroupfs.PodRef{UID: s.uid, QOSClass: s.qos, ContainerIDs: []string{s.cid}}, rel: s.rel, crel: s.crel}
		p.proc = sb.Start(filepath.Join(hostRoot, s.crel))
		pods[s.qos] = p
		if err := os.WriteFile(filepath.Join(hostRoot, s.rel, "cpu.weight"), []byte(s.weight), 0); err != nil {
			t.Fatal(err)
		}
	}
	allDirs := sb.Created()

	l, err := cgroupfs.Detect(hostRoot, cgroupfs.DetectOptions{KubepodsDir: kp})
	if err != nil {
		t.Fatalf("Detect() error = %v", err)
	}
	for _, s := range specs {
		got, err := l.FindPod(pods[s.qos].ref)
		if err != nil {
			t.Fatalf("FindPod(%s) error = %v", s.qos, err)
		}
		if len(got.Containers) != 1 || got.Containers[0].RelPath != s.crel || got.Dirs[cgroupfs.CPU] != filepath.Join(hostRoot, s.rel) {
			t.Errorf("FindPod(%s) = %+v, want pod %s and container %s", s.qos, got, s.rel, s.crel)
			continue
		}
		if kernel := procCgroup(t, pods[s.qos].proc.Process.Pid, ""); kernel != "/"+s.crel {
			t.Errorf("/proc/<pid>/cgroup = %s, discovery says /%s", kernel, s.crel)
		}
	}

	before := hostcg.ConfigSnapshot(t, allDirs)
	stateDir := t.TempDir()
	w, err := writer.New(writer.Options{Root: hostRoot, StateDir: stateDir, Log: testr.New(t)})
	if err != nil {
		t.Fatal(err)
	}
	g, b, e := pods[corev1.PodQOSGuaranteed], pods[corev1.PodQOSBurstable], pods[corev1.PodQOSBestEffort]
	dir := func(rel string) string { return filepath.Join(hostRoot, rel) }
	mustApply(t, w,
		writer.Op{Path: dir(g.rel), File: "cpu.weight", Value: "400", Reason: "critical: raised weight"},
		writer.Op{Path: dir(b.rel), File: "cpu.weight", Value: "1", Reason: "low: minimal weight"},
	)
	if fileExists(filepath.Join(dir(e.rel), "cpu.idle")) {
		mustApply(t, w, writer.Op{Path: dir(e.rel), File: "cpu.idle", Value: "1", Reason: "background: idle"})
		if _, err := w.Set(dir(e.rel), "cpu.weight", "50", "test"); !errors.Is(err, writer.ErrRejected) {
			t.Errorf("Set(cpu.weight) on an idle group: error = %v, want ErrRejected", err)
		}
	} else {
		t.Log("no cpu.idle on this kernel; skipping the idle checks")
	}
	if cpus := cpuList(t, hostcg.ReadTrimmed(t, filepath.Join(dir(base), "cpuset.cpus.effective"))); hasCpuset && len(cpus) >= 2 {
		fence := strconv.Itoa(cpus[len(cpus)-1])
		mustApply(t, w,
			writer.Op{Path: dir(g.rel), File: "cpuset.cpus", Value: fence, Reason: "critical: fenced"},
			writer.Op{Path: dir(b.rel), File: "cpuset.cpus", Value: strconv.Itoa(cpus[0]), Reason: "outside the fence"},
		)
		if got := hostcg.ProcStatus(t, g.proc.Process.Pid, "Cpus_allowed_list"); got != fence {
			t.Errorf("fenced process may run on %s, want %s", got, fence)
		}
		if got := hostcg.ProcStatus(t, b.proc.Process.Pid, "Cpus_allowed_list"); slices.Contains(cpuList(t, got), cpus[len(cpus)-1]) {
			t.Errorf("unfenced process may run on %s, which includes the fenced CPU %s", got, fence)
		}
	}
	// Drift: the kubelet rewrites a pod's weight; Reassert puts ours back.
	if err := os.WriteFile(filepath.Join(dir(b.rel), "cpu.weight"), []byte("100"), 0); err != nil {
		t.Fatal(err)
	}
	if res, err := w.Reassert(); err != nil || res.Drifted != 1 {
		t.Errorf("Reassert() = %+v, %v; want 1 drifted", res, err)
	}
	if got := hostcg.ReadTrimmed(t, filepath.Join(dir(b.rel), "cpu.weight")); got != "1" {
		t.Errorf("cpu.weight after Reassert() = %s, want 1", got)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w2, err := writer.New(writer.Options{Root: hostRoot, StateDir: stateDir, Log: testr.New(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	res, err := w2.RestoreAll()
	if err != nil {
		t.Fatalf("RestoreAll() error = %v", err)
	}
	t.Logf("restore: %+v; writer stats %+v", res, w2.Stats())
	if diff := cmp.Diff(before, hostcg.ConfigSnapshot(t, allDirs)); diff != "" {
		t.Errorf("cgroup configuration after RestoreAll() differs (-before +after):\n%s", diff)
	}
	all := hostcg.ReadTrimmed(t, filepath.Join(dir(base), "cpuset.cpus.effective"))
	for _, p := range []*realPod{g, b, e} {
		if got := hostcg.ProcStatus(t, p.proc.Process.Pid, "Cpus_allowed_list"); got != all {
			t.Errorf("process of pod %s after restore may run on %s, want %s", p.ref.UID, got, all)
		}
	}
}
