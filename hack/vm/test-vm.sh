#!/usr/bin/env bash
# test-vm.sh: `make test-vm`. Builds the privileged test packages as static
# test binaries (CGO_ENABLED=0 go test -c), with their testdata, and runs
# them as root in a VM on Debian's sched_ext 7.2 kernel with cgroup v2
# (hack/vm/vm.sh). Exits with the tests' status, 125 when the guest gave no
# result (panic, hang, timeout).
#
# Environment:
#   TEMPER_VM_PACKAGES   packages to run (default: the list below)
#   TEMPER_VM_TEST_ARGS  extra flags for every test binary (e.g. -test.run=V2)
#   TEMPER_VM_TIMEOUT    wall-clock limit of the guest in seconds (default 600)
#   TEMPER_VM_CACHE      cache of the kernel and schedulers (see vm.sh)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
here=hack/vm

# The packages whose tests need a real cgroup v2 tree or sched_ext. They run
# in full (their unit tests too: cheap, and a second kernel for them).
default_pkgs=(
	./nodeagent/cgroupfs
	./nodeagent/cgroupfs/writer
	./nodeagent/enforcement/cgroup
	./test/vm
)
# ./test/vm/agent (the agent process end to end with etcd and
# kube-apiserver in the guest) is slow under TCG: `make test-vm-agent`.
# The observation layer's eBPF tests join once the package has tests.
if compgen -G "nodeagent/ebpf/*_test.go" >/dev/null; then default_pkgs+=(./nodeagent/ebpf); fi
read -r -a pkgs <<<"${TEMPER_VM_PACKAGES:-${default_pkgs[*]}}"

P=$(mktemp -d "${TMPDIR:-/tmp}/temper-vm-payload.XXXXXX")
trap 'rm -rf "$P"' EXIT
: >"$P/packages"
for pkg in "${pkgs[@]}"; do
	name=$(echo "${pkg#./}" | tr / _)
	mkdir -p "$P/$name"
	echo "vm: go test -c $pkg" >&2
	CGO_ENABLED=0 go test -c -o "$P/$name/pkg.test" "$pkg"
	if [ ! -f "$P/$name/pkg.test" ]; then
		echo "vm: $pkg has no tests" >&2
		exit 1
	fi
	# Tests find their fixtures relative to the package directory.
	if [ -d "${pkg#./}/testdata" ]; then cp -r "${pkg#./}/testdata" "$P/$name/"; fi
	echo "$name" >>"$P/packages"
done
# The agent end to end (test/vm/agent) runs the project's etcd and
# kube-apiserver and the infera-agent binary in the guest. envtest finds
# them under <repo root>/bin, the repo root by its go.mod (the payload root,
# /tests), and the CRDs under config/crd/bases.
for pkg in "${pkgs[@]}"; do
	[ "${pkg#./}" = test/vm/agent ] || continue
	for b in etcd kube-apiserver; do
		[ -x "bin/$b" ] || { echo "vm: bin/$b is missing: run \`make controlplane\`" >&2; exit 1; }
	done
	mkdir -p "$P/bin" "$P/config/crd"
	cp bin/etcd bin/kube-apiserver "$P/bin/"
	echo "vm: go build ./cmd/infera-agent" >&2
	CGO_ENABLED=0 go build -o "$P/bin/infera-agent" ./cmd/infera-agent
	cp go.mod "$P/"
	cp -r config/crd/bases "$P/config/crd/"
done
cp "$here/guest/run-tests.sh" "$P/run.sh"
printf '%s\n' "${TEMPER_VM_TEST_ARGS:-}" >"$P/test-args"
# Not exec: the EXIT trap must remove the payload (with test/vm/agent it
# holds ~300 MB of binaries).
rc=0
"$here/vm.sh" -t "${TEMPER_VM_TIMEOUT:-600}" "$P" || rc=$?
exit "$rc"
