package liveagent

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"

	corev1 "k8s.io/api/core/v1"

	"github.com/infera-io/temper/apis/tiering"
)

// Load is how much CPU a pod's process uses.
type Load int

// The loads.
const (
	// Idle: a sleeping process.
	Idle Load = iota
	// Light: a shell loop that counts for a moment, then sleeps 0.2 s: a
	// few percent of a core on an idle machine, run at nice 19 so a shared
	// machine is hardly slowed.
	Light
	// Busy: a shell loop that never sleeps, at nice 19: a core when the
	// machine has one to spare.
	Busy
)

// script is each load's shell command.
var script = map[Load]string{
	Idle:  "exec sleep 3600",
	Light: "while :; do i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; sleep 0.2; done",
	Busy:  "while :; do :; done",
}

// Tree is a cgroup v2 tree with pods whose cgroups hold real processes.
type Tree struct {
	Root  string
	procs []*exec.Cmd
}

// NewTree writes an empty cgroup v2 tree with the kubelet's cgroupfs
// layout (kubepods, kubepods/burstable, kubepods/besteffort) at root.
func NewTree(root string) (*Tree, error) {
	t := &Tree{Root: root}
	for _, rel := range []string{"", "kubepods", "kubepods/burstable", "kubepods/besteffort"} {
		if err := t.mkdir(rel); err != nil {
			return nil, err
		}
	}
	return t, nil
}

func (t *Tree) mkdir(rel string) error {
	dir := filepath.Join(t.Root, rel)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	files := map[string]string{
		"cgroup.controllers": "cpuset cpu io memory pids\n", "cgroup.subtree_control": "", "cgroup.type": "domain\n",
		"cgroup.procs": "", "cpu.weight": "100\n", "cpu.max": "max 100000\n", "cpu.idle": "0\n",
		"cpu.stat": "usage_usec 0\nuser_usec 0\nsystem_usec 0\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// AddPod creates pod's cgroup where the kubelet would (from its UID and
// QoS class) and starts a process with load whose PID its cgroup.procs
// lists. The pod must have its UID (created on the API server).
func (t *Tree) AddPod(pod *corev1.Pod, load Load) (pid int, err error) {
	if pod.UID == "" {
		return 0, fmt.Errorf("pod %s/%s has no uid: create it first", pod.Namespace, pod.Name)
	}
	var rel string
	switch tiering.QOSClass(pod) {
	case corev1.PodQOSGuaranteed:
		rel = "kubepods/pod" + string(pod.UID)
	case corev1.PodQOSBurstable:
		rel = "kubepods/burstable/pod" + string(pod.UID)
	default:
		rel = "kubepods/besteffort/pod" + string(pod.UID)
	}
	if err := t.mkdir(rel); err != nil {
		return 0, err
	}
	cmd := exec.Command("nice", "-n", "19", "sh", "-c", script[load])
	// Its own process group, so Stop ends the shell's children too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("failed to start the process of pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	t.procs = append(t.procs, cmd)
	pid = cmd.Process.Pid
	if err := os.WriteFile(filepath.Join(t.Root, rel, "cgroup.procs"), []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
		return 0, err
	}
	return pid, nil
}

// Stop kills every process the tree started and reaps it.
func (t *Tree) Stop() {
	for _, c := range t.procs {
		_ = syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
		_ = c.Wait()
	}
	t.procs = nil
}
