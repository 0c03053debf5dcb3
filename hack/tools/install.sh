#!/usr/bin/env bash
# Installs one pinned Go tool into bin/ unless the same version is there:
#   hack/tools/install.sh <name> <package> <version> [extra go install flags...]
# A <bin>/<name>.version file records what was built, so a version bump in
# hack/tools/versions.mk rebuilds and an unchanged pin costs nothing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="${BIN:-$ROOT/bin}"
name="$1" pkg="$2" version="$3"
shift 3
mkdir -p "$BIN"
if [[ -x "$BIN/$name" && "$(cat "$BIN/$name.version" 2>/dev/null)" == "$pkg@$version" ]]; then
	exit 0
fi
echo ">> installing $name ($pkg@$version)"
GOBIN="$BIN" GOFLAGS= go install "$@" "$pkg@$version"
echo "$pkg@$version" > "$BIN/$name.version"
