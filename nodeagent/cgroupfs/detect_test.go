package cgroupfs_test

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/infera-io/temper/nodeagent/cgroupfs"
	"github.com/infera-io/temper/nodeagent/cgroupfs/cgrouptest"
)

func TestDetect(t *testing.T) {
	type want struct {
		version     cgroupfs.Version
		driver      cgroupfs.Driver
		hierarchies map[cgroupfs.Controller]string // relative to the tree root
		kubepods    string
		err         error // matched with errors.Is; nil = success
	}
	tests := []struct {
		name  string
		build func(t *testing.T) string // returns the root
		opts  cgroupfs.DetectOptions
		want  want
	}{
		{
			name: "v1 cpu,cpuacct with symlinks, systemd",
			build: func(t *testing.T) string {
				tr := cgrouptest.NewV1(t, cgrouptest.Options{})
				tr.Kubelet(t, cgroupfs.DriverSystemd)
				return tr.Root
			},
			want: want{version: cgroupfs.V1, driver: cgroupfs.DriverSystemd, kubepods: "kubepods.slice",
				hierarchies: map[cgroupfs.Controller]string{cgroupfs.CPU: "cpu,cpuacct", cgroupfs.CPUSet: "cpuset"}},
		},
		{
			name: "v1 cpu mounted alone (this CI host's shape), cgroupfs",
			build: func(t *testing.T) string {
				tr := cgrouptest.NewV1(t, cgrouptest.Options{V1CPUDir: "cpu"})
				tr.Kubelet(t, cgroupfs.DriverCgroupfs)
				return tr.Root
			},
			want: want{version: cgroupfs.V1, driver: cgroupfs.DriverCgroupfs, kubepods: "kubepods",
				hierarchies: map[cgroupfs.Controller]string{cgroupfs.CPU: "cpu", cgroupfs.CPUSet: "cpuset"}},
		},
		{
			name: "v1 without a cpuset hierarchy",
			build: func(t *testing.T) string {
				tr := cgrouptest.NewV1(t, cgrouptest.Options{NoCPUSet: true})
				tr.Kubelet(t, cgroupfs.DriverCgroupfs)
				return tr.Root
			},
			want: want{version: cgroupfs.V1, driver: cgroupfs.DriverCgroupfs, kubepods: "kubepods",
				hierarchies: map[cgroupfs.Controller]string{cgroupfs.CPU: "cpu,cpuacct"}},
		},
		{
			name: "v1 directory named cpu without cpu files is not a hierarchy",
			build: func(t *testing.T) string {
				root := t.TempDir()
				mustMkdir(t, filepath.Join(root, "cpu", "kubepods"))
				return root
			},
			want: want{err: cgroupfs.ErrNoHierarchy},
		},
		{
			name: "v2 systemd",
			build: func(t *testing.T) string {
				tr := cgrouptest.NewV2(t, cgrouptest.Options{})
				tr.Kubelet(t, cgroupfs.DriverSystemd)
				return tr.Root
			},
			want: want{version: cgroupfs.V2, driver: cgroupfs.DriverSystemd, kubepods: "kubepods.slice",
				hierarchies: map[cgroupfs.Controller]string{cgroupfs.CPU: "", cgroupfs.CPUSet: ""}},
		},
		{
			name: "v2 without cpuset enabled at the root",
			build: func(t *testing.T) string {
				tr := cgrouptest.NewV2(t, cgrouptest.Options{NoCPUSet: true})
				tr.Kubelet(t, cgroupfs.DriverCgroupfs)
				return tr.Root
			},
			want: want{version: cgroupfs.V2, driver: cgroupfs.DriverCgroupfs, kubepods: "kubepods",
				hierarchies: map[cgroupfs.Controller]string{cgroupfs.CPU: ""}},
		},
		{
			name:  "empty root",
			build: func(t *testing.T) string { return t.TempDir() },
			want:  want{err: cgroupfs.ErrNoHierarchy},
		},
		{
			name: "kubelet not started: retry",
			build: func(t *testing.T) string {
				return cgrouptest.NewV2(t, cgrouptest.Options{}).Root
			},
			want: want{err: cgroupfs.ErrNotFound},
		},
		{
			name: "both pod roots, only kubepods.slice has QoS cgroups",
			build: func(t *testing.T) string {
				tr := cgrouptest.NewV1(t, cgrouptest.Options{})
				tr.Kubelet(t, cgroupfs.DriverSystemd)
				tr.Mkdir(t, "kubepods")
				return tr.Root
			},
			want: want{version: cgroupfs.V1, driver: cgroupfs.DriverSystemd, kubepods: "kubepods.slice",
				hierarchies: map[cgroupfs.Controller]string{cgroupfs.CPU: "cpu,cpuacct", cgroupfs.CPUSet: "cpuset"}},
		},
		{
			name: "both pod roots, only kubepods has QoS cgroups",
			build: func(t *testing.T) string {
				tr := cgrouptest.NewV2(t, cgrouptest.Options{})
				tr.Kubelet(t, cgroupfs.DriverCgroupfs)
				tr.Mkdir(t, "kubepods.slice")
				return tr.Root
			},
			want: want{version: cgroupfs.V2, driver: cgroupfs.DriverCgroupfs, kubepods: "kubepods",
				hierarchies: map[cgroupfs.Controller]string{cgroupfs.CPU: "", cgroupfs.CPUSet: ""}},
		},
		{
			name: "both pod roots with QoS cgroups",
			build: func(t *testing.T) string {
				tr := cgrouptest.NewV2(t, cgrouptest.Options{})
				tr.Kubelet(t, cgroupfs.DriverCgroupfs)
				tr.Kubelet(t, cgroupfs.DriverSystemd)
				return tr.Root
			},
			want: want{err: cgroupfs.ErrAmbiguousDriver},
		},
		{
			name: "override settles an ambiguous tree",
			build: func(t *testing.T) string {
				tr := cgrouptest.NewV2(t, cgrouptest.Options{})
				tr.Kubelet(t, cgroupfs.DriverCgroupfs)
				tr.Kubelet(t, cgroupfs.DriverSystemd)
				return tr.Root
			},
			opts: cgroupfs.DetectOptions{Driver: cgroupfs.DriverSystemd},
			want: want{version: cgroupfs.V2, driver: cgroupfs.DriverSystemd, kubepods: "kubepods.slice",
				hierarchies: map[cgroupfs.Controller]string{cgroupfs.CPU: "", cgroupfs.CPUSet: ""}},
		},
		{
			name:  "driver override needs no pod root yet",
			build: func(t *testing.T) string { return cgrouptest.NewV1(t, cgrouptest.Options{}).Root },
			opts:  cgroupfs.DetectOptions{Driver: cgroupfs.DriverCgroupfs},
			want: want{version: cgroupfs.V1, driver: cgroupfs.DriverCgroupfs, kubepods: "kubepods",
				hierarchies: map[cgroupfs.Controller]string{cgroupfs.CPU: "cpu,cpuacct", cgroupfs.CPUSet: "cpuset"}},
		},
		{
			name:  "kubepods dir override implies systemd",
			build: func(t *testing.T) string { return cgrouptest.NewV2(t, cgrouptest.Options{}).Root },
			opts:  cgroupfs.DetectOptions{KubepodsDir: "kubelet.slice/kubelet-kubepods.slice"},
			want: want{version: cgroupfs.V2, driver: cgroupfs.DriverSystemd, kubepods: "kubelet.slice/kubelet-kubepods.slice",
				hierarchies: map[cgroupfs.Controller]string{cgroupfs.CPU: "", cgroupfs.CPUSet: ""}},
		},
		{
			name:  "kubepods dir override contradicting the driver",
			build: func(t *testing.T) string { return cgrouptest.NewV2(t, cgrouptest.Options{}).Root },
			opts:  cgroupfs.DetectOptions{KubepodsDir: "kubelet/kubepods", Driver: cgroupfs.DriverSystemd},
			want:  want{err: errAny},
		},
		{
			name:  "kubepods dir override stepping out",
			build: func(t *testing.T) string { return cgrouptest.NewV2(t, cgrouptest.Options{}).Root },
			opts:  cgroupfs.DetectOptions{KubepodsDir: "../kubepods"},
			want:  want{err: errAny},
		},
		{
			name:  "version override v2 on a v1 tree",
			build: func(t *testing.T) string { return cgrouptest.NewV1(t, cgrouptest.Options{}).Root },
			opts:  cgroupfs.DetectOptions{Version: cgroupfs.V2, Driver: cgroupfs.DriverSystemd},
			want:  want{err: errAny},
		},
		{
			name: "version override v1 on a v2 tree",
			build: func(t *testing.T) string {
				tr := cgrouptest.NewV2(t, cgrouptest.Options{})
				tr.Kubelet(t, cgroupfs.DriverSystemd)
				return tr.Root
			},
			opts: cgroupfs.DetectOptions{Version: cgroupfs.V1},
			want: want{err: cgroupfs.ErrNoHierarchy},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := tt.build(t)
			got, err := cgroupfs.Detect(root, tt.opts)
			if tt.want.err != nil {
				if err == nil || (!errors.Is(tt.want.err, errAny) && !errors.Is(err, tt.want.err)) {
					t.Fatalf("Detect() = %+v, %v; want error %v", got, err, tt.want.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Detect() error = %v", err)
			}
			h := map[cgroupfs.Controller]string{}
			for c, rel := range tt.want.hierarchies {
				h[c] = filepath.Join(root, rel)
			}
			want := &cgroupfs.Layout{Root: root, Version: tt.want.version, Driver: tt.want.driver, Hierarchies: h, KubepodsDir: tt.want.kubepods}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("Detect() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// errAny in a test table means "some error".
var errAny = errors.New("any error")

func TestParseDriverAndVersion(t *testing.T) {
	drivers := []struct {
		in      string
		want    cgroupfs.Driver
		wantErr bool
	}{
		{"", cgroupfs.DriverAuto, false},
		{"auto", cgroupfs.DriverAuto, false},
		{"systemd", cgroupfs.DriverSystemd, false},
		{" cgroupfs ", cgroupfs.DriverCgroupfs, false},
		{"Systemd", "", true},
		{"cgroupfs2", "", true},
	}
	for _, tt := range drivers {
		got, err := cgroupfs.ParseDriver(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseDriver(%q) = %q, %v; want %q, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
	versions := []struct {
		in      string
		want    cgroupfs.Version
		wantErr bool
	}{
		{"", cgroupfs.VersionAuto, false},
		{"auto", cgroupfs.VersionAuto, false},
		{"v1", cgroupfs.V1, false},
		{"2", cgroupfs.V2, false},
		{"v3", cgroupfs.VersionAuto, true},
	}
	for _, tt := range versions {
		got, err := cgroupfs.ParseVersion(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseVersion(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

// TestDetectHost runs detection on this machine's /sys/fs/cgroup (it only
// reads) and checks it against the mount table, which Detect does not use.
func TestDetectHost(t *testing.T) {
	const root = "/sys/fs/cgroup"
	if _, err := os.Stat(root); err != nil {
		t.Skipf("no %s on this machine: %v", root, err)
	}
	mounts := cgroupMounts(t)

	wantVersion := cgroupfs.V1
	if m, ok := mounts[root]; ok && m.fstype == "cgroup2" {
		wantVersion = cgroupfs.V2
	}
	got, err := cgroupfs.DetectVersion(root)
	if err != nil {
		t.Fatalf("DetectVersion(%s) error = %v", root, err)
	}
	if got != wantVersion {
		t.Fatalf("DetectVersion(%s) = %v, want %v (mount table: %v)", root, got, wantVersion, mounts)
	}

	// A driver given explicitly, so a host without a kubelet is fine.
	l, err := cgroupfs.Detect(root, cgroupfs.DetectOptions{Driver: cgroupfs.DriverCgroupfs})
	if err != nil {
		t.Fatalf("Detect(%s) error = %v", root, err)
	}
	for _, c := range []cgroupfs.Controller{cgroupfs.CPU, cgroupfs.CPUSet} {
		wantDir := ""
		for mp, m := range mounts {
			if wantVersion == cgroupfs.V1 && m.fstype == "cgroup" && slices.Contains(m.opts, string(c)) && filepath.Dir(mp) == root {
				wantDir = mp
			}
			if wantVersion == cgroupfs.V2 && mp == root && slices.Contains(m.controllers, string(c)) {
				wantDir = mp
			}
		}
		gotDir := l.Hierarchies[c]
		if gotDir != "" {
			if gotDir, err = filepath.EvalSymlinks(gotDir); err != nil {
				t.Fatalf("failed to resolve %s: %v", l.Hierarchies[c], err)
			}
		}
		if gotDir != wantDir {
			t.Errorf("%s hierarchy = %q, want %q (from the mount table)", c, gotDir, wantDir)
		}
	}
	t.Logf("host: %s, hierarchies %v", l.Version, l.Hierarchies)

	// Auto-detection of the driver agrees with what exists on the host.
	auto, err := cgroupfs.Detect(root, cgroupfs.DetectOptions{})
	slice := dirExists(filepath.Join(l.Hierarchies[cgroupfs.CPU], "kubepods.slice"))
	fs := dirExists(filepath.Join(l.Hierarchies[cgroupfs.CPU], "kubepods"))
	switch {
	case !slice && !fs:
		if !errors.Is(err, cgroupfs.ErrNotFound) {
			t.Errorf("Detect(%s) on a host without kubelet cgroups: error = %v, want ErrNotFound", root, err)
		}
	case slice && !fs:
		if err != nil || auto.Driver != cgroupfs.DriverSystemd {
			t.Errorf("Detect(%s) = %+v, %v; want the systemd driver", root, auto, err)
		}
	case fs && !slice:
		if err != nil || auto.Driver != cgroupfs.DriverCgroupfs {
			t.Errorf("Detect(%s) = %+v, %v; want the cgroupfs driver", root, auto, err)
		}
	}
}

type mount struct {
	fstype      string
	opts        []string // super options
	controllers []string // cgroup2 only: the root's cgroup.controllers
}

// cgroupMounts reads the cgroup mounts of /proc/self/mountinfo, by mount
// point.
func cgroupMounts(t *testing.T) map[string]mount {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Skipf("no mount table: %v", err)
	}
	defer f.Close()
	out := map[string]mount{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		pf, qf := strings.Fields(pre), strings.Fields(post)
		if len(pf) < 5 || len(qf) < 3 || !strings.HasPrefix(qf[0], "cgroup") {
			continue
		}
		m := mount{fstype: qf[0], opts: strings.Split(qf[2], ",")}
		if m.fstype == "cgroup2" {
			b, _ := os.ReadFile(filepath.Join(pf[4], "cgroup.controllers"))
			m.controllers = strings.Fields(string(b))
		}
		out[pf[4]] = m
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("failed to read the mount table: %v", err)
	}
	return out
}

func dirExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

func mustMkdir(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}
