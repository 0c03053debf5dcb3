// Package argocdhealth runs Temper's Argo CD health checks
// (config/argocd/health/<group>/<Kind>/health.lua) in gopher-lua the way
// Argo CD does: the object becomes the global `obj`, a Lua table built from
// its JSON form, only the base, package and table libraries are open, and
// the script's returned table is read as {status=..., message=...}.
//
// It is a test helper: it never talks to a cluster, and the scripts it runs
// are the shipped files, never copies.
package argocdhealth
