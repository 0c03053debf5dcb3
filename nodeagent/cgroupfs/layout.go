package cgroupfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Version is a cgroup version.
type Version int

// The cgroup versions. VersionAuto, the zero value, asks Detect to find out.
const (
	VersionAuto Version = iota
	V1
	V2
)

// String returns "v1", "v2" or "auto".
func (v Version) String() string {
	switch v {
	case V1:
		return "v1"
	case V2:
		return "v2"
	case VersionAuto:
		return "auto"
	default:
		return fmt.Sprintf("Version(%d)", int(v))
	}
}

// ParseVersion parses a configured cgroup version: "", "auto", "v1", "1",
// "v2" or "2".
func ParseVersion(s string) (Version, error) {
	switch strings.TrimSpace(s) {
	case "", "auto":
		return VersionAuto, nil
	case "v1", "1":
		return V1, nil
	case "v2", "2":
		return V2, nil
	default:
		return 0, fmt.Errorf("unknown cgroup version %q: must be auto, v1 or v2", s)
	}
}

// Driver is the kubelet's cgroup driver (its --cgroup-driver). It decides
// how pod and container cgroups are named.
type Driver string

// The drivers. DriverAuto, the zero value, asks Detect to find out.
const (
	DriverAuto     Driver = ""
	DriverSystemd  Driver = "systemd"
	DriverCgroupfs Driver = "cgroupfs"
)

// ParseDriver parses a configured driver: "", "auto", "systemd" or
// "cgroupfs".
func ParseDriver(s string) (Driver, error) {
	switch d := Driver(strings.TrimSpace(s)); d {
	case DriverAuto, "auto":
		return DriverAuto, nil
	case DriverSystemd, DriverCgroupfs:
		return d, nil
	default:
		return "", fmt.Errorf("unknown cgroup driver %q: must be auto, systemd or cgroupfs", s)
	}
}

// Controller is a cgroup controller Temper works with.
type Controller string

// The controllers Temper enforces tiers with.
const (
	CPU    Controller = "cpu"
	CPUSet Controller = "cpuset"
)

// controllers lists every Controller; the first is the one whose tree
// decides whether a cgroup exists on v1.
var controllers = [...]Controller{CPU, CPUSet}

// v1Marker is a file only a v1 hierarchy with that controller has at its
// root, so a directory that merely carries the name is not taken for one.
var v1Marker = map[Controller]string{
	CPU:    "cpu.shares",
	CPUSet: "cpuset.cpus",
}

// ErrNoHierarchy means the root holds neither a cgroup2 tree nor a cgroup
// v1 cpu hierarchy: the root is wrong or cgroupfs is not mounted.
var ErrNoHierarchy = errors.New("no cgroup hierarchy")

// ErrAmbiguousDriver means both kubepods.slice and kubepods exist and
// neither is clearly the live one; set the driver (or KubepodsDir)
// explicitly.
var ErrAmbiguousDriver = errors.New("ambiguous cgroup driver")

// Layout is what Detect found: where each controller's hierarchy is, how
// the kubelet names pod cgroups, and where its pod root is. The zero value
// is not usable; build one with Detect.
type Layout struct {
	// Root is the cgroup mount root Detect was given, e.g. /sys/fs/cgroup.
	Root string
	// Version is the cgroup version of the hierarchies below.
	Version Version
	// Driver is the kubelet's cgroup driver.
	Driver Driver
	// Hierarchies maps each controller to the absolute directory of its
	// hierarchy root. On v1 that is a per-controller mount (which may be
	// shared, like cpu,cpuacct); on v2 every available controller maps to
	// Root. A controller that is not mounted (v1) or not available at the
	// root (v2) is absent.
	Hierarchies map[Controller]string
	// KubepodsDir is the kubelet's pod root relative to each hierarchy
	// root: "kubepods.slice" (systemd) or "kubepods" (cgroupfs) by default,
	// deeper when the kubelet runs with --cgroup-root.
	KubepodsDir string
}

