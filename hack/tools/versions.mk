# The one place where tool and generator versions are pinned. The Makefile
# includes this file; hack/ scripts receive the values from make. The control
# plane (kube-apiserver, etcd, kube-scheduler, kubectl) is pinned by
# hack/tools/controlplane/go.mod instead, because it needs replace directives.
CONTROLLER_TOOLS_VERSION ?= v0.23.0
CODE_GENERATOR_VERSION   ?= v0.37.2
GOLANGCI_LINT_VERSION    ?= v2.15.0
GOTESTSUM_VERSION        ?= v1.13.0
KWOK_VERSION             ?= v0.8.0
