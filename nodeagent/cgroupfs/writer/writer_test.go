package writer

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/go-logr/logr/testr"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"

	"github.com/infera-io/temper/nodeagent/cgroupfs"
	"github.com/infera-io/temper/nodeagent/cgroupfs/cgrouptest"
)

const (
	uidG = "1b4e2c9a-7d1f-4c55-9a0e-3f1d2b6c8e70"
	uidB = "7f3a9d12-0c4e-4b8a-b1d2-5e6f7a8b9c0d"
	uidE = "c0ffee00-1234-4abc-8def-0123456789ab"
)

// env is a faked node: a kubelet-shaped tree with one pod per QoS class, a
// kernel model over it, a boot ID and a state dir.
type env struct {
	t        *testing.T
	tree     *cgrouptest.Tree
	kfs      *kernelFS
	stateDir string
	bootFile string
	pods     map[corev1.PodQOSClass]cgrouptest.Pod
}

func newEnv(t *testing.T, v cgroupfs.Version, o cgrouptest.Options) *env {
	t.Helper()
	var tr *cgrouptest.Tree
	if v == cgroupfs.V1 {
		tr = cgrouptest.NewV1(t, o)
	} else {
		tr = cgrouptest.NewV2(t, o)
	}
	tr.Kubelet(t, cgroupfs.DriverSystemd)
	e := &env{t: t, tree: tr, kfs: newKernelFS(v == cgroupfs.V2), stateDir: filepath.Join(t.TempDir(), "state"),
		bootFile: filepath.Join(t.TempDir(), "boot_id"), pods: map[corev1.PodQOSClass]cgrouptest.Pod{}}
	e.boot("4b0c9d2e-0000-4000-8000-000000000001")
	for q, uid := range map[corev1.PodQOSClass]string{corev1.PodQOSGuaranteed: uidG, corev1.PodQOSBurstable: uidB, corev1.PodQOSBestEffort: uidE} {
		e.pods[q] = tr.AddPod(t, cgroupfs.DriverSystemd, uid, q, cgroupfs.RuntimeContainerd, strings.Repeat(uid[:1], 64))
	}
	return e
}

// boot changes the boot ID, as a reboot would.
func (e *env) boot(id string) {
	e.t.Helper()
	if err := os.WriteFile(e.bootFile, []byte(id+"\n"), 0o444); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) writer(log logr.Logger) *Writer {
	e.t.Helper()
	w, err := New(Options{Root: e.tree.Root, StateDir: e.stateDir, BootIDFile: e.bootFile, Log: log})
	if err != nil {
		e.t.Fatalf("New() error = %v", err)
	}
	w.fs = e.kfs
	e.t.Cleanup(func() { _ = w.Close() })
	return w
}

// pod returns the absolute directory of a pod (or, with container, of its
// container) in controller c's hierarchy.
func (e *env) pod(c cgroupfs.Controller, q corev1.PodQOSClass, container bool) string {
	p := e.pods[q]
	rel := p.RelPath
	if container {
		rel = p.ContainerRelPaths[0]
	}
	return filepath.Join(e.tree.Hierarchies[c], rel)
}

