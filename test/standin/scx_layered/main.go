// Command scx_layered here is a STAND-IN for the real scx_layered, which
// cannot run on the development and CI machines (no sched_ext kernel, and
// its Rust crates are unreachable). It exists only so the agent's supervisor
// can be tested against a real process with scx_layered's command line and
// exit behaviour (FORMAT.md §1, §11.3, §11.4):
//
//   - positional specs `f:PATH`, `file:PATH` or inline JSON, concatenated;
//   - the config is validated with the same checks as the generator's tests
//     (strict JSON schema + FORMAT.md §15 code checks); an invalid config
//     exits 1 without "attaching";
//   - "attaching" means writing a faked /sys/kernel/sched_ext tree
//     ($STANDIN_SYSFS): state enabling → enabled, root/ops = layered,
//     enable_seq + 1; if the faked kernel already has a scheduler, exit 1;
//   - SIGINT, SIGTERM, SIGHUP detach cleanly and exit 0;
//   - SIGUSR1 simulates a kernel ejection: the faked kernel goes disabled,
//     the process prints "EXIT: ..." and exits 1;
//   - SIGUSR2 simulates an ejection whose process lingers: the faked kernel
//     goes disabled but the process keeps running until signalled.
//
// Every start, stop and rejection is appended as a JSON line to
// $STANDIN_LOG so tests can count them. Nothing here schedules anything.
package main

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/infera-io/temper/test/standin/scxvalidate"
)

type event struct {
	Event      string `json:"event"`
	PID        int    `json:"pid"`
	Time       string `json:"time"`
	ConfigHash string `json:"configHash,omitempty"`
	Detail     string `json:"detail,omitempty"`
}

func logEvent(e event) {
	path := os.Getenv("STANDIN_LOG")
	if path == "" {
		return
	}
	e.PID, e.Time = os.Getpid(), time.Now().UTC().Format(time.RFC3339Nano)
	b, _ := json.Marshal(e)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, "stand-in: failed to open log:", err)
		return
	}
	defer func() { _ = f.Close() }()
	_, _ = f.Write(append(b, '\n'))
}

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	var specs [][]byte
	for _, a := range args {
		switch {
		case a == "-V" || a == "--version":
			fmt.Println("scx_layered 0.0.0-temper-standin")
			return 0
		case strings.HasPrefix(a, "-"):
			continue // flags are accepted and ignored
		case strings.HasPrefix(a, "f:") || strings.HasPrefix(a, "file:"):
			_, path, _ := strings.Cut(a, ":")
			b, err := os.ReadFile(path)
			if err != nil {
				fmt.Fprintf(os.Stderr, "Error: Failed to read specs %q: %v\n", a, err)
				logEvent(event{Event: "invalid", Detail: err.Error()})
				return 1
			}
			specs = append(specs, b)
		default:
			specs = append(specs, []byte(a))
		}
	}
	if len(specs) != 1 {
		fmt.Fprintln(os.Stderr, "Error: the stand-in takes exactly one spec")
		return 2
	}
	cfg := specs[0]
	sum := sha256.Sum256(cfg)
	hash := fmt.Sprintf("%x", sum[:])
	if err := scxvalidate.Validate(cfg); err != nil {
		fmt.Fprintf(os.Stderr, "Error: Failed to parse specs[0]: %v\n", err)
		logEvent(event{Event: "invalid", ConfigHash: hash, Detail: err.Error()})
		return 1
	}
	sysfs := os.Getenv("STANDIN_SYSFS")
	if sysfs == "" {
		fmt.Fprintln(os.Stderr, "Error: STANDIN_SYSFS is not set (the stand-in fakes the kernel there)")
		return 1
	}
	// Tests make every start fail while $STANDIN_FAIL_FILE exists (a BPF
	// verifier rejection, say), to hold the supervisor in backoff.
	if f := os.Getenv("STANDIN_FAIL_FILE"); f != "" {
		if _, err := os.Stat(f); err == nil {
			fmt.Fprintln(os.Stderr, "Error: stand-in: failing to load as asked by STANDIN_FAIL_FILE")
			logEvent(event{Event: "load-failed", ConfigHash: hash})
			return 1
		}
	}
	state, _ := os.ReadFile(filepath.Join(sysfs, "state"))
	if s := strings.TrimSpace(string(state)); s != "disabled" {
		fmt.Fprintf(os.Stderr, "Error: another sched_ext scheduler is loaded (state %q)\n", s)
		logEvent(event{Event: "attach-failed", ConfigHash: hash, Detail: s})
		return 1
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGUSR1, syscall.SIGUSR2)
	attach(sysfs)
	logEvent(event{Event: "start", ConfigHash: hash})
	for sig := range sigs {
		switch sig {
		case syscall.SIGUSR1:
			detach(sysfs)
			fmt.Fprintln(os.Stderr, "EXIT: runtime error (stand-in: simulated kernel ejection)")
			logEvent(event{Event: "ejected", ConfigHash: hash})
			return 1
		case syscall.SIGUSR2:
			detach(sysfs)
			logEvent(event{Event: "ejected-lingering", ConfigHash: hash})
		default:
			detach(sysfs)
			fmt.Fprintln(os.Stderr, "EXIT: unregistered from user space")
			logEvent(event{Event: "stop", ConfigHash: hash, Detail: sig.String()})
			return 0
		}
	}
	return 0
}

func write(path, v string) { _ = os.WriteFile(path, []byte(v+"\n"), 0o644) }

func attach(root string) {
	write(filepath.Join(root, "state"), "enabling")
	_ = os.MkdirAll(filepath.Join(root, "root"), 0o755)
	write(filepath.Join(root, "root", "ops"), "layered")
	seq, _ := os.ReadFile(filepath.Join(root, "enable_seq"))
	n, _ := strconv.Atoi(strings.TrimSpace(string(seq)))
	write(filepath.Join(root, "enable_seq"), strconv.Itoa(n+1))
	write(filepath.Join(root, "state"), "enabled")
}

func detach(root string) {
	write(filepath.Join(root, "state"), "disabling")
	_ = os.RemoveAll(filepath.Join(root, "root"))
	write(filepath.Join(root, "state"), "disabled")
}
