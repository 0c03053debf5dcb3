// Package realnode is a node without a kubelet for tests and soaks that
// need the real kernel: a kubelet-shaped cgroup tree in a private subtree
// of this machine's real cgroup v1 hierarchies (pods with the kubelet's
// cpu.shares and real processes in them), and the real infera-agent binary
// as a process that can be SIGKILLed and restarted. It needs root, never
// touches a cgroup it did not create, and removes everything it made on
// Cleanup.
package realnode
