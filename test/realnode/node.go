package realnode

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
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/infera-io/temper/nodeagent/cgroupfs"
	"github.com/infera-io/temper/nodeagent/cpuset"
)

// Node is a kubelet-shaped cgroup tree (cgroupfs driver) in a private
// temper-node-<random> subtree of this machine's real cgroup v1
// hierarchies: <base>/kubepods, kubepods/burstable and kubepods/besteffort
// with the kubelet's values, and a pod<uid> cgroup per pod with the
// kubelet's cpu.shares and a real process in it.
type Node struct {
	// Root is the cgroup mount root (/sys/fs/cgroup).
	Root string
	// Kubepods is the kubelet's pod root relative to each hierarchy, the
	// agent's cgroup.kubepods_path.
	Kubepods string

	base        string
	cpu, cpuset string
	hier        []string // cpu, cpuset and (when not co-mounted) cpuacct
	layout      *cgroupfs.Layout
	mu          sync.Mutex
	created     []string // directories, creation order
	procs       map[string][]*exec.Cmd
}

// Pod is one pod's cgroup.
type Pod struct {
	// RelPath is the pod cgroup relative to each hierarchy root.
	RelPath string
	// CPUDir and CPUSetDir are its directories in the cpu and cpuset
	// hierarchies.
	CPUDir, CPUSetDir string
	// Shares is the kubelet's cpu.shares for it.
	Shares string
}

// ErrNotV1 is returned on a machine whose root is not cgroup v1 (the VM
// suite covers v2).
var ErrNotV1 = errors.New("not cgroup v1")

// NewNode builds the kubelet's part of the tree under root. It needs root.
func NewNode(root string) (*Node, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("needs root to create cgroups and move processes")
	}
	if v, err := cgroupfs.DetectVersion(root); err != nil {
		return nil, fmt.Errorf("%s: %w: %w", root, ErrNotV1, err)
	} else if v != cgroupfs.V1 {
		return nil, fmt.Errorf("%s: %w (%v)", root, ErrNotV1, v)
	}
	host, err := cgroupfs.Detect(root, cgroupfs.DetectOptions{Driver: cgroupfs.DriverCgroupfs})
	if err != nil {
		return nil, err
	}
	n := &Node{Root: root, procs: map[string][]*exec.Cmd{}}
	n.cpu, n.cpuset = host.Hierarchies[cgroupfs.CPU], host.Hierarchies[cgroupfs.CPUSet]
	if n.cpu == "" || n.cpuset == "" {
		return nil, fmt.Errorf("%s has no v1 cpu or cpuset hierarchy", root)
	}
	n.hier = []string{n.cpu, n.cpuset}
	if _, err := os.Stat(filepath.Join(n.cpu, "cpuacct.usage")); err != nil {
		if _, err := os.Stat(filepath.Join(root, "cpuacct")); err == nil {
			n.hier = append(n.hier, filepath.Join(root, "cpuacct"))
		}
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	n.base = "temper-node-" + hex.EncodeToString(b)
	n.Kubepods = n.base + "/kubepods"
	for _, rel := range []string{n.base, n.Kubepods, n.Kubepods + "/burstable", n.Kubepods + "/besteffort"} {
		if err := n.mkdir(rel); err != nil {
			return nil, errors.Join(err, n.Cleanup())
		}
	}
	// The kubelet's values: kubepods at the node's allocatable CPU (all
	// of it here), the QoS levels as at start-up.
	cpus, err := cpuset.Parse(strings.TrimSpace(mustRead("/sys/devices/system/cpu/online")))
	if err != nil {
		return nil, errors.Join(err, n.Cleanup())
	}
	kubepods := strconv.Itoa(len(cpus) * 1024)
	for rel, v := range map[string]string{n.Kubepods: kubepods, n.Kubepods + "/burstable": "1024", n.Kubepods + "/besteffort": "2"} {
		if err := os.WriteFile(filepath.Join(n.cpu, rel, "cpu.shares"), []byte(v), 0); err != nil {
			return nil, errors.Join(err, n.Cleanup())
		}
	}
	if n.layout, err = cgroupfs.Detect(root, cgroupfs.DetectOptions{Driver: cgroupfs.DriverCgroupfs, KubepodsDir: n.Kubepods}); err != nil {
		return nil, errors.Join(err, n.Cleanup())
	}
	return n, nil
}

