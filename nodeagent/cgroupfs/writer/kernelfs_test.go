package writer

import (
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/infera-io/temper/nodeagent/cgroupfs"
	"github.com/infera-io/temper/nodeagent/cgroupfs/cgrouptest/hostcg"
)

// kernelFS runs the writer's file access against a faked tree with the
// cgroup kernel behaviours it has to cope with, as Linux 6.18 (v1) and
// 7.2 (v2) show them (TestKernelFSMatchesTheKernel replays writes on the
// real kernel and on this model and compares them):
//
//   - cpu.shares is clamped to at least 2; a v2 cpu.weight outside
//     1..10000 fails with ERANGE;
//   - cpu.idle=1 makes the weight read 3 (v1 cpu.shares) or 1 (v2 cpu.weight),
//     clearing it resets the weight to 1024 / 100, and while it is set weight
//     writes fail with EINVAL;
//   - cpuset.cpus is normalised ("0,1" → "0-1", a bad list is EINVAL); on
//     v1 it must stay a superset of every child's (EBUSY) and a subset of
//     the parent's (EACCES);
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
		if err != nil {
			return fail(syscall.EINVAL)
		}
		if n < 1 || n > 10000 {
			return fail(syscall.ERANGE)
		}
		if idle() {
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
		trial, ok := parseCPUs(v)
		if !ok {
			return fail(syscall.EINVAL)
		}
		if k.v2 {
			return put(file, formatCPUs(trial)+"\n")
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
		return (&osFS{}).WriteFile(name, data)
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

// TestKernelFSMatchesTheKernel keeps the kernelFS model honest: it replays
// the same writes on a real cgroup pair (parent and child, in this
// machine's cgroup v1 hierarchies or its cgroup v2 tree) and on the model,
// and compares after every write the errno and what every file reads
// back. On the v1 CI hosts it checks the v1 behaviours; `make test-vm`
// checks the v2 ones on Debian's 7.2 kernel.
func TestKernelFSMatchesTheKernel(t *testing.T) {
	hostcg.RequireRoot(t)
	const root = "/sys/fs/cgroup"
	v, err := cgroupfs.DetectVersion(root)
	if err != nil {
		t.Skipf("no cgroup tree at %s: %v", root, err)
	}
	host, err := cgroupfs.Detect(root, cgroupfs.DetectOptions{Driver: cgroupfs.DriverCgroupfs})
	if err != nil {
		t.Fatalf("Detect(%s) error = %v", root, err)
	}
	cpuH, cpusetH := host.Hierarchies[cgroupfs.CPU], host.Hierarchies[cgroupfs.CPUSet]
	if cpuH == "" || cpusetH == "" {
		t.Skipf("need the cpu and cpuset controllers, have %v", host.Hierarchies)
	}
	v2 := v == cgroupfs.V2
	weight := "cpu.shares"
	if v2 {
		weight = "cpu.weight"
		if enabled := strings.Fields(hostcg.ReadTrimmed(t, filepath.Join(root, "cgroup.subtree_control"))); !slices.Contains(enabled, "cpu") || !slices.Contains(enabled, "cpuset") {
			t.Skipf("%s/cgroup.subtree_control delegates %v, need cpu and cpuset", root, enabled)
		}
	}

	base := hostcg.RandomName(t)
	sb := hostcg.New(t)
	hier := func(file string) string {
		if strings.HasPrefix(file, "cpuset.") {
			return cpusetH
		}
		return cpuH
	}
	for _, h := range slices.Compact([]string{cpuH, cpusetH}) {
		sb.Mkdir(filepath.Join(h, base), !v2 && h == cpusetH)
		if v2 {
			if err := os.WriteFile(filepath.Join(h, base, "cgroup.subtree_control"), []byte("+cpu +cpuset"), 0); err != nil {
				t.Fatalf("failed to delegate cpu and cpuset in %s: %v", filepath.Join(h, base), err)
			}
		}
		sb.Mkdir(filepath.Join(h, base, "child"), !v2 && h == cpusetH)
	}
	effective := "cpuset.cpus"
	if v2 {
		effective = "cpuset.cpus.effective"
	}
	all, ok := parseCPUs(hostcg.ReadTrimmed(t, filepath.Join(cpusetH, base, effective)))
	if !ok || len(all) < 2 {
		t.Skipf("need at least 2 CPUs, have %v", all)
	}
	cpus := slices.Sorted(maps.Keys(all))
	first, last := strconv.Itoa(cpus[0]), strconv.Itoa(cpus[len(cpus)-1])
	var commas []string
	for _, c := range cpus {
		commas = append(commas, strconv.Itoa(c))
	}
	files := []string{weight, "cpuset.cpus"}
	hasIdle := fileExists(filepath.Join(cpuH, base, "cpu.idle"))
	if hasIdle {
		files = append(files, "cpu.idle")
	}

	// The model's tree starts as a copy of the real one.
	fake := t.TempDir()
	real := func(dir, file string) string { return filepath.Join(hier(file), base, dir, file) }
	model := func(dir, file string) string { return filepath.Join(fake, dir, file) }
	dirs := []string{".", "child"}
	for _, d := range dirs {
		if err := os.MkdirAll(filepath.Join(fake, d), 0o755); err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if err := os.WriteFile(model(d, f), []byte(hostcg.ReadTrimmed(t, real(d, f))+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	kfs := newKernelFS(v2)

	type step struct{ dir, file, value string }
	steps := []step{
		{"child", weight, "1"}, {"child", weight, "0"}, {"child", weight, "500"}, {"child", weight, "abc"},
		{"child", "cpuset.cpus", strings.Join(commas, ",")}, {"child", "cpuset.cpus", last},
		{".", "cpuset.cpus", first}, // v1: EBUSY, the child holds another CPU
		{"child", "cpuset.cpus", first}, {".", "cpuset.cpus", first},
		{"child", "cpuset.cpus", strings.Join(commas, ",")}, // v1: EACCES, wider than the parent
		{"child", "cpuset.cpus", "x"},
		{".", "cpuset.cpus", strings.Join(commas, ",")}, {"child", "cpuset.cpus", strings.Join(commas, ",")},
	}
	if v2 {
		steps = append(steps, step{"child", weight, "10000"}, step{"child", weight, "10001"},
			step{"child", "cpuset.cpus", last}, step{"child", "cpuset.cpus", "\n"})
	}
	if hasIdle {
		steps = append(steps,
			step{"child", weight, "300"}, step{"child", "cpu.idle", "1"}, step{"child", weight, "50"},
			step{"child", "cpu.idle", "1"}, step{"child", "cpu.idle", "2"}, step{"child", "cpu.idle", "0"},
		)
	}
	errno := func(err error) syscall.Errno {
		var e syscall.Errno
		if err != nil && !errors.As(err, &e) {
			t.Fatalf("error without an errno: %v", err)
		}
		return e
	}
	for i, s := range steps {
		rerr := (&osFS{}).WriteFile(real(s.dir, s.file), []byte(s.value))
		merr := kfs.WriteFile(model(s.dir, s.file), []byte(s.value))
		t.Logf("step %d: %s/%s = %q: kernel %v, model %v", i, s.dir, s.file, s.value, errno(rerr), errno(merr))
		if errno(rerr) != errno(merr) {
			t.Errorf("step %d: writing %q to %s/%s: kernel error %v, model error %v", i, s.value, s.dir, s.file, rerr, merr)
		}
		for _, d := range dirs {
			for _, f := range files {
				k, m := hostcg.ReadTrimmed(t, real(d, f)), hostcg.ReadTrimmed(t, model(d, f))
				if k != m {
					t.Errorf("step %d: after writing %q to %s/%s, %s/%s reads %q on the kernel, %q in the model", i, s.value, s.dir, s.file, d, f, k, m)
				}
			}
		}
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
