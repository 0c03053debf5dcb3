package scx

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/utils/clock"
)

// Options configure a Supervisor. Zero durations take the defaults below.
type Options struct {
	// Binary is the scx_layered executable.
	Binary string
	// ExtraArgs go before the config spec argument.
	ExtraArgs []string
	// ConfigPath is where the generated config is written; scx_layered
	// reads it as `f:<ConfigPath>`.
	ConfigPath string
	// StateDir holds the identity of the instance the supervisor started
	// (pid, start time, executable, owner), which adoption and StopOrphan
	// require: a command line is no identity, any process can carry the
	// config path. Default: the config's directory.
	StateDir string
	// SysFS reads /sys/kernel/sched_ext.
	SysFS SysFS
	// ProcRoot is /proc (injectable for tests).
	ProcRoot string
	// Poll is how often the kernel state is read: an ejection is noticed
	// within one period. Default 250ms: four reads a second keep the 1 s promise with margin.
	Poll time.Duration
	// AttachTimeout bounds how long a started instance may take to be
	// reported "enabled" by the kernel. Default 15s.
	AttachTimeout time.Duration
	// StopTimeout bounds a graceful stop before SIGKILL. Default 5s.
	StopTimeout time.Duration
	// BackoffInitial and BackoffMax bound the restart delay after crashes,
	// doubled per consecutive failure. Defaults 500ms and 30s. A run that
	// stayed attached for StableAfter (default 60s) resets it.
	BackoffInitial, BackoffMax, StableAfter time.Duration
	// Clock is injectable for tests.
	Clock clock.WithTicker
	// Log is the supervisor's logger.
	Log logr.Logger
	// OnChange is called (from the supervisor's goroutine, must not block)
	// after every status change.
	OnChange func(Status)
}

