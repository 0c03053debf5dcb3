// Package procscan samples where a node's pod threads run and how busy they
// are, from /proc/<pid>/task/<tid>/stat: cumulative utime+stime and the CPU
// the thread last ran on (field 39). Given each pod's processes (tgids,
// directly or read from the pod's cgroup.procs), it keeps the previous
// sample of every thread and returns, per sample, the threads that ran since
// the previous one with their CPU in ms per second, the top-N busiest, and
// the usage per CPU attributed to each thread's last CPU.
//
// Work per sample is bounded (threads per pod and in total, capped with the
// cap reported), processes whose CPU time did not move since the previous
// sample are not descended into, and threads that exit mid-read are counted,
// not reported as errors. It reads /proc only; it decides nothing about
// placement (nodeagent/lint does) and never writes anything.
package procscan
