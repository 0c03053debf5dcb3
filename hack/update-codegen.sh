#!/usr/bin/env bash
# Generates the typed clientset, listers, informers and apply configurations
# for apis/infera into apis/client with k8s.io/code-generator's
# kube_codegen.sh, at the version pinned in hack/tools/versions.mk.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
: "${CODE_GENERATOR_VERSION:?set by make from hack/tools/versions.mk}"
MODULE="$(cd "$ROOT" && go list -m)"

dir="$(GOFLAGS= go mod download -json "k8s.io/code-generator@${CODE_GENERATOR_VERSION}" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')"
[[ -n "$dir" ]] || { echo "failed to download k8s.io/code-generator@${CODE_GENERATOR_VERSION}" >&2; exit 1; }
# kube_codegen.sh installs its generators with `go install` from its own
# module; keep them in bin/ rather than in GOPATH.
export GOBIN="$ROOT/bin/codegen"
mkdir -p "$GOBIN"
# shellcheck source=/dev/null
source "$dir/kube_codegen.sh"

cd "$ROOT"
kube::codegen::gen_client \
	--with-watch \
	--with-applyconfig \
	--output-dir "$ROOT/apis/client" \
	--output-pkg "$MODULE/apis/client" \
	--boilerplate "$ROOT/hack/boilerplate.go.txt" \
	--one-input-api infera/v1alpha1 \
	"$ROOT/apis"