func readTrim(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func mustSet(t *testing.T, w *Writer, path, file, value, reason string) Change {
	t.Helper()
	ch, err := w.Set(path, file, value, reason)
	if err != nil {
		t.Fatalf("Set(%s, %s, %s) error = %v", path, file, value, err)
	}
	return ch
}

func TestSetWritesOnlyWhenDifferentAndReadsBack(t *testing.T) {
	e := newEnv(t, cgroupfs.V1, cgrouptest.Options{})
	w := e.writer(testr.New(t))
	pod := e.pod(cgroupfs.CPU, corev1.PodQOSBurstable, false)
	cpuset := e.pod(cgroupfs.CPUSet, corev1.PodQOSBurstable, true)

	steps := []struct {
		file, value string
		want        Change
	}{
		// Already 512 (the kubelet's value): nothing to write.
		{"cpu.shares", "512", Change{Path: pod, File: "cpu.shares", Old: "512", New: "512"}},
		{"cpu.shares", "256", Change{Path: pod, File: "cpu.shares", Old: "512", New: "256", Wrote: true}},
		// The kernel clamps 1 to 2: what is read back counts, not what was asked.
		{"cpu.shares", "1", Change{Path: pod, File: "cpu.shares", Old: "256", New: "2", Wrote: true}},
		// Asking again for 1 finds 2, which is what 1 gave: no write, no drift.
		{"cpu.shares", "1", Change{Path: pod, File: "cpu.shares", Old: "2", New: "2"}},
		// The kernel normalises CPU lists the same way.
		{"cpuset.cpus", "2,3", Change{Path: cpuset, File: "cpuset.cpus", Old: "0-3", New: "2-3", Wrote: true}},
		{"cpuset.cpus", "2,3", Change{Path: cpuset, File: "cpuset.cpus", Old: "2-3", New: "2-3"}},
	}
	path := func(file string) string {
		if strings.HasPrefix(file, "cpuset") {
			return cpuset
		}
		return pod
	}
	for i, s := range steps {
		got := mustSet(t, w, path(s.file), s.file, s.value, "test step")
		if diff := cmp.Diff(s.want, got); diff != "" {
			t.Errorf("step %d: Set(%s=%s) mismatch (-want +got):\n%s", i, s.file, s.value, diff)
		}
	}
	if got := e.kfs.writes; got != 3 {
		t.Errorf("file writes = %d, want 3", got)
	}
	wantStats := Stats{Writes: 3, Unchanged: 3}
	if diff := cmp.Diff(wantStats, w.Stats()); diff != "" {
		t.Errorf("Stats() mismatch (-want +got):\n%s", diff)
	}
	wantAudit := []Record{
		{Kind: KindSet, Path: pod, File: "cpu.shares", Old: "512", New: "256", Reason: "test step"},
		{Kind: KindSet, Path: pod, File: "cpu.shares", Old: "256", New: "2", Reason: "test step"},
		{Kind: KindSet, Path: cpuset, File: "cpuset.cpus", Old: "0-3", New: "2-3", Reason: "test step"},
	}
	if diff := cmp.Diff(wantAudit, w.Audit(), cmpopts.IgnoreFields(Record{}, "Time")); diff != "" {
		t.Errorf("Audit() mismatch (-want +got):\n%s", diff)
	}
	// The originals are what was found before the first write, byte for byte.
	wantOrig := []Original{
		{Path: pod, File: "cpu.shares", Value: "512\n"},
		{Path: cpuset, File: "cpuset.cpus", Value: "0-3\n"},
	}
	if diff := cmp.Diff(wantOrig, w.Originals(), cmpopts.IgnoreFields(Original{}, "Recorded")); diff != "" {
		t.Errorf("Originals() mismatch (-want +got):\n%s", diff)
	}
}

// TestRestoreAllByteForByte enforces a mix of tiers on both cgroup
// versions, lets one pod vanish, restores, and compares every file of the
// tree with a snapshot taken before.
func TestRestoreAllByteForByte(t *testing.T) {
	for _, v := range []cgroupfs.Version{cgroupfs.V1, cgroupfs.V2} {
		t.Run(v.String(), func(t *testing.T) {
			e := newEnv(t, v, cgrouptest.Options{})
			// A second BestEffort pod that will vanish before the restore.
			gone := e.tree.AddPod(t, cgroupfs.DriverSystemd, "dead0000-0000-4000-8000-000000000000", corev1.PodQOSBestEffort, cgroupfs.RuntimeCRIO, strings.Repeat("d", 64))
			goneDir := filepath.Join(e.tree.Hierarchies[cgroupfs.CPU], gone.RelPath)
			before := cgrouptest.Snapshot(t, e.tree.Root)
			w := e.writer(testr.New(t))

			weight, high := "cpu.shares", "4096"
			if v == cgroupfs.V2 {
				weight, high = "cpu.weight", "400"
			}
			gPod, gCtr := e.pod(cgroupfs.CPU, corev1.PodQOSGuaranteed, false), e.pod(cgroupfs.CPU, corev1.PodQOSGuaranteed, true)
			sPod, sCtr := e.pod(cgroupfs.CPUSet, corev1.PodQOSGuaranteed, false), e.pod(cgroupfs.CPUSet, corev1.PodQOSGuaranteed, true)
			bPod := e.pod(cgroupfs.CPU, corev1.PodQOSBurstable, false)
			ePod, eCtr := e.pod(cgroupfs.CPU, corev1.PodQOSBestEffort, false), e.pod(cgroupfs.CPU, corev1.PodQOSBestEffort, true)
			oPod, oCtr := e.pod(cgroupfs.CPUSet, corev1.PodQOSBurstable, false), e.pod(cgroupfs.CPUSet, corev1.PodQOSBurstable, true)
			ops := []Op{
				{gPod, weight, high, "critical: raised weight", false},
				{gCtr, weight, high, "critical: raised weight", false},
				// Fence: narrow the container before the pod (v1 refuses the
				// other order with EBUSY).
				{sCtr, "cpuset.cpus", "2-3", "critical: fenced cores", false},
				{sPod, "cpuset.cpus", "2-3", "critical: fenced cores", false},
				{oCtr, "cpuset.cpus", "0-1", "normal: outside the fence", false},
				{oPod, "cpuset.cpus", "0-1", "normal: outside the fence", false},
				{bPod, "cpu.idle", "1", "background: idle", false},
				{ePod, "cpu.idle", "1", "background: idle", false},
				{eCtr, "cpu.idle", "1", "background: idle", false},
				{goneDir, "cpu.idle", "1", "background: idle", false},
			}
			for _, r := range w.Apply(ops...) {
				if r.Err != nil {
					t.Fatalf("Apply(%s %s=%s) error = %v", r.Op.Path, r.Op.File, r.Op.Value, r.Err)
				}
				if !r.Change.Wrote {
					t.Errorf("Apply(%s %s=%s) did not write", r.Op.Path, r.Op.File, r.Op.Value)
				}
			}
			if got := cgrouptest.Snapshot(t, e.tree.Root); cmp.Equal(before, got) {
				t.Fatal("the tree did not change; the test proves nothing")
			}

			// The vanished pod: the runtime and the kubelet remove its cgroups.
			for _, h := range e.tree.Hierarchies {
				if err := os.RemoveAll(filepath.Join(h, gone.RelPath)); err != nil {
					t.Fatal(err)
				}
			}
			res, err := w.RestoreAll()
			if err != nil {
				t.Fatalf("RestoreAll() error = %v", err)
			}
			// cpu.idle was set on 4 cgroups, each also recording its weight
			// (and on v2 cpu.weight.nice); one of them is gone.
			goneFiles := 2
			if v == cgroupfs.V2 {
				goneFiles = 3
			}
			if res.Gone != goneFiles {
				t.Errorf("RestoreAll() Gone = %d, want %d", res.Gone, goneFiles)
			}
			if len(res.Failed) != 0 {
				t.Errorf("RestoreAll() Failed = %v", res.Failed)
			}
			// Written in an order the kernel accepts the first time: cpu.idle
			// before the weight, cpusets parents first when widening.
			if s := w.Stats(); s.Errors != 0 {
				t.Errorf("Stats().Errors = %d, want 0", s.Errors)
			}

			for k := range before {
				if strings.HasPrefix(k, strings.TrimPrefix(filepath.Join(e.tree.Hierarchies[cgroupfs.CPU], gone.RelPath), e.tree.Root+"/")) ||
					strings.HasPrefix(k, strings.TrimPrefix(filepath.Join(e.tree.Hierarchies[cgroupfs.CPUSet], gone.RelPath), e.tree.Root+"/")) {
					delete(before, k)
				}
			}
			if diff := cmp.Diff(before, cgrouptest.Snapshot(t, e.tree.Root)); diff != "" {
				t.Errorf("tree after RestoreAll() differs from before (-before +after):\n%s", diff)
			}
			if len(w.Originals()) != 0 || len(w.Desired()) != 0 {
				t.Errorf("after RestoreAll(): %d originals, %d desired; want none", len(w.Originals()), len(w.Desired()))
			}
			if _, err := os.Stat(filepath.Join(e.stateDir, stateFileName)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("state file after a full restore: %v, want removed", err)
			}
		})
	}
}

// A weight changed after cpu.idle (EINVAL while idle is set) and a cpuset
// widened (the parent first) restore in the order the kernel accepts.
func TestRestoreRetriesInTheOrderTheKernelAccepts(t *testing.T) {
	e := newEnv(t, cgroupfs.V1, cgrouptest.Options{})
	w := e.writer(testr.New(t))
	pod, ctr := e.pod(cgroupfs.CPUSet, corev1.PodQOSBurstable, false), e.pod(cgroupfs.CPUSet, corev1.PodQOSBurstable, true)
	// Start from a narrowed pod, as an operator might have left it, so
	// that restoring means narrowing again: children first.
	e.tree.Set(t, cgroupfs.CPUSet, e.pods[corev1.PodQOSBurstable].ContainerRelPaths[0], "cpuset.cpus", "1\n")
	e.tree.Set(t, cgroupfs.CPUSet, e.pods[corev1.PodQOSBurstable].RelPath, "cpuset.cpus", "1\n")
	before := cgrouptest.Snapshot(t, e.tree.Root)
	for _, r := range w.Apply(
		Op{pod, "cpuset.cpus", "0-3", "widen", false},
		Op{ctr, "cpuset.cpus", "0-3", "widen", false},
	) {
		if r.Err != nil {
			t.Fatalf("Apply() error = %v", r.Err)
		}
	}
	res, err := w.RestoreAll()
	if err != nil {
		t.Fatalf("RestoreAll() error = %v", err)
	}
	if res.Restored != 2 {
		t.Errorf("RestoreAll() Restored = %d, want 2", res.Restored)
	}
	if diff := cmp.Diff(before, cgrouptest.Snapshot(t, e.tree.Root)); diff != "" {
		t.Errorf("tree after RestoreAll() differs (-before +after):\n%s", diff)
	}
}

// Clearing cpu.idle resets the weight to the default rather than to what
// it was, so the weight is recorded with cpu.idle and restored after it.
func TestIdleRecordsAndRestoresTheWeight(t *testing.T) {
	for _, v := range []cgroupfs.Version{cgroupfs.V1, cgroupfs.V2} {
		t.Run(v.String(), func(t *testing.T) {
			e := newEnv(t, v, cgrouptest.Options{})
			w := e.writer(testr.New(t))
			pod := e.pod(cgroupfs.CPU, corev1.PodQOSBurstable, false)
			weight, want, idleW := "cpu.shares", "512", "3"
			if v == cgroupfs.V2 {
				weight, want, idleW = "cpu.weight", "20", "1"
			}
			mustSet(t, w, pod, "cpu.idle", "1", "background")
			if got := readTrim(t, filepath.Join(pod, weight)); got != idleW {
				t.Fatalf("%s while idle = %s, want %s (kernel model)", weight, got, idleW)
			}
			// While idle, the kernel refuses weights.
			if _, err := w.Set(pod, weight, "100", "test"); !errors.Is(err, ErrRejected) || !errors.Is(err, syscall.EINVAL) {
				t.Errorf("Set(%s) while idle: error = %v, want ErrRejected with EINVAL", weight, err)
			}
			if _, err := w.RestoreAll(); err != nil {
				t.Fatalf("RestoreAll() error = %v", err)
			}
			if got := readTrim(t, filepath.Join(pod, weight)); got != want {
				t.Errorf("%s after RestoreAll() = %s, want the original %s", weight, got, want)
			}
		})
	}
}

func TestDriftIsReassertedAndCounted(t *testing.T) {
	e := newEnv(t, cgroupfs.V1, cgrouptest.Options{})
	w := e.writer(testr.New(t))
	pod := e.pod(cgroupfs.CPU, corev1.PodQOSBurstable, false)
	rel := e.pods[corev1.PodQOSBurstable].RelPath
	mustSet(t, w, pod, "cpu.shares", "1", "low: reduced weight") // reads back 2

	res, err := w.Reassert()
	if err != nil {
		t.Fatalf("Reassert() error = %v", err)
	}
	if diff := cmp.Diff(ReassertResult{Checked: 1}, res); diff != "" {
		t.Errorf("Reassert() without drift mismatch (-want +got):\n%s", diff)
	}

	// The kubelet rewrites the pod's shares.
	e.tree.Set(t, cgroupfs.CPU, rel, "cpu.shares", "512\n")
	res, err = w.Reassert()
	if err != nil {
		t.Fatalf("Reassert() error = %v", err)
	}
	if diff := cmp.Diff(ReassertResult{Checked: 1, Drifted: 1}, res); diff != "" {
		t.Errorf("Reassert() after a kubelet rewrite mismatch (-want +got):\n%s", diff)
	}
	if got := readTrim(t, filepath.Join(pod, "cpu.shares")); got != "2" {
		t.Errorf("cpu.shares after Reassert() = %s, want 2", got)
	}
	audit := w.Audit()
	last := audit[len(audit)-1]
	if last.Kind != KindDrift || last.Old != "512" || last.New != "2" || last.Reason != "low: reduced weight" {
		t.Errorf("last audit record = %+v, want drift 512 → 2 with the original reason", last)
	}

	// A Set of the same value also notices drift.
	e.tree.Set(t, cgroupfs.CPU, rel, "cpu.shares", "1024\n")
	if ch := mustSet(t, w, pod, "cpu.shares", "1", "low: reduced weight"); !ch.Drift || !ch.Wrote {
		t.Errorf("Set() after a rewrite = %+v, want a drift write", ch)
	}
	// A new value is not drift.
	if ch := mustSet(t, w, pod, "cpu.shares", "64", "low: reduced weight"); ch.Drift {
		t.Errorf("Set() of a new value = %+v, want no drift", ch)
	}
	if got := w.Stats().Drift; got != 2 {
		t.Errorf("Stats().Drift = %d, want 2", got)
	}
	// The original is still the kubelet's value found before the first write.
	if o := w.Originals(); len(o) != 1 || o[0].Value != "512\n" {
		t.Errorf("Originals() = %+v, want cpu.shares 512", o)
	}
}

func TestGoneCgroup(t *testing.T) {
	tests := []struct {
		name   string
		remove func(e *env, dir string)
	}{
		{"removed before the write", func(e *env, dir string) {
			if err := os.RemoveAll(dir); err != nil {
				e.t.Fatal(err)
			}
		}},
		{"removed between open and write (ENODEV)", func(e *env, dir string) { e.kfs.removeBeforeWrite[dir] = true }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, cgroupfs.V1, cgrouptest.Options{})
			w := e.writer(testr.New(t))
			ctr := e.pod(cgroupfs.CPU, corev1.PodQOSBestEffort, true)
			other := e.pod(cgroupfs.CPU, corev1.PodQOSBurstable, false)
			mustSet(t, w, ctr, "cpu.shares", "64", "low")
			mustSet(t, w, other, "cpu.shares", "64", "low")

			tt.remove(e, ctr)
			_, err := w.Set(ctr, "cpu.shares", "32", "low")
			if !errors.Is(err, ErrGone) {
				t.Fatalf("Set() on a vanished cgroup: error = %v, want ErrGone", err)
			}
			// Forgotten: no desired value, no original, also on disk.
			for _, d := range w.Desired() {
				if d.Path == ctr {
					t.Errorf("Desired() still holds %s", ctr)
				}
			}
			st := readState(t, e.stateDir)
			for _, o := range st.Originals {
				if o.Path == ctr {
					t.Errorf("state file still holds %s", ctr)
				}
			}
			if len(st.Originals) != 1 {
				t.Errorf("state file holds %d originals, want the other pod's 1", len(st.Originals))
			}
			if s := w.Stats(); s.Gone != 1 || s.Errors != 0 {
				t.Errorf("Stats() = %+v, want Gone 1, Errors 0", s)
			}
			// Reassert and RestoreAll carry on with the others, no error storm.
			if _, err := w.Reassert(); err != nil {
				t.Errorf("Reassert() error = %v", err)
			}
			res, err := w.RestoreAll()
			if err != nil || res.Restored != 1 {
				t.Errorf("RestoreAll() = %+v, %v; want 1 restored, no error", res, err)
			}
		})
	}
}

