# The one place where tool and generator versions are pinned. The Makefile
# includes this file; hack/ scripts receive the values from make. The control
# plane (kube-apiserver, etcd, kube-scheduler, kubectl) is pinned by
# hack/tools/controlplane/go.mod instead, because it needs replace directives.
CONTROLLER_TOOLS_VERSION ?= v0.23.0
CODE_GENERATOR_VERSION   ?= v0.37.2
GOLANGCI_LINT_VERSION    ?= v2.15.0
GOTESTSUM_VERSION        ?= v1.13.0
KWOK_VERSION             ?= v0.8.0
# krew and its manifest validator (make krew-validate checks plugins/infera.yaml and installs a locally built release with krew).
KREW_VERSION             ?= v0.4.3
# oapi-codegen generates the test client of the gateway's OpenAPI document
# (make generate-openapi-client; a REST client nobody on this project wrote).
OAPI_CODEGEN_VERSION     ?= v2.8.2
# helm (charts/temper tests). v3 needs ldflags for its default Kubernetes
# version (else v1.20.0); HELM_KUBE_MINOR matches the control plane.
HELM_VERSION             ?= v3.22.0
HELM_KUBE_MINOR          ?= 37
# Proto generation (hack/update-proto.sh): the plugins are Go tools; protoc
# comes from Debian (protobuf-compiler + libprotobuf-dev) and must report
# exactly PROTOC_VERSION, so generated headers match byte for byte.
PROTOC_VERSION                ?= 3.21.12
PROTOC_GEN_GO_VERSION         ?= v1.36.12
PROTOC_GEN_GO_GRPC_VERSION    ?= v1.6.2
GRPC_GATEWAY_VERSION          ?= v2.29.0
# The google/api/{annotations,http}.proto sources come from this Go module
# (its third_party/googleapis tree), read from the module cache.
GOOGLEAPIS_PROTO_MODULE       ?= github.com/grpc-ecosystem/grpc-gateway@v1.16.0
# The dashboard (make generate-dashboard): esbuild v0.28.2 is pinned by
# hack/tools/dashboard/go.mod, whose program runs esbuild's Go API; the npm
# packages are pinned by gateway/dashboard/web/package-lock.json and their
# tarballs committed under gateway/dashboard/web/npm (checked by integrity).
