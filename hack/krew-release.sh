#!/usr/bin/env bash
# Builds the kubectl plugin's release archives and the krew manifest that
# names them, the way a release would publish them:
#   hack/krew-release.sh <out-dir> <version> [os/arch ...]
# Each archive holds kubectl-infera and LICENSE, packed reproducibly (sorted
# names, owner 0, SOURCE_DATE_EPOCH as every mtime, gzip without a name or
# time), so two runs on one commit give the same sha256. The manifest is
# plugins/infera.yaml with the version, each platform's uri and its archive's
# sha256 filled in. Platforms without an archive keep the committed values.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$1" version="$2"
shift 2
platforms=("$@")
[[ ${#platforms[@]} -gt 0 ]] || platforms=(linux/amd64 linux/arm64 darwin/arm64)
[[ "$version" =~ ^v[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "krew-release: version $version is not vMAJOR.MINOR.PATCH (krew requires it)" >&2; exit 2; }
epoch="${SOURCE_DATE_EPOCH:-$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || echo 0)}"
base_uri="https://github.com/infera-io/temper/releases/download/$version"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
manifest="$out/infera.yaml"
sed -e "s|^  version: .*|  version: $version|" \
	-e "s|releases/download/v[0-9.]*/kubectl-infera_v[0-9.]*_|releases/download/$version/kubectl-infera_${version}_|" \
	"$ROOT/plugins/infera.yaml" >"$manifest"
for p in "${platforms[@]}"; do
	os="${p%/*}" arch="${p#*/}"
	name="kubectl-infera_${version}_${os}_${arch}"
	stage="$out/$name"
	rm -rf "$stage" && mkdir -p "$stage"
	(cd "$ROOT" && CGO_ENABLED=0 GOOS="$os" GOARCH="$arch" go build -trimpath -buildvcs=false \
		-ldflags "-s -w -X github.com/infera-io/temper/inferactl.Version=$version" \
		-o "$stage/kubectl-infera" ./cmd/inferactl)
	install -m 0644 "$ROOT/LICENSE" "$stage/LICENSE"
	tar -C "$stage" --sort=name --mtime="@$epoch" --owner=0 --group=0 --numeric-owner \
		-cf - kubectl-infera LICENSE | gzip -9n >"$out/$name.tar.gz"
	rm -rf "$stage"
	sum="$(sha256sum "$out/$name.tar.gz" | cut -d' ' -f1)"
	# The sha256 line follows its platform's uri line.
	awk -v uri="$base_uri/$name.tar.gz" -v sum="$sum" '
		index($0, "uri: " uri) { print; getline; sub(/sha256: .*/, "sha256: \"" sum "\""); print; next }
		{ print }' "$manifest" >"$manifest.tmp" && mv "$manifest.tmp" "$manifest"
	echo "$name.tar.gz $sum"
done
echo "manifest: $manifest"
