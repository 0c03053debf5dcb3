#!/usr/bin/env bash
# Installs the kubectl plugin the way a user would through krew, offline:
# builds this host's release archive and manifest (hack/krew-release.sh),
# checks that two builds give the same sha256, validates the rendered
# manifest with krew's validator, installs it with the pinned krew into a
# temporary KREW_ROOT (krew verifies the archive against the manifest's
# sha256) and runs `kubectl infera version` through a real kubectl.
#   test/smoke/krew-install.sh <bin-dir>
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="$(cd "${1:-$ROOT/bin}" && pwd)"
version="$(awk '$1 == "version:" {print $2; exit}' "$ROOT/plugins/infera.yaml")"
platform="$(go env GOOS)/$(go env GOARCH)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

fail() { echo "krew-install: FAIL: $*" >&2; exit 1; }

"$ROOT/hack/krew-release.sh" "$work/a" "$version" "$platform" >/dev/null
"$ROOT/hack/krew-release.sh" "$work/b" "$version" "$platform" >/dev/null
archive="kubectl-infera_${version}_${platform%/*}_${platform#*/}.tar.gz"
cmp -s "$work/a/$archive" "$work/b/$archive" || fail "two builds of $archive differ (not reproducible)"
tar -tzf "$work/a/$archive" | sort | tr '\n' ' ' | grep -qx 'LICENSE kubectl-infera ' || fail "$archive holds $(tar -tzf "$work/a/$archive" | tr '\n' ' ')"
grep -q "sha256: \"$(sha256sum "$work/a/$archive" | cut -d' ' -f1)\"" "$work/a/infera.yaml" || fail "rendered manifest lacks the archive's sha256"

"$BIN/validate-krew-manifest" -manifest "$work/a/infera.yaml" -skip-install

export KREW_ROOT="$work/krew"
"$BIN/krew" install --manifest="$work/a/infera.yaml" --archive="$work/a/$archive" </dev/null
[[ -f "$KREW_ROOT/store/infera/$version/LICENSE" ]] || fail "LICENSE not installed"

# A tampered archive must be refused by krew's sha256 check.
cp "$work/a/$archive" "$work/tampered.tar.gz" && printf 'x' >>"$work/tampered.tar.gz"
if KREW_ROOT="$work/krew2" "$BIN/krew" install --manifest="$work/a/infera.yaml" --archive="$work/tampered.tar.gz" </dev/null >"$work/tampered.log" 2>&1; then
	fail "krew installed an archive whose sha256 does not match the manifest"
fi

out="$(env -i HOME="$work" PATH="$KREW_ROOT/bin:/usr/bin:/bin" "$BIN/kubectl" infera version)"
echo "$out"
grep -q "^inferactl: $version " <<<"$out" || fail "kubectl infera version printed: $out"
echo "krew-install: OK ($archive installed by krew $(cat "$BIN/krew.version" | cut -d@ -f2), kubectl infera $version)"
