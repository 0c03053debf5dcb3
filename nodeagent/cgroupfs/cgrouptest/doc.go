// Package cgrouptest builds faked cgroup trees under a test's temporary
// directory, shaped like a real node's: cgroup v1 with per-controller
// hierarchies (cpu,cpuacct and cpuset, plus the hybrid cgroup2 mount without
// controllers) or a v2 unified tree, the kubelet's pod root and QoS cgroups
// for either driver with the values the kubelet sets, and pods and
// containers named as the kubelet and containerd, CRI-O or Docker name
// them. Snapshot captures every file so a test can check that a tree was
// left byte-for-byte as found.
//
// The names here are spelled out independently of package cgroup, so tests
// of its discovery are not checked against themselves. It is for tests
// only and must never touch a real cgroup tree.
package cgrouptest
