# Temper. `make help` lists the targets.
SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec
.DEFAULT_GOAL := help

include hack/tools/versions.mk
export CONTROLLER_TOOLS_VERSION CODE_GENERATOR_VERSION GOLANGCI_LINT_VERSION GOTESTSUM_VERSION KWOK_VERSION KREW_VERSION

ROOT := $(CURDIR)
BIN  := $(ROOT)/bin
export PATH := $(BIN):$(PATH)

CONTROLLER_GEN := $(BIN)/controller-gen
GOLANGCI_LINT  := $(BIN)/golangci-lint
GOTESTSUM      := $(BIN)/gotestsum
KWOK           := $(BIN)/kwok
OAPI_CODEGEN   := $(BIN)/oapi-codegen
KREW_VALIDATE  := $(BIN)/validate-krew-manifest
KREW           := $(BIN)/krew
HELM           := $(BIN)/helm

# envtest and `make run` find kube-apiserver, etcd and kubectl here.
export KUBEBUILDER_ASSETS := $(BIN)

# Paths whose generated content `make verify` checks for diffs and for
# untracked files.
GENERATED_PATHS := apis charts config go.mod go.sum hack/tools/controlplane/go.mod hack/tools/controlplane/go.sum hack/tools/images/go.mod hack/tools/images/go.sum nodeagent/ebpf nodeagent/enforcement/tiersched
GENERATED_PATHS += test/integration/gateway/oapiclient gateway/dashboard/dist hack/tools/dashboard/go.mod hack/tools/dashboard/go.sum

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
generate: generate-deepcopy generate-client generate-proto generate-openapi-client generate-bpf generate-dashboard ## Generate code: deepcopy, the typed client, the gRPC APIs, the OpenAPI test client, the BPF objects and the dashboard bundle.

