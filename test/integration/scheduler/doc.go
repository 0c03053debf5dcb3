// Package scheduler tests the InferaDensity plugin inside a real
// kube-scheduler (run in-process from config/scheduler/scheduler-config.yaml,
// the sample that ships) against a real kube-apiserver: Node objects with
// capacity and tier-load annotations stand in for nodes with agents, and
// pods of each tier must land where the rules say. It needs no kubelet and
// no kwok: the scheduler only reads Nodes and binds Pods.
package scheduler
