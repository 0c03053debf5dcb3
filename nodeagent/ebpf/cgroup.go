package ebpf

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Hierarchy says which cgroup hierarchy's ids key the tiers map.
type Hierarchy int

const (
	// HierarchyV2 keys by the task's cgroup v2 (unified) cgroup.
	HierarchyV2 Hierarchy = iota
	// HierarchyV1CPU keys by the task's cgroup in the v1 cpu controller's
	// hierarchy.
	HierarchyV1CPU
)

// String names the hierarchy.
func (h Hierarchy) String() string {
	switch h {
	case HierarchyV2:
		return "v2"
	case HierarchyV1CPU:
		return "v1-cpu"
	}
	return fmt.Sprintf("Hierarchy(%d)", int(h))
}

// DetectHierarchy returns HierarchyV2 when root (normally /sys/fs/cgroup) is
// a cgroup2 mount, HierarchyV1CPU otherwise.
func DetectHierarchy(root string) (Hierarchy, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(root, &st); err != nil {
		return 0, fmt.Errorf("failed to statfs cgroup root %q: %w", root, err)
	}
	if st.Type == unix.CGROUP2_SUPER_MAGIC {
		return HierarchyV2, nil
	}
	return HierarchyV1CPU, nil
}

// CgroupID returns the id of the cgroup at dir (a directory in a cgroup v2
// mount, or in the v1 cpu hierarchy for HierarchyV1CPU): the kernfs node id
// the BPF programs read, which is the directory's inode number.
func CgroupID(dir string) (uint64, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return 0, fmt.Errorf("cgroup %q: %w", dir, ErrNoSuchCgroup)
		}
		return 0, fmt.Errorf("failed to stat cgroup %q: %w", dir, err)
	}
	if !fi.IsDir() {
		return 0, fmt.Errorf("cgroup %q: not a directory: %w", dir, ErrNoSuchCgroup)
	}
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return 0, fmt.Errorf("failed to stat cgroup %q: %w", dir, err)
	}
	return st.Ino, nil
}
