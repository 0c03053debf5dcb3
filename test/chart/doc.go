// Package chart tests charts/temper: helm lint --strict, golden renders of
// several values files strict-decoded into typed objects, the agent
// DaemonSets, RBAC against controller-gen's output, the copies of the CRDs
// and the dashboard, the values schema, the monitoring gates, and (envtest)
// that the admission policies the chart ships stop an agent token from
// patching another node and untrusted namespaces from using infera-critical.
// It uses the pinned helm from bin/ (make tools).
package chart
