package writer

import (
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// kernelFS runs the writer's file access against a faked tree with the
// cgroup kernel behaviours it has to cope with, as Linux 6.18 shows them
// (TestPrivileged* checks the same behaviours on the real kernel):
//
//   - cpu.shares is clamped to at least 2;
//   - cpu.idle=1 makes the weight read 3 (v1 cpu.shares) or 1 (v2 cpu.weight),
//     clearing it resets the weight to 1024 / 100, and while it is set weight
//     writes fail with EINVAL;
//   - a v1 cpuset.cpus is normalised ("0,1" → "0-1"), must stay a superset of
//     every child's (EBUSY) and a subset of the parent's (EACCES);
//   - injected errors per file path, and a write to a removed cgroup fails
//     with ENODEV (the open succeeded, the cgroup went away).
type kernelFS struct {
	v2 bool

	mu       sync.Mutex
	writeErr map[string]error
	readErr  map[string]error
	// removeBeforeWrite removes a cgroup directory between the open and the
	// write of a file in it.
	removeBeforeWrite map[string]bool
	writes            int
}

func newKernelFS(v2 bool) *kernelFS {
	return &kernelFS{v2: v2, writeErr: map[string]error{}, readErr: map[string]error{}, removeBeforeWrite: map[string]bool{}}
}

func (k *kernelFS) failWrite(name string, err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if err == nil {
		delete(k.writeErr, name)
		return
	}
	k.writeErr[name] = err
}

func (k *kernelFS) Stat(name string) (fs.FileInfo, error) { return os.Stat(name) }

func (k *kernelFS) ReadFile(name string) ([]byte, error) {
	k.mu.Lock()
	err := k.readErr[name]
	k.mu.Unlock()
	if err != nil {
		return nil, &fs.PathError{Op: "read", Path: name, Err: err}
	}
	return os.ReadFile(name)
}

func (k *kernelFS) WriteFile(name string, data []byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.writes++
	fail := func(errno syscall.Errno) error { return &fs.PathError{Op: "write", Path: name, Err: errno} }
	if err := k.writeErr[name]; err != nil {
		return &fs.PathError{Op: "write", Path: name, Err: err}
	}
	dir, file := filepath.Dir(name), filepath.Base(name)
	if _, err := os.Stat(name); err != nil {
		return fail(syscall.ENOENT)
	}
	if k.removeBeforeWrite[dir] {
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
		return fail(syscall.ENODEV)
	}
	v := strings.TrimSpace(string(data))
	put := func(f, content string) error {
		return os.WriteFile(filepath.Join(dir, f), []byte(content), 0o644)
	}
	idle := func() bool {
		b, _ := os.ReadFile(filepath.Join(dir, "cpu.idle"))
		return strings.TrimSpace(string(b)) == "1"
	}
	switch file {
	case "cpu.shares":
		n, err := strconv.Atoi(v)
		if err != nil || idle() {
			return fail(syscall.EINVAL)
		}
		return put(file, strconv.Itoa(max(n, 2))+"\n")
	case "cpu.weight":
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 || idle() {
			return fail(syscall.EINVAL)
		}
		return put(file, v+"\n")
	case "cpu.idle":
		if v != "0" && v != "1" {
			return fail(syscall.EINVAL)
		}
		if (v == "1") == idle() {
			return nil // unchanged: the kernel returns early, weight untouched
		}
		if err := put(file, v+"\n"); err != nil {
			return err
		}
		weightFile, idleW, normalW := "cpu.shares", "3\n", "1024\n"
		if k.v2 {
			weightFile, idleW, normalW = "cpu.weight", "1\n", "100\n"
		}
		if v == "1" {
			return put(weightFile, idleW)
		}
		return put(weightFile, normalW)
	case "cpuset.cpus":
		if k.v2 {
			return put(file, v+"\n")
		}
		trial, ok := parseCPUs(v)
		if !ok {
			return fail(syscall.EINVAL)
		}
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if !e.IsDir() {
				continue
			}
			b, _ := os.ReadFile(filepath.Join(dir, e.Name(), "cpuset.cpus"))
			child, _ := parseCPUs(strings.TrimSpace(string(b)))
			if !subset(child, trial) {
				return fail(syscall.EBUSY)
			}
		}
		if b, err := os.ReadFile(filepath.Join(filepath.Dir(dir), "cpuset.cpus")); err == nil {
			parent, _ := parseCPUs(strings.TrimSpace(string(b)))
			if !subset(trial, parent) {
				return fail(syscall.EACCES)
			}
		}
		return put(file, formatCPUs(trial)+"\n")
	default:
		return osFS{}.WriteFile(name, data)
	}
}

func parseCPUs(s string) (map[int]bool, bool) {
	set := map[int]bool{}
	if s == "" {
		return set, true
	}
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return nil, false
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, false
			}
		}
		for i := a; i <= b; i++ {
			set[i] = true
		}
	}
	return set, true
}

func formatCPUs(set map[int]bool) string {
	var cpus []int
	for c := range set {
		cpus = append(cpus, c)
	}
	sort.Ints(cpus)
	var parts []string
	for i := 0; i < len(cpus); {
		j := i
		for j+1 < len(cpus) && cpus[j+1] == cpus[j]+1 {
			j++
		}
		if i == j {
			parts = append(parts, strconv.Itoa(cpus[i]))
		} else {
			parts = append(parts, strconv.Itoa(cpus[i])+"-"+strconv.Itoa(cpus[j]))
		}
		i = j + 1
	}
	return strings.Join(parts, ",")
}

func subset(a, b map[int]bool) bool {
	for c := range a {
		if !b[c] {
			return false
		}
	}
	return true
}
