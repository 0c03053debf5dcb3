package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/infera-io/temper/apis/wellknown"
	"github.com/infera-io/temper/nodeagent/cgroupfs"
	"github.com/infera-io/temper/test/bench/internal/hosttree"
)

// tree is the bench's private kubelet-shaped subtree in the cpu and cpuset
// v1 hierarchies (hosttree removes what it created, processes first).
type tree struct {
	*hosttree.Tree
	cpuH, cpusetH string
}

// setCPU writes a file of the cpu hierarchy.
func (t *tree) setCPU(rel, file string, v int64) error {
	p := filepath.Join(t.cpuH, rel, file)
	if err := os.WriteFile(p, []byte(strconv.FormatInt(v, 10)), 0); err != nil {
		return fmt.Errorf("failed to write %d to %s: %w", v, p, err)
	}
	return nil
}

// snapshot reads the configuration of every cgroup the tree made: every
// readable, writable file except the cpuacct counters (writable only to
// reset them) and membership, leaving out read-only counters.
func (t *tree) snapshot() (map[string]string, error) {
	snap := map[string]string{}
	for _, d := range t.Created() {
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
func (t *tree) addPod(l *cgroupfs.Layout, p *pod) error {
	p.uid = fmt.Sprintf("%s-%s-4%s-8%s-%s", hosttree.RandomHex(4), hosttree.RandomHex(2), hosttree.RandomHex(2)[:3], hosttree.RandomHex(2)[:3], hosttree.RandomHex(6))
	rel, err := l.PodRelPath(p.uid, p.qos)
	if err != nil {
		return err
	}
	p.rel = rel
	if err := t.Mkdir(rel); err != nil {
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
		cid := hosttree.RandomHex(32)
		p.cids = append(p.cids, cid)
		crel := filepath.Join(rel, cid)
		if err := t.Mkdir(crel); err != nil {
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
func (p *pod) find(l *cgroupfs.Layout) (*cgroupfs.Pod, error) {
	var ids []string
	for _, c := range p.cids {
		ids = append(ids, "containerd://"+c)
	}
	found, err := l.FindPod(cgroupfs.PodRef{UID: p.uid, QOSClass: p.qos, ContainerIDs: ids})
	if err != nil {
		return nil, fmt.Errorf("failed to find the cgroup of pod %s: %w", p.name, err)
	}
	if len(found.Containers) != len(p.cids) {
		return nil, fmt.Errorf("found %d container cgroups of pod %s, want %d", len(found.Containers), p.name, len(p.cids))
	}
	return found, nil
}
