package inferav1

import _ "embed" // the generated Swagger document ships with the package

// ClusterSwaggerJSON is the Swagger 2.0 document protoc-gen-openapiv2
// generated from cluster.proto: the contract of infera-gateway's /api/v1.
//
//go:embed cluster.swagger.json
var ClusterSwaggerJSON []byte