func (o *Options) defaults() {
	if o.Poll == 0 {
		o.Poll = 250 * time.Millisecond
	}
	if o.AttachTimeout == 0 {
		o.AttachTimeout = 15 * time.Second
	}
	if o.StopTimeout == 0 {
		o.StopTimeout = 5 * time.Second
	}
	if o.BackoffInitial == 0 {
		o.BackoffInitial = 500 * time.Millisecond
	}
	if o.BackoffMax == 0 {
		o.BackoffMax = 30 * time.Second
	}
	if o.StableAfter == 0 {
		o.StableAfter = 60 * time.Second
	}
	if o.ProcRoot == "" {
		o.ProcRoot = "/proc"
	}
	if o.StateDir == "" {
		o.StateDir = filepath.Dir(o.ConfigPath)
	}
	if o.SysFS.Root == "" {
		o.SysFS.Root = DefaultSysFSRoot
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	if o.OnChange == nil {
		o.OnChange = func(Status) {}
	}
}

// Phase is what the supervisor is doing.
type Phase string

const (
	// PhaseStopped: no config is desired (initial state, or safe mode).
	PhaseStopped Phase = "stopped"
	// PhaseStarting: an instance was started and the kernel has not yet
	// reported it enabled.
	PhaseStarting Phase = "starting"
	// PhaseAttached: the kernel reports scx_layered enabled.
	PhaseAttached Phase = "attached"
	// PhaseDegraded: a config is desired but no instance is attached (it
	// crashed, was ejected, failed to start, or something else holds
	// sched_ext). Reason says why; a restart is scheduled with backoff.
	PhaseDegraded Phase = "degraded"
)

// Status is a snapshot of the supervisor.
type Status struct {
	Phase  Phase
	Reason string
	// PID of the supervised instance (0 when none).
	PID int
	// ConfigHash is the sha256 of the config the instance runs.
	ConfigHash string
	// Adopted is true when the instance was started by an earlier agent
	// process and adopted.
	Adopted bool
	// Starts, Exits and Ejections count events since the supervisor began.
	Starts, Exits, Ejections int
	// Restarts counts in-process re-initialisations the kernel reported
	// (enable_seq rose while the same instance kept running).
	Restarts int
	// EnableSeq is the last kernel enable_seq seen.
	EnableSeq uint64
	// LastExit describes the last instance exit.
	LastExit string
}

type command struct {
	config []byte // nil: stop
	done   chan error
}

// Supervisor runs one scx_layered. Create it with New, run Run in a
// goroutine, and drive it with Apply and Stop.
type Supervisor struct {
	o    Options
	cmds chan command
	// done is closed when Run returns; commands then fail fast.
	done chan struct{}

	mu     sync.Mutex
	status Status
}

// New returns a Supervisor; nothing starts until Run.
func New(o Options) *Supervisor {
	o.defaults()
	return &Supervisor{o: o, cmds: make(chan command), done: make(chan struct{}), status: Status{Phase: PhaseStopped}}
}

// Status returns the current snapshot.
func (s *Supervisor) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

// Apply makes config the one scx_layered runs. An identical config keeps the
// running instance; a different one restarts it. It returns once the new
// instance was started (attach is reported through Status), or with an
// error when the config could not be written or the binary not started.
func (s *Supervisor) Apply(ctx context.Context, config []byte) error {
	if config == nil {
		config = []byte{}
	}
	return s.send(ctx, command{config: config})
}

// Stop detaches scx_layered and waits until the kernel reports sched_ext
// disabled (or the stop timeout passes). Used for safe mode and shutdown.
func (s *Supervisor) Stop(ctx context.Context) error {
	return s.send(ctx, command{config: nil})
}

func (s *Supervisor) send(ctx context.Context, c command) error {
	c.done = make(chan error, 1)
	select {
	case s.cmds <- c:
	case <-s.done:
		return ErrNotRunning
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-c.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// instance is a running (started or adopted) scx_layered.
type instance struct {
	pid     int
	cmd     *exec.Cmd     // nil when adopted
	exited  chan struct{} // closed when the process is gone
	exitMsg string
	started time.Time
	hash    string
	seq     uint64 // enable_seq when it attached
}

func (i *instance) alive() bool {
	select {
	case <-i.exited:
		return false
	default:
		return true
	}
}

// ErrNotRunning is returned by Apply and Stop when Run is not running.
var ErrNotRunning = errors.New("scx_layered supervisor is not running")

// Run supervises until ctx is done. On return the instance is left running
// (an agent restart adopts it); call Stop first to detach. Run may be called
// once per Supervisor.
func (s *Supervisor) Run(ctx context.Context) error {
	defer close(s.done)
	o := s.o
	var (
		desired  []byte // nil: stopped
		inst     *instance
		failures int
		retry    clock.Timer
		retryC   <-chan time.Time
	)
	if err := o.SysFS.Available(); err != nil {
		return err
	}
	inst = s.adopt()
	ticker := o.Clock.NewTicker(o.Poll)
	defer ticker.Stop()

	setRetry := func() {
		d := o.BackoffInitial << min(failures, 16)
		if d > o.BackoffMax || d <= 0 {
			d = o.BackoffMax
		}
		failures++
		if retry != nil {
			retry.Stop()
		}
		retry = o.Clock.NewTimer(d)
		retryC = retry.C()
		o.Log.Info("Scheduling scx_layered restart", "after", d, "failures", failures)
	}
	degrade := func(reason string) {
		s.update(func(st *Status) { st.Phase, st.Reason, st.PID = PhaseDegraded, reason, 0 })
		o.Log.Info("scx_layered degraded", "reason", reason)
		setRetry()
	}
	start := func() error {
		var err error
		inst, err = s.start(desired)
		if err != nil {
			degrade(err.Error())
			return err
		}
		return nil
	}

	for {
		select {
		case <-ctx.Done():
			return nil

		case c := <-s.cmds:
			if c.config == nil {
				desired = nil
				if retry != nil {
					retry.Stop()
					retryC = nil
				}
				err := s.stop(inst)
				inst = nil
				failures = 0
				s.update(func(st *Status) {
					// Counters and the last exit are history; the rest
					// described the instance that is gone.
					st.Phase, st.Reason, st.PID, st.ConfigHash, st.Adopted = PhaseStopped, "", 0, "", false
				})
				c.done <- err
				continue
			}
			h := ConfigHash(c.config)
			if inst != nil && inst.alive() && inst.hash == h {
				desired = c.config
				c.done <- nil
				continue
			}
			if err := writeAtomic(o.ConfigPath, c.config); err != nil {
				c.done <- err
				continue
			}
			desired = c.config
			if err := s.stop(inst); err != nil {
				o.Log.Error(err, "Failed to stop the previous scx_layered cleanly")
			}
			inst = nil
			if retry != nil {
				retry.Stop()
				retryC = nil
			}
			failures = 0
			c.done <- start()

		case <-retryC:
			retryC = nil
			if desired != nil && (inst == nil || !inst.alive()) {
				_ = start()
			}

		case <-ticker.C():
			k, err := o.SysFS.Read()
			if err != nil {
				o.Log.Error(err, "Failed to read sched_ext state")
				continue
			}
			s.update(func(st *Status) { st.EnableSeq = k.EnableSeq })
			if inst == nil {
				continue
			}
			st := s.Status()
			switch {
			case !inst.alive():
				msg := inst.exitMsg
				// scx_layered prints "EXIT: <reason>" when the kernel
				// unloads it (BPF error, watchdog, SysRq-S).
				ejected := st.Phase == PhaseAttached && bytes.Contains([]byte(msg), []byte("EXIT:"))
				s.update(func(st *Status) {
					st.Exits++
					st.LastExit = msg
					if ejected {
						st.Ejections++
					}
				})
				if o.Clock.Since(inst.started) >= o.StableAfter {
					failures = 0
				}
				inst = nil
				if desired != nil {
					degrade("scx_layered exited: " + msg)
				}
			case st.Phase == PhaseStarting && k.Attached(LayeredOpsName):
				inst.seq = k.EnableSeq
				s.update(func(st *Status) { st.Phase, st.Reason = PhaseAttached, "" })
				o.Log.Info("scx_layered attached", "pid", inst.pid, "enableSeq", k.EnableSeq)
			case st.Phase == PhaseStarting && o.Clock.Since(inst.started) > o.AttachTimeout:
				_ = s.stop(inst)
				inst = nil
				degrade(fmt.Sprintf("scx_layered did not attach within %s (kernel state %q, ops %q)", o.AttachTimeout, k.State, k.Ops))
			case st.Phase == PhaseAttached && !k.Attached(LayeredOpsName):
				// The kernel ejected it; the process will exit. Count it
				// now so the 1 s promise holds even if the exit is slow.
				s.update(func(st *Status) {
					st.Ejections++
					st.Phase, st.Reason = PhaseDegraded, fmt.Sprintf("kernel ejected scx_layered (state %q)", k.State)
				})
				o.Log.Info("Kernel ejected scx_layered", "state", k.State, "ops", k.Ops)
				_ = s.stop(inst)
				s.update(func(st *Status) { st.Exits++; st.LastExit = inst.exitMsg })
				inst = nil
				setRetry()
			case st.Phase == PhaseAttached && k.EnableSeq != inst.seq:
				// Same process, new enable: an in-process re-init (CPU
				// hotplug).
				inst.seq = k.EnableSeq
				s.update(func(st *Status) { st.Restarts++ })
			}
		}
	}
}

func (s *Supervisor) update(f func(*Status)) {
	s.mu.Lock()
	f(&s.status)
	st := s.status
	s.mu.Unlock()
	s.o.OnChange(st)
}

// start launches scx_layered on the written config. It refuses when another
// sched_ext scheduler is attached: the kernel allows one, and we never
// detach what we did not start.
func (s *Supervisor) start(config []byte) (*instance, error) {
	o := s.o
	k, err := o.SysFS.Read()
	if err != nil {
		return nil, err
	}
	if k.State != StateDisabled {
		if k.Ops != "" && k.Ops != LayeredOpsName {
			return nil, fmt.Errorf("another sched_ext scheduler (%q) is attached; not starting scx_layered", k.Ops)
		}
		if pid := s.findInstance(); pid == 0 {
			return nil, fmt.Errorf("sched_ext is %s with ops %q held by a process the agent did not start; not starting a second scheduler", k.State, k.Ops)
		}
	}
	args := append(append([]string{}, o.ExtraArgs...), "f:"+o.ConfigPath)
	cmd := exec.Command(o.Binary, args...)
	// Its own session: an agent process crash (inside the same container)
	// does not take the scheduler down; the next agent adopts it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = os.Stderr, &limitedWriter{w: &stderr, n: 4096}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("failed to start %s: %w", o.Binary, err)
	}
	inst := &instance{pid: cmd.Process.Pid, cmd: cmd, exited: make(chan struct{}), started: o.Clock.Now(), hash: ConfigHash(config)}
	if id, err := readIdentity(o.ProcRoot, inst.pid); err != nil {
		o.Log.Error(err, "Failed to read the identity of the started scx_layered; a restarted agent will not adopt it", "pid", inst.pid)
	} else if err := writeIdentity(o.StateDir, id); err != nil {
		o.Log.Error(err, "Failed to record the identity of the started scx_layered; a restarted agent will not adopt it", "pid", inst.pid)
	}
	go func() {
		err := cmd.Wait()
		msg := "exit status 0"
		if err != nil {
			msg = err.Error()
		}
		if tail := bytes.TrimSpace(stderr.Bytes()); len(tail) > 0 {
			msg += ": " + lastLine(tail)
		}
		inst.exitMsg = msg
		close(inst.exited)
	}()
	s.update(func(st *Status) {
		st.Phase, st.Reason, st.PID, st.ConfigHash, st.Adopted = PhaseStarting, "", inst.pid, inst.hash, false
		st.Starts++
	})
	o.Log.Info("Started scx_layered", "pid", inst.pid, "config", o.ConfigPath, "configHash", inst.hash[:12])
	return inst, nil
}

// stop ends inst gracefully (SIGTERM, then SIGKILL after StopTimeout) and
// waits for the kernel to report sched_ext disabled.
func (s *Supervisor) stop(inst *instance) error {
	o := s.o
	if inst == nil || !inst.alive() {
		return nil
	}
	_ = syscall.Kill(inst.pid, syscall.SIGTERM)
	deadline := o.Clock.Now().Add(o.StopTimeout)
	for inst.alive() && o.Clock.Now().Before(deadline) {
		select {
		case <-inst.exited:
		case <-o.Clock.After(20 * time.Millisecond):
		}
	}
	if inst.alive() {
		o.Log.Info("scx_layered did not stop in time; killing it", "pid", inst.pid, "timeout", o.StopTimeout)
		_ = syscall.Kill(inst.pid, syscall.SIGKILL)
		select {
		case <-inst.exited:
		case <-o.Clock.After(o.StopTimeout):
			return fmt.Errorf("scx_layered (pid %d) survived SIGKILL", inst.pid)
		}
	}
	for o.Clock.Now().Before(deadline.Add(o.StopTimeout)) {
		k, err := o.SysFS.Read()
		if err != nil || k.State == StateDisabled {
			return err
		}
		<-o.Clock.After(20 * time.Millisecond)
	}
	return fmt.Errorf("sched_ext did not report disabled within %s after scx_layered exited", 2*o.StopTimeout)
}

// adopt finds an scx_layered that an earlier agent process started on our
// config path and that the kernel reports attached, and supervises it
// instead of restarting it.
func (s *Supervisor) adopt() *instance {
	k, err := s.o.SysFS.Read()
	if err != nil || !k.Attached(LayeredOpsName) {
		return nil
	}
	pid := s.findInstance()
	if pid == 0 {
		return nil
	}
	cfg, err := os.ReadFile(s.o.ConfigPath)
	if err != nil {
		return nil
	}
	inst := &instance{pid: pid, exited: make(chan struct{}), started: s.o.Clock.Now(), hash: ConfigHash(cfg), seq: k.EnableSeq}
	go s.watchPID(inst)
	s.update(func(st *Status) {
		st.Phase, st.PID, st.ConfigHash, st.Adopted, st.EnableSeq = PhaseAttached, pid, inst.hash, true, k.EnableSeq
	})
	s.o.Log.Info("Adopted running scx_layered", "pid", pid, "configHash", inst.hash[:12])
	return inst
}

// watchPID closes inst.exited when a process we did not start is gone.
func (s *Supervisor) watchPID(inst *instance) {
	for {
		if err := syscall.Kill(inst.pid, 0); errors.Is(err, syscall.ESRCH) || isZombie(s.o.ProcRoot, inst.pid) {
			inst.exitMsg = "adopted process exited"
			close(inst.exited)
			return
		}
		<-s.o.Clock.After(s.o.Poll)
	}
}

// findInstance returns the pid of the scx_layered an agent on this node
// started, or 0: the process recorded in the state directory, when it still
// has the recorded start time, executable and owner (so neither a decoy
// carrying the config path nor a reused pid is taken for it) and its
// command line carries our config spec argument.
func (s *Supervisor) findInstance() int {
	rec, err := readRecord(s.o.StateDir)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			s.o.Log.Error(err, "Failed to read the recorded scx_layered identity")
		}
		return 0
	}
	if rec.PID <= 0 || rec.PID == os.Getpid() || isZombie(s.o.ProcRoot, rec.PID) {
		return 0
	}
	cur, err := readIdentity(s.o.ProcRoot, rec.PID)
	if err != nil || cur != rec {
		if err == nil {
			s.o.Log.Info("The recorded scx_layered pid is another process now; not adopting it", "pid", rec.PID, "recorded", rec, "found", cur)
		}
		return 0
	}
	b, err := os.ReadFile(filepath.Join(s.o.ProcRoot, strconv.Itoa(rec.PID), "cmdline"))
	if err != nil {
		return 0
	}
	want := []byte("f:" + s.o.ConfigPath)
	for _, arg := range bytes.Split(b, []byte{0}) {
		if bytes.Equal(arg, want) {
			return rec.PID
		}
	}
	return 0
}