// Many pods vanish at once: one aggregated result, no error.
func TestRestoreAllWithManyVanishedPods(t *testing.T) {
	e := newEnv(t, cgroupfs.V2, cgrouptest.Options{})
	w := e.writer(testr.New(t))
	var dirs []string
	for i := range 20 {
		uid := strings.Replace("00000000-0000-4000-8000-0000000000xx", "xx", string(rune('a'+i/10))+string(rune('0'+i%10)), 1)
		p := e.tree.AddPod(t, cgroupfs.DriverSystemd, uid, corev1.PodQOSBestEffort, cgroupfs.RuntimeDocker)
		dir := filepath.Join(e.tree.Root, p.RelPath)
		mustSet(t, w, dir, "cpu.max", "50000 100000", "background: quota")
		dirs = append(dirs, dir)
	}
	for _, d := range dirs {
		if err := os.RemoveAll(d); err != nil {
			t.Fatal(err)
		}
	}
	res, err := w.RestoreAll()
	if err != nil {
		t.Fatalf("RestoreAll() error = %v", err)
	}
	if diff := cmp.Diff(RestoreResult{Gone: 20}, res); diff != "" {
		t.Errorf("RestoreAll() mismatch (-want +got):\n%s", diff)
	}
}

func TestNotWritable(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.EROFS, syscall.EACCES, syscall.EPERM} {
		t.Run(errno.Error(), func(t *testing.T) {
			e := newEnv(t, cgroupfs.V1, cgrouptest.Options{})
			w := e.writer(testr.New(t))
			pod := e.pod(cgroupfs.CPU, corev1.PodQOSBurstable, false)
			e.kfs.failWrite(filepath.Join(pod, "cpu.shares"), errno)
			_, err := w.Set(pod, "cpu.shares", "64", "low")
			if !errors.Is(err, ErrNotWritable) || !errors.Is(err, errno) {
				t.Fatalf("Set() error = %v, want ErrNotWritable wrapping %v", err, errno)
			}
			if !strings.Contains(err.Error(), "read-write") {
				t.Errorf("Set() error %q does not say what to do", err)
			}
			if got := readTrim(t, filepath.Join(pod, "cpu.shares")); got != "512" {
				t.Errorf("cpu.shares = %s, want untouched 512", got)
			}
			if s := w.Stats(); s.Errors != 1 || s.Writes != 0 {
				t.Errorf("Stats() = %+v, want 1 error, no write", s)
			}
			if a := w.Audit(); len(a) != 1 || a[0].Err == "" {
				t.Errorf("Audit() = %+v, want one failed record", a)
			}
			if len(w.Desired()) != 0 || len(w.Originals()) != 0 {
				t.Errorf("Desired() = %+v, Originals() = %+v; want none after a failed write", w.Desired(), w.Originals())
			}
			if _, err := os.Stat(filepath.Join(e.stateDir, stateFileName)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("state file after a failed first write: %v, want none", err)
			}
		})
	}
}

