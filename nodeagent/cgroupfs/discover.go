package cgroupfs

import (
	"errors"
	"fmt"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"

	"github.com/infera-io/temper/apis/tiering"
)

// ErrNotFound means a cgroup does not exist (yet): the kubelet or the
// runtime has not created it, or has already removed it. The caller keeps
// the pod and retries it later; it must not drop it.
var ErrNotFound = errors.New("cgroup not found")

// PodRef is what FindPod needs to know about a pod.
type PodRef struct {
	UID      string
	QOSClass corev1.PodQOSClass
	// ContainerIDs are IDs from pod status ("containerd://<id>",
	// "cri-o://<id>", "docker://<id>"); empty entries are skipped.
	ContainerIDs []string
}

// RefForPod builds the PodRef of a pod: its UID, its QoS class, and the IDs
// of its running containers (init, sidecar and app containers). Only running
// containers are listed: a terminated or waiting container's last ID names a
// cgroup the runtime has removed or will remove.
func RefForPod(pod *corev1.Pod) PodRef {
	ref := PodRef{UID: string(pod.UID), QOSClass: tiering.QOSClass(pod)}
	for _, list := range [][]corev1.ContainerStatus{pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses} {
		for _, cs := range list {
			if cs.State.Running != nil && cs.ContainerID != "" {
				ref.ContainerIDs = append(ref.ContainerIDs, cs.ContainerID)
			}
		}
	}
	return ref
}

// Pod is the cgroup of a pod and of its containers.
type Pod struct {
	UID      string
	QOSClass corev1.PodQOSClass
	// RelPath is the pod cgroup relative to each hierarchy root.
	RelPath string
	// Dirs holds the absolute pod cgroup directory in each controller's
	// hierarchy where it exists (on v2 every available controller maps to the
	// same directory).
	Dirs       map[Controller]string
	Containers []Container
	// Pending lists the container IDs of the PodRef whose cgroup does not
	// exist yet; retry them later.
	Pending []string
}

// Container is the cgroup of one container.
type Container struct {
	// ID is the container ID as given in the PodRef.
	ID      string
	Runtime Runtime
	// RelPath is the container cgroup relative to each hierarchy root.
	RelPath string
	Dirs    map[Controller]string
}

// FindPod finds the cgroups of a pod and its containers.
//
// A pod cgroup that does not exist is an error wrapping ErrNotFound (retry
// later); a malformed UID, QoS class or container ID one wrapping
// ErrInvalid. A pod is found when its cgroup exists in the tree that decides
// (the cpu hierarchy on v1, the unified tree on v2); other v1 hierarchies in
// which it is missing are left out of Dirs. Containers whose cgroup does not
// exist yet are listed in Pod.Pending, not an error.
//
// The kubelet's pod cgroup for a QoS class never moves (a pod's QoS class
// is immutable), so FindPod looks in exactly one place and does not scan.
func (l *Layout) FindPod(ref PodRef) (*Pod, error) {
	rel, err := l.PodRelPath(ref.UID, ref.QOSClass)
	if err != nil {
		return nil, err
	}
	top := filepath.Join(l.top(), rel)
	if !isDir(top) {
		return nil, fmt.Errorf("failed to find the cgroup of pod %s (%s): %s does not exist: %w", ref.UID, ref.QOSClass, top, ErrNotFound)
	}
	pod := &Pod{UID: ref.UID, QOSClass: ref.QOSClass, RelPath: rel, Dirs: l.dirs(rel)}
	for _, cid := range ref.ContainerIDs {
		if cid == "" {
			continue
		}
		rt, id, err := ParseContainerID(cid)
		if err != nil {
			return nil, fmt.Errorf("failed to find the cgroups of pod %s: %w", ref.UID, err)
		}
		found := false
		for _, name := range containerDirNames(l.Driver, rt, id) {
			crel := filepath.Join(rel, name)
			if isDir(filepath.Join(l.top(), crel)) {
				pod.Containers = append(pod.Containers, Container{ID: cid, Runtime: rt, RelPath: crel, Dirs: l.dirs(crel)})
				found = true
				break
			}
		}
		if !found {
			pod.Pending = append(pod.Pending, cid)
		}
	}
	return pod, nil
}

// Dir returns the directory of a relative cgroup path in a controller's
// hierarchy, whether or not it exists, and false when the controller has
// no hierarchy.
func (l *Layout) Dir(c Controller, rel string) (string, bool) {
	h, ok := l.Hierarchies[c]
	if !ok {
		return "", false
	}
	return filepath.Join(h, rel), true
}

// dirs maps each controller to rel in its hierarchy, where that exists.
func (l *Layout) dirs(rel string) map[Controller]string {
	m := map[Controller]string{}
	for c, h := range l.Hierarchies {
		if d := filepath.Join(h, rel); isDir(d) {
			m[c] = d
		}
	}
	return m
}
