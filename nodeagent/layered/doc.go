// Package layered generates the scx_layered layer config that enforces Temper's
// tiers on one node (DESIGN.md §2, docs/agent.md "Tiers to scx_layered
// layers"): from the node's CPU shape, the node's pods with their tier,
// cgroup path and CPU requests and limits, and a few options, it builds the
// always-on system layer, a fenced Confined layer for critical (or a Grouped
// one, with the demotion reported, when the node cannot fence it), Grouped
// layers for high and normal, Open layers for low and background, and the
// catch-all, with pod-matching rules that stay inside scx_layered's limits
// for 250 pods. It also returns a summary the agent publishes.
//
// It is pure: no files, no exec, no clock, no cgroup reads. Equal input gives
// equal bytes, so the agent can compare configs to decide whether to restart
// the scheduler. It does not run or supervise scx_layered
// (nodeagent/enforcement/scx does) and does not decide tiers (apis/tiering
// does). Subpackage scxschema validates configs against the strict schema.
package layered
