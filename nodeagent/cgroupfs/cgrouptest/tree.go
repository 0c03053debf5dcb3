package cgrouptest

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/infera-io/temper/nodeagent/cgroupfs"
)

// Options shape a faked tree.
type Options struct {
	// CPUs is the node's CPU list as cpuset files show it; default "0-3".
	CPUs string
	// V1CPUDir is the name of the v1 cpu hierarchy; default "cpu,cpuacct"
	// (with "cpu" and "cpuacct" symlinks to it, as systemd mounts it). Set it
	// to "cpu" for a host that mounts cpu on its own.
	V1CPUDir string
	// NoCPUSet leaves the cpuset controller out (no v1 hierarchy; not in the
	// v2 controllers).
	NoCPUSet bool
	// Omit lists cgroup files not to create in new cgroups, e.g. "cpu.idle"
	// for kernels before 5.15.
	Omit []string
}

// Tree is a faked cgroup tree.
type Tree struct {
	Root    string
	Version cgroupfs.Version
	// Hierarchies maps each controller to its hierarchy root, as a correct
	// cgroupfs.Detect reports it.
	Hierarchies map[cgroupfs.Controller]string
	opts        Options
}

// NewV1 builds an empty cgroup v1 (hybrid) tree.
func NewV1(t testing.TB, o Options) *Tree {
	t.Helper()
	o = defaults(o)
	root := t.TempDir()
	tr := &Tree{Root: root, Version: cgroupfs.V1, Hierarchies: map[cgroupfs.Controller]string{}, opts: o}
	cpuDir := filepath.Join(root, o.V1CPUDir)
	mkdir(t, cpuDir)
	tr.writeFiles(t, cpuDir, cgroupfs.CPU, true)
	tr.Hierarchies[cgroupfs.CPU] = cpuDir
	if strings.Contains(o.V1CPUDir, ",") {
		for _, name := range strings.Split(o.V1CPUDir, ",") {
			if err := os.Symlink(o.V1CPUDir, filepath.Join(root, name)); err != nil {
				t.Fatalf("failed to link %s: %v", name, err)
			}
		}
	}
	if !o.NoCPUSet {
		dir := filepath.Join(root, "cpuset")
		mkdir(t, dir)
		tr.writeFiles(t, dir, cgroupfs.CPUSet, true)
		tr.Hierarchies[cgroupfs.CPUSet] = dir
	}
	// Hierarchies Temper does not use, and the hybrid layout's cgroup2 mount
	// without controllers.
	for _, d := range []string{"memory", "pids", "systemd"} {
		mkdir(t, filepath.Join(root, d))
		writeFile(t, filepath.Join(root, d, "cgroup.procs"), "")
	}
	mkdir(t, filepath.Join(root, "unified"))
	writeFile(t, filepath.Join(root, "unified", "cgroup.controllers"), "\n")
	writeFile(t, filepath.Join(root, "unified", "cgroup.procs"), "")
	return tr
}

// NewV2 builds an empty cgroup v2 tree.
func NewV2(t testing.TB, o Options) *Tree {
	t.Helper()
	o = defaults(o)
	root := t.TempDir()
	tr := &Tree{Root: root, Version: cgroupfs.V2, Hierarchies: map[cgroupfs.Controller]string{cgroupfs.CPU: root}, opts: o}
	if !o.NoCPUSet {
		tr.Hierarchies[cgroupfs.CPUSet] = root
	}
	writeFile(t, filepath.Join(root, "cgroup.controllers"), tr.v2Controllers())
	writeFile(t, filepath.Join(root, "cgroup.subtree_control"), tr.v2Controllers())
	writeFile(t, filepath.Join(root, "cgroup.procs"), "1\n")
	writeFile(t, filepath.Join(root, "cpu.stat"), "usage_usec 0\nuser_usec 0\nsystem_usec 0\n")
	if !o.NoCPUSet {
		writeFile(t, filepath.Join(root, "cpuset.cpus.effective"), o.CPUs+"\n")
		writeFile(t, filepath.Join(root, "cpuset.mems.effective"), "0\n")
	}
	return tr
}

func defaults(o Options) Options {
	if o.CPUs == "" {
		o.CPUs = "0-3"
	}
	if o.V1CPUDir == "" {
		o.V1CPUDir = "cpu,cpuacct"
	}
	return o
}

func (tr *Tree) v2Controllers() string {
	if tr.opts.NoCPUSet {
		return "cpu io memory pids\n"
	}
	return "cpuset cpu io memory pids\n"
}

// Mkdir creates a cgroup (and any missing parent) at rel in every
// hierarchy, with the files a kernel would show.
func (tr *Tree) Mkdir(t testing.TB, rel string) {
	t.Helper()
	for c := range tr.Hierarchies {
		tr.MkdirIn(t, c, rel)
	}
}

