// Package hosttree is the benchmarks' private subtree of this machine's
// real cgroup v1 hierarchies: it creates cgroups (the same relative path in
// every hierarchy it is given), runs processes in them, and removes all of
// it, processes first, deepest cgroups first. It needs root, and never
// touches a cgroup it did not create. (Tests use
// nodeagent/cgroup/cgrouptest/hostcg, which reports to a testing.TB.)
package hosttree

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Tree is a set of cgroups under Base in each of Hierarchies.
type Tree struct {
	// Hierarchies are the v1 hierarchy roots to mirror every cgroup in.
	Hierarchies []string
	// CPUSet is the one of Hierarchies holding the cpuset controller, ""
	// if none: a new cgroup there gets its parent's CPUs and memory nodes,
	// as runtimes set them, or it could not take tasks.
	CPUSet string
	// Base is the tree's top cgroup, relative to the hierarchy roots.
	Base string

	created []string
	procs   []*exec.Cmd
}

// RandomHex returns n random bytes in hex, for unique cgroup names and IDs.
func RandomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return hex.EncodeToString(b)
}

// Created lists the cgroup directories made and not removed, in creation
// order.
func (t *Tree) Created() []string { return slices.Clone(t.created) }

// Mkdir creates rel in every hierarchy (its parent must exist).
func (t *Tree) Mkdir(rel string) error {
	for _, h := range t.Hierarchies {
		dir := filepath.Join(h, rel)
		if err := os.Mkdir(dir, 0o755); err != nil {
			return fmt.Errorf("failed to create cgroup %s: %w", dir, err)
		}
		t.created = append(t.created, dir)
		if h != t.CPUSet {
			continue
		}
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			b, err := os.ReadFile(filepath.Join(filepath.Dir(dir), f))
			if err != nil {
				return fmt.Errorf("failed to read %s of %s: %w", f, filepath.Dir(dir), err)
			}
			if err := os.WriteFile(filepath.Join(dir, f), b, 0); err != nil {
				return fmt.Errorf("failed to write %s of %s: %w", f, dir, err)
			}
		}
	}
	return nil
}

// Start runs cmd and moves it into rel in every hierarchy; Cleanup kills
// it.
func (t *Tree) Start(cmd *exec.Cmd, rel string) error {
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("failed to start %s: %w", cmd.Path, err)
	}
	t.procs = append(t.procs, cmd)
	for _, h := range t.Hierarchies {
		p := filepath.Join(h, rel, "cgroup.procs")
		if err := os.WriteFile(p, []byte(strconv.Itoa(cmd.Process.Pid)), 0); err != nil {
			return fmt.Errorf("failed to move pid %d into %s: %w", cmd.Process.Pid, p, err)
		}
	}
	return nil
}

// Move moves the running process pid into rel in every hierarchy.
func (t *Tree) Move(pid int, rel string) error {
	for _, h := range t.Hierarchies {
		p := filepath.Join(h, rel, "cgroup.procs")
		if err := os.WriteFile(p, []byte(strconv.Itoa(pid)), 0); err != nil {
			return fmt.Errorf("failed to move pid %d into %s: %w", pid, p, err)
		}
	}
	return nil
}

// Stop kills cmd and forgets it.
func (t *Tree) Stop(cmd *exec.Cmd) {
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	t.Forget(cmd)
}

// Forget stops tracking a process that ended by itself.
func (t *Tree) Forget(cmd *exec.Cmd) {
	t.procs = slices.DeleteFunc(t.procs, func(c *exec.Cmd) bool { return c == cmd })
}

// Rmdir removes the cgroups at and under rel in every hierarchy, deepest
// first.
func (t *Tree) Rmdir(rel string) error {
	var errs []error
	keep := t.created[:0:0]
	for i := len(t.created) - 1; i >= 0; i-- {
		d := t.created[i]
		in := false
		for _, h := range t.Hierarchies {
			r := filepath.Join(h, rel)
			if d == r || strings.HasPrefix(d, r+"/") {
				in = true
			}
		}
		if !in {
			keep = append(keep, d)
			continue
		}
		if err := removeCgroup(d); err != nil {
			errs = append(errs, err)
			keep = append(keep, d)
		}
	}
	slices.Reverse(keep)
	t.created = keep
	return errors.Join(errs...)
}

func removeCgroup(d string) error {
	var err error
	for range 100 { // a killed task takes a moment to leave its cgroup
		if err = syscall.Rmdir(d); err == nil || errors.Is(err, syscall.ENOENT) {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("failed to remove cgroup %s: %w", d, err)
}

// Cleanup kills every process and removes every cgroup the tree made.
func (t *Tree) Cleanup() error {
	for _, cmd := range slices.Clone(t.procs) {
		t.Stop(cmd)
	}
	return t.Rmdir(t.Base)
}