// A v1 cpuset that is not a subset of its parent's is EACCES from the
// kernel, which is a rejected value, not a permission problem.
func TestCpusetEACCESIsRejectedNotReadOnly(t *testing.T) {
	e := newEnv(t, cgroupfs.V1, cgrouptest.Options{})
	w := e.writer(testr.New(t))
	pod, ctr := e.pod(cgroupfs.CPUSet, corev1.PodQOSBurstable, false), e.pod(cgroupfs.CPUSet, corev1.PodQOSBurstable, true)
	mustSet(t, w, ctr, "cpuset.cpus", "1", "fence")
	mustSet(t, w, pod, "cpuset.cpus", "1", "fence")
	_, err := w.Set(ctr, "cpuset.cpus", "0-1", "widen the child first")
	if !errors.Is(err, ErrRejected) || errors.Is(err, ErrNotWritable) {
		t.Errorf("Set() error = %v, want ErrRejected and not ErrNotWritable", err)
	}
}

func TestMissingFile(t *testing.T) {
	e := newEnv(t, cgroupfs.V1, cgrouptest.Options{Omit: []string{"cpu.idle"}})
	var logged []string
	log := funcr.New(func(prefix, args string) { logged = append(logged, args) }, funcr.Options{})
	w := e.writer(log)
	for _, q := range []corev1.PodQOSClass{corev1.PodQOSBurstable, corev1.PodQOSBestEffort} {
		_, err := w.Set(e.pod(cgroupfs.CPU, q, false), "cpu.idle", "1", "background")
		if !errors.Is(err, ErrMissingFile) {
			t.Errorf("Set(cpu.idle) on a kernel without it: error = %v, want ErrMissingFile", err)
		}
	}
	if s := w.Stats(); s.Missing != 2 || s.Errors != 0 {
		t.Errorf("Stats() = %+v, want Missing 2, Errors 0", s)
	}
	n := 0
	for _, l := range logged {
		if strings.Contains(l, "Cgroup file missing") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("logged the missing file %d times, want once: %q", n, logged)
	}
	if len(w.Originals()) != 0 {
		t.Errorf("Originals() = %+v, want none", w.Originals())
	}
}