.PHONY: generate-deepcopy
generate-deepcopy: $(CONTROLLER_GEN) ## Generate zz_generated.deepcopy.go with controller-gen.
	$(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths=./apis/...

.PHONY: generate-client
generate-client: ## Generate clientset, listers, informers and applyconfigurations into apis/client.
	hack/update-codegen.sh

.PHONY: generate-openapi-client
generate-openapi-client: $(OAPI_CODEGEN) ## Generate the gateway's OpenAPI test client with oapi-codegen from the served document converted to OpenAPI 3.
	go run ./hack/openapi3 -in apis/proto/infera/v1/cluster.swagger.json -out test/integration/gateway/oapiclient/openapi3.json
	$(OAPI_CODEGEN) -generate types,client -package oapiclient -o test/integration/gateway/oapiclient/client.gen.go test/integration/gateway/oapiclient/openapi3.json

.PHONY: generate-proto
generate-proto: ## Generate Go, gRPC, gateway and swagger code beside apis/proto/**/*.proto (needs Debian's protoc, version pinned).
	hack/update-proto.sh

.PHONY: generate-bpf
generate-bpf: ## Compile nodeagent/ebpf's and nodeagent/enforcement/tiersched's BPF programs with bpf2go (Debian's clang-14, llvm-14 and libbpf-dev, pinned so the bytes reproduce).
	cd nodeagent/ebpf && BPF2GO_CC=clang-14 BPF2GO_STRIP=llvm-strip-14 go generate .
	cd nodeagent/enforcement/tiersched && BPF2GO_CC=clang-14 BPF2GO_STRIP=llvm-strip-14 go generate .

.PHONY: generate-dashboard
generate-dashboard: ## Bundle the web dashboard (gateway/dashboard/web → dist) with esbuild's Go API; npm tarballs checked against package-lock.json; no Node.
	cd hack/tools/dashboard && go run . -root $(ROOT)

.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate CRDs and RBAC under config/, and the argocd-cm health-check snippet.
	$(CONTROLLER_GEN) crd:allowDangerousTypes=true paths=./apis/infera/... output:crd:artifacts:config=config/crd/bases
	$(CONTROLLER_GEN) rbac:roleName=infera-agent paths=./nodeagent/... output:rbac:artifacts:config=config/rbac/agent
	$(CONTROLLER_GEN) rbac:roleName=infera-manager paths="./controllers/...;./webhooks/...;./internal/certrotation/...;./cmd/infera-manager/..." output:rbac:artifacts:config=config/rbac/manager
	$(CONTROLLER_GEN) rbac:roleName=infera-gateway paths=./gateway/... output:rbac:artifacts:config=config/rbac/gateway
	$(CONTROLLER_GEN) webhook paths=./webhooks/... output:webhook:artifacts:config=config/webhook
	go run ./hack/argocd-cm
	@# Helm reads only files inside the chart: it carries copies of the CRDs
	@# and the dashboard (test/chart fails when they differ).
	rm -f charts/temper/crds/*.yaml && cp config/crd/bases/*.yaml charts/temper/crds/
	cp config/grafana/infera-node-dashboard.json charts/temper/files/

.PHONY: chart-docs
chart-docs: ## Generate charts/temper/README.md from its values.yaml.
	go run ./hack/chartdocs charts/temper

.PHONY: verify
verify: ## Regenerate everything and fail on any diff or untracked generated file.
	$(MAKE) generate manifests chart-docs
	go mod tidy
	cd hack/tools/controlplane && go mod tidy
	cd hack/tools/images && go mod tidy
	cd hack/tools/dashboard && go mod tidy
	hack/verify-clean.sh $(GENERATED_PATHS)

##@ Development

.PHONY: lint
lint: $(GOLANGCI_LINT) ## Run golangci-lint (with the import rules of STYLE.md).
	$(GOLANGCI_LINT) run ./...

.PHONY: fmt
fmt: $(GOLANGCI_LINT) ## Format the code.
	$(GOLANGCI_LINT) fmt ./...

.PHONY: test
test: controlplane $(GOTESTSUM) $(HELM) ## Run every test: unit, envtest against a real kube-apiserver, real-kernel cgroup tests.
	$(GOTESTSUM) --format pkgname-and-test-fails -- $(TEST_FLAGS) $(TEST_PACKAGES)

.PHONY: test-race
test-race: controlplane ## go test -race over every package outside test/ (the product's own tests; the test/ suites run without it, see docs/testing.md).
	go test -race $(TEST_FLAGS) $$(go list ./... | grep -v '/test/')

.PHONY: test-chart
test-chart: controlplane $(HELM) $(KWOK) ## Install, upgrade and uninstall charts/temper with helm --wait on kwok nodes (real control plane with kube-controller-manager and kube-scheduler).
	TEMPER_TEST_CHART=1 go test -count=1 -timeout=15m -v ./test/e2e/chart/

.PHONY: krew-validate
krew-validate: $(KREW_VALIDATE) $(KREW) controlplane ## Check the kubectl plugin's krew manifest (plugins/infera.yaml) with krew's validator, then build this host's release archive and install it with krew (offline).
	$(KREW_VALIDATE) -manifest plugins/infera.yaml -skip-install
	test/smoke/krew-install.sh $(BIN)

PLUGIN_VERSION ?= $(shell awk '$$1 == "version:" {print $$2; exit}' plugins/infera.yaml)

.PHONY: plugin-release
plugin-release: ## Build the kubectl plugin's release archives (linux/amd64, linux/arm64, darwin/arm64) and their krew manifest into bin/plugin-release/.
	hack/krew-release.sh $(BIN)/plugin-release $(PLUGIN_VERSION)

.PHONY: test-dashboard
test-dashboard: controlplane ## Browser tests of the dashboard: headless Debian chromium (chromedp) against infera-gateway on envtest; screenshots in bin/dashboard-screenshots.
	cd hack/tools/dashboard && go test $(TEST_FLAGS) ./...
	TEMPER_TEST_DASHBOARD=1 DASHBOARD_SCREENSHOTS=$(BIN)/dashboard-screenshots go test -count=1 -timeout=10m -v ./test/integration/dashboard/

.PHONY: test-run
test-run: controlplane build ## Smoke-test `make run`: up, a pod tiered, a namespace finalized, Ctrl-C stops everything, nothing left.
	test/smoke/make-run.sh

# Fuzz targets as package:Target; each runs for FUZZTIME (seed corpora run
# with every `go test`). A crash lands in the package's testdata/fuzz.
FUZZTIME ?= 10s
FUZZ_TARGETS = ./apis/wellknown:FuzzParseTierLoad ./apis/wellknown:FuzzParseSafeMode ./apis/tiering:FuzzClassify \
	./nodeagent/cpuset:FuzzParse ./nodeagent/cgroupfs/writer:FuzzLoadState \
	./apis/wellknown:FuzzParseOriginalCPURequests ./apis/tiering:FuzzParseNodeMapping \
	./apis/config/v1alpha1:FuzzParseAgentConfiguration ./cmd/infera-manager/app:FuzzParseConfig \
	./nodeagent/cgroupfs:FuzzParseContainerID ./nodeagent/procscan:FuzzParseStat ./nodeagent/observe:FuzzParsePSI \
	./gateway:FuzzPage ./webhooks/overcommit:FuzzCompute

.PHONY: fuzz
fuzz: ## Run every fuzz target for FUZZTIME each (default 10s).
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo ">> $$name ($$pkg, $(FUZZTIME))"; \
		go test $$pkg -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME); \
	done

.PHONY: test-vm
test-vm: ## Run the privileged cgroup v2 and sched_ext tests in a QEMU VM on Debian's sched_ext kernel (docs/testing.md).
	hack/vm/test-vm.sh

.PHONY: test-vm-agent
test-vm-agent: ## The infera-agent binary end to end in the VM: etcd, kube-apiserver and the agent in the guest, built-in tier scheduler (docs/testing.md; slow under TCG).
	TEMPER_VM_PACKAGES=./test/vm/agent TEMPER_VM_TEST_ARGS=-test.timeout=1500s TEMPER_VM_TIMEOUT=$${TEMPER_VM_TIMEOUT:-1800} hack/vm/test-vm.sh

.PHONY: bench
bench: ## Run the Go benchmarks.
	go test -run '^$$' -bench . -benchmem ./...

.PHONY: bench-scheduler
bench-scheduler: controlplane ## Scheduler plugin placement benchmark: 500 simulated nodes, 5,000 pods, stock vs infera profile (~8 min).
	go run ./test/bench/scheduler -rounds 8 -out docs/bench/scheduler.json

.PHONY: bench-density
bench-density: controlplane ## Density: pods of the workload mix that fit on 100 simulated nodes with and without overcommit deflation (~5 min).
	go run ./test/bench/scheduler -density -nodes 100 -pods 4000 -out docs/bench/density.json

.PHONY: bench-webhook
bench-webhook: controlplane ## Overcommit webhook: admission p50/p99 over TLS at 200 and 1000 req/s (RUNS=3 interleaved), pod-create added latency, NodeQoSReport reconcile with 500 nodes (~4 min).
	KUBEBUILDER_ASSETS=$(BIN) go run ./test/bench/webhook -runs $(RUNS) -out docs/bench/webhook.json

.PHONY: bench-agent
bench-agent: controlplane ## Node agent benchmark: event→applied latency, steady-state CPU and RSS with 110 pods.
	go run ./test/bench/agent -duration 60s -samples 60 -pods 110

.PHONY: bench-observation
# RUNS windows of OBS_DURATION each (fresh agents and pods per run); the JSON holds every run,
# the median and spread, the load average, and the baseline's summary for comparison.
RUNS ?= 3
OBS_DURATION ?= 180s
OBS_BASELINE ?= docs/bench/observation-baseline.json
# The Go runtime settings the chart gives the agent (charts/temper values
# agent.goRuntime), so the bench measures the agent as installed; empty
# measures Go's defaults.
OBS_AGENT_ENV ?= GOGC=50 GOMEMLIMIT=192MiB GOMAXPROCS=1
# Requests per endpoint for the scrape latencies: the p99 of 200 is the
# second-slowest request, of 1000 the tenth.
OBS_SCRAPES ?= 1000
bench-observation: controlplane ## Observation layer cost: agent CPU/RSS with observation on vs off (110 busy pod cgroups, RUNS=3 x 180 s, root, ~12 min) and scrape latency; median and spread.
	KUBEBUILDER_ASSETS=$(BIN) nice go run ./test/bench/observation -runs $(RUNS) -duration $(OBS_DURATION) -pods 110 -scrapes $(OBS_SCRAPES) \
		$(if $(wildcard $(OBS_BASELINE)),-baseline $(OBS_BASELINE)) $(foreach e,$(OBS_AGENT_ENV),-agent-env $(e)) -out docs/bench/observation.json
	cat docs/bench/observation.json

SOAK_DURATION ?= 3m
.PHONY: soak
soak: controlplane ## Churn soak (root, cgroup v1): pods of every tier created/deleted on real cgroups, agent SIGKILLed, kube-apiserver restarted, safe mode toggled; end checks and goroutine/RSS trend (SOAK_DURATION, default 3m; ~3 min more for setup).
	KUBEBUILDER_ASSETS=$(BIN) nice go run ./test/soak -duration $(SOAK_DURATION)

.PHONY: bench-failover
bench-failover: controlplane ## Agent SIGKILLed under load (root, cgroup v1, memcached): the isolation bench's memcached p99 before/during/after and the time until enforcement is verified again (~3 min).
	KUBEBUILDER_ASSETS=$(BIN) nice go run ./test/bench/failover -rounds 5 -duration 5s -out docs/bench/failover.json

.PHONY: bench-isolation
bench-isolation: ## Latency isolation of the cgroup backend on this kernel: memcached p50/p99/p99.9, stock vs enforced, 0-8 burners, then 5 interleaved rounds at 8 burners for the summary (root, cgroup v1, ~8 min).
	command -v memcached >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y memcached
	go run ./test/bench/isolation -rounds 5 -out docs/bench/isolation.json -svg docs/bench/isolation.svg

.PHONY: bench-isolation-explore
bench-isolation-explore: ## The isolation bench's lever variants (issue 16), 0 and 8 burners, 5 rounds at 8 (root, cgroup v1, ~15 min); writes docs/bench/isolation-explore.json.
	command -v memcached >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y memcached
	go run ./test/bench/isolation -explore -ladder 0,8 -rounds 5 -duration 4s -out docs/bench/isolation-explore.json -svg 

.PHONY: bench-gateway
bench-gateway: controlplane build ## infera-gateway: GET fleet view, node list (500 nodes, envtest) and a node's pods through a live agent over TLS; p50/p99 and gateway RSS (~3 min).
	go run ./test/bench/gateway -nodes 500 -pods 60 -rounds 5 -requests 400 -out docs/bench/gateway.json

.PHONY: bench-dashboard
bench-dashboard: controlplane ## Dashboard: bundle size (gzip) and time to render the fleet view with 500 nodes in headless chromium (~2 min).
	go run ./test/bench/dashboard -nodes 500 -rounds 7 -out docs/bench/dashboard.json

.PHONY: build
build: ## Build the binaries into bin/ (Kubernetes components report v1.37.2), with inferactl also as the kubectl plugin bin/kubectl-infera.
	go build -ldflags "$(VERSION_LDFLAGS) -X github.com/infera-io/temper/inferactl.Version=$(IMAGE_VERSION)" -o $(BIN)/ ./cmd/...
	ln -sf inferactl $(BIN)/kubectl-infera

.PHONY: run
run: controlplane build ## Run the platform on an embedded local control plane (Ctrl-C stops it).
	$(BIN)/infera-local --bin-dir=$(BIN) --state-dir=$(ROOT)/.run

##@ Images

# Image labels and the tag each layout is named by. SOURCE_DATE_EPOCH (the
# last commit's time) is every timestamp in the images, so two builds of one
# commit give the same digests.
IMAGE_VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
IMAGE_REVISION    ?= $(shell git rev-parse HEAD 2>/dev/null)
IMAGE_SOURCE      ?= https://github.com/infera-io/temper
IMAGE_PLATFORMS   ?= linux/amd64,linux/arm64
IMAGES            ?=
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
export SOURCE_DATE_EPOCH

.PHONY: images
images: ## Build the images (agent, manager, scheduler; multi-arch, no shell) as OCI layouts under bin/images/ (docs/operations.md).
	cd hack/tools/images && go run . -repo-root=$(ROOT) -out=$(BIN)/images -platforms=$(IMAGE_PLATFORMS) \
		-version=$(IMAGE_VERSION) -revision=$(IMAGE_REVISION) -source=$(IMAGE_SOURCE) -images=$(IMAGES) -ldflags="$(VERSION_LDFLAGS)"

.PHONY: test-images
test-images: ## Test the image builder: reproducible digests, push and pull through an in-memory registry.
	cd hack/tools/images && go test $(TEST_FLAGS) ./...

##@ Tools

.PHONY: controlplane
controlplane: ## Build kube-apiserver, etcd, kube-scheduler and kubectl from source into bin/.
	hack/build-controlplane.sh

.PHONY: tools
tools: $(CONTROLLER_GEN) $(GOLANGCI_LINT) $(GOTESTSUM) $(KWOK) $(HELM) $(KREW_VALIDATE) $(KREW) $(OAPI_CODEGEN) ## Install the pinned Go tools into bin/.

$(CONTROLLER_GEN): hack/tools/versions.mk
	hack/tools/install.sh controller-gen sigs.k8s.io/controller-tools/cmd/controller-gen $(CONTROLLER_TOOLS_VERSION)
$(GOLANGCI_LINT): hack/tools/versions.mk
	hack/tools/install.sh golangci-lint github.com/golangci/golangci-lint/v2/cmd/golangci-lint $(GOLANGCI_LINT_VERSION)
$(GOTESTSUM): hack/tools/versions.mk
	hack/tools/install.sh gotestsum gotest.tools/gotestsum $(GOTESTSUM_VERSION)
$(KREW_VALIDATE): hack/tools/versions.mk
	hack/tools/install.sh validate-krew-manifest sigs.k8s.io/krew/cmd/validate-krew-manifest $(KREW_VERSION)
$(KREW): hack/tools/versions.mk
	hack/tools/install.sh krew sigs.k8s.io/krew/cmd/krew $(KREW_VERSION)
$(OAPI_CODEGEN): hack/tools/versions.mk
	hack/tools/install.sh oapi-codegen github.com/oapi-codegen/oapi-codegen/v2/cmd/oapi-codegen $(OAPI_CODEGEN_VERSION)
$(KWOK): hack/tools/versions.mk
	hack/tools/install.sh kwok sigs.k8s.io/kwok/cmd/kwok $(KWOK_VERSION)
# helm v3 takes its default Kubernetes version and its own from ldflags
# (TOOLCHAIN.md §5), as helm's Makefile sets them.
$(HELM): hack/tools/versions.mk
	hack/tools/install.sh helm helm.sh/helm/v3/cmd/helm $(HELM_VERSION) -ldflags "-s -w \
		-X helm.sh/helm/v3/internal/version.version=$(HELM_VERSION) \
		-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$(HELM_KUBE_MINOR) \
		-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$(HELM_KUBE_MINOR)"
