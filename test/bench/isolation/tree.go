package main

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

	corev1 "k8s.io/api/core/v1"

	"github.com/infera-io/temper/apis/wellknown"
	cg "github.com/infera-io/temper/nodeagent/cgroup"
)

// tree is the bench's private kubelet-shaped subtree in the cpu and cpuset
// v1 hierarchies. It removes what it created, processes first.
type tree struct {
	cpuH, cpusetH string
	base          string // relative to the hierarchy roots
	created       []string
	procs         []*exec.Cmd
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return hex.EncodeToString(b)
}

// mkdir creates rel in both hierarchies; the cpuset copy inherits its
// parent's CPUs and memory nodes, as runtimes and the kubelet set them
// (every CPU while the CPU manager policy is none).
func (t *tree) mkdir(rel string) error {
	for _, h := range []string{t.cpuH, t.cpusetH} {
		dir := filepath.Join(h, rel)
		if err := os.Mkdir(dir, 0o755); err != nil {
			return fmt.Errorf("failed to create cgroup %s: %w", dir, err)
		}
		t.created = append(t.created, dir)
		if h != t.cpusetH {
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

// setCPU writes a file of the cpu hierarchy.
func (t *tree) setCPU(rel, file string, v int64) error {
	p := filepath.Join(t.cpuH, rel, file)
	if err := os.WriteFile(p, []byte(strconv.FormatInt(v, 10)), 0); err != nil {
		return fmt.Errorf("failed to write %d to %s: %w", v, p, err)
	}
	return nil
}

// start runs cmd and moves it (every thread) into rel in both hierarchies.
func (t *tree) start(cmd *exec.Cmd, rel string) error {
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("failed to start %s: %w", cmd.Path, err)
	}
	t.procs = append(t.procs, cmd)
	for _, h := range []string{t.cpuH, t.cpusetH} {
		p := filepath.Join(h, rel, "cgroup.procs")
		if err := os.WriteFile(p, []byte(strconv.Itoa(cmd.Process.Pid)), 0); err != nil {
			return fmt.Errorf("failed to move pid %d into %s: %w", cmd.Process.Pid, p, err)
		}
	}
	return nil
}

// stop kills cmd and forgets it.
func (t *tree) stop(cmd *exec.Cmd) {
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	t.forget(cmd)
}

func (t *tree) forget(cmd *exec.Cmd) {
	t.procs = slices.DeleteFunc(t.procs, func(c *exec.Cmd) bool { return c == cmd })
}

// rmdir removes the cgroups under rel (both hierarchies), deepest first.
func (t *tree) rmdir(rel string) error {
	var errs []error
	keep := t.created[:0:0]
	for i := len(t.created) - 1; i >= 0; i-- {
		d := t.created[i]
		in := false
		for _, h := range []string{t.cpuH, t.cpusetH} {
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

// cleanup kills every process and removes every cgroup the tree made.
func (t *tree) cleanup() error {
	for _, cmd := range slices.Clone(t.procs) {
		t.stop(cmd)
	}
	return t.rmdir(t.base)
}

// snapshot reads the configuration of every cgroup the tree made: every
// readable, writable file except the cpuacct counters (writable only to
// reset them) and membership, leaving out read-only counters.
func (t *tree) snapshot() (map[string]string, error) {
	snap := map[string]string{}
	for _, d := range t.created {
		entries, err := os.ReadDir(d)
		if err != nil {
			return nil, fmt.Errorf("failed to list %s: %w", d, err)
		}
		for _, e := range entries {
			fi, err := e.Info()
			if err != nil || e.IsDir() || fi.Mode().Perm()&0o200 == 0 || strings.HasPrefix(e.Name(), "cpuacct.") {
				continue
			}
			b, err := os.ReadFile(filepath.Join(d, e.Name()))
			if err != nil {
				continue // write-only files
			}
			snap[filepath.Join(d, e.Name())] = string(b)
		}
	}
	return snap, nil
}

// diffSnapshots lists the files whose content differs, sorted.
func diffSnapshots(before, after map[string]string) []string {
	var out []string
	for k, v := range before {
		if a, ok := after[k]; !ok {
			out = append(out, fmt.Sprintf("%s: %q → missing", k, strings.TrimSpace(v)))
		} else if a != v {
			out = append(out, fmt.Sprintf("%s: %q → %q", k, strings.TrimSpace(v), strings.TrimSpace(a)))
		}
	}
	for k, a := range after {
		if _, ok := before[k]; !ok {
			out = append(out, fmt.Sprintf("%s: missing → %q", k, strings.TrimSpace(a)))
		}
	}
	slices.Sort(out)
	return out
}

// pod is one kubelet-shaped pod in the tree.
type pod struct {
	name       string
	uid        string
	qos        corev1.PodQOSClass
	tier       wellknown.Tier
	containers []container
	cids       []string
	rel        string // pod cgroup, relative to the hierarchy roots
}

// containerRel is the cgroup of container i.
func (p *pod) containerRel(i int) string { return filepath.Join(p.rel, p.cids[i]) }

// addPod creates the pod's and its containers' cgroups with the values the
// kubelet (pod level) and the runtime (container level, from the
// kubelet's container config) write.
func (t *tree) addPod(l *cg.Layout, p *pod) error {
	p.uid = fmt.Sprintf("%s-%s-4%s-8%s-%s", randomHex(4), randomHex(2), randomHex(2)[:3], randomHex(2)[:3], randomHex(6))
	rel, err := l.PodRelPath(p.uid, p.qos)
	if err != nil {
		return err
	}
	p.rel = rel
	if err := t.mkdir(rel); err != nil {
		return err
	}
	if err := t.setCPU(rel, "cpu.shares", podShares(p.containers)); err != nil {
		return err
	}
	if err := t.setCPU(rel, "cpu.cfs_quota_us", podQuota(p.containers)); err != nil {
		return err
	}
	p.cids = nil
	for _, c := range p.containers {
		cid := randomHex(32)
		p.cids = append(p.cids, cid)
		crel := filepath.Join(rel, cid)
		if err := t.mkdir(crel); err != nil {
			return err
		}
		if err := t.setCPU(crel, "cpu.shares", milliCPUToShares(c.request)); err != nil {
			return err
		}
		if err := t.setCPU(crel, "cpu.cfs_quota_us", milliCPUToQuota(c.limit)); err != nil {
			return err
		}
	}
	return nil
}

// find is the pod as the agent finds it.
func (p *pod) find(l *cg.Layout) (*cg.Pod, error) {
	var ids []string
	for _, c := range p.cids {
		ids = append(ids, "containerd://"+c)
	}
	found, err := l.FindPod(cg.PodRef{UID: p.uid, QOSClass: p.qos, ContainerIDs: ids})
	if err != nil {
		return nil, fmt.Errorf("failed to find the cgroup of pod %s: %w", p.name, err)
	}
	if len(found.Containers) != len(p.cids) {
		return nil, fmt.Errorf("found %d container cgroups of pod %s, want %d", len(found.Containers), p.name, len(p.cids))
	}
	return found, nil
}
