// Package cgroupfs finds the cgroup directories the kubelet and the container
// runtime created for each pod and container on this node: cgroup v1 (one
// hierarchy per controller, /sys/fs/cgroup/cpu,cpuacct/..., /sys/fs/cgroup/cpuset/...)
// and v2 (one unified tree), the systemd and cgroupfs drivers, and the
// containerd, CRI-O and Docker scope names, for Guaranteed, Burstable and
// BestEffort pods. Detect works out the cgroup version, the controller
// hierarchies and the kubelet's driver from the tree under a root it is
// given (the host's /sys/fs/cgroup, or a faked tree in tests); Layout.FindPod
// turns a pod UID, QoS class and container IDs into directories, and says
// with ErrNotFound when a cgroup does not exist yet so the caller retries.
//
// It only reads. Every write to a cgroup file goes through the one writer in
// nodeagent/cgroup/writer, which deduplicates, audits and can undo; this
// package must never write, create or remove anything under the root.
package cgroupfs
