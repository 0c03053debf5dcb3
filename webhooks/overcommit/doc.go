// Package overcommit is the overcommit mutating admission webhook for pods
// (DESIGN.md §5). In namespaces labelled infera.io/overcommit=enabled it
// scales the CPU requests of non-critical, non-system pods by the ratio of
// their tier in the namespace's OvercommitProfile, never below the floor,
// and records the originals in infera.io/original-cpu-requests.
//
// It must never deny a pod, never touch limits, never act in kube-system or
// the platform's namespace, and never deflate a pod twice: every odd input
// (unknown profile, malformed annotation, absurd quantity) is a no-op with an
// admission warning. The pure decision is Compute; Handler adds the lookups
// and the JSON patch. It imports no controller of ours.
package overcommit