// DetectOptions override what Detect would find out by itself. Each zero
// value means "detect".
type DetectOptions struct {
	Version Version
	Driver  Driver
	// KubepodsDir is the kubelet's pod root relative to the hierarchy
	// roots, for kubelets run with --cgroup-root: e.g.
	// "kubelet.slice/kubelet-kubepods.slice" (systemd, --cgroup-root=/kubelet.slice)
	// or "kubelet/kubepods" (cgroupfs, --cgroup-root=/kubelet). A basename
	// ending in .slice means the systemd driver.
	KubepodsDir string
}

// Detect works out the layout of the cgroup tree under root (normally
// /sys/fs/cgroup; a faked tree in tests):
//
//   - version: a cgroup2 filesystem at root (statfs magic), or a
//     cgroup.controllers file there, is v2; otherwise a v1 hierarchy
//     carrying the cpu controller under root is v1 (this includes the hybrid
//     layout whose cgroup2 mount at root/unified has no controllers);
//   - v1 hierarchies: the entry of root whose comma-separated name lists
//     the controller and which holds that controller's files (cpu.shares,
//     cpuset.cpus), a real directory preferred over a symlink, so both
//     "cpu,cpuacct" and a separately mounted "cpu" are found;
//   - driver: kubepods.slice at the top of the cpu hierarchy (v1) or of the
//     tree (v2) means systemd, kubepods means cgroupfs; when both exist, the
//     one holding the kubelet's QoS cgroups wins, and if that does not
//     decide, ErrAmbiguousDriver. Neither yields an error wrapping
//     ErrNotFound: the kubelet has not set up its cgroups yet, retry.
//
// Every option that is set replaces the matching detection step.
func Detect(root string, opts DetectOptions) (*Layout, error) {
	root = filepath.Clean(root)
	l := &Layout{Root: root, Version: opts.Version, Hierarchies: map[Controller]string{}}
	if l.Version == VersionAuto {
		v, err := DetectVersion(root)
		if err != nil {
			return nil, err
		}
		l.Version = v
	}
	switch l.Version {
	case V1:
		for _, c := range controllers {
			if dir, ok := findV1Hierarchy(root, c); ok {
				l.Hierarchies[c] = dir
			}
		}
		if _, ok := l.Hierarchies[CPU]; !ok {
			return nil, fmt.Errorf("failed to find the cgroup v1 cpu hierarchy under %s: %w", root, ErrNoHierarchy)
		}
	case V2:
		avail, err := os.ReadFile(filepath.Join(root, "cgroup.controllers"))
		if err != nil {
			return nil, fmt.Errorf("failed to read the cgroup v2 controllers at %s: %w", root, err)
		}
		fields := strings.Fields(string(avail))
		for _, c := range controllers {
			if slices.Contains(fields, string(c)) {
				l.Hierarchies[c] = root
			}
		}
	default:
		return nil, fmt.Errorf("failed to detect the cgroup layout: unknown %v", l.Version)
	}

	driver, dir, err := detectKubepods(l.top(), opts)
	if err != nil {
		return nil, err
	}
	l.Driver, l.KubepodsDir = driver, dir
	return l, nil
}

// DetectVersion reports the cgroup version of the tree under root, by the
// rules of Detect.
func DetectVersion(root string) (Version, error) {
	isV2, err := isCgroup2Mount(root)
	if err != nil {
		return VersionAuto, fmt.Errorf("failed to stat the cgroup root %s: %w", root, err)
	}
	if isV2 || isFile(filepath.Join(root, "cgroup.controllers")) {
		return V2, nil
	}
	if _, ok := findV1Hierarchy(root, CPU); ok {
		return V1, nil
	}
	return VersionAuto, fmt.Errorf("failed to detect the cgroup version under %s: no cgroup2 tree and no cgroup v1 cpu hierarchy: %w", root, ErrNoHierarchy)
}

