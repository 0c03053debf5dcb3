// Package gateway is infera-gateway: the hand-written wiring of the
// generated ClusterService (apis/proto/infera/v1) into an HTTP server with
// grpc-gateway in process, Kubernetes authentication (TokenReview) and
// authorization (SubjectAccessReview on infera.io resources), an
// audit.k8s.io/v1-shaped audit log, the OpenAPI document, probes and
// metrics. It reads the fleet from the Kubernetes API (Node annotations,
// optional CRDs); it changes Kubernetes objects only as the caller
// (impersonation), and never talks to the kernel or to agents directly.
package gateway
