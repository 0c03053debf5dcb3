// Package gateway proves infera-gateway against a real kube-apiserver
// (envtest, RBAC on): the gateway runs in process with its own
// ServiceAccount and the RBAC from config/rbac/gateway, callers are
// ServiceAccounts with tokens minted by TokenRequest, and every answer is
// checked against the generated OpenAPI document with kin-openapi.
package gateway