// A restarted agent (same boot) adopts the originals and can still restore
// the tree as it was before the first agent touched it.
func TestOriginalsSurviveARestart(t *testing.T) {
	e := newEnv(t, cgroupfs.V2, cgrouptest.Options{})
	before := cgrouptest.Snapshot(t, e.tree.Root)
	w1 := e.writer(testr.New(t))
	pod := e.pod(cgroupfs.CPU, corev1.PodQOSBestEffort, false)
	ctr := e.pod(cgroupfs.CPU, corev1.PodQOSBestEffort, true)
	mustSet(t, w1, pod, "cpu.idle", "1", "background")
	mustSet(t, w1, ctr, "cpu.max", "10000 100000", "background")
	if err := w1.Close(); err != nil { // the agent dies; nothing is restored
		t.Fatal(err)
	}

	w2 := e.writer(testr.New(t))
	rep := w2.StateReport()
	// cpu.idle with cpu.weight and cpu.weight.nice, and cpu.max.
	if rep.Adopted != 4 || rep.SetAside != "" {
		t.Fatalf("StateReport() = %+v, want 4 adopted, nothing set aside", rep)
	}
	// The second agent changes the same file again: the original stays the
	// one found before the first agent's write.
	mustSet(t, w2, ctr, "cpu.max", "20000 100000", "background")
	if _, err := w2.RestoreAll(); err != nil {
		t.Fatalf("RestoreAll() error = %v", err)
	}
	if diff := cmp.Diff(before, cgrouptest.Snapshot(t, e.tree.Root)); diff != "" {
		t.Errorf("tree after restart + RestoreAll() differs (-before +after):\n%s", diff)
	}
}

func TestUntrustedStateFileIsSetAside(t *testing.T) {
	tests := []struct {
		name       string
		content    func(e *env, valid []byte) []byte
		wantReason string
		wantTag    string
		// wantUnknown: the file may be of this boot, so found values are
		// not originals (issue #18, defect 3).
		wantUnknown bool
	}{
		{"another boot", func(e *env, valid []byte) []byte { e.boot("4b0c9d2e-0000-4000-8000-000000000002"); return valid },
			"written in boot", "other-boot", false},
		{"not JSON", func(*env, []byte) []byte { return []byte(`{"version":1,"bootID":`) }, "corrupt", "corrupt", true},
		{"unknown version", func(_ *env, valid []byte) []byte {
			s := strings.Replace(string(valid), `"version": 2`, `"version": 7`, 1)
			return []byte(strings.Replace(s, `"minReaderVersion": 2`, `"minReaderVersion": 7`, 1))
		}, "unknown version 7", "corrupt", true},
		{"relative path", func(_ *env, valid []byte) []byte {
			var st stateFile
			if err := json.Unmarshal(valid, &st); err != nil {
				panic(err)
			}
			st.Originals[0].Path = "kubepods/burstable"
			b, _ := json.Marshal(st)
			return b
		}, "must be absolute", "corrupt", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, cgroupfs.V1, cgrouptest.Options{})
			pod := e.pod(cgroupfs.CPU, corev1.PodQOSBurstable, false)
			w1 := e.writer(testr.New(t))
			mustSet(t, w1, pod, "cpu.shares", "64", "low")
			_ = w1.Close()
			p := filepath.Join(e.stateDir, stateFileName)
			valid, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			bad := tt.content(e, valid)
			if err := os.WriteFile(p, bad, 0o600); err != nil {
				t.Fatal(err)
			}
			// Someone else sets a value meanwhile; a trusted stale original
			// would overwrite it on restore.
			e.tree.Set(t, cgroupfs.CPU, e.pods[corev1.PodQOSBurstable].RelPath, "cpu.shares", "768\n")

			w2 := e.writer(testr.New(t))
			rep := w2.StateReport()
			if !strings.Contains(rep.Reason, tt.wantReason) {
				t.Errorf("StateReport().Reason = %q, want it to contain %q", rep.Reason, tt.wantReason)
			}
			if !strings.HasPrefix(rep.SetAside, p+"."+tt.wantTag+"-") {
				t.Errorf("StateReport().SetAside = %q, want %s.%s-<time>", rep.SetAside, p, tt.wantTag)
			}
			if got, err := os.ReadFile(rep.SetAside); err != nil || string(got) != string(bad) {
				t.Errorf("set-aside file = %q, %v; want the untrusted content kept", got, err)
			}
			if rep.OriginalsUnknown != tt.wantUnknown {
				t.Errorf("StateReport().OriginalsUnknown = %v, want %v", rep.OriginalsUnknown, tt.wantUnknown)
			}
			if got, err := os.ReadFile(p); tt.wantUnknown {
				// A fresh file that only remembers, for the rest of the boot,
				// that found values are not originals.
				var st stateFile
				if err != nil || json.Unmarshal(got, &st) != nil || !st.OriginalsUnknown || len(st.Originals) != 0 {
					t.Errorf("state file after setting aside = %q, %v; want originalsUnknown and no originals", got, err)
				}
			} else if !errors.Is(err, os.ErrNotExist) {
				t.Errorf("state file still in place: %v", err)
			}
			if rep.Adopted != 0 || len(w2.Originals()) != 0 {
				t.Errorf("adopted %d originals from an untrusted file", rep.Adopted)
			}
			if _, err := w2.RestoreAll(); err != nil {
				t.Fatalf("RestoreAll() error = %v", err)
			}
			if got := readTrim(t, filepath.Join(pod, "cpu.shares")); got != "768" {
				t.Errorf("cpu.shares after RestoreAll() = %s, want 768 untouched", got)
			}
		})
	}
}