// MkdirIn creates a cgroup at rel in one controller's hierarchy only (on v2,
// in the one tree).
func (tr *Tree) MkdirIn(t testing.TB, c cgroupfs.Controller, rel string) {
	t.Helper()
	h, ok := tr.Hierarchies[c]
	if !ok {
		t.Fatalf("no %s hierarchy in this tree", c)
	}
	parts := strings.Split(filepath.Clean(rel), string(filepath.Separator))
	dir := h
	for _, p := range parts {
		dir = filepath.Join(dir, p)
		if _, err := os.Stat(dir); err == nil {
			continue
		}
		mkdir(t, dir)
		if tr.Version == cgroupfs.V2 {
			tr.writeFiles(t, dir, "", false)
		} else {
			tr.writeFiles(t, dir, c, false)
		}
	}
}

// Path returns the absolute path of file in the cgroup rel of controller c.
func (tr *Tree) Path(c cgroupfs.Controller, rel, file string) string {
	return filepath.Join(tr.Hierarchies[c], rel, file)
}

// Set overwrites a cgroup file in controller c's hierarchy, as the kubelet
// or a runtime would.
func (tr *Tree) Set(t testing.TB, c cgroupfs.Controller, rel, file, value string) {
	t.Helper()
	p := tr.Path(c, rel, file)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("failed to set %s: %v", p, err)
	}
	writeFile(t, p, value)
}

// writeFiles fills a new cgroup directory. c is the v1 controller of the
// hierarchy, "" on v2.
func (tr *Tree) writeFiles(t testing.TB, dir string, c cgroupfs.Controller, root bool) {
	t.Helper()
	files := map[string]string{"cgroup.procs": ""}
	switch {
	case tr.Version == cgroupfs.V2:
		files["cgroup.controllers"] = tr.v2Controllers()
		files["cgroup.subtree_control"] = ""
		files["cgroup.type"] = "domain\n"
		files["cpu.weight"] = "100\n"
		files["cpu.weight.nice"] = "0\n"
		files["cpu.idle"] = "0\n"
		files["cpu.max"] = "max 100000\n"
		files["cpu.max.burst"] = "0\n"
		files["cpu.stat"] = "usage_usec 0\nuser_usec 0\nsystem_usec 0\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\n"
		if !tr.opts.NoCPUSet {
			files["cpuset.cpus"] = "\n"
			files["cpuset.cpus.effective"] = tr.opts.CPUs + "\n"
			files["cpuset.mems"] = "\n"
			files["cpuset.mems.effective"] = "0\n"
		}
	case c == cgroupfs.CPU:
		files["tasks"] = ""
		files["notify_on_release"] = "0\n"
		files["cgroup.clone_children"] = "0\n"
		files["cpu.shares"] = "1024\n"
		files["cpu.idle"] = "0\n"
		files["cpu.cfs_quota_us"] = "-1\n"
		files["cpu.cfs_period_us"] = "100000\n"
		files["cpu.stat"] = "nr_periods 0\nnr_throttled 0\nthrottled_time 0\n"
		if strings.Contains(tr.opts.V1CPUDir, "cpuacct") {
			files["cpuacct.usage"] = "0\n"
		}
	case c == cgroupfs.CPUSet:
		files["tasks"] = ""
		files["notify_on_release"] = "0\n"
		files["cgroup.clone_children"] = "0\n"
		files["cpuset.cpus"] = tr.opts.CPUs + "\n"
		files["cpuset.mems"] = "0\n"
		files["cpuset.effective_cpus"] = tr.opts.CPUs + "\n"
		files["cpuset.effective_mems"] = "0\n"
		files["cpuset.cpu_exclusive"] = "0\n"
	}
	if root {
		files["cgroup.procs"] = "1\n"
	}
	for name, content := range files {
		if slices.Contains(tr.opts.Omit, name) {
			continue
		}
		writeFile(t, filepath.Join(dir, name), content)
	}
}

// Kubelet creates the kubelet's pod root and QoS cgroups for a driver, with
// the values the kubelet writes on a 4-CPU node, and returns the pod root
// relative to the hierarchy roots.
func (tr *Tree) Kubelet(t testing.TB, d cgroupfs.Driver) string {
	t.Helper()
	root, burstable, besteffort := "kubepods", "kubepods/burstable", "kubepods/besteffort"
	if d == cgroupfs.DriverSystemd {
		root = "kubepods.slice"
		burstable = "kubepods.slice/kubepods-burstable.slice"
		besteffort = "kubepods.slice/kubepods-besteffort.slice"
	}
	for _, rel := range []string{root, burstable, besteffort} {
		tr.Mkdir(t, rel)
	}
	if tr.Version == cgroupfs.V1 {
		tr.Set(t, cgroupfs.CPU, root, "cpu.shares", "4096\n")
		tr.Set(t, cgroupfs.CPU, burstable, "cpu.shares", "512\n")
		tr.Set(t, cgroupfs.CPU, besteffort, "cpu.shares", "2\n")
	} else {
		tr.Set(t, cgroupfs.CPU, root, "cpu.weight", "157\n")
		tr.Set(t, cgroupfs.CPU, burstable, "cpu.weight", "20\n")
		tr.Set(t, cgroupfs.CPU, besteffort, "cpu.weight", "1\n")
	}
	return root
}