func (n *Node) mkdir(rel string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, h := range n.hier {
		dir := filepath.Join(h, rel)
		if err := os.Mkdir(dir, 0o755); err != nil {
			return fmt.Errorf("failed to create cgroup %s: %w", dir, err)
		}
		n.created = append(n.created, dir)
		if h != n.cpuset {
			continue
		}
		// A new v1 cpuset cgroup starts empty and cannot take tasks;
		// runtimes copy the parent's.
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

// KubeletShares is the kubelet's pod-level cpu.shares: the pod's CPU
// requests in shares (MilliCPUToShares), 2 without any.
func KubeletShares(p *corev1.Pod) string {
	var milli int64
	for _, c := range p.Spec.Containers {
		milli += c.Resources.Requests.Cpu().MilliValue()
	}
	shares := milli * 1024 / 1000
	if shares < 2 {
		shares = 2
	}
	return strconv.FormatInt(shares, 10)
}

// AddPod makes the pod's cgroup as the kubelet does (p must carry the UID
// and QoS class the API server gave it), writes the kubelet's cpu.shares
// and starts a process in it: a sleeper, or a CPU burner when busy.
func (n *Node) AddPod(p *corev1.Pod, busy bool) (*Pod, error) {
	pod, err := n.AddCgroup(p)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("sleep", "100000")
	if busy {
		cmd = exec.Command("sh", "-c", "while :; do :; done")
	}
	return pod, n.StartInPod(pod, cmd)
}

// AddCgroup makes the pod's cgroup with the kubelet's cpu.shares and no
// process in it.
func (n *Node) AddCgroup(p *corev1.Pod) (*Pod, error) {
	rel, err := n.layout.PodRelPath(string(p.UID), p.Status.QOSClass)
	if err != nil {
		return nil, err
	}
	if err := n.mkdir(rel); err != nil {
		return nil, err
	}
	pod := &Pod{RelPath: rel, CPUDir: filepath.Join(n.cpu, rel), CPUSetDir: filepath.Join(n.cpuset, rel), Shares: KubeletShares(p)}
	if err := os.WriteFile(filepath.Join(pod.CPUDir, "cpu.shares"), []byte(pod.Shares), 0); err != nil {
		return nil, err
	}
	return pod, nil
}

// StartInPod starts cmd and moves it into the pod's cgroups; RemovePod and
// Cleanup kill it.
func (n *Node) StartInPod(pod *Pod, cmd *exec.Cmd) error {
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("failed to start %s: %w", cmd.Path, err)
	}
	n.mu.Lock()
	n.procs[pod.RelPath] = append(n.procs[pod.RelPath], cmd)
	n.mu.Unlock()
	for _, h := range n.hier {
		f := filepath.Join(h, pod.RelPath, "cgroup.procs")
		if err := os.WriteFile(f, []byte(strconv.Itoa(cmd.Process.Pid)), 0); err != nil {
			return fmt.Errorf("failed to move pid %d into %s: %w", cmd.Process.Pid, f, err)
		}
	}
	return nil
}

// MoveInto moves a running process into the pod's cgroups in every
// hierarchy, without tracking it (its owner stops it).
func (n *Node) MoveInto(pod *Pod, pid int) error {
	for _, h := range n.hier {
		f := filepath.Join(h, pod.RelPath, "cgroup.procs")
		if err := os.WriteFile(f, []byte(strconv.Itoa(pid)), 0); err != nil {
			return fmt.Errorf("failed to move pid %d into %s: %w", pid, f, err)
		}
	}
	return nil
}

// Forget stops tracking a process that ended by itself (a child that ran
// to completion), so Cleanup does not wait on it again.
func (n *Node) Forget(pod *Pod, cmd *exec.Cmd) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.procs[pod.RelPath] = slices.DeleteFunc(n.procs[pod.RelPath], func(c *exec.Cmd) bool { return c == cmd })
}

// RemovePod kills the pod's processes and removes its cgroups, as the
// kubelet does when a pod ends.
func (n *Node) RemovePod(p *Pod) error {
	n.mu.Lock()
	procs := n.procs[p.RelPath]
	delete(n.procs, p.RelPath)
	n.mu.Unlock()
	for _, cmd := range procs {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	return n.rmdir(p.RelPath)
}

func (n *Node) rmdir(rel string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	var errs []error
	keep := n.created[:0:0]
	for i := len(n.created) - 1; i >= 0; i-- {
		d := n.created[i]
		in := false
		for _, h := range n.hier {
			r := filepath.Join(h, rel)
			in = in || d == r || strings.HasPrefix(d, r+"/")
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
	n.created = keep
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

// ConfigDirs are the tree's directories in the cpu and cpuset hierarchies
// (the ones the agent may write; cpuacct holds counters only).
func (n *Node) ConfigDirs() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []string
	for _, d := range n.created {
		if strings.HasPrefix(d, n.cpu+"/") || strings.HasPrefix(d, n.cpuset+"/") {
			out = append(out, d)
		}
	}
	return out
}

// Snapshot reads every readable, writable file of dirs (weights, idle,
// quotas, cpusets, membership), leaving out counters and *.pressure files.
func Snapshot(dirs []string) (map[string]string, error) {
	snap := map[string]string{}
	for _, d := range dirs {
		entries, err := os.ReadDir(d)
		if err != nil {
			return nil, fmt.Errorf("failed to list %s: %w", d, err)
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
	return snap, nil
}

// Cleanup kills every process and removes every cgroup the node made.
func (n *Node) Cleanup() error {
	n.mu.Lock()
	var procs []*exec.Cmd
	for _, ps := range n.procs {
		procs = append(procs, ps...)
	}
	n.procs = map[string][]*exec.Cmd{}
	n.mu.Unlock()
	for _, cmd := range procs {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	return n.rmdir(n.base)
}

func mustRead(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

// ReadTrimmed reads a cgroup file without its trailing newline.
func ReadTrimmed(dir, file string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, file))
	return strings.TrimSpace(string(b)), err
}