// identity is what tells our scheduler process from any other: the pid
// with its start time (clock ticks after boot, /proc/<pid>/stat field 22:
// a reused pid has another), the executable and the owner.
type identity struct {
	PID       int    `json:"pid"`
	StartTime uint64 `json:"startTime"`
	Exe       string `json:"exe"`
	UID       uint32 `json:"uid"`
}

const identityFile = "scx-instance.json"

func readIdentity(procRoot string, pid int) (identity, error) {
	dir := filepath.Join(procRoot, strconv.Itoa(pid))
	b, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return identity{}, fmt.Errorf("failed to read the stat of pid %d: %w", pid, err)
	}
	// The fields after the parenthesised comm (which may hold spaces):
	// state is field 3, starttime field 22.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return identity{}, fmt.Errorf("failed to parse the stat of pid %d", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return identity{}, fmt.Errorf("failed to parse the stat of pid %d: %d fields after comm", pid, len(f))
	}
	start, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return identity{}, fmt.Errorf("failed to parse the start time of pid %d: %w", pid, err)
	}
	exe, err := os.Readlink(filepath.Join(dir, "exe"))
	if err != nil {
		return identity{}, fmt.Errorf("failed to read the executable of pid %d: %w", pid, err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		return identity{}, fmt.Errorf("failed to stat %s: %w", dir, err)
	}
	return identity{PID: pid, StartTime: start, Exe: exe, UID: st.Uid}, nil
}