// Pod is a faked pod's cgroups, relative to the hierarchy roots.
type Pod struct {
	RelPath string
	// ContainerIDs are the IDs as pod status shows them
	// ("containerd://<id>", ...).
	ContainerIDs []string
	// ContainerRelPaths are the container cgroups, in ContainerIDs order.
	ContainerRelPaths []string
}

// AddPod creates the cgroups of a pod and its containers as the kubelet
// (with driver d) and runtime rt name them, under the default pod root
// (call Kubelet first), with pod-level values for its QoS class.
func (tr *Tree) AddPod(t testing.TB, d cgroupfs.Driver, uid string, qos corev1.PodQOSClass, rt cgroupfs.Runtime, ids ...string) Pod {
	t.Helper()
	var rel string
	us := strings.ReplaceAll(uid, "-", "_")
	switch {
	case d == cgroupfs.DriverSystemd && qos == corev1.PodQOSGuaranteed:
		rel = fmt.Sprintf("kubepods.slice/kubepods-pod%s.slice", us)
	case d == cgroupfs.DriverSystemd && qos == corev1.PodQOSBurstable:
		rel = fmt.Sprintf("kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod%s.slice", us)
	case d == cgroupfs.DriverSystemd && qos == corev1.PodQOSBestEffort:
		rel = fmt.Sprintf("kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod%s.slice", us)
	case d == cgroupfs.DriverCgroupfs && qos == corev1.PodQOSGuaranteed:
		rel = fmt.Sprintf("kubepods/pod%s", uid)
	case d == cgroupfs.DriverCgroupfs && qos == corev1.PodQOSBurstable:
		rel = fmt.Sprintf("kubepods/burstable/pod%s", uid)
	case d == cgroupfs.DriverCgroupfs && qos == corev1.PodQOSBestEffort:
		rel = fmt.Sprintf("kubepods/besteffort/pod%s", uid)
	default:
		t.Fatalf("no faked naming for driver %q and QoS %q", d, qos)
	}
	tr.Mkdir(t, rel)
	shares, weight, quota, cpuMax := "1024\n", "39\n", "100000\n", "100000 100000\n"
	switch qos {
	case corev1.PodQOSBurstable:
		shares, weight, quota, cpuMax = "512\n", "20\n", "-1\n", "max 100000\n"
	case corev1.PodQOSBestEffort:
		shares, weight, quota, cpuMax = "2\n", "1\n", "-1\n", "max 100000\n"
	}
	if tr.Version == cgroupfs.V1 {
		tr.Set(t, cgroupfs.CPU, rel, "cpu.shares", shares)
		tr.Set(t, cgroupfs.CPU, rel, "cpu.cfs_quota_us", quota)
	} else {
		tr.Set(t, cgroupfs.CPU, rel, "cpu.weight", weight)
		tr.Set(t, cgroupfs.CPU, rel, "cpu.max", cpuMax)
	}
	p := Pod{RelPath: rel}
	for _, id := range ids {
		var name string
		switch {
		case d == cgroupfs.DriverSystemd && rt == cgroupfs.RuntimeContainerd:
			name = "cri-containerd-" + id + ".scope"
		case d == cgroupfs.DriverSystemd && rt == cgroupfs.RuntimeCRIO:
			name = "crio-" + id + ".scope"
		case d == cgroupfs.DriverSystemd && rt == cgroupfs.RuntimeDocker:
			name = "docker-" + id + ".scope"
		case d == cgroupfs.DriverCgroupfs && rt == cgroupfs.RuntimeCRIO:
			name = "crio-" + id
		case d == cgroupfs.DriverCgroupfs && (rt == cgroupfs.RuntimeContainerd || rt == cgroupfs.RuntimeDocker):
			name = id
		default:
			t.Fatalf("no faked naming for driver %q and runtime %q", d, rt)
		}
		crel := filepath.Join(rel, name)
		tr.Mkdir(t, crel)
		p.ContainerIDs = append(p.ContainerIDs, string(rt)+"://"+id)
		p.ContainerRelPaths = append(p.ContainerRelPaths, crel)
	}
	return p
}

// Snapshot returns every directory, file and symlink under root with its
// content (directories end in "/", symlinks map to "-> target"), for
// byte-for-byte comparisons with cmp.Diff.
func Snapshot(t testing.TB, root string) map[string]string {
	t.Helper()
	snap := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			snap[rel] = "-> " + target
		case d.IsDir():
			snap[rel+"/"] = ""
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			snap[rel] = string(b)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("failed to snapshot %s: %v", root, err)
	}
	return snap
}

func mkdir(t testing.TB, dir string) {
	t.Helper()
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatalf("failed to create %s: %v", dir, err)
	}
}

func writeFile(t testing.TB, p, content string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatalf("failed to write %s: %v", p, err)
	}
}
