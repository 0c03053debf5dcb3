// Package hostcg lets real-kernel tests (TestPrivileged*) build cgroups in a
// private temper-test-<random> subtree of this machine's real hierarchies
// and run processes in them. Everything a Sandbox creates it removes in its
// test's cleanup, failed test or not: it kills its processes, then removes
// its cgroups bottom-up.
//
// It is for tests only, needs root, and must never touch a cgroup it did
// not create.
package hostcg

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// RequireRoot skips the test when not running as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create cgroups and move processes")
	}
}

// RandomName returns a fresh temper-test-<random> cgroup name.
func RandomName(t testing.TB) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "temper-test-" + hex.EncodeToString(b)
}

// Sandbox creates cgroups and processes and undoes them on cleanup.
type Sandbox struct {
	t       testing.TB
	created []string
	procs   []*exec.Cmd
}

// New returns a sandbox whose cleanup is registered with t.
func New(t testing.TB) *Sandbox {
	s := &Sandbox{t: t}
	t.Cleanup(s.cleanup)
	return s
}

// Created lists the directories made so far, in creation order.
func (s *Sandbox) Created() []string { return append([]string(nil), s.created...) }

// Mkdir creates the cgroup dir (its parent must exist). With cpusetV1 it
// copies the parent's cpuset.cpus and cpuset.mems into it, since a new v1
// cpuset cgroup starts empty and cannot take tasks, as runtimes do.
func (s *Sandbox) Mkdir(dir string, cpusetV1 bool) {
	s.t.Helper()
	if err := os.Mkdir(dir, 0o755); err != nil {
		s.t.Fatalf("failed to create cgroup %s: %v", dir, err)
	}
	s.created = append(s.created, dir)
	if !cpusetV1 {
		return
	}
	for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
		b, err := os.ReadFile(filepath.Join(filepath.Dir(dir), f))
		if err != nil {
			s.t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0); err != nil {
			s.t.Fatalf("failed to copy %s into %s: %v", f, dir, err)
		}
	}
}

// Start runs `sleep 600` and moves it into the given cgroups (one per v1
// hierarchy, or the one v2 cgroup).
func (s *Sandbox) Start(dirs ...string) *exec.Cmd {
	s.t.Helper()
	return s.StartCommand(exec.Command("sleep", "600"), dirs...)
}

// StartBusy runs a CPU-bound shell loop in the given cgroups.
func (s *Sandbox) StartBusy(dirs ...string) *exec.Cmd {
	s.t.Helper()
	return s.StartCommand(exec.Command("sh", "-c", "while :; do :; done"), dirs...)
}

// StartCommand starts cmd and moves it into the given cgroups; cleanup
// kills it.
func (s *Sandbox) StartCommand(cmd *exec.Cmd, dirs ...string) *exec.Cmd {
	s.t.Helper()
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("failed to start %s: %v", cmd.Path, err)
	}
	s.procs = append(s.procs, cmd)
	for _, d := range dirs {
		if err := os.WriteFile(filepath.Join(d, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0); err != nil {
			s.t.Fatalf("failed to move pid %d into %s: %v", cmd.Process.Pid, d, err)
		}
	}
	return cmd
}

func (s *Sandbox) cleanup() {
	for _, cmd := range s.procs {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	for i := len(s.created) - 1; i >= 0; i-- {
		dir := s.created[i]
		var err error
		for range 50 { // a killed task may take a moment to leave its cgroup
			if err = syscall.Rmdir(dir); err == nil || errors.Is(err, syscall.ENOENT) {
				err = nil
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil {
			s.t.Errorf("failed to remove test cgroup %s: %v", dir, err)
		}
	}
}

// ConfigSnapshot reads every readable, writable file of the given cgroups
// (the configuration: weights, idle, quotas, cpusets, membership), leaving
// out the read-only counters and *.pressure files, which move by
// themselves.
func ConfigSnapshot(t testing.TB, dirs []string) map[string]string {
	t.Helper()
	snap := map[string]string{}
	for _, d := range dirs {
		entries, err := os.ReadDir(d)
		if err != nil {
			t.Fatalf("failed to list %s: %v", d, err)
		}
		for _, e := range entries {
			fi, err := e.Info()
			if err != nil || e.IsDir() || fi.Mode().Perm()&0o200 == 0 || strings.HasSuffix(e.Name(), ".pressure") {
				continue
			}
			b, err := os.ReadFile(filepath.Join(d, e.Name()))
			if err != nil {
				continue // write-only files
			}
			snap[filepath.Join(d, e.Name())] = string(b)
		}
	}
	return snap
}

// ProcStatus returns a field of /proc/<pid>/status, e.g. Cpus_allowed_list.
func ProcStatus(t testing.TB, pid int, field string) string {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return ""
}

// ReadTrimmed reads a file and trims it.
func ReadTrimmed(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}
