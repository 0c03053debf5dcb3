package scx

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"

	"github.com/infera-io/temper/test/standin/standintest"
)

// standin is the path of the stand-in scx_layered (test/standin/scx_layered),
// built once for the package.
var standin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "scx-standin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	standin, err = standintest.Build(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

const (
	cfgA = `[{"name":"a","matches":[[]],"kind":{"Open":{}}}]`
	cfgB = `[{"name":"b","matches":[[]],"kind":{"Open":{}}}]`
)

type rig struct {
	t      *testing.T
	sysfs  string
	logf   string
	config string
	sup    *Supervisor
	cancel context.CancelFunc
	done   chan error
}

func fakeKernel(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "sched_ext")
	if err := standintest.FakeSchedExt(root); err != nil {
		t.Fatal(err)
	}
	return root
}

func newRig(t *testing.T, sysfs, config string) *rig {
	t.Helper()
	r := &rig{t: t, sysfs: sysfs, config: config, logf: filepath.Join(filepath.Dir(sysfs), "standin.log")}
	t.Setenv("STANDIN_SYSFS", sysfs)
	t.Setenv("STANDIN_LOG", r.logf)
	r.start()
	return r
}

func (r *rig) start() {
	r.sup = New(Options{
		Binary:         standin,
		ConfigPath:     r.config,
		SysFS:          SysFS{Root: r.sysfs},
		Poll:           20 * time.Millisecond,
		AttachTimeout:  5 * time.Second,
		StopTimeout:    2 * time.Second,
		BackoffInitial: 50 * time.Millisecond,
		BackoffMax:     400 * time.Millisecond,
		Log:            testr.New(r.t),
	})
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan error, 1)
	go func() { r.done <- r.sup.Run(ctx) }()
	r.t.Cleanup(func() {
		_ = r.sup.Stop(context.Background())
		r.abandon()
	})
}

// abandon ends Run without stopping the instance, as an agent crash would.
func (r *rig) abandon() {
	r.cancel()
	if err := <-r.done; err != nil {
		r.t.Logf("supervisor Run returned %v", err)
	}
	r.done <- nil // keep later abandons from blocking
}

func (r *rig) apply(cfg string) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.sup.Apply(ctx, []byte(cfg)); err != nil {
		r.t.Fatalf("Apply: %v", err)
	}
}