func writeIdentity(dir string, id identity) error {
	b, err := json.Marshal(id)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("failed to create %s: %w", dir, err)
	}
	return writeAtomic(filepath.Join(dir, identityFile), b)
}

func readRecord(dir string) (identity, error) {
	var id identity
	b, err := os.ReadFile(filepath.Join(dir, identityFile))
	if err != nil {
		return id, err
	}
	if err := json.Unmarshal(b, &id); err != nil {
		return id, fmt.Errorf("failed to parse %s: %w", filepath.Join(dir, identityFile), err)
	}
	return id, nil
}

func isZombie(procRoot string, pid int) bool {
	b, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "stat"))
	if err != nil {
		return true
	}
	// The state follows the parenthesised comm, which may contain spaces.
	if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) {
		return b[i+2] == 'Z'
	}
	return false
}

// ConfigHash is the identity of a config as Status.ConfigHash reports it.
func ConfigHash(b []byte) string {
	sum := sha256.Sum256(b)
	return fmt.Sprintf("%x", sum[:])
}

// writeAtomic writes b to path through a temporary file and a rename, so
// scx_layered never reads a half-written config.
func writeAtomic(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("failed to create config dir: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".layered-*.json")
	if err != nil {
		return fmt.Errorf("failed to write scx_layered config: %w", err)
	}
	defer func() { _ = os.Remove(tmp.Name()) }()
	if _, err := tmp.Write(b); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("failed to write scx_layered config: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("failed to sync scx_layered config: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("failed to write scx_layered config: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("failed to install scx_layered config: %w", err)
	}
	return nil
}

type limitedWriter struct {
	w *bytes.Buffer
	n int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	n := len(p)
	if over := l.w.Len() + len(p) - l.n; over > 0 {
		// Keep the tail: the last lines carry the exit reason.
		rest := l.w.Bytes()
		if over > len(rest) {
			over = len(rest)
		}
		remaining := append([]byte(nil), rest[over:]...)
		l.w.Reset()
		l.w.Write(remaining)
	}
	if len(p) > l.n {
		p = p[len(p)-l.n:]
	}
	l.w.Write(p)
	return n, nil
}

func lastLine(b []byte) string {
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		return string(b[i+1:])
	}
	return string(b)
}

// StopOrphan stops an scx_layered that runs on this supervisor's config
// path without a supervisor (the agent crashed or was removed), for
// uninstall (`infera-agent --restore`). It must not be used while Run is
// running. It returns the pid it stopped, 0 when there was none.
func (s *Supervisor) StopOrphan() (int, error) {
	pid := s.findInstance()
	if pid == 0 {
		return 0, nil
	}
	inst := &instance{pid: pid, exited: make(chan struct{}), started: s.o.Clock.Now()}
	go s.watchPID(inst)
	s.o.Log.Info("Stopping an unsupervised scx_layered", "pid", pid, "config", s.o.ConfigPath)
	return pid, s.stop(inst)
}
