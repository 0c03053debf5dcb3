package procscan

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/nodeagent/procscan/procscantest"
)

// statLine builds a stat line as the kernel writes it.
func statLine(pid int, comm string, ticks, threads, start, cpu uint64) string {
	f := make([]string, 52)
	for i := range f {
		f[i] = "0"
	}
	f[0] = fmt.Sprint(pid)
	f[1] = "(" + comm + ")"
	f[2] = "S"
	f[13] = fmt.Sprint(ticks / 2)       // utime, field 14
	f[14] = fmt.Sprint(ticks - ticks/2) // stime, field 15
	f[19] = fmt.Sprint(threads)         // num_threads, field 20
	f[21] = fmt.Sprint(start)           // starttime, field 22
	f[38] = fmt.Sprint(cpu)             // processor, field 39
	return strings.Join(f, " ") + "\n"
}

func TestParseStat(t *testing.T) {
	for _, tc := range []struct {
		name, line string
		want       stat
		wantErr    bool
	}{
		{name: "plain", line: statLine(7, "nginx", 31, 4, 900, 1), want: stat{comm: "nginx", ticks: 31, threads: 4, start: 900, cpu: 1}},
		{name: "comm with spaces and parentheses", line: statLine(7, "a) (b ) 1 2 3", 10, 1, 5, 3), want: stat{comm: "a) (b ) 1 2 3", ticks: 10, threads: 1, start: 5, cpu: 3}},
		{name: "comm with control and high bytes", line: statLine(7, "x\x00\x1b[31m\xff\xfey", 0, 1, 1, 0), want: stat{comm: "x??[31m??y", threads: 1, start: 1}},
		{name: "truncated after processor field missing", line: strings.Join(strings.Fields(statLine(7, "t", 1, 1, 1, 1))[:30], " "), wantErr: true},
		{name: "no comm", line: "7 nginx S 1 2 3", wantErr: true},
		{name: "non-numeric utime", line: strings.Replace(statLine(7, "t", 0, 1, 1, 1), " 0 0 0 0 0 0 0 0 0 0 0 ", " 0 0 0 0 0 0 0 0 0 0 x ", 1), wantErr: true},
		{name: "overflowing field", line: strings.Replace(statLine(7, "t", 0, 1, 777, 1), " 777 ", " 99999999999999999999999 ", 1), wantErr: true},
		{name: "empty", line: "", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseStat([]byte(tc.line))
			if tc.wantErr {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("ParseStat(%q) = %+v, %v; want ErrMalformed", tc.line, got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseStat(%q): %v", tc.line, err)
			}
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(stat{})); diff != "" {
				t.Errorf("ParseStat mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSanitizeBoundsLongComm(t *testing.T) {
	if got := sanitize([]byte(strings.Repeat("é", 100))); len(got) != maxComm || strings.Trim(got, "?") != "" {
		t.Errorf("sanitize(200 high bytes) = %q, want %d '?'", got, maxComm)
	}
}

// fakeProc is a procfs under a temp dir.
type fakeProc struct {
	t    *testing.T
	root string
}

func newFakeProc(t *testing.T) *fakeProc { return &fakeProc{t: t, root: t.TempDir()} }

// thread writes the stat of thread tid of process pid (and the process's
// own stat when tid == pid, with the process's ticks).
func (f *fakeProc) thread(pid, tid int, comm string, ticks, start, cpu uint64) {
	dir := filepath.Join(f.root, fmt.Sprint(pid), "task", fmt.Sprint(tid))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(statLine(tid, comm, ticks, 1, start, cpu)), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fakeProc) process(pid int, ticks, threads, start uint64) {
	if err := os.MkdirAll(filepath.Join(f.root, fmt.Sprint(pid), "task"), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.root, fmt.Sprint(pid), "stat"), []byte(statLine(pid, "proc", ticks, threads, start, 0)), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

func TestSampleUsageFromFakeProc(t *testing.T) {
	fp := newFakeProc(t)
	clk := clocktesting.NewFakePassiveClock(time.Unix(1000, 0))
	s, err := New(Options{ProcRoot: fp.root, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	// Pod a: process 10 with threads 10 and 11; pod b: process 20, idle.
	fp.process(10, 100, 2, 50)
	fp.thread(10, 10, "main", 40, 50, 0)
	fp.thread(10, 11, "worker one", 60, 51, 1)
	fp.process(20, 5, 1, 60)
	fp.thread(20, 20, "idle", 5, 60, 1)
	targets := []Target{
		{Pod: "ns/a", Tier: wellknown.TierCritical, TGIDs: []int{10}},
		{Pod: "ns/b", Tier: wellknown.TierLow, TGIDs: []int{20, 999}},
	}
	first := s.Sample(targets)
	if len(first.Threads) != 0 || first.Interval != 0 {
		t.Fatalf("first sample has usage %+v over %v; want none: there is no previous sample", first.Threads, first.Interval)
	}
	if first.Vanished != 1 || first.Errors != 0 {
		t.Errorf("first sample: vanished %d errors %d (%s); want the missing pid 999 counted as vanished, no error", first.Vanished, first.Errors, first.FirstError)
	}

	// 10 s later: thread 10 used 50 ticks (500 ms = 50 ms/s) and moved to
	// CPU 1, thread 11 used 300 ticks on CPU 1, process 20 did nothing.
	clk.SetTime(clk.Now().Add(10 * time.Second))
	fp.process(10, 450, 2, 50)
	fp.thread(10, 10, "main", 90, 50, 1)
	fp.thread(10, 11, "worker one", 360, 51, 1)
	// A change in the idle process's thread file must not be read.
	fp.thread(20, 20, "idle", 500, 60, 0)
	got := s.Sample(targets)
	want := []Thread{
		{TID: 11, PID: 10, Comm: "worker one", Pod: "ns/a", Tier: wellknown.TierCritical, CPU: 1, MilliCPU: 300},
		{TID: 10, PID: 10, Comm: "main", Pod: "ns/a", Tier: wellknown.TierCritical, CPU: 1, MilliCPU: 50},
	}
	if diff := cmp.Diff(want, got.Threads); diff != "" {
		t.Errorf("threads mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]CPUUsage{{CPU: 1, MilliCPU: 350}}, got.CPUs); diff != "" {
		t.Errorf("per-CPU usage mismatch (-want +got):\n%s", diff)
	}
	if got.ProcessesIdle != 1 || got.ThreadsRead != 2 || got.Interval != 10*time.Second {
		t.Errorf("idle processes %d, threads read %d, interval %v; want 1, 2, 10s", got.ProcessesIdle, got.ThreadsRead, got.Interval)
	}

	// The idle process wakes up: its thread baseline (5 ticks) survived the
	// sample that skipped it, so its usage covers both intervals.
	clk.SetTime(clk.Now().Add(10 * time.Second))
	fp.process(20, 205, 1, 60)
	fp.thread(20, 20, "idle", 205, 60, 0)
	got = s.Sample(targets)
	if len(got.Threads) != 1 || got.Threads[0].TID != 20 || got.Threads[0].MilliCPU != 200 {
		t.Errorf("after waking: threads %+v; want thread 20 at 200 ms/s (2000 ms over 10 s)", got.Threads)
	}
}

func TestSampleThreadIDReuseIsNotUsage(t *testing.T) {
	fp := newFakeProc(t)
	clk := clocktesting.NewFakePassiveClock(time.Unix(1000, 0))
	s, err := New(Options{ProcRoot: fp.root, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	fp.process(10, 10, 1, 50)
	fp.thread(10, 10, "old", 10, 50, 0)
	targets := []Target{{Pod: "ns/a", TGIDs: []int{10}}}
	s.Sample(targets)
	// Process 10 exited and the pid was reused by a process that started
	// later with more ticks: no usage may be derived from the old one.
	clk.SetTime(clk.Now().Add(10 * time.Second))
	fp.process(10, 500, 1, 70)
	fp.thread(10, 10, "new", 500, 70, 0)
	if got := s.Sample(targets); len(got.Threads) != 0 {
		t.Errorf("reused pid reported usage %+v; want none", got.Threads)
	}
}

func TestSampleCapsHostilePod(t *testing.T) {
	fp := newFakeProc(t)
	clk := clocktesting.NewFakePassiveClock(time.Unix(1000, 0))
	s, err := New(Options{ProcRoot: fp.root, Clock: clk, MaxThreadsPerPod: 16, MaxThreads: 24})
	if err != nil {
		t.Fatal(err)
	}
	const n = 3000
	fp.process(10, 1, n, 50)
	for tid := 10; tid < 10+n; tid++ {
		fp.thread(10, tid, "spin", 1, 50, 0)
	}
	fp.process(20, 1, 20, 60)
	for tid := 20000; tid < 20020; tid++ {
		fp.thread(20, tid, "x", 1, 60, 0)
	}
	targets := []Target{{Pod: "ns/hostile", TGIDs: []int{10}}, {Pod: "ns/second", TGIDs: []int{20}}}
	got := s.Sample(targets)
	if got.ThreadsRead > 24 {
		t.Errorf("read %d threads; want at most MaxThreads 24", got.ThreadsRead)
	}
	caps := map[PodKey]Cap{}
	for _, c := range got.Capped {
		caps[c.Pod] = c
	}
	if c := caps["ns/hostile"]; c.Threads != n || c.Read > 16 || c.Read == 0 {
		t.Errorf("hostile pod cap = %+v; want %d threads, 1..16 read", c, n)
	}
	if _, ok := caps["ns/second"]; !ok {
		t.Errorf("caps %+v do not report ns/second, cut short by the node-wide cap", got.Capped)
	}
	if len(s.threads) > 24 {
		t.Errorf("sampler keeps %d thread states; want at most 24", len(s.threads))
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	for _, o := range []Options{
		{ProcRoot: filepath.Join(t.TempDir(), "missing")},
		{MaxThreads: -1},
		{TopN: -2},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) succeeded; want an error", o)
		}
	}
}

func TestReadCgroupProcs(t *testing.T) {
	pod := t.TempDir()
	write := func(rel, content string) {
		p := filepath.Join(pod, rel, "cgroup.procs")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(".", "")
	write("c1", "5\n6\n")
	write("c2", "6\n7\ngarbage\n")
	got, err := ReadCgroupProcs(pod, 100, nil)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]int{5, 6, 7}, got); diff != "" {
		t.Errorf("pids mismatch (-want +got):\n%s", diff)
	}
	got, err = ReadCgroupProcs(pod, 2, []int{1})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]int{1, 5, 6}, got); diff != "" {
		t.Errorf("bounded pids mismatch (-want +got):\n%s", diff)
	}
	if _, err := ReadCgroupProcs(filepath.Join(pod, "gone"), 10, nil); err == nil || !strings.Contains(err.Error(), "gone") {
		t.Errorf("missing cgroup: err %v; want one naming the cgroup", err)
	}
}

// TestSampleRealBusyThread samples a real spinning process on this kernel.
func TestSampleRealBusyThread(t *testing.T) {
	cpus := procscantest.AllowedCPUs(t)
	cpu := cpus[len(cpus)-1]
	pid := procscantest.StartBusy(t, cpu)
	s, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	targets := []Target{{Pod: "ns/busy", Tier: wellknown.TierLow, TGIDs: []int{pid, os.Getpid()}}}
	s.Sample(targets)
	// Wait for the spinner to accumulate ticks: its usage, not a duration,
	// is what is asserted.
	var got *Sample
	for range 50 {
		time.Sleep(100 * time.Millisecond)
		got = s.Sample(targets)
		for _, th := range got.Threads {
			if th.TID == pid {
				if th.CPU != cpu || th.Comm != "sh" || th.Pod != "ns/busy" || th.MilliCPU <= 0 {
					t.Fatalf("spinner sampled as %+v; want comm sh on CPU %d in ns/busy with usage", th, cpu)
				}
				if got.Errors != 0 {
					t.Errorf("sample errors: %d (%s)", got.Errors, got.FirstError)
				}
				return
			}
		}
	}
	t.Fatalf("spinner %d never showed usage; last sample %+v", pid, got)
}

// TestSampleRacesWithExitingThreads samples this process while threads
// start and exit under it (a goroutine that exits while locked to its OS
// thread takes the thread with it), and a process that is already gone:
// exits are counted as vanished, never as errors.
func TestSampleRacesWithExitingThreads(t *testing.T) {
	cmd := exec.Command("/bin/true")
	if err := cmd.Run(); err != nil {
		t.Skipf("cannot run /bin/true: %v", err)
	}
	gone := cmd.Process.Pid
	s, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			var wg sync.WaitGroup
			for range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
					for i := 0; i < 20000; i++ {
						_ = i * i
					}
				}()
			}
			wg.Wait()
		}
	}()
	targets := []Target{{Pod: "ns/self", TGIDs: []int{os.Getpid(), gone}}}
	vanished := 0
	for range 200 {
		got := s.Sample(targets)
		if got.Errors != 0 {
			t.Fatalf("sample errors %d: %s", got.Errors, got.FirstError)
		}
		vanished += got.Vanished
	}
	close(stop)
	<-done
	if vanished < 200 {
		t.Errorf("vanished %d over 200 samples; want at least the gone pid %d each time", vanished, gone)
	}
	if len(s.threads) > DefaultMaxThreads {
		t.Errorf("sampler keeps %d thread states", len(s.threads))
	}
}

// A single-threaded process is sampled from its own stat, without its task
// directory; when it grows a second thread, the thread read from the task
// directory gets a new baseline instead of counting the process's time.
func TestSampleSingleThreadedFromProcessStat(t *testing.T) {
	fp := newFakeProc(t)
	clk := clocktesting.NewFakePassiveClock(time.Unix(1000, 0))
	s, err := New(Options{ProcRoot: fp.root, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	targets := []Target{{Pod: "ns/a", Tier: wellknown.TierNormal, TGIDs: []int{30}}}
	fp.process(30, 100, 1, 70)
	if err := os.RemoveAll(filepath.Join(fp.root, "30", "task")); err != nil {
		t.Fatal(err)
	}
	s.Sample(targets)
	clk.SetTime(clk.Now().Add(10 * time.Second))
	fp.process(30, 150, 1, 70)
	got := s.Sample(targets)
	want := []Thread{{TID: 30, PID: 30, Comm: "proc", Pod: "ns/a", Tier: wellknown.TierNormal, MilliCPU: 50}}
	if diff := cmp.Diff(want, got.Threads); diff != "" || got.ThreadsRead != 1 || got.Errors != 0 || got.Vanished != 0 {
		t.Errorf("single-threaded: threads read %d, errors %d (%s), vanished %d, threads (-want +got):\n%s",
			got.ThreadsRead, got.Errors, got.FirstError, got.Vanished, diff)
	}

	// A second thread: the leader's own stat (80 ticks, less than the
	// process's 200) is a new baseline, not -70 or +130 ticks of usage.
	clk.SetTime(clk.Now().Add(10 * time.Second))
	fp.process(30, 200, 2, 70)
	fp.thread(30, 30, "proc", 80, 70, 0)
	fp.thread(30, 31, "worker", 120, 71, 1)
	if got := s.Sample(targets); len(got.Threads) != 0 || got.ThreadsRead != 2 {
		t.Errorf("after a second thread appeared: threads %+v, read %d; want none (new baselines), 2 read", got.Threads, got.ThreadsRead)
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot list /proc/self/fd: %v", err)
	}
	return len(es)
}

// On this kernel: a process's stat file stays open between samples and is
// read anew; once the process exits the kept file fails, the process counts
// as vanished and its file is closed.
func TestSampleKeepsProcessStatOpen(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Skipf("cannot start a process: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	s, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	fds := openFDs(t)
	targets := []Target{{Pod: "ns/a", Tier: wellknown.TierNormal, TGIDs: []int{cmd.Process.Pid}}}
	s.Sample(targets)
	if got := openFDs(t); got != fds+1 {
		t.Errorf("%d files open after a sample of one process; want %d (its stat kept)", got, fds+1)
	}
	if got := s.Sample(targets); got.ProcessesIdle != 1 || got.Errors != 0 {
		t.Errorf("second sample through the kept file: idle %d errors %d (%s); want the sleeping process idle", got.ProcessesIdle, got.Errors, got.FirstError)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait() // also closes the process's pidfd
	fds = openFDs(t)
	if got := s.Sample(targets); got.Vanished != 1 || got.Errors != 0 {
		t.Errorf("after the exit: vanished %d errors %d (%s); want 1, 0", got.Vanished, got.Errors, got.FirstError)
	}
	if got := openFDs(t); got != fds-1 {
		t.Errorf("%d files open after the process exited; want %d (its stat closed)", got, fds-1)
	}
	s.Close()
}

// A CgroupReader keeps the pod's directory and cgroup.procs files open
// between reads, sees new contents through them, and Sweep closes those
// of a pod no longer read.
func TestCgroupReaderKeepsFilesUntilSwept(t *testing.T) {
	pod := t.TempDir()
	for rel, content := range map[string]string{".": "", "c1": "5\n"} {
		if err := os.MkdirAll(filepath.Join(pod, rel), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(pod, rel, "cgroup.procs"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var r CgroupReader
	defer r.Close()
	if got, err := r.Read(pod, 10, nil); err != nil || !slices.Equal(got, []int{5}) {
		t.Fatalf("Read = %v, %v; want [5]", got, err)
	}
	if n := len(r.files); n != 3 {
		t.Errorf("%d files kept; want 3 (the directory, two cgroup.procs)", n)
	}
	r.Sweep()
	if err := os.WriteFile(filepath.Join(pod, "c1", "cgroup.procs"), []byte("5\n9\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := r.Read(pod, 10, nil); err != nil || !slices.Equal(got, []int{5, 9}) {
		t.Errorf("second Read = %v, %v; want [5 9] through the kept file", got, err)
	}
	r.Sweep()
	if n := len(r.files); n != 3 {
		t.Errorf("%d files kept after a sweep of a tick that read them; want 3", n)
	}
	r.Sweep() // a tick that did not read the pod
	if n := len(r.files); n != 0 {
		t.Errorf("%d files kept after a tick without the pod; want 0", n)
	}
}
