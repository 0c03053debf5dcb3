// Package kubeauth authenticates bearer tokens with TokenReview and
// authorizes requests with SubjectAccessReview, the way the kubelet and
// kube-rbac-proxy guard their endpoints, and caches both answers briefly so
// that a scrape every few seconds costs the API server a review every few
// minutes. It wraps HTTP handlers and gRPC servers; it decides nothing
// itself (the API server's authenticators and RBAC do) and never logs a
// token.
package kubeauth
