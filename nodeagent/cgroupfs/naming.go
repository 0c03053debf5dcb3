package cgroupfs

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// ErrInvalid marks input that can never name a cgroup (a malformed pod UID,
// container ID or QoS class). Retrying does not help.
var ErrInvalid = errors.New("invalid cgroup reference")

// Runtime is a container runtime, spelled as the scheme of the container
// IDs in pod status (containerd://…, cri-o://…, docker://…).
type Runtime string

// The runtimes whose cgroup naming is known.
const (
	RuntimeContainerd Runtime = "containerd"
	RuntimeCRIO       Runtime = "cri-o"
	RuntimeDocker     Runtime = "docker"
)

var runtimes = [...]Runtime{RuntimeContainerd, RuntimeCRIO, RuntimeDocker}

// Known reports whether the cgroup naming of r is known.
func (r Runtime) Known() bool { return slices.Contains(runtimes[:], r) }

// ParseContainerID splits a container ID from pod status,
// "<runtime>://<id>", into the runtime and the bare ID. A bare ID (no
// scheme) yields an empty runtime; an unknown scheme is returned as it is,
// and FindPod then tries every known naming.
func ParseContainerID(s string) (Runtime, string, error) {
	scheme, id, ok := strings.Cut(s, "://")
	if !ok {
		scheme, id = "", s
	}
	if !validName(id) {
		return "", "", fmt.Errorf("failed to parse container ID %q: the ID must be letters, digits, '-' or '_': %w", s, ErrInvalid)
	}
	return Runtime(scheme), id, nil
}

// validName accepts what pod UIDs and container IDs are made of, and
// nothing that could step out of a directory.
func validName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for _, r := range s {
		switch {
		case r >= '0' && r <= '9', r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r == '-', r == '_':
		default:
			return false
		}
	}
	return true
}

// systemdPrefix is the name prefix the kubelet's systemd driver gives the
// children of a slice: a slice "a-b.slice" has children "a-b-<x>.slice".
func systemdPrefix(kubepodsDir string) string {
	return strings.TrimSuffix(filepath.Base(kubepodsDir), ".slice")
}

// qosDirName is the name of a QoS cgroup under the pod root ("" for
// Guaranteed pods, which sit directly under it).
func qosDirName(d Driver, kubepodsDir, qos string) (string, error) {
	if qos == "" {
		return "", nil
	}
	switch d {
	case DriverSystemd:
		return systemdPrefix(kubepodsDir) + "-" + qos + ".slice", nil
	case DriverCgroupfs:
		return qos, nil
	default:
		return "", fmt.Errorf("failed to name the %s QoS cgroup: unknown driver %q", qos, d)
	}
}

// qosLevel maps a QoS class to the kubelet's QoS cgroup name.
func qosLevel(q corev1.PodQOSClass) (string, error) {
	switch q {
	case corev1.PodQOSGuaranteed:
		return "", nil
	case corev1.PodQOSBurstable:
		return "burstable", nil
	case corev1.PodQOSBestEffort:
		return "besteffort", nil
	default:
		return "", fmt.Errorf("failed to name a cgroup for QoS class %q: must be Guaranteed, Burstable or BestEffort: %w", q, ErrInvalid)
	}
}

// QOSRelPath returns the kubelet's QoS-level cgroup for a class, relative
// to the hierarchy roots: the pod root itself for Guaranteed, e.g.
// "kubepods.slice/kubepods-burstable.slice" or "kubepods/besteffort". The
// kubelet owns these cgroups' values; Temper reads them, never writes.
func (l *Layout) QOSRelPath(q corev1.PodQOSClass) (string, error) {
	level, err := qosLevel(q)
	if err != nil {
		return "", err
	}
	name, err := qosDirName(l.Driver, l.KubepodsDir, level)
	if err != nil {
		return "", err
	}
	return filepath.Join(l.KubepodsDir, name), nil
}

// PodRelPath returns the cgroup of a pod relative to the hierarchy roots,
// as the kubelet names it:
//
//	systemd:  kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid, '-' → '_'>.slice
//	          kubepods.slice/kubepods-pod<uid, '-' → '_'>.slice (Guaranteed)
//	cgroupfs: kubepods/burstable/pod<uid>
//	          kubepods/pod<uid> (Guaranteed)
func (l *Layout) PodRelPath(uid string, q corev1.PodQOSClass) (string, error) {
	if !validName(uid) {
		return "", fmt.Errorf("failed to name the cgroup of pod UID %q: the UID must be letters, digits, '-' or '_': %w", uid, ErrInvalid)
	}
	level, err := qosLevel(q)
	if err != nil {
		return "", err
	}
	qosDir, err := qosDirName(l.Driver, l.KubepodsDir, level)
	if err != nil {
		return "", err
	}
	var pod string
	switch l.Driver {
	case DriverSystemd:
		prefix := systemdPrefix(l.KubepodsDir)
		if level != "" {
			prefix += "-" + level
		}
		// The kubelet escapes '-' in each name part, since systemd reads '-' as
		// the slice nesting separator.
		pod = prefix + "-pod" + strings.ReplaceAll(uid, "-", "_") + ".slice"
	default:
		pod = "pod" + uid
	}
	return filepath.Join(l.KubepodsDir, qosDir, pod), nil
}

// containerDirNames lists the names a container's cgroup may have inside its
// pod cgroup, the expected one first. A known runtime has exactly one name;
// an unknown one gets every known name of the driver.
//
//	systemd:  cri-containerd-<id>.scope, crio-<id>.scope, docker-<id>.scope
//	cgroupfs: <id> (containerd, Docker), crio-<id> (CRI-O)
func containerDirNames(d Driver, r Runtime, id string) []string {
	name := func(r Runtime) string {
		switch d {
		case DriverSystemd:
			switch r {
			case RuntimeContainerd:
				return "cri-containerd-" + id + ".scope"
			case RuntimeCRIO:
				return "crio-" + id + ".scope"
			case RuntimeDocker:
				return "docker-" + id + ".scope"
			}
		case DriverCgroupfs:
			switch r {
			case RuntimeContainerd, RuntimeDocker:
				return id
			case RuntimeCRIO:
				return "crio-" + id
			}
		}
		return ""
	}
	if r.Known() {
		return []string{name(r)}
	}
	var names []string
	for _, k := range runtimes {
		if n := name(k); n != "" && !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	return names
}