// findV1Hierarchy returns the directory of root holding the v1 hierarchy of
// controller c.
func findV1Hierarchy(root string, c Controller) (string, bool) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return "", false
	}
	var real, linked []string
	for _, e := range entries {
		if !slices.Contains(strings.Split(e.Name(), ","), string(c)) {
			continue
		}
		dir := filepath.Join(root, e.Name())
		if !isFile(filepath.Join(dir, v1Marker[c])) {
			continue
		}
		if e.Type()&os.ModeSymlink != 0 {
			linked = append(linked, dir)
		} else {
			real = append(real, dir)
		}
	}
	// ReadDir sorts by name, so the choice is stable.
	if len(real) > 0 {
		return real[0], true
	}
	if len(linked) > 0 {
		return linked[0], true
	}
	return "", false
}

// top is the hierarchy whose tree decides whether a cgroup exists: the cpu
// hierarchy on v1, the unified tree on v2.
func (l *Layout) top() string {
	if l.Version == V1 {
		return l.Hierarchies[CPU]
	}
	return l.Root
}

const (
	systemdKubepods  = "kubepods.slice"
	cgroupfsKubepods = "kubepods"
)

func detectKubepods(top string, opts DetectOptions) (Driver, string, error) {
	if opts.KubepodsDir != "" {
		dir := filepath.Clean(opts.KubepodsDir)
		if !filepath.IsLocal(dir) {
			return "", "", fmt.Errorf("failed to use kubepods dir %q: must be a relative path inside the hierarchy", opts.KubepodsDir)
		}
		driver := DriverCgroupfs
		if strings.HasSuffix(filepath.Base(dir), ".slice") {
			driver = DriverSystemd
		}
		if opts.Driver != DriverAuto && opts.Driver != driver {
			return "", "", fmt.Errorf("failed to use kubepods dir %q with the %s driver: a .slice basename means systemd, anything else cgroupfs", opts.KubepodsDir, opts.Driver)
		}
		return driver, dir, nil
	}
	switch opts.Driver {
	case DriverSystemd:
		return DriverSystemd, systemdKubepods, nil
	case DriverCgroupfs:
		return DriverCgroupfs, cgroupfsKubepods, nil
	case DriverAuto:
	default:
		return "", "", fmt.Errorf("failed to use cgroup driver %q: must be systemd or cgroupfs", opts.Driver)
	}

	slice := isDir(filepath.Join(top, systemdKubepods))
	fs := isDir(filepath.Join(top, cgroupfsKubepods))
	switch {
	case slice && !fs:
		return DriverSystemd, systemdKubepods, nil
	case fs && !slice:
		return DriverCgroupfs, cgroupfsKubepods, nil
	case !slice && !fs:
		return "", "", fmt.Errorf("failed to detect the cgroup driver: neither %s nor %s exists under %s (kubelet not started yet?): %w",
			systemdKubepods, cgroupfsKubepods, top, ErrNotFound)
	}
	// Both exist, e.g. left over from a driver change. The kubelet creates its
	// QoS cgroups at start, so the live one has them.
	sliceLive := hasQOSChildren(top, DriverSystemd, systemdKubepods)
	fsLive := hasQOSChildren(top, DriverCgroupfs, cgroupfsKubepods)
	switch {
	case sliceLive && !fsLive:
		return DriverSystemd, systemdKubepods, nil
	case fsLive && !sliceLive:
		return DriverCgroupfs, cgroupfsKubepods, nil
	}
	return "", "", fmt.Errorf("failed to detect the cgroup driver: both %s and %s exist under %s; set the driver explicitly: %w",
		systemdKubepods, cgroupfsKubepods, top, ErrAmbiguousDriver)
}

func hasQOSChildren(top string, d Driver, kubepods string) bool {
	for _, qos := range []string{"burstable", "besteffort"} {
		name, _ := qosDirName(d, kubepods, qos)
		if isDir(filepath.Join(top, kubepods, name)) {
			return true
		}
	}
	return false
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

func isFile(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}
