#!/usr/bin/env bash
# Builds the real control plane from the Go module proxy into bin/:
# kube-apiserver, kube-scheduler, kube-controller-manager and kubectl from
# k8s.io/kubernetes and etcd,
# all pinned by hack/tools/controlplane/go.mod. No prebuilt binary is ever
# downloaded. A stamp over the pins makes a second run a no-op, and a copy
# kept under the user's cache directory, keyed by the same hash, makes a
# fresh clone on a machine that built them once (CI) copy instead of
# relinking: TEMPER_CONTROLPLANE_CACHE (default ~/.cache/temper/controlplane;
# empty disables it).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${BIN:-$ROOT/bin}"
MOD="$ROOT/hack/tools/controlplane"
KUBE_VERSION="$(awk '$1 == "k8s.io/kubernetes" {print $2; exit}' "$MOD/go.mod")"
KUBE_MINOR="$(echo "$KUBE_VERSION" | cut -d. -f2)"

mkdir -p "$BIN"
stamp="$BIN/.controlplane.stamp"
want="$(cat "$MOD/go.mod" "$MOD/go.sum" "${BASH_SOURCE[0]}" | sha256sum | cut -d' ' -f1)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] \
	&& [[ -x "$BIN/kube-apiserver" && -x "$BIN/etcd" && -x "$BIN/kube-scheduler" && -x "$BIN/kube-controller-manager" && -x "$BIN/kubectl" ]]; then
	exit 0
fi

bins=(kube-apiserver kube-scheduler kube-controller-manager kubectl etcd)
cache_root="${TEMPER_CONTROLPLANE_CACHE-${XDG_CACHE_HOME:-$HOME/.cache}/temper/controlplane}"
cache="${cache_root:+$cache_root/$want}"
if [[ -n "$cache" && -f "$cache/complete" ]]; then
	echo ">> copying the control plane from $cache (built earlier from the same pins)"
	for b in "${bins[@]}"; do cp -f "$cache/$b" "$BIN/$b"; done
	echo "$want" > "$stamp"
if [[ -n "$cache" ]]; then
	mkdir -p "$cache"
	for b in "${bins[@]}"; do cp -f "$BIN/$b" "$cache/$b"; done
	touch "$cache/complete"
fi
	exit 0
fi

# Version ldflags so that the binaries report the release they are built
# from (the API server's /version, kubectl version, etcd --version).
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$KUBE_MINOR"
	ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

cd "$MOD"
echo ">> building kube-apiserver, kube-scheduler, kube-controller-manager, kubectl $KUBE_VERSION and etcd into $BIN"
export CGO_ENABLED=0
go build -trimpath -ldflags "$ldflags" -o "$BIN/" \
	k8s.io/kubernetes/cmd/kube-apiserver \
	k8s.io/kubernetes/cmd/kube-scheduler \
	k8s.io/kubernetes/cmd/kube-controller-manager \
	k8s.io/kubernetes/cmd/kubectl
go build -trimpath -ldflags "-s -w" -o "$BIN/etcd" go.etcd.io/etcd/server/v3
echo "$want" > "$stamp"
if [[ -n "$cache" ]]; then
	mkdir -p "$cache"
	for b in "${bins[@]}"; do cp -f "$BIN/$b" "$cache/$b"; done
	touch "$cache/complete"
fi
