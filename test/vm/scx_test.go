package vm_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"

	scxenf "github.com/infera-io/temper/nodeagent/enforcement/scx"
)

// detectBound is the supervisor's promise (Options.Poll's doc): an exit or
// ejection is reported within 1 s. With the default 250 ms poll that is a
// margin of four polls, which also absorbs the emulated VM's slowness. It is
// a correctness property of the supervisor contract, not a performance
// assertion.
const detectBound = time.Second

// waitLimit bounds every wait for the kernel or the supervisor; generous
// for TCG.
const waitLimit = 30 * time.Second

var sysfs = scxenf.SysFS{Root: scxenf.DefaultSysFSRoot}

// schedulers returns the directory of the example schedulers, skipping
// outside the VM.
func schedulers(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("TEMPER_VM_SCHEDULERS")
	if dir == "" {
		t.Skip("runs inside `make test-vm` only (TEMPER_VM_SCHEDULERS is unset)")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to attach a sched_ext scheduler")
	}
	if err := sysfs.Available(); err != nil {
		t.Fatalf("TEMPER_VM_SCHEDULERS is set but SysFS.Available() = %v", err)
	}
	return dir
}

func kernel(t *testing.T) scxenf.KernelState {
	t.Helper()
	k, err := sysfs.Read()
	if err != nil {
		t.Fatalf("failed to read %s: %v", sysfs.Root, err)
	}
	return k
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s (kernel %+v)", waitLimit, what, kernel(t))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// pidsWithArg lists the live processes with arg in their argv.
func pidsWithArg(t *testing.T, arg string) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil || bytes.Contains(stat, []byte(") Z ")) {
			continue
		}
		for _, a := range bytes.Split(b, []byte{0}) {
			if string(a) == arg {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// schedulerPIDs lists the live example-scheduler processes (any of /scx).
func schedulerPIDs(t *testing.T, dir string) []int {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range entries {
		pids = append(pids, pidsWithArg(t, filepath.Join(dir, e.Name()))...)
	}
	return pids
}

// leaveDetached kills whatever still runs with arg in its argv at the end
// of the test and waits for the kernel to report sched_ext disabled, so the
// next test starts clean even after a failure.
func leaveDetached(t *testing.T, arg string) {
	t.Cleanup(func() {
		for _, pid := range pidsWithArg(t, arg) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		deadline := time.Now().Add(waitLimit)
		for kernel(t).State != scxenf.StateDisabled {
			if time.Now().After(deadline) {
				t.Errorf("sched_ext still %s after the test's cleanup", kernel(t).State)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

// recorder keeps every status the supervisor reports, with its time.
type recorder struct {
	mu  sync.Mutex
	got []stamped
}

type stamped struct {
	at time.Time
	st scxenf.Status
}

func (r *recorder) onChange(st scxenf.Status) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, stamped{time.Now(), st})
}

// first returns the first status at or after since that satisfies ok.
func (r *recorder) first(since time.Time, ok func(scxenf.Status) bool) (stamped, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.got {
		if !s.at.Before(since) && ok(s.st) {
			return s, true
		}
	}
	return stamped{}, false
}

func (r *recorder) waitFirst(t *testing.T, what string, since time.Time, ok func(scxenf.Status) bool) stamped {
	t.Helper()
	var s stamped
	waitFor(t, what, func() bool {
		var found bool
		s, found = r.first(since, ok)
		return found
	})
	return s
}

func phaseIs(p scxenf.Phase) func(scxenf.Status) bool {
	return func(s scxenf.Status) bool { return s.Phase == p }
}

// supervised starts a supervisor of the stand-in on a config in a fresh
// directory. stop ends its Run without detaching (as an agent exit does).
type supervised struct {
	s      *scxenf.Supervisor
	rec    *recorder
	config string
	stop   func()
}

func supervise(t *testing.T, dir, config string) *supervised {
	t.Helper()
	rec := &recorder{}
	s := scxenf.New(scxenf.Options{
		Binary:     filepath.Join(dir, "scx_layered_standin"),
		ConfigPath: config,
		// Backoff long enough to tell a backed-off restart from an
		// immediate one, short enough for the test.
		BackoffInitial: time.Second,
		BackoffMax:     8 * time.Second,
		Log:            testr.New(t),
		OnChange:       rec.onChange,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run() error = %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return &supervised{s: s, rec: rec, config: config, stop: stop}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	t.Cleanup(cancel)
	return ctx
}

// TestSchedExtDetected: the agent's sched_ext detection on a kernel that
// has it, with nothing attached yet.
func TestSchedExtDetected(t *testing.T) {
	schedulers(t)
	if err := sysfs.Available(); err != nil {
		t.Fatalf("SysFS.Available() = %v, want nil on a CONFIG_SCHED_CLASS_EXT kernel", err)
	}
	if k := kernel(t); k.State != scxenf.StateDisabled || k.Ops != "" {
		t.Errorf("kernel before any scheduler = %+v, want state disabled and no root/ops", k)
	}
}

// TestSupervisorLifecycle: attach seen in state and root/ops; a killed
// scheduler noticed within 1 s, reported degraded, restarted after a
// backoff that doubles; an identical config keeps the instance, a new one
// replaces it; a second scheduler cannot attach beside ours; Stop (safe
// mode) detaches and the kernel reports disabled.
func TestSupervisorLifecycle(t *testing.T) {
	dir := schedulers(t)
	config := filepath.Join(t.TempDir(), "layered.json")
	leaveDetached(t, "f:"+config)
	sup := supervise(t, dir, config)
	ctx := ctxT(t)

	k0 := kernel(t)
	if err := sup.s.Apply(ctx, []byte(`{"v":1}`)); err != nil {
		t.Fatalf("Apply() error = %v", err)
	}
	att := sup.rec.waitFirst(t, "the supervisor to report attached", time.Time{}, phaseIs(scxenf.PhaseAttached))
	k1 := kernel(t)
	if !k1.Attached(scxenf.LayeredOpsName) || k1.EnableSeq != k0.EnableSeq+1 {
		t.Fatalf("kernel after attach = %+v, want state enabled, root/ops %q, enable_seq %d", k1, scxenf.LayeredOpsName, k0.EnableSeq+1)
	}
	pid := att.st.PID
	if got := pidsWithArg(t, "f:"+config); len(got) != 1 || got[0] != pid {
		t.Fatalf("processes with f:%s = %v, want only the supervised pid %d", config, got, pid)
	}
	t.Logf("attached: pid %d, kernel %+v", pid, k1)

	// Never two: a second scheduler started beside ours is refused by the
	// kernel and exits; ours stays attached.
	other, cancel := context.WithTimeout(context.Background(), waitLimit)
	out, err := exec.CommandContext(other, filepath.Join(dir, "scx_simple")).CombinedOutput()
	cancel()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) {
		t.Errorf("a second scheduler beside the supervised one: err = %v, want it to fail to attach; output:\n%s", err, out)
	}
	if k := kernel(t); !k.Attached(scxenf.LayeredOpsName) || k.EnableSeq != k1.EnableSeq {
		t.Errorf("kernel after a second scheduler tried to attach = %+v, want ours still attached (enable_seq %d)", k, k1.EnableSeq)
	}
	if st := sup.s.Status(); st.Phase != scxenf.PhaseAttached || st.PID != pid {
		t.Errorf("Status() after a second scheduler tried to attach = %+v, want attached pid %d", st, pid)
	}

	// The same config again keeps the instance.
	if err := sup.s.Apply(ctx, []byte(`{"v":1}`)); err != nil {
		t.Fatal(err)
	}
	if st := sup.s.Status(); st.Starts != 1 || st.PID != pid {
		t.Errorf("Status() after applying the same config = %+v, want 1 start and pid %d", st, pid)
	}

	// Kill it: noticed, degraded, restarted with backoff.
	kills := []time.Duration{time.Second, 2 * time.Second} // the backoff expected before each restart
	for i, backoff := range kills {
		seq := kernel(t).EnableSeq
		killed := time.Now()
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("failed to kill the scheduler (pid %d): %v", pid, err)
		}
		deg := sup.rec.waitFirst(t, "the supervisor to report degraded", killed, phaseIs(scxenf.PhaseDegraded))
		if d := deg.at.Sub(killed); d > detectBound {
			t.Errorf("kill %d: degraded reported %s after SIGKILL, want within %s", i+1, d, detectBound)
		}
		// The kernel passes through "disabling"; by the time it is read
		// the backoff may also have run out and the restart attached.
		waitFor(t, "the kernel to detach the killed scheduler", func() bool {
			k := kernel(t)
			return k.State == scxenf.StateDisabled || (k.Attached(scxenf.LayeredOpsName) && k.EnableSeq > seq)
		})
		start := sup.rec.waitFirst(t, "a restart", deg.at, phaseIs(scxenf.PhaseStarting))
		if gap := start.at.Sub(deg.at); gap < backoff {
			t.Errorf("kill %d: restarted %s after the degraded report, want a backoff of at least %s", i+1, gap, backoff)
		}
		re := sup.rec.waitFirst(t, "the restarted scheduler to attach", start.at, phaseIs(scxenf.PhaseAttached))
		t.Logf("kill %d: degraded after %s (%q), restarted after %s, attached after %s; status %+v",
			i+1, deg.at.Sub(killed).Round(time.Millisecond), deg.st.Reason, start.at.Sub(deg.at).Round(time.Millisecond), re.at.Sub(killed).Round(time.Millisecond), re.st)
		if k := kernel(t); !k.Attached(scxenf.LayeredOpsName) || k.EnableSeq != seq+1 {
			t.Errorf("kill %d: kernel after the restart = %+v, want attached with enable_seq %d", i+1, k, seq+1)
		}
		if got := pidsWithArg(t, "f:"+config); len(got) != 1 || got[0] != re.st.PID || re.st.PID == pid {
			t.Errorf("kill %d: processes with f:%s = %v, want only the new pid %d", i+1, config, got, re.st.PID)
		}
		pid = re.st.PID
	}
	if st := sup.s.Status(); st.Starts != 3 || st.Exits != 2 {
		t.Errorf("Status() after two kills = %+v, want 3 starts and 2 exits", st)
	}

	// A new config replaces the instance: stop, kernel disabled, start.
	changed := time.Now()
	if err := sup.s.Apply(ctx, []byte(`{"v":2}`)); err != nil {
		t.Fatal(err)
	}
	re := sup.rec.waitFirst(t, "the new config's scheduler to attach", changed, phaseIs(scxenf.PhaseAttached))
	if re.st.PID == pid || re.st.ConfigHash != scxenf.ConfigHash([]byte(`{"v":2}`)) {
		t.Errorf("Status() after a config change = %+v, want a new pid and the new config's hash", re.st)
	}
	if got := schedulerPIDs(t, dir); len(got) != 1 {
		t.Errorf("scheduler processes after a config change = %v, want one", got)
	}

	// Safe mode.
	if err := sup.s.Stop(ctx); err != nil {
		t.Fatalf("Stop() error = %v", err)
	}
	if k := kernel(t); k.State != scxenf.StateDisabled || k.Ops != "" {
		t.Errorf("kernel after Stop() = %+v, want disabled and no root/ops", k)
	}
	if st := sup.s.Status(); st.Phase != scxenf.PhaseStopped || st.PID != 0 {
		t.Errorf("Status() after Stop() = %+v, want stopped", st)
	}
	if got := schedulerPIDs(t, dir); len(got) != 0 {
		t.Errorf("scheduler processes after Stop() = %v, want none", got)
	}
}

// TestSupervisorKernelEjection: the kernel ejects the scheduler (SysRq-S,
// as on a BPF error or a watchdog stall) while its process runs; the
// supervisor counts an ejection within 1 s and restarts it.
func TestSupervisorKernelEjection(t *testing.T) {
	dir := schedulers(t)
	config := filepath.Join(t.TempDir(), "layered.json")
	leaveDetached(t, "f:"+config)
	sup := supervise(t, dir, config)
	if err := sup.s.Apply(ctxT(t), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	att := sup.rec.waitFirst(t, "attached", time.Time{}, phaseIs(scxenf.PhaseAttached))
	seq := kernel(t).EnableSeq
	ejected := time.Now()
	if err := os.WriteFile("/proc/sysrq-trigger", []byte("S"), 0); err != nil {
		t.Fatalf("failed to eject the scheduler with SysRq-S: %v", err)
	}
	deg := sup.rec.waitFirst(t, "degraded after the ejection", ejected, phaseIs(scxenf.PhaseDegraded))
	if d := deg.at.Sub(ejected); d > detectBound {
		t.Errorf("degraded reported %s after SysRq-S, want within %s", d, detectBound)
	}
	re := sup.rec.waitFirst(t, "re-attached after the ejection", deg.at, phaseIs(scxenf.PhaseAttached))
	t.Logf("ejection: degraded after %s (%q); re-attached %+v", deg.at.Sub(ejected).Round(time.Millisecond), deg.st.Reason, re.st)
	if re.st.Ejections != 1 || re.st.PID == att.st.PID {
		t.Errorf("Status() after the ejection and restart = %+v, want 1 ejection and a new pid", re.st)
	}
	if k := kernel(t); !k.Attached(scxenf.LayeredOpsName) || k.EnableSeq != seq+1 {
		t.Errorf("kernel after the restart = %+v, want attached with enable_seq %d", k, seq+1)
	}
	if err := sup.s.Stop(ctxT(t)); err != nil || kernel(t).State != scxenf.StateDisabled {
		t.Errorf("Stop() = %v, kernel %+v; want disabled", err, kernel(t))
	}
}

// TestSupervisorForeignAndAdoption: the supervisor never starts beside a
// scheduler it did not start (it reports degraded and retries once the
// kernel is free), and a new agent process adopts the running instance by
// its argv instead of restarting it, then detaches it on Stop.
func TestSupervisorForeignAndAdoption(t *testing.T) {
	dir := schedulers(t)
	config := filepath.Join(t.TempDir(), "layered.json")
	leaveDetached(t, "f:"+config)
	leaveDetached(t, filepath.Join(dir, "scx_simple"))

	before := kernel(t).EnableSeq
	foreign := exec.Command(filepath.Join(dir, "scx_simple"))
	if err := foreign.Start(); err != nil {
		t.Fatal(err)
	}
	// The kernel shows the new ops as enabled a moment before it bumps
	// enable_seq, so wait for both before taking the sequence number.
	waitFor(t, "scx_simple to attach", func() bool { k := kernel(t); return k.Attached("simple") && k.EnableSeq > before })
	seq := kernel(t).EnableSeq

	sup := supervise(t, dir, config)
	err := sup.s.Apply(ctxT(t), []byte(`{}`))
	if err == nil || !strings.Contains(err.Error(), `another sched_ext scheduler ("simple")`) {
		t.Errorf("Apply() beside scx_simple: error = %v, want a refusal naming it", err)
	}
	if st := sup.s.Status(); st.Phase != scxenf.PhaseDegraded || st.Starts != 0 {
		t.Errorf("Status() beside scx_simple = %+v, want degraded with no start", st)
	}
	if k := kernel(t); !k.Attached("simple") || k.EnableSeq != seq {
		t.Errorf("kernel = %+v, want scx_simple left attached (enable_seq %d)", k, seq)
	}
	freed := time.Now()
	if err := foreign.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	_ = foreign.Wait()
	att := sup.rec.waitFirst(t, "the supervisor to attach once the kernel is free", freed, phaseIs(scxenf.PhaseAttached))
	if k := kernel(t); !k.Attached(scxenf.LayeredOpsName) {
		t.Fatalf("kernel = %+v, want ours attached", k)
	}

	// The agent process exits (Run returns, the scheduler stays) and a new
	// one starts on the same config path.
	sup.stop()
	if k := kernel(t); !k.Attached(scxenf.LayeredOpsName) {
		t.Fatalf("kernel after the supervisor's Run returned = %+v, want the scheduler left attached", k)
	}
	seq = kernel(t).EnableSeq
	next := supervise(t, dir, config)
	waitFor(t, "the new supervisor to adopt", func() bool { return next.s.Status().Phase == scxenf.PhaseAttached })
	if st := next.s.Status(); !st.Adopted || st.PID != att.st.PID || st.Starts != 0 {
		t.Errorf("Status() of the new supervisor = %+v, want pid %d adopted with no start", st, att.st.PID)
	}
	if k := kernel(t); k.EnableSeq != seq {
		t.Errorf("enable_seq after the adoption = %d, want %d (no re-attach)", k.EnableSeq, seq)
	}
	if err := next.s.Stop(ctxT(t)); err != nil {
		t.Fatalf("Stop() of the adopted scheduler error = %v", err)
	}
	if k := kernel(t); k.State != scxenf.StateDisabled {
		t.Errorf("kernel after stopping the adopted scheduler = %+v, want disabled", k)
	}
	if got := pidsWithArg(t, "f:"+config); len(got) != 0 {
		t.Errorf("processes with f:%s after Stop() = %v, want none", config, got)
	}
}
