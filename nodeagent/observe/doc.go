// Package observe is the node agent's always-on observation loop and its
// GET /observe JSON snapshot (docs/observe.md): every tick it samples where
// the pods' threads run (nodeagent/procscan) and judges the placement
// against what enforcement promises (nodeagent/lint); a snapshot adds the
// machine shape read once from sysfs, per-layer utilisation, the busiest
// threads, node CPU pressure (PSI), the linter verdicts and what the
// observation itself costs, measured.
//
// The agent hands it plain values (pods with their processes and tier, the
// promise, the enforcement summary); it imports no Kubernetes package,
// changes nothing on the node and registers no metrics. The schema is
// versioned (SchemaVersion) and changes only by adding fields.
package observe
