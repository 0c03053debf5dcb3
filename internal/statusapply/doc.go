// Package statusapply writes a whole status subresource with server-side
// apply. A JSON merge patch computed from the object's before and after
// states cannot carry zero values that were never stored (a count of 0, an
// empty tier), so printer columns stay blank; an apply of the full status
// stores them and drops the fields the manager no longer sets. It writes
// only status, never spec or metadata.
package statusapply