// Issue #18, defect 3: version 1 files (before minReaderVersion) are
// migrated, and a later version that says this reader may read it is
// adopted, not set aside (a downgrade keeps the originals).
func TestStateFileVersions(t *testing.T) {
	for name, rewrite := range map[string]func(string) string{
		"version 1": func(s string) string {
			return strings.Replace(strings.Replace(s, `"version": 2`, `"version": 1`, 1), `"minReaderVersion": 2,`, ``, 1)
		},
		"version 3 readable by 2": func(s string) string {
			return strings.Replace(strings.Replace(s, `"version": 2`, `"version": 3`, 1), `"written"`, `"futureField": {"x": 1}, "written"`, 1)
		},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, cgroupfs.V1, cgrouptest.Options{})
			pod := e.pod(cgroupfs.CPU, corev1.PodQOSBurstable, false)
			w1 := e.writer(testr.New(t))
			mustSet(t, w1, pod, "cpu.shares", "64", "low")
			_ = w1.Close()
			p := filepath.Join(e.stateDir, stateFileName)
			valid, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			changed := rewrite(string(valid))
			if changed == string(valid) {
				t.Fatalf("rewrite changed nothing in %s", valid)
			}
			if err := os.WriteFile(p, []byte(changed), 0o600); err != nil {
				t.Fatal(err)
			}
			w2 := e.writer(testr.New(t))
			if rep := w2.StateReport(); rep.SetAside != "" || rep.Adopted != 1 || rep.OriginalsUnknown {
				t.Fatalf("StateReport() = %+v, want 1 original adopted", rep)
			}
			if _, err := w2.RestoreAll(); err != nil {
				t.Fatal(err)
			}
			if got := readTrim(t, filepath.Join(pod, "cpu.shares")); got != "512" {
				t.Errorf("cpu.shares after RestoreAll() = %s, want the original 512", got)
			}
		})
	}
}

func TestSecondWriterIsLockedOut(t *testing.T) {
	e := newEnv(t, cgroupfs.V1, cgrouptest.Options{})
	w1 := e.writer(logr.Discard())
	opts := Options{Root: e.tree.Root, StateDir: e.stateDir, BootIDFile: e.bootFile}
	if _, err := New(opts); !errors.Is(err, ErrLocked) {
		t.Fatalf("second New() error = %v, want ErrLocked", err)
	}
	if err := w1.Close(); err != nil {
		t.Fatal(err)
	}
	w2, err := New(opts)
	if err != nil {
		t.Fatalf("New() after Close() error = %v", err)
	}
	_ = w2.Close()
}

// A value whose original cannot be persisted is not written.
func TestNoWriteWithoutPersistedOriginal(t *testing.T) {
	e := newEnv(t, cgroupfs.V1, cgrouptest.Options{})
	w := e.writer(testr.New(t))
	if err := os.RemoveAll(e.stateDir); err != nil {
		t.Fatal(err)
	}
	pod := e.pod(cgroupfs.CPU, corev1.PodQOSBurstable, false)
	_, err := w.Set(pod, "cpu.shares", "64", "low")
	if err == nil || !strings.HasPrefix(err.Error(), "failed to record the original (no such file or directory), so ") {
		t.Fatalf("Set() error = %v, want a failure to record the original naming its cause first", err)
	}
	if got := readTrim(t, filepath.Join(pod, "cpu.shares")); got != "512" {
		t.Errorf("cpu.shares = %s, want untouched 512", got)
	}
	if len(w.Originals()) != 0 {
		t.Errorf("Originals() = %+v, want none", w.Originals())
	}
}

// A file that cannot be restored stays recorded, comes back in one error,
// and a later RestoreAll finishes the job.
func TestRestoreFailureKeepsTheOriginal(t *testing.T) {
	e := newEnv(t, cgroupfs.V1, cgrouptest.Options{})
	w := e.writer(testr.New(t))
	b, g := e.pod(cgroupfs.CPU, corev1.PodQOSBurstable, false), e.pod(cgroupfs.CPU, corev1.PodQOSGuaranteed, false)
	mustSet(t, w, b, "cpu.shares", "64", "low")
	mustSet(t, w, g, "cpu.shares", "4096", "critical")
	e.kfs.failWrite(filepath.Join(b, "cpu.shares"), syscall.EROFS)

	res, err := w.RestoreAll()
	var rerr *RestoreError
	if !errors.As(err, &rerr) || !errors.Is(err, ErrNotWritable) {
		t.Fatalf("RestoreAll() error = %v, want a *RestoreError wrapping ErrNotWritable", err)
	}
	if !strings.Contains(err.Error(), "failed to restore 1 of 2 cgroup files") {
		t.Errorf("RestoreAll() error = %q, want a count", err)
	}
	if res.Restored != 1 || len(res.Failed) != 1 || res.Failed[0].Path != b {
		t.Errorf("RestoreAll() = %+v, want 1 restored and %s failed", res, b)
	}
	if st := readState(t, e.stateDir); len(st.Originals) != 1 || st.Originals[0].Path != b {
		t.Errorf("state file = %+v, want only the failed original", st.Originals)
	}

	e.kfs.failWrite(filepath.Join(b, "cpu.shares"), nil)
	if res, err := w.RestoreAll(); err != nil || res.Restored != 1 {
		t.Errorf("second RestoreAll() = %+v, %v; want 1 restored", res, err)
	}
	if got := readTrim(t, filepath.Join(b, "cpu.shares")); got != "512" {
		t.Errorf("cpu.shares = %s, want 512", got)
	}
}

