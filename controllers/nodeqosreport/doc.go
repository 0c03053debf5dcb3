// Package nodeqosreport keeps one NodeQoSReport per Node (same name, owned
// by the Node so the garbage collector removes it with the Node) whose
// status mirrors the node's infera.io/agent-status and infera.io/tier-load
// annotations, with heartbeat, validity and enforcement conditions. It also
// runs the silent-agent backstop: a node whose agent stopped confirming its
// tier-load gets a Warning event, the AgentSilent condition and, when
// configured, a taint that is lifted when the agent is back.
//
// Malformed annotations become a condition naming the key, never an error
// loop. The report has no spec, so there is no finalizer: cleanup is
// ownership. The package never writes a node's annotations and never writes
// any taint but the backstop's own key.
package nodeqosreport
