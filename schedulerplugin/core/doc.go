// Package core is the pure placement logic of the InferaDensity scheduler
// plugin: given what a node's infera.io/tier-load annotation says (plus the
// pods bound to the node since the annotation's timestamp) and the tier and
// CPU request of the pod being scheduled, it decides whether a critical pod
// can be fenced there and how well the node suits the pod.
//
// Latency-critical pods (critical, high) are placed contention-aware: nodes
// where whole cores can still be fenced and protected load is low score
// high. Normal, low and background pods are placed packing-aware: among the
// nodes with idle headroom for them, the more batch work a node already
// runs, the higher it scores, so nodes fill up one after another and fewer
// of them carry batch work. A node whose annotation is missing,
// stale or malformed scores neutral — the median of the nodes that could be
// judged in the same cycle — and is never filtered.
//
// It must stay pure: no client, no clock, no scheduler framework, no logging.
// The plugin adapter in the parent package feeds it.
package core