// Restore(path) hands one pod back and leaves the others enforced.
func TestRestoreOnePod(t *testing.T) {
	e := newEnv(t, cgroupfs.V1, cgrouptest.Options{})
	w := e.writer(testr.New(t))
	b, bc := e.pod(cgroupfs.CPU, corev1.PodQOSBurstable, false), e.pod(cgroupfs.CPU, corev1.PodQOSBurstable, true)
	g := e.pod(cgroupfs.CPU, corev1.PodQOSGuaranteed, false)
	mustSet(t, w, b, "cpu.shares", "64", "low")
	mustSet(t, w, bc, "cpu.shares", "64", "low")
	mustSet(t, w, g, "cpu.shares", "4096", "critical")
	res, err := w.Restore(b)
	if err != nil || res.Restored != 2 {
		t.Fatalf("Restore(%s) = %+v, %v; want 2 restored", b, res, err)
	}
	if got := readTrim(t, filepath.Join(g, "cpu.shares")); got != "4096" {
		t.Errorf("other pod's cpu.shares = %s, want 4096 still", got)
	}
	want := []Desired{{Path: g, File: "cpu.shares", Value: "4096", Reason: "critical", Applied: "4096"}}
	if diff := cmp.Diff(want, w.Desired()); diff != "" {
		t.Errorf("Desired() mismatch (-want +got):\n%s", diff)
	}
}

