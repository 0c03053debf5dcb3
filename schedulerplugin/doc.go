// Package schedulerplugin is InferaDensity, the density-aware kube-scheduler
// plugin (DESIGN.md §1, L1). It reads the infera.io/tier-load annotation the
// node agents publish and places latency-critical pods (critical, high) where
// whole cores can still be fenced and protected load is low, and normal, low
// and background pods where they fill nodes up. The scoring rules live in
// core/; this package adapts them to the scheduling framework: it decodes
// and validates the plugin args (apis/config/v1alpha1.InferaDensityArgs),
// caches each node's parsed annotation by NodeInfo generation, counts the
// pods bound to a node since its annotation's timestamp, registers the
// cluster events that can make a filtered pod schedulable, and activates a
// filtered pod when the annotation that filtered it turns stale (requeue.go).
// Its args are registered in kube-scheduler's configuration scheme
// (RegisterArgs).
//
// It must fail open: a missing, stale or malformed annotation scores neutral
// and never filters a node, and nothing here calls the API server. With the
// plugin disabled, or every agent gone, the profile behaves as stock
// kube-scheduler. Only this package and cmd/infera-scheduler may import
// k8s.io/kubernetes.
package schedulerplugin
