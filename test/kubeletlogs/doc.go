// Package kubeletlogs is a stand-in for the one kubelet endpoint the API
// server proxies pods/log to (GET /containerLogs/{namespace}/{pod}/{container}),
// for envtest suites, where no kubelet runs. It serves fixed log text over
// TLS with a certificate for "localhost", so a kube-apiserver started with
// --kubelet-certificate-authority set to CA verifies it as it would a real
// kubelet. Test-only; it checks no client certificate and implements only
// tailLines.
package kubeletlogs
