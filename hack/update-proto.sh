#!/usr/bin/env bash
# Generates the Go code, the gRPC stubs, the grpc-gateway handlers and the
# Swagger 2.0 document of every .proto under apis/proto, beside the .proto
# files (apis/proto/infera/v1/agent.{pb.go,_grpc.pb.go,pb.gw.go,swagger.json}).
#
# Reproducible byte for byte: protoc must be exactly PROTOC_VERSION (Debian's
# protobuf-compiler; its version is written into the generated headers), the
# plugins are built at the versions pinned in hack/tools/versions.mk, and
# google/api/*.proto come from a pinned Go module in the module cache (no
# network beyond the Go module proxy, nothing copied into the repo).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${BIN:-$ROOT/bin}"
cd "$ROOT"

# Versions: from make's environment, else from the one place they are pinned.
pin() {
	local v="${!1:-}"
	[[ -n "$v" ]] || v="$(awk -v k="$1" '$1 == k && $2 == "?=" {print $3; exit}' hack/tools/versions.mk)"
	[[ -n "$v" ]] || { echo "ERROR: $1 is not pinned in hack/tools/versions.mk" >&2; exit 1; }
	echo "$v"
}
PROTOC_VERSION="$(pin PROTOC_VERSION)"
PROTOC_GEN_GO_VERSION="$(pin PROTOC_GEN_GO_VERSION)"
PROTOC_GEN_GO_GRPC_VERSION="$(pin PROTOC_GEN_GO_GRPC_VERSION)"
GRPC_GATEWAY_VERSION="$(pin GRPC_GATEWAY_VERSION)"
GOOGLEAPIS_PROTO_MODULE="$(pin GOOGLEAPIS_PROTO_MODULE)"

PROTOC="${PROTOC:-protoc}"
if ! command -v "$PROTOC" >/dev/null; then
	echo "ERROR: protoc not found; install Debian's protobuf-compiler and libprotobuf-dev ($PROTOC_VERSION)" >&2
	exit 1
fi
got="$("$PROTOC" --version)"
if [[ "$got" != "libprotoc $PROTOC_VERSION" ]]; then
	echo "ERROR: $PROTOC reports '$got', want 'libprotoc $PROTOC_VERSION' (hack/tools/versions.mk PROTOC_VERSION); the generated headers would differ" >&2
	exit 1
fi
if [[ ! -f /usr/include/google/protobuf/timestamp.proto ]]; then
	echo "ERROR: /usr/include/google/protobuf/timestamp.proto missing; install Debian's libprotobuf-dev" >&2
	exit 1
fi

install() { BIN="$BIN" hack/tools/install.sh "$@"; }
install protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go "$PROTOC_GEN_GO_VERSION"
install protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc "$PROTOC_GEN_GO_GRPC_VERSION"
install protoc-gen-grpc-gateway github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-grpc-gateway "$GRPC_GATEWAY_VERSION"
install protoc-gen-openapiv2 github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-openapiv2 "$GRPC_GATEWAY_VERSION"

# Module directories in the module cache. Downloaded from outside the main
# module so that go.mod and go.sum stay untouched.
moddir() {
	local dir
	dir="$(cd "$(mktemp -d)" && GOFLAGS= GO111MODULE=on go mod download -json "$1" | sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')"
	[[ -n "$dir" && -d "$dir" ]] || { echo "ERROR: failed to download $1" >&2; exit 1; }
	echo "$dir"
}
GOOGLEAPIS="$(moddir "$GOOGLEAPIS_PROTO_MODULE")/third_party/googleapis"
GATEWAY="$(moddir "github.com/grpc-ecosystem/grpc-gateway/v2@$GRPC_GATEWAY_VERSION")"

mapfile -t protos < <(cd apis/proto && find . -name '*.proto' -printf '%P\n' | LC_ALL=C sort)
((${#protos[@]})) || { echo "ERROR: no .proto files under apis/proto" >&2; exit 1; }

# Start clean, so a removed .proto leaves no stale generated file behind.
find apis/proto \( -name '*.pb.go' -o -name '*.pb.gw.go' -o -name '*.swagger.json' \) -delete

(
	cd apis/proto
	"$PROTOC" -I . -I "$GOOGLEAPIS" -I "$GATEWAY" -I /usr/include \
		--plugin=protoc-gen-go="$BIN/protoc-gen-go" \
		--plugin=protoc-gen-go-grpc="$BIN/protoc-gen-go-grpc" \
		--plugin=protoc-gen-grpc-gateway="$BIN/protoc-gen-grpc-gateway" \
		--plugin=protoc-gen-openapiv2="$BIN/protoc-gen-openapiv2" \
		--go_out=. --go_opt=paths=source_relative \
		--go-grpc_out=. --go-grpc_opt=paths=source_relative \
		--grpc-gateway_out=. --grpc-gateway_opt=paths=source_relative \
		--openapiv2_out=. \
		"${protos[@]}"
)
echo ">> generated from ${protos[*]} with protoc $PROTOC_VERSION"
