// Package procscantest starts real busy processes pinned to CPUs, for the
// tests of procscan, lint and observe that need threads placed on purpose.
// Test code only.
package procscantest

import (
	"os/exec"
	"testing"

	"golang.org/x/sys/unix"
)

// StartBusy starts a shell spinning in a loop, pinned to cpus with
// sched_setaffinity, and returns its pid. The process is killed and reaped
// when the test ends. It skips the test when the process cannot start or
// be pinned (a CPU that is not online here).
func StartBusy(t testing.TB, cpus ...int) int {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", "while :; do :; done")
	if err := cmd.Start(); err != nil {
		t.Skipf("cannot start a busy process: %v", err)
	}
	pid := cmd.Process.Pid
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	var set unix.CPUSet
	for _, c := range cpus {
		set.Set(c)
	}
	if err := unix.SchedSetaffinity(pid, &set); err != nil {
		t.Skipf("cannot pin pid %d to CPUs %v: %v", pid, cpus, err)
	}
	return pid
}

// AllowedCPUs returns the CPUs this process may run on, ascending.
func AllowedCPUs(t testing.TB) []int {
	t.Helper()
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		t.Fatalf("failed to read this process's CPU affinity: %v", err)
	}
	var cpus []int
	for c := 0; c < len(set)*64; c++ {
		if set.IsSet(c) {
			cpus = append(cpus, c)
		}
	}
	return cpus
}
