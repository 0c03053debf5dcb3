// Package publish writes what the agent enforces onto its Node:
// infera.io/agent-status and infera.io/tier-load (DESIGN.md §3). It patches
// only on a content change or when the heartbeat is due, and always with a
// JSON merge patch of exactly those two keys, so it can never clobber an
// annotation someone else wrote (the safe-mode request in particular).
package publish
