# Temper. `make help` lists the targets.
SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec
.DEFAULT_GOAL := help

include hack/tools/versions.mk
export CONTROLLER_TOOLS_VERSION CODE_GENERATOR_VERSION GOLANGCI_LINT_VERSION GOTESTSUM_VERSION KWOK_VERSION

ROOT := $(CURDIR)
BIN  := $(ROOT)/bin
export PATH := $(BIN):$(PATH)

CONTROLLER_GEN := $(BIN)/controller-gen
GOLANGCI_LINT  := $(BIN)/golangci-lint
GOTESTSUM      := $(BIN)/gotestsum
KWOK           := $(BIN)/kwok

# envtest and `make run` find kube-apiserver, etcd and kubectl here.
export KUBEBUILDER_ASSETS := $(BIN)

# Paths whose generated content `make verify` checks for diffs and for
# untracked files.
GENERATED_PATHS := apis config go.mod go.sum hack/tools/controlplane/go.mod hack/tools/controlplane/go.sum nodeagent/ebpf

# The Kubernetes release our binaries are built against, so that
# infera-scheduler --version and the API clients' user agents say v1.37.2.
KUBE_VERSION    := $(shell awk '$$1 == "k8s.io/kubernetes" {print $$2; exit}' hack/tools/controlplane/go.mod)
VERSION_LDFLAGS := -X k8s.io/component-base/version.gitVersion=$(KUBE_VERSION) -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$(word 2,$(subst ., ,$(KUBE_VERSION)))

TEST_PACKAGES ?= ./...
TEST_FLAGS    ?= -count=1 -timeout=20m

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} \
		/^[a-zA-Z0-9_-]+:.*?##/ { printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2 } \
		/^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Generation

.PHONY: generate
generate: generate-deepcopy generate-client generate-proto generate-bpf ## Generate code: deepcopy, the typed client, the agent's gRPC API and its BPF objects.

