// Package nodeagent is the L0 node agent: it watches the pods bound to its
// node, sorts them into QoS tiers, and makes the kernel enforce the tiers
// (scx_layered where the kernel has sched_ext, cgroup knobs elsewhere). It
// publishes what it enforces as node annotations, metrics and a local JSON
// endpoint, and honours infera.io/safe-mode-requested without a control plane.
//
// It must never list anything beyond its own node and that node's pods, and
// must never import the cluster components (controllers, webhooks,
// schedulerplugin, gateway).
package nodeagent

// The agent reads the pods bound to its node and its own Node, and patches
// that Node's annotations (agent-status, tier-load).
//
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=nodes,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
