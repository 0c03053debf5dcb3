// Package podstate keeps the agent's view of its node: an informer over the
// pods bound to this node (field selector spec.nodeName) and one over this
// Node object (for the safe-mode annotation). Nothing else in the cluster is
// listed or watched. Consumers read snapshots and are told, through a
// coalescing channel, that something changed.
package podstate