func TestAuditRingIsBounded(t *testing.T) {
	e := newEnv(t, cgroupfs.V1, cgrouptest.Options{})
	w, err := New(Options{Root: e.tree.Root, StateDir: e.stateDir, BootIDFile: e.bootFile, AuditSize: 3,
		Now: func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	pod := e.pod(cgroupfs.CPU, corev1.PodQOSBurstable, false)
	for _, v := range []string{"10", "20", "30", "40", "50"} {
		mustSet(t, w, pod, "cpu.shares", v, "step "+v)
	}
	var got []string
	for _, r := range w.Audit() {
		got = append(got, r.Old+"→"+r.New)
		if !r.Time.Equal(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) {
			t.Errorf("record time = %v, want the injected clock", r.Time)
		}
	}
	if diff := cmp.Diff([]string{"20→30", "30→40", "40→50"}, got); diff != "" {
		t.Errorf("Audit() mismatch (-want +got):\n%s", diff)
	}
}

func TestRejectsPathsOutsideTheRoot(t *testing.T) {
	e := newEnv(t, cgroupfs.V1, cgrouptest.Options{})
	w := e.writer(testr.New(t))
	pod := e.pod(cgroupfs.CPU, corev1.PodQOSBurstable, false)
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "cpu.shares"), []byte("1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ path, file string }{
		{outside, "cpu.shares"},
		{"kubepods/burstable", "cpu.shares"},
		{pod + "/../../..", "cpu.shares"},
		{pod, "../cpu.shares"},
		{pod, ".."},
		{pod, ""},
	}
	for _, tt := range tests {
		if _, err := w.Set(tt.path, tt.file, "2", "test"); err == nil {
			t.Errorf("Set(%q, %q) succeeded, want an error", tt.path, tt.file)
		}
	}
	if got := readTrim(t, filepath.Join(outside, "cpu.shares")); got != "1" {
		t.Errorf("file outside the root = %s, want untouched", got)
	}
	if e.kfs.writes != 0 {
		t.Errorf("%d writes happened", e.kfs.writes)
	}
}

func TestConcurrentSets(t *testing.T) {
	e := newEnv(t, cgroupfs.V2, cgrouptest.Options{})
	w := e.writer(logr.Discard())
	var wg sync.WaitGroup
	for _, q := range []corev1.PodQOSClass{corev1.PodQOSGuaranteed, corev1.PodQOSBurstable, corev1.PodQOSBestEffort} {
		for _, ctr := range []bool{false, true} {
			dir := e.pod(cgroupfs.CPU, q, ctr)
			wg.Go(func() {
				for i := range 20 {
					if _, err := w.Set(dir, "cpu.weight", []string{"50", "60"}[i%2], "flip"); err != nil {
						t.Errorf("Set() error = %v", err)
					}
					_, _ = w.Reassert()
				}
			})
		}
	}
	wg.Wait()
	if s := w.Stats(); s.Writes != 6*20 || s.Errors != 0 {
		t.Errorf("Stats() = %+v, want %d writes and no errors", s, 6*20)
	}
}

func readState(t *testing.T, dir string) stateFile {
	t.Helper()
	var st stateFile
	b, err := os.ReadFile(filepath.Join(dir, stateFileName))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// When one write of a batch fails, the originals it recorded are dropped,
// but not those a successful write of the same batch needs.
func TestFailedWriteKeepsOriginalsOthersNeed(t *testing.T) {
	e := newEnv(t, cgroupfs.V1, cgrouptest.Options{})
	w := e.writer(testr.New(t))
	pod := e.pod(cgroupfs.CPU, corev1.PodQOSBurstable, false)
	other := e.pod(cgroupfs.CPU, corev1.PodQOSGuaranteed, false)
	// cpu.idle fails; it recorded cpu.idle and (coupled) cpu.shares, and the
	// next op writes cpu.shares.
	e.kfs.failWrite(filepath.Join(pod, "cpu.idle"), syscall.EIO)
	e.kfs.failWrite(filepath.Join(other, "cpu.shares"), syscall.EIO)
	res := w.Apply(
		Op{pod, "cpu.idle", "1", "background", false},
		Op{pod, "cpu.shares", "64", "low", false},
		Op{other, "cpu.shares", "64", "low", false},
	)
	if res[0].Err == nil || res[1].Err != nil || res[2].Err == nil {
		t.Fatalf("Apply() errors = %v, %v, %v; want fail, ok, fail", res[0].Err, res[1].Err, res[2].Err)
	}
	want := []Original{{Path: pod, File: "cpu.shares", Value: "512\n"}}
	if diff := cmp.Diff(want, w.Originals(), cmpopts.IgnoreFields(Original{}, "Recorded")); diff != "" {
		t.Errorf("Originals() mismatch (-want +got):\n%s", diff)
	}
	if st := readState(t, e.stateDir); len(st.Originals) != 1 {
		t.Errorf("state file holds %d originals, want 1", len(st.Originals))
	}
}

// Release stops re-asserting a value without restoring it; RestoreAll
// still restores its original.
func TestRelease(t *testing.T) {
	e := newEnv(t, cgroupfs.V1, cgrouptest.Options{})
	w := e.writer(testr.New(t))
	pod := e.pod(cgroupfs.CPU, corev1.PodQOSBurstable, false)
	mustSet(t, w, pod, "cpu.shares", "64", "low")
	w.Release(pod, "cpu.shares")
	e.tree.Set(t, cgroupfs.CPU, e.pods[corev1.PodQOSBurstable].RelPath, "cpu.shares", "300\n")
	if res, err := w.Reassert(); err != nil || res.Checked != 0 {
		t.Errorf("Reassert() after Release() = %+v, %v; want nothing checked", res, err)
	}
	if got := readTrim(t, filepath.Join(pod, "cpu.shares")); got != "300" {
		t.Errorf("cpu.shares = %s, want 300 left alone", got)
	}
	if _, err := w.RestoreAll(); err != nil {
		t.Fatal(err)
	}
	if got := readTrim(t, filepath.Join(pod, "cpu.shares")); got != "512" {
		t.Errorf("cpu.shares after RestoreAll() = %s, want the original 512", got)
	}
}

func TestFound(t *testing.T) {
	e := newEnv(t, cgroupfs.V1, cgrouptest.Options{})
	w := e.writer(testr.New(t))
	pod := e.pod(cgroupfs.CPU, corev1.PodQOSBurstable, false)
	if got, err := w.Found(pod, "cpu.shares"); err != nil || got != "512" {
		t.Errorf("Found() before any write = %q, %v; want the current 512", got, err)
	}
	mustSet(t, w, pod, "cpu.shares", "128", "low")
	if got, err := w.Found(pod, "cpu.shares"); err != nil || got != "512" {
		t.Errorf("Found() after a write = %q, %v; want the original 512", got, err)
	}
	if _, err := w.Found(pod, "cpu.nope"); !errors.Is(err, ErrMissingFile) {
		t.Errorf("Found() of a missing file: error = %v, want ErrMissingFile", err)
	}
}

// A batch that writes a file twice sees its own first write: the second op
// is decided on the value the first one left.
func TestApplySameFileTwice(t *testing.T) {
	e := newEnv(t, cgroupfs.V1, cgrouptest.Options{})
	w := e.writer(testr.New(t))
	pod := e.pod(cgroupfs.CPU, corev1.PodQOSBurstable, false)
	res := w.Apply(
		Op{pod, "cpu.shares", "1024", "transition", false},
		Op{pod, "cpu.shares", "512", "back to the start", false},
	)
	for _, r := range res {
		if r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	if !res[1].Change.Wrote || res[1].Change.Old != "1024" {
		t.Errorf("second op = %+v, want a write from 1024", res[1].Change)
	}
	if got := readTrim(t, filepath.Join(pod, "cpu.shares")); got != "512" {
		t.Errorf("cpu.shares = %s, want 512", got)
	}
	if o := w.Originals(); len(o) != 1 || o[0].Value != "512\n" {
		t.Errorf("Originals() = %+v, want the value found before the batch", o)
	}
}

// A restarted agent adopts the originals of the previous run; what the new
// run no longer asserts goes back, what it asserts keeps its original.
func TestRestoreUndesiredAfterRestart(t *testing.T) {
	e := newEnv(t, cgroupfs.V1, cgrouptest.Options{})
	b := e.pod(cgroupfs.CPU, corev1.PodQOSBurstable, false)
	g := e.pod(cgroupfs.CPU, corev1.PodQOSGuaranteed, false)
	origB, origG := readTrim(t, filepath.Join(b, "cpu.shares")), readTrim(t, filepath.Join(g, "cpu.shares"))

	w1 := e.writer(testr.New(t))
	mustSet(t, w1, b, "cpu.shares", "64", "low")
	mustSet(t, w1, g, "cpu.shares", "4096", "critical")
	if err := w1.Close(); err != nil {
		t.Fatal(err)
	}

	w2 := e.writer(testr.New(t))
	if res, err := w2.RestoreUndesired(); err != nil || res.Restored != 2 {
		t.Fatalf("RestoreUndesired() with nothing desired = %+v, %v; want both adopted originals restored", res, err)
	}
	mustSet(t, w2, b, "cpu.shares", "64", "low")
	mustSet(t, w2, g, "cpu.shares", "4096", "critical")
	w2.Release(b, "cpu.shares")
	res, err := w2.RestoreUndesired()
	if err != nil || res.Restored != 1 {
		t.Fatalf("RestoreUndesired() = %+v, %v; want 1 restored", res, err)
	}
	if got := readTrim(t, filepath.Join(b, "cpu.shares")); got != origB {
		t.Errorf("released pod's cpu.shares = %s, want its original %s", got, origB)
	}
	if got := readTrim(t, filepath.Join(g, "cpu.shares")); got != "4096" {
		t.Errorf("asserted pod's cpu.shares = %s, want 4096 still", got)
	}
	if res, err := w2.RestoreAll(); err != nil || res.Restored != 1 {
		t.Fatalf("RestoreAll() = %+v, %v; want the remaining original restored", res, err)
	}
	if got := readTrim(t, filepath.Join(g, "cpu.shares")); got != origG {
		t.Errorf("cpu.shares after RestoreAll = %s, want the original %s", got, origG)
	}
}
