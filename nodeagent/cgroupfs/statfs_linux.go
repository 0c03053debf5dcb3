package cgroupfs

import "syscall"

// cgroup2SuperMagic is CGROUP2_SUPER_MAGIC from linux/magic.h.
const cgroup2SuperMagic = 0x63677270

func isCgroup2Mount(p string) (bool, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(p, &st); err != nil {
		return false, err
	}
	return int64(st.Type) == cgroup2SuperMagic, nil //nolint:unconvert // Statfs_t.Type is int32 on some architectures.
}
