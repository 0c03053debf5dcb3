// Package inferav1 is the node agent's local gRPC API (AgentService), its
// grpc-gateway handlers and Swagger document, generated from agent.proto by
// hack/update-proto.sh (`make generate-proto`). Only doc.go is written by
// hand; edit agent.proto and regenerate, never the generated files. It holds
// wire types only: no agent logic and no imports of other Temper packages.
package inferav1
