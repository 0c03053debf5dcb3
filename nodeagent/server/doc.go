// Package server is the node agent's local API: the AgentService gRPC server
// on a unix socket (apis/proto/infera/v1), the in-process event Broadcaster
// that feeds its WatchEvents streams, and the HTTP server of :9100
// (/metrics, /observe, /healthz, /readyz).
//
// It serves what an Agent (the interface below, implemented by the agent)
// reports, converting between the Go types of this package and the proto
// types, so the agent never depends on proto shapes. It bounds everything a
// client can make it hold: page sizes, string lengths, per-stream event
// buffers, concurrent streams and captures, response sizes and time. It must
// not decide or enforce anything itself, and it never blocks the agent: a
// Publish to a slow subscriber drops the event for that subscriber only.
package server
