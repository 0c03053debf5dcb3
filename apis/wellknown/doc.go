// Package wellknown is the one place where Temper's runtime contract is
// spelled: the annotation and label keys every component reads or writes
// (DESIGN.md §3), the QoS tier names and their order, the PriorityClasses the
// chart installs, and the versioned infera.io/tier-load document with its
// parser.
//
// It must stay a leaf: standard library, k8s.io/apimachinery and the k8s.io/api types only, so the
// agent, the webhook, the scheduler plugin, the gateway and the CLI can all
// import it without dragging in a client or a controller runtime.
package wellknown
