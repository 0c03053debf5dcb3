package cgroup

import (
	"io"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	corev1 "k8s.io/api/core/v1"

	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/nodeagent/cgroupfs"
	"github.com/infera-io/temper/nodeagent/cgroupfs/cgrouptest/hostcg"
	"github.com/infera-io/temper/nodeagent/cgroupfs/writer"
)

// TestPrivilegedThreadLevers enforces the thread levers on real processes
// in kubelet-shaped cgroups of this machine's v1 hierarchy: a critical
// pod's threads read back the custom EEVDF slice with sched_getattr
// (including a process its shell forks after the apply, found by the
// periodic re-list), a background pod's threads run SCHED_IDLE, a thread
// set to SCHED_BATCH with nice 5 by its owner keeps them across the
// round trip, and StandDown gives every thread back its default slice and
// policy. It skips where the kernel takes no custom slice (before 6.12).
func TestPrivilegedThreadLevers(t *testing.T) {
	hostcg.RequireRoot(t)
	const root = "/sys/fs/cgroup"
	if v, err := cgroupfs.DetectVersion(root); err != nil || v != cgroupfs.V1 {
		t.Skipf("%s is not cgroup v1 here (%v, %v)", root, v, err)
	}
	base, err := probeSlice()
	if err != nil {
		t.Skipf("no custom EEVDF slice on this kernel: %v", err)
	}
	host, err := cgroupfs.Detect(root, cgroupfs.DetectOptions{Driver: cgroupfs.DriverCgroupfs})
	if err != nil {
		t.Fatal(err)
	}
	cpuH := host.Hierarchies[cgroupfs.CPU]
	name := hostcg.RandomName(t)
	kp := name + "/kubepods"
	sb := hostcg.New(t)
	for _, rel := range []string{name, kp, kp + "/burstable", kp + "/besteffort"} {
		sb.Mkdir(filepath.Join(cpuH, rel), false)
	}
	l, err := cgroupfs.Detect(root, cgroupfs.DetectOptions{KubepodsDir: kp})
	if err != nil {
		t.Fatal(err)
	}
	// Each shell forks only after a line on stdin (sent once it is in its
	// cgroup), so every process it forks is born inside; the shell's
	// process group is killed at the end, children included.
	mkPod := func(uid string, qos corev1.PodQOSClass, cid, script string) (*cgroupfs.Pod, io.Writer) {
		rel, err := l.PodRelPath(uid, qos)
		if err != nil {
			t.Fatal(err)
		}
		sb.Mkdir(filepath.Join(cpuH, rel), false)
		sb.Mkdir(filepath.Join(cpuH, rel, cid), false)
		cmd := exec.Command("sh", "-c", script)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		in, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		c := sb.StartCommand(cmd, filepath.Join(cpuH, rel, cid))
		t.Cleanup(func() { _ = syscall.Kill(-c.Process.Pid, syscall.SIGKILL) })
		found, err := l.FindPod(cgroupfs.PodRef{UID: uid, QOSClass: qos, ContainerIDs: []string{"containerd://" + cid}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(in, "go\n"); err != nil {
			t.Fatal(err)
		}
		return found, in
	}
	waitThreads := func(p *cgroupfs.Pod, n int) []int {
		t.Helper()
		var tids []int
		for range 250 {
			if tids = threadsOf(t, p); len(tids) == n {
				return tids
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("threads of %s: %v, want %d", p.UID, tids, n)
		return nil
	}
	// The critical shell forks a second sleep on a second line: a process
	// born after the apply.
	crit, critIn := mkPod("00000000-0000-4000-8000-0000000000a1", corev1.PodQOSGuaranteed, "c1",
		"read x; sleep 600 & read y; sleep 600 & wait")
	bg, _ := mkPod("00000000-0000-4000-8000-0000000000a2", corev1.PodQOSBurstable, "c2", "read x; sleep 600 & sleep 600 & wait")
	// A thread its owner tuned: SCHED_BATCH, nice 5.
	tuned, _ := mkPod("00000000-0000-4000-8000-0000000000a3", corev1.PodQOSBestEffort, "c3", "read x; exec sleep 600")
	waitThreads(crit, 2)
	waitThreads(bg, 3)
	tunedTIDs := waitThreads(tuned, 1)
	for _, tid := range tunedTIDs {
		if err := setSched(tid, threadSched{Policy: schedBatch, Nice: 5}); err != nil {
			t.Fatal(err)
		}
	}

	w, err := writer.New(writer.Options{Root: root, StateDir: t.TempDir(), Log: testr.New(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	b, err := New(Options{Layout: l, Writer: w, CPUManagerStateFile: filepath.Join(t.TempDir(), "absent"), Log: testr.New(t),
		Levers: Levers{CriticalSlice: 300 * time.Microsecond, BackgroundSchedIdle: SwitchOn}})
	if err != nil {
		t.Fatal(err)
	}
	plan := Plan{Pods: []Pod{
		{Name: "ns/crit", Tier: wellknown.TierCritical, Cgroup: crit},
		{Name: "ns/bg", Tier: wellknown.TierBackground, Cgroup: bg},
		{Name: "ns/tuned", Tier: wellknown.TierBackground, Cgroup: tuned},
	}}
	rep, err := b.Apply(plan)
	if err != nil {
		t.Fatalf("Apply() error = %v", err)
	}
	critTIDs, bgTIDs := threadsOf(t, crit), threadsOf(t, bg)
	if len(critTIDs) != 2 || len(bgTIDs) != 3 || len(tunedTIDs) != 1 {
		t.Fatalf("threads: critical %v, background %v, tuned %v; want 2, 3, 1", critTIDs, bgTIDs, tunedTIDs)
	}
	if rep.SlicedThreads != 2 || rep.IdleThreads != 4 || rep.NoSlice != "" {
		t.Errorf("Apply() report sliced %d, idle %d, no slice %q; want 2, 4, \"\"", rep.SlicedThreads, rep.IdleThreads, rep.NoSlice)
	}
	expect := func(when string, tids []int, want threadSched) {
		t.Helper()
		for _, tid := range tids {
			got, err := getSched(tid)
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("%s: thread %d has %+v, want %+v", when, tid, got, want)
			}
		}
	}
	// The children inherit the test's nice (a `nice go test`).
	self, err := getSched(0)
	if err != nil {
		t.Fatal(err)
	}
	nice := self.Nice
	expect("applied", critTIDs, threadSched{Policy: schedNormal, Nice: nice, SliceNS: 300_000})
	expect("applied", bgTIDs, threadSched{Policy: schedIdle, Nice: nice, SliceNS: base})
	expect("applied", tunedTIDs, threadSched{Policy: schedIdle, Nice: 5, SliceNS: base})

	// A process forked after the apply: sliced by inheritance from its
	// shell; the periodic re-list (Reconcile) takes it into the record.
	if _, err := io.WriteString(critIn, "go\n"); err != nil {
		t.Fatal(err)
	}
	late := waitThreads(crit, 3)
	expect("forked after the apply", late, threadSched{Policy: schedNormal, Nice: nice, SliceNS: 300_000})
	if _, err := b.Reconcile(); err != nil {
		t.Fatalf("Reconcile() error = %v", err)
	}
	if n := len(b.threads.orig); n != 7 {
		t.Errorf("after Reconcile the backend holds %d threads, want 7", n)
	}

	if _, err := b.StandDown(); err != nil {
		t.Fatalf("StandDown() error = %v", err)
	}
	expect("stood down", late, threadSched{Policy: schedNormal, Nice: nice, SliceNS: base})
	expect("stood down", bgTIDs, threadSched{Policy: schedNormal, Nice: nice, SliceNS: base})
	expect("stood down", tunedTIDs, threadSched{Policy: schedBatch, Nice: 5, SliceNS: base})
	if n := len(b.threads.orig); n != 0 {
		t.Errorf("after StandDown the backend still holds %d threads", n)
	}

	// `infera-agent --restore` after a crash: no record, the threads under
	// kubepods holding exactly the lever's slice get the default back.
	if _, err := b.Apply(plan); err != nil {
		t.Fatal(err)
	}
	n, err := ResetSlices(filepath.Join(cpuH, kp), 300_000)
	if err != nil || n != 3 {
		t.Errorf("ResetSlices() = %d, %v; want the 3 critical threads", n, err)
	}
	expect("reset by --restore", late, threadSched{Policy: schedNormal, Nice: nice, SliceNS: base})
	if _, err := b.StandDown(); err != nil {
		t.Fatal(err)
	}
}

func threadsOf(t *testing.T, p *cgroupfs.Pod) []int {
	t.Helper()
	var tids []int
	for _, c := range p.Containers {
		var err error
		if tids, err = listThreads(c.Dirs[cgroupfs.CPU], tids); err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(tids)
	return tids
}