func (r *rig) waitFor(what string, cond func(Status) bool) Status {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if st := r.sup.Status(); cond(st) {
			return st
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.t.Fatalf("timed out waiting for %s; status %+v", what, r.sup.Status())
	return Status{}
}

type logged struct {
	Event, ConfigHash string
	PID               int
}

func (r *rig) events() []logged {
	r.t.Helper()
	f, err := os.Open(r.logf)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		r.t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	var out []logged
	s := bufio.NewScanner(f)
	for s.Scan() {
		var e logged
		if err := json.Unmarshal(s.Bytes(), &e); err != nil {
			r.t.Fatalf("bad stand-in log line %q: %v", s.Text(), err)
		}
		out = append(out, e)
	}
	return out
}

func (r *rig) count(event string) int {
	n := 0
	for _, e := range r.events() {
		if e.Event == event {
			n++
		}
	}
	return n
}

func (r *rig) kernel() KernelState {
	r.t.Helper()
	k, err := SysFS{Root: r.sysfs}.Read()
	if err != nil {
		r.t.Fatal(err)
	}
	return k
}

func attached(st Status) bool { return st.Phase == PhaseAttached }

// noOverlap checks from the stand-in's log that a start never followed a
// start without a stop, ejection or failure in between: two instances never
// ran at once.
func (r *rig) noOverlap() {
	r.t.Helper()
	running := 0
	for _, e := range r.events() {
		switch e.Event {
		case "start":
			running++
		case "stop", "ejected":
			running--
		}
		if running > 1 {
			r.t.Fatalf("two scx_layered instances ran at once: %+v", r.events())
		}
	}
}

func TestApplyStartsAndAttaches(t *testing.T) {
	r := newRig(t, fakeKernel(t), filepath.Join(t.TempDir(), "layered.json"))
	r.apply(cfgA)
	st := r.waitFor("attach", attached)
	if k := r.kernel(); !k.Attached(LayeredOpsName) || k.EnableSeq != 1 {
		t.Fatalf("kernel state after attach = %+v", k)
	}
	if st.Starts != 1 || st.PID == 0 || st.Adopted {
		t.Fatalf("status = %+v", st)
	}
	b, err := os.ReadFile(r.config)
	if err != nil || string(b) != cfgA {
		t.Fatalf("config file = %q, %v", b, err)
	}

	// The same config again changes nothing.
	r.apply(cfgA)
	if st := r.sup.Status(); st.Starts != 1 || r.count("start") != 1 {
		t.Fatalf("identical config restarted scx_layered: %+v", st)
	}

	// A new config is stop, then start: never two at once.
	r.apply(cfgB)
	st = r.waitFor("re-attach", func(s Status) bool { return attached(s) && s.Starts == 2 })
	if r.count("stop") != 1 || r.count("start") != 2 {
		t.Fatalf("events = %+v", r.events())
	}
	r.noOverlap()
	if k := r.kernel(); k.EnableSeq != 2 {
		t.Fatalf("enable_seq = %d, want 2", k.EnableSeq)
	}
	if st.ConfigHash != ConfigHash([]byte(cfgB)) {
		t.Fatalf("config hash = %s", st.ConfigHash)
	}
}

func TestStopDetaches(t *testing.T) {
	r := newRig(t, fakeKernel(t), filepath.Join(t.TempDir(), "layered.json"))
	r.apply(cfgA)
	r.waitFor("attach", attached)
	if err := r.sup.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if k := r.kernel(); k.State != StateDisabled || k.Ops != "" {
		t.Fatalf("kernel after Stop = %+v", k)
	}
	if st := r.sup.Status(); st.Phase != PhaseStopped || st.PID != 0 {
		t.Fatalf("status after Stop = %+v", st)
	}
	if r.count("stop") != 1 {
		t.Fatalf("events = %+v", r.events())
	}
	// Stopped stays stopped: no restart is scheduled.
	time.Sleep(300 * time.Millisecond)
	if r.count("start") != 1 {
		t.Fatalf("restarted after Stop: %+v", r.events())
	}
}

func TestEjectionIsNoticedAndRestarted(t *testing.T) {
	for name, sig := range map[string]syscall.Signal{
		"process exits":   syscall.SIGUSR1,
		"process lingers": syscall.SIGUSR2,
	} {
		t.Run(name, func(t *testing.T) {
			r := newRig(t, fakeKernel(t), filepath.Join(t.TempDir(), "layered.json"))
			r.apply(cfgA)
			st := r.waitFor("attach", attached)
			if err := syscall.Kill(st.PID, sig); err != nil {
				t.Fatal(err)
			}
			st = r.waitFor("degraded", func(s Status) bool { return s.Phase == PhaseDegraded })
			if st.Ejections != 1 {
				t.Fatalf("ejection not counted: %+v", st)
			}
			st = r.waitFor("restart", func(s Status) bool { return attached(s) && s.Starts == 2 })
			if k := r.kernel(); !k.Attached(LayeredOpsName) || k.EnableSeq != 2 {
				t.Fatalf("kernel after restart = %+v", k)
			}
			r.noOverlap()
		})
	}
}

func TestInvalidConfigBacksOff(t *testing.T) {
	r := newRig(t, fakeKernel(t), filepath.Join(t.TempDir(), "layered.json"))
	r.apply(`{"not":"an array"}`)
	st := r.waitFor("repeated failures", func(s Status) bool { return s.Starts >= 3 && s.Phase == PhaseDegraded })
	if st.Phase == PhaseAttached {
		t.Fatalf("invalid config attached: %+v", st)
	}
	if !strings.Contains(st.Reason, "exited") {
		t.Fatalf("reason = %q", st.Reason)
	}
	if r.count("invalid") < 3 || r.count("start") != 0 {
		t.Fatalf("events = %+v", r.events())
	}
	// A good config clears it at once.
	r.apply(cfgA)
	r.waitFor("attach", attached)
}

func TestAdoptsInstanceOfPreviousAgent(t *testing.T) {
	sysfs := fakeKernel(t)
	config := filepath.Join(t.TempDir(), "layered.json")
	r := newRig(t, sysfs, config)
	r.apply(cfgA)
	first := r.waitFor("attach", attached)

	// The agent process goes away without stopping scx_layered.
	r.abandon()
	if k := r.kernel(); !k.Attached(LayeredOpsName) {
		t.Fatalf("scheduler detached when the agent went away: %+v", k)
	}

	// A new agent adopts it and the same config keeps it running.
	r.start()
	st := r.waitFor("adoption", func(s Status) bool { return s.Adopted })
	if st.PID != first.PID || st.Phase != PhaseAttached {
		t.Fatalf("adopted status = %+v, want pid %d attached", st, first.PID)
	}
	r.apply(cfgA)
	if r.count("start") != 1 {
		t.Fatalf("adoption restarted scx_layered: %+v", r.events())
	}
	// A changed config replaces the adopted instance.
	r.apply(cfgB)
	r.waitFor("restart", func(s Status) bool { return attached(s) && !s.Adopted })
	if r.count("start") != 2 || r.count("stop") != 1 {
		t.Fatalf("events = %+v", r.events())
	}
	r.noOverlap()
}

func TestRefusesWhenAnotherSchedulerIsAttached(t *testing.T) {
	sysfs := fakeKernel(t)
	if err := os.WriteFile(filepath.Join(sysfs, "state"), []byte("enabled\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(sysfs, "root"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sysfs, "root", "ops"), []byte("simple\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := newRig(t, sysfs, filepath.Join(t.TempDir(), "layered.json"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := r.sup.Apply(ctx, []byte(cfgA))
	if err == nil || !strings.Contains(err.Error(), `another sched_ext scheduler ("simple")`) {
		t.Fatalf("Apply = %v", err)
	}
	if st := r.sup.Status(); st.Phase != PhaseDegraded || r.count("start") != 0 {
		t.Fatalf("status = %+v, events %+v", st, r.events())
	}
	if k := r.kernel(); k.Ops != "simple" {
		t.Fatalf("the other scheduler was touched: %+v", k)
	}
}

func TestNoSchedExt(t *testing.T) {
	s := New(Options{Binary: standin, ConfigPath: filepath.Join(t.TempDir(), "c.json"), SysFS: SysFS{Root: filepath.Join(t.TempDir(), "missing")}})
	if err := s.Run(context.Background()); !errors.Is(err, ErrNoSchedExt) {
		t.Fatalf("Run = %v, want ErrNoSchedExt", err)
	}
}

// Uninstall (infera-agent --restore) stops an scx_layered no agent
// supervises, and the kernel reports sched_ext disabled.
func TestStopOrphanForRestore(t *testing.T) {
	sysfs := fakeKernel(t)
	config := filepath.Join(t.TempDir(), "layered.json")
	r := newRig(t, sysfs, config)
	r.apply(cfgA)
	first := r.waitFor("attach", attached)
	r.abandon()

	s := New(Options{Binary: standin, ConfigPath: config, SysFS: SysFS{Root: sysfs}, Poll: 20 * time.Millisecond,
		StopTimeout: 5 * time.Second, Log: testr.New(t)})
	pid, err := s.StopOrphan()
	if err != nil || pid != first.PID {
		t.Fatalf("StopOrphan() = %d, %v; want pid %d stopped", pid, err, first.PID)
	}
	if k := r.kernel(); k.State != StateDisabled {
		t.Fatalf("kernel after StopOrphan = %+v, want disabled", k)
	}
	if pid, err := s.StopOrphan(); pid != 0 || err != nil {
		t.Fatalf("second StopOrphan() = %d, %v; want nothing to stop", pid, err)
	}
}

// Issue #18, defect 2: with host PID any pod can run a process whose
// command line carries the config path. The supervisor identifies its
// scheduler by what a decoy cannot copy (the pid with its start time,
// executable and owner, recorded in the state directory when it started
// it): a decoy is neither adopted nor stopped, and the real scheduler is.
func TestDecoyIsNeitherAdoptedNorStopped(t *testing.T) {
	sysfs := fakeKernel(t)
	config := filepath.Join(t.TempDir(), "layered.json")
	r := newRig(t, sysfs, config)
	r.apply(cfgA)
	first := r.waitFor("attach", attached)
	r.abandon()

	decoy := exec.Command("sh", "-c", "sleep 600", "f:"+config)
	if err := decoy.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = decoy.Process.Kill(); _ = decoy.Wait() })

	r.start()
	st := r.waitFor("adoption", func(s Status) bool { return s.Adopted })
	if st.PID != first.PID {
		t.Fatalf("adopted pid %d, want the scheduler's %d (decoy %d)", st.PID, first.PID, decoy.Process.Pid)
	}
	r.abandon()

	s := New(Options{Binary: standin, ConfigPath: config, SysFS: SysFS{Root: sysfs}, Poll: 20 * time.Millisecond,
		StopTimeout: 2 * time.Second, Log: testr.New(t)})
	for range 3 {
		pid, err := s.StopOrphan()
		if err != nil {
			t.Fatalf("StopOrphan() = %d, %v", pid, err)
		}
		if pid == 0 {
			break
		}
		if pid != first.PID {
			t.Fatalf("StopOrphan() stopped pid %d, not the scheduler %d (decoy %d)", pid, first.PID, decoy.Process.Pid)
		}
	}
	if k := r.kernel(); k.State != StateDisabled {
		t.Fatalf("kernel after StopOrphan = %+v, want disabled", k)
	}
	if err := syscall.Kill(decoy.Process.Pid, 0); err != nil {
		t.Errorf("the decoy was signalled: %v", err)
	}
}
