package realnode

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	configv1alpha1 "github.com/infera-io/temper/apis/config/v1alpha1"
)

// BuildAgent builds cmd/infera-agent into dir and returns the binary.
func BuildAgent(repoRoot, dir string) (string, error) {
	bin := filepath.Join(dir, "infera-agent")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/infera-agent")
	cmd.Dir = repoRoot
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("failed to build infera-agent: %w: %s", err, out)
	}
	return bin, nil
}

// AgentOptions place one agent process.
type AgentOptions struct {
	Binary     string
	Kubeconfig string
	NodeName   string
	// Node is the kubelet-shaped tree the agent enforces on.
	Node *Node
	// Dir holds the config, the log, the socket and (unless StateDir is
	// set) the state directory.
	Dir      string
	StateDir string
	// Heartbeat and CoalesceWindow default to 10 s and 200 ms.
	Heartbeat, CoalesceWindow time.Duration
	// Pod, when set, is the pod cgroup the agent process is moved into
	// right after it starts, as the DaemonSet pod's container would run
	// it; nil leaves it in the caller's cgroup.
	Pod *Pod
}

// Agent is the real infera-agent binary as its own process, on the cgroup
// backend (its sys_root has no sched_ext).
type Agent struct {
	o          AgentOptions
	ConfigFile string
	LogFile    string
	HTTPAddr   string
	Socket     string
	StateDir   string
	cmd        *exec.Cmd
	done       chan struct{}
}

// NewAgent writes the agent's config; Start runs it.
func NewAgent(o AgentOptions) (*Agent, error) {
	if o.Heartbeat == 0 {
		o.Heartbeat = 10 * time.Second
	}
	if o.CoalesceWindow == 0 {
		o.CoalesceWindow = 200 * time.Millisecond
	}
	a := &Agent{o: o, ConfigFile: filepath.Join(o.Dir, "agent.toml"), LogFile: filepath.Join(o.Dir, "agent.log"),
		Socket: filepath.Join(o.Dir, "agent.sock"), StateDir: o.StateDir}
	if a.StateDir == "" {
		a.StateDir = filepath.Join(o.Dir, "state")
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	a.HTTPAddr = addr
	// No kernel/sched_ext under sys_root: the cgroup backend. The real
	// CPU topology.
	sysRoot := filepath.Join(o.Dir, "sys")
	cpuDir := filepath.Join(sysRoot, "devices", "system", "cpu")
	if err := os.MkdirAll(cpuDir, 0o755); err != nil {
		return nil, err
	}
	online, err := os.ReadFile("/sys/devices/system/cpu/online")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(cpuDir, "online"), online, 0o644); err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf(`api_version = %q
kind = %q
coalesce_window = %q
heartbeat = %q
state_dir = %q
sys_root = %q
[cgroup]
root = %q
driver = "cgroupfs"
kubepods_path = %q
reconcile_interval = "1s"
cpu_manager_state = %q
[scx]
config_path = %q
[server]
address = %q
grpc_socket = %q
[observation]
enabled = false
`, configv1alpha1.AgentAPIVersion, configv1alpha1.AgentKind, o.CoalesceWindow, o.Heartbeat, a.StateDir, sysRoot,
		o.Node.Root, o.Node.Kubepods, filepath.Join(o.Dir, "no-cpu-manager-state"), filepath.Join(o.Dir, "layered.json"),
		a.HTTPAddr, a.Socket)
	if err := os.WriteFile(a.ConfigFile, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	return a, nil
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// Start runs the agent; its output is appended to LogFile.
func (a *Agent) Start() error {
	if a.Running() {
		return errors.New("the agent is already running")
	}
	f, err := os.OpenFile(a.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	fmt.Fprintf(f, "==== agent start %s\n", time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(a.o.Binary, "--config", a.ConfigFile, "--kubeconfig", a.o.Kubeconfig)
	cmd.Env = append(os.Environ(), "NODE_NAME="+a.o.NodeName)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("failed to start infera-agent: %w", err)
	}
	a.cmd, a.done = cmd, make(chan struct{})
	go func(done chan struct{}) { _ = cmd.Wait(); close(done) }(a.done)
	if a.o.Pod != nil {
		if err := a.o.Node.MoveInto(a.o.Pod, cmd.Process.Pid); err != nil {
			_ = cmd.Process.Kill()
			<-a.done
			return err
		}
	}
	return nil
}

// Running reports whether the process runs.
func (a *Agent) Running() bool {
	if a.cmd == nil {
		return false
	}
	select {
	case <-a.done:
		return false
	default:
		return true
	}
}

// PID is the running agent's pid, 0 when none.
func (a *Agent) PID() int {
	if !a.Running() {
		return 0
	}
	return a.cmd.Process.Pid
}

// Kill SIGKILLs the agent: no chance to clean up.
// The wait is long: on a loaded machine a killed process can take seconds
// to be reaped.
func (a *Agent) Kill() error { return a.signalAndWait(syscall.SIGKILL, 60*time.Second) }

// Stop is the clean stop (SIGTERM), as the kubelet stops a pod.
func (a *Agent) Stop() error { return a.signalAndWait(syscall.SIGTERM, 60*time.Second) }

func (a *Agent) signalAndWait(sig syscall.Signal, timeout time.Duration) error {
	if !a.Running() {
		return nil
	}
	if err := a.cmd.Process.Signal(sig); err != nil {
		return err
	}
	select {
	case <-a.done:
	case <-time.After(timeout):
		_ = a.cmd.Process.Kill()
		<-a.done
		return fmt.Errorf("infera-agent did not exit within %v of %v", timeout, sig)
	}
	if sig == syscall.SIGTERM && !a.cmd.ProcessState.Success() {
		return fmt.Errorf("infera-agent exited with %v after SIGTERM", a.cmd.ProcessState)
	}
	return nil
}

// Get fetches path from the agent's HTTP server (/readyz, /metrics).
func (a *Agent) Get(ctx context.Context, path string) (int, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+a.HTTPAddr+path, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// Metric returns the value of an unlabelled sample of the agent's
// /metrics, e.g. infera_agent_goroutines.
func (a *Agent) Metric(ctx context.Context, name string) (float64, error) {
	code, body, err := a.Get(ctx, "/metrics")
	if err != nil {
		return 0, err
	}
	if code != http.StatusOK {
		return 0, fmt.Errorf("/metrics answered %d", code)
	}
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("/metrics has no unlabelled %s", name)
}

// RSS is the agent process's resident set (VmRSS) in bytes.
func (a *Agent) RSS() (int64, error) {
	pid := a.PID()
	if pid == 0 {
		return 0, errors.New("the agent is not running")
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for l := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb * 1024, err
		}
	}
	return 0, errors.New("no VmRSS")
}

// LogTail is the last n bytes of the agent's log.
func (a *Agent) LogTail(n int) string {
	b, _ := os.ReadFile(a.LogFile)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// LogSince is the log written after offset (from LogSize).
func (a *Agent) LogSince(offset int64) string {
	b, _ := os.ReadFile(a.LogFile)
	if offset > int64(len(b)) {
		return ""
	}
	return string(b[offset:])
}

// LogSize is the log's current length.
func (a *Agent) LogSize() int64 {
	fi, err := os.Stat(a.LogFile)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// Restore runs `infera-agent --restore` against the agent's config.
func (a *Agent) Restore() (string, error) {
	out, err := exec.Command(a.o.Binary, "--restore", "--config", a.ConfigFile).CombinedOutput()
	return string(out), err
}
