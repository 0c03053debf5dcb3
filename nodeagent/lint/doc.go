// Package lint is the placement linter: it audits where pod threads
// actually ran (nodeagent/procscan samples: each thread's last CPU and its
// CPU use) against what enforcement promises (per layer: the tiers it
// holds, its CPUs, whether it is protected, confined, Open, or needs quiet
// SMT siblings; and the reserve CPUs Open work must leave alone), on the
// node's SMT topology. It returns one verdict per invariant of
// temper-docs §10 (smt_collision, protected_fallback, open_reserve,
// layer_mismatch; docs/observe.md says exactly how each is judged), keeps
// cumulative violation counts for infera_lint_violation{invariant}, and logs
// rate-limited warnings.
//
// It judges; it does not read /proc itself, change any placement, or
// register metrics (the agent does).
package lint
