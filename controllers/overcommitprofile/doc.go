// Package overcommitprofile reconciles OvercommitProfile objects onto
// namespaces: every namespace a profile selects (never kube-system or the
// platform's namespace) gets the infera.io/overcommit=enabled label and the
// infera.io/overcommit-profile annotation naming the profile, and loses them
// when no profile selects it any more. Status counts the deflated pods and
// the CPU they freed.
//
// Writes go through server-side apply with one field manager, so the API
// server tracks ownership: a label an operator set by hand is shared, never
// taken over, and survives the profile's deletion. When two profiles select
// a namespace the oldest wins and the other reports a ProfileConflict. The
// package never writes a profile's spec or a pod.
package overcommitprofile