.PHONY: generate-deepcopy
generate-deepcopy: $(CONTROLLER_GEN) ## Generate zz_generated.deepcopy.go with controller-gen.
	$(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths=./apis/...

.PHONY: generate-client
generate-client: ## Generate clientset, listers, informers and applyconfigurations into apis/client.
	hack/update-codegen.sh

.PHONY: generate-proto
generate-proto: ## Generate Go, gRPC, gateway and swagger code beside apis/proto/**/*.proto (needs Debian's protoc, version pinned).
	hack/update-proto.sh

.PHONY: generate-bpf
generate-bpf: ## Compile nodeagent/ebpf's BPF programs with bpf2go (Debian's clang-14, llvm-14 and libbpf-dev, pinned so the bytes reproduce).
	cd nodeagent/ebpf && BPF2GO_CC=clang-14 BPF2GO_STRIP=llvm-strip-14 go generate .

.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate CRDs and RBAC under config/, and the argocd-cm health-check snippet.
	$(CONTROLLER_GEN) crd:allowDangerousTypes=true paths=./apis/infera/... output:crd:artifacts:config=config/crd/bases
	$(CONTROLLER_GEN) rbac:roleName=infera-agent paths=./nodeagent/... output:rbac:artifacts:config=config/rbac/agent
	$(CONTROLLER_GEN) rbac:roleName=infera-manager paths="./controllers/...;./webhooks/...;./internal/certrotation/..." output:rbac:artifacts:config=config/rbac/manager
	$(CONTROLLER_GEN) rbac:roleName=infera-gateway paths=./gateway/... output:rbac:artifacts:config=config/rbac/gateway
	$(CONTROLLER_GEN) webhook paths=./webhooks/... output:webhook:artifacts:config=config/webhook
	go run ./hack/argocd-cm

.PHONY: verify
verify: ## Regenerate everything and fail on any diff or untracked generated file.
	$(MAKE) generate manifests
	go mod tidy
	cd hack/tools/controlplane && go mod tidy
	hack/verify-clean.sh $(GENERATED_PATHS)

##@ Development

.PHONY: lint
lint: $(GOLANGCI_LINT) ## Run golangci-lint (with the import rules of STYLE.md).
	$(GOLANGCI_LINT) run ./...

.PHONY: fmt
fmt: $(GOLANGCI_LINT) ## Format the code.
	$(GOLANGCI_LINT) fmt ./...

.PHONY: test
test: controlplane $(GOTESTSUM) ## Run every test: unit, envtest against a real kube-apiserver, real-kernel cgroup tests.
	$(GOTESTSUM) --format pkgname-and-test-fails -- $(TEST_FLAGS) $(TEST_PACKAGES)

.PHONY: test-vm
test-vm: ## Run the privileged cgroup v2 and sched_ext tests in a QEMU VM on Debian's sched_ext kernel (docs/testing.md).
	hack/vm/test-vm.sh

.PHONY: bench
bench: ## Run the Go benchmarks.
	go test -run '^$$' -bench . -benchmem ./...

.PHONY: bench-scheduler
bench-scheduler: controlplane ## Scheduler plugin placement benchmark: 500 simulated nodes, 5,000 pods, stock vs infera profile (~8 min).
	go run ./test/bench/scheduler -rounds 8 -out docs/bench/scheduler.json

.PHONY: bench-agent
bench-agent: controlplane ## Node agent benchmark: event→applied latency, steady-state CPU and RSS with 110 pods.
	go run ./test/bench/agent -duration 60s -samples 60 -pods 110

.PHONY: bench-observation
bench-observation: controlplane ## Observation layer cost: agent CPU/RSS with observation on vs off (110 busy pod cgroups, 60 s, root) and scrape latency.
	KUBEBUILDER_ASSETS=$(BIN) go run ./test/bench/observation -duration 60s -pods 110 > docs/bench/observation.json
	cat docs/bench/observation.json

.PHONY: bench-isolation
bench-isolation: ## Latency isolation of the cgroup backend on this kernel: memcached p50/p99/p99.9, stock vs enforced, 0-8 burners (root, cgroup v1, ~5 min).
	command -v memcached >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y memcached
	go run ./test/bench/isolation -out docs/bench/isolation.json -svg docs/bench/isolation.svg

.PHONY: bench-gateway
bench-gateway: controlplane build ## infera-gateway: GET fleet view and node list with 500 nodes (envtest), p50/p99 and gateway RSS (~2 min).
	go run ./test/bench/gateway -nodes 500 -rounds 5 -requests 400 -out docs/bench/gateway.json

.PHONY: build
build: ## Build the binaries into bin/ (Kubernetes components report v1.37.2).
	go build -ldflags "$(VERSION_LDFLAGS)" -o $(BIN)/ ./cmd/...

.PHONY: run
run: controlplane build ## Run the platform on an embedded local control plane (Ctrl-C stops it).
	$(BIN)/infera-local --bin-dir=$(BIN) --state-dir=$(ROOT)/.run

##@ Tools

.PHONY: controlplane
controlplane: ## Build kube-apiserver, etcd, kube-scheduler and kubectl from source into bin/.
	hack/build-controlplane.sh

.PHONY: tools
tools: $(CONTROLLER_GEN) $(GOLANGCI_LINT) $(GOTESTSUM) $(KWOK) ## Install the pinned Go tools into bin/.

$(CONTROLLER_GEN): hack/tools/versions.mk
	hack/tools/install.sh controller-gen sigs.k8s.io/controller-tools/cmd/controller-gen $(CONTROLLER_TOOLS_VERSION)
$(GOLANGCI_LINT): hack/tools/versions.mk
	hack/tools/install.sh golangci-lint github.com/golangci/golangci-lint/v2/cmd/golangci-lint $(GOLANGCI_LINT_VERSION)
$(GOTESTSUM): hack/tools/versions.mk
	hack/tools/install.sh gotestsum gotest.tools/gotestsum $(GOTESTSUM_VERSION)
$(KWOK): hack/tools/versions.mk
	hack/tools/install.sh kwok sigs.k8s.io/kwok/cmd/kwok $(KWOK_VERSION)
