// Package liveagent gives the integration suites of the gateway, inferactl
// and the dashboard a node whose pods use real CPU: it writes a cgroup v2
// tree (kubelet cgroupfs layout) under a directory, with each pod's cgroup
// listing the PIDs of real processes it starts, so that a real in-process
// agent (nodeagent.Agent, observe-only, pointed at that tree) samples real
// threads and serves real usage. The tree is a stand-in for the kubelet's
// (this machine's kernel is not the node's); the processes, their CPU time
// and the agent are real. Test code only.
package liveagent
