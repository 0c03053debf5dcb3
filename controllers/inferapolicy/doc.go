// Package inferapolicy reconciles InferaPolicy objects onto the nodes they
// select: it sets infera.io/safe-mode-requested=true where any selecting
// policy asks for safe mode, records which policies own the value in
// infera.io/safe-mode-requested-by, and removes only values it owns, so a
// value an operator set by hand survives every policy change and deletion.
// It also copies spec.priorityMapping into infera.io/priority-mapping on the
// selected nodes (the oldest selecting policy wins a node), the value the
// agent and the scheduler plugin tier pods by, and likewise never touches a
// value set by hand (one that names no policy).
//
// It writes node annotations and InferaPolicy status only: never a policy's
// spec, never another key. The agent, not this package, acts on them.
package inferapolicy
