// Package tiering is the one pod → tier function of DESIGN.md §2, shared by
// the node agent, the overcommit webhook and the scheduler plugin so that all
// three always agree on a pod's tier. It also sums a pod's CPU requests and
// limits the way the kubelet and scheduler do.
//
// It is pure: no client, no files, no exec, no clock. Odd input (nil
// priority, unknown or raising tier annotations, absurd quantities) never
// panics and never errors: it yields a tier plus lint findings that name the
// pod's field.
package tiering
