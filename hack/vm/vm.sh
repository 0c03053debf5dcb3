#!/usr/bin/env bash
# vm.sh: boot a real sched_ext + cgroup v2 kernel (Debian's 7.2) under QEMU/TCG
# with an initramfs holding busybox, the kernel's example sched_ext schedulers
# and a directory of test payload, run the payload's /tests/run.sh in it, and
# exit with its status.
#
#   vm.sh [-t TIMEOUT_S] [-k] PAYLOAD_DIR
#
#   PAYLOAD_DIR  copied to /tests in the guest; /tests/run.sh is run as root
#                by busybox sh with the cgroup2 tree on /sys/fs/cgroup (cpu and
#                cpuset delegated from the root) and the schedulers in /scx
#   -t SECONDS   wall-clock limit for the guest (default 600)
#   -k           keep the work directory (initramfs, logs) even on success
#
# Environment: TEMPER_VM_MEMORY guest RAM in MiB (default 3072: the agent
# end to end runs etcd and kube-apiserver in the guest); TEMPER_VM_KERNEL
# another sched_ext kernel image to boot instead of the pinned one.
#
# Exit status: the guest's status; 125 when the guest gave no result (kernel
# panic, hang, or the time limit), with the console log printed; 3 when a
# pinned package is gone from the archive or fails its checksum.
#
# Downloads (only these, from the Debian archive, pinned by version and
# sha256, cached under $TEMPER_VM_CACHE, default
# ${XDG_CACHE_HOME:-$HOME/.cache}/temper-vm): the kernel
# (linux-binary-$KABI), the kernel source (linux-source-7.2) for
# tools/sched_ext, and, once, a throwaway sid chroot (debootstrap) with clang
# to build the schedulers statically. Host packages it needs
# (qemu-system-x86, busybox-static, cpio, xz-utils) are installed with
# apt-get when missing. The recipe and its pitfalls: docs/testing.md.
set -euo pipefail

KABI=7.2.13+deb14-amd64 # kernel ABI, the suffix of linux-binary-*
KVER=7.2.13-1           # Debian version of linux-binary-$KABI and linux-source-7.2
SUITE=sid               # the suite that carries $KVER (and the build chroot)
SHA_KERNEL=fb8cd0ade4ef82d9dde1dcf183d4bf4033db1b549b0acc9973855ad9cc48c4f5
SHA_SOURCE=30a8c5fc63f9028a62e6d7b3f7f43bee67425dbce2a05fceba83f9b87c92083d
MIRROR=${TEMPER_VM_MIRROR:-http://deb.debian.org/debian}
CACHE=${TEMPER_VM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/temper-vm}
# The schedulers the guest gets. scx_layered_standin is scx_simple rebuilt
# with its ops name set to "layered", the name the agent's supervisor
# expects in /sys/kernel/sched_ext/root/ops.
SCHEDS=(scx_simple scx_flatcg scx_central scx_layered_standin)
# Bump when the build recipe below changes, so cached schedulers are rebuilt.
SCHED_RECIPE=2

timeout_s=600 keep=
while getopts "t:k" opt; do
	case $opt in
	t) timeout_s=$OPTARG ;;
	k) keep=1 ;;
	*) sed -n '2,20p' "$0" >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
[ $# -eq 1 ] && [ -f "$1/run.sh" ] || { echo "vm.sh: need one payload directory with a run.sh" >&2; exit 2; }
payload=$1

log() { echo "vm: $*" >&2; }
now() { date +%s.%N; }
t0=$(now)
mkdir -p "$CACHE"
# One preparer at a time per cache (parallel `make test-vm` runs).
exec 9>"$CACHE/.lock"
flock 9

# --- host tools --------------------------------------------------------------
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v cpio >/dev/null || need+=(cpio)
command -v xz >/dev/null || need+=(xz-utils)
command -v wget >/dev/null || need+=(wget) # debootstrap downloads with it
if ! [ -x /bin/busybox ] || ldd /bin/busybox >/dev/null 2>&1; then need+=(busybox-static); fi
if ((${#need[@]})); then
	log "installing ${need[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# --- private apt config for $SUITE: nothing from it is installed on the host --
A=$CACHE/apt
aptq() {
	apt-get -q -o Dir::Etc::SourceList="$A/sources.list" -o Dir::Etc::SourceParts=/dev/null \
		-o Dir::State::Lists="$A/lists" -o Dir::Cache="$A/cache" -o Dir::Etc::Preferences=/dev/null \
		-o Dir::Etc::PreferencesParts=/dev/null -o APT::Sandbox::User=root "$@"
}
apt_ready=
apt_init() {
	[ -n "$apt_ready" ] && return
	mkdir -p "$A/lists/partial" "$A/cache/archives/partial"
	echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $MIRROR $SUITE main" >"$A/sources.list"
	aptq update -qq >/dev/null
	apt_ready=1
}
# fetch_deb PKG [VERSION [SHA256]]: print the path of the cached .deb.
fetch_deb() {
	local pkg=$1 ver=${2:-} sha=${3:-} d=$CACHE/debs f
	mkdir -p "$d"
	f=$(find "$d" -maxdepth 1 -name "${pkg}_${ver:+${ver//:/%3a}_}*.deb" | head -1)
	if [ -z "$f" ]; then
		apt_init
		(cd "$d" && aptq download -qq "$pkg${ver:+=$ver}" >/dev/null) || {
			log "cannot download $pkg${ver:+=$ver} from $SUITE at $MIRROR (gone from the archive? bump KABI/KVER/SHA_* in $0)"
			exit 3
		}
		f=$(find "$d" -maxdepth 1 -name "${pkg}_${ver:+${ver//:/%3a}_}*.deb" | head -1)
	fi
	if [ -n "$sha" ] && ! echo "$sha  $f" | sha256sum -c --quiet - >/dev/null 2>&1; then
		log "$f: sha256 is $(sha256sum "$f" | cut -d' ' -f1), want $sha; removing it"
		rm -f "$f"
		exit 3
	fi
	echo "$f"
}

# --- kernel (cached) -----------------------------------------------------------
K=$CACHE/kernel-$KABI
if [ ! -f "$K/vmlinuz" ]; then
	log "fetching kernel linux-binary-$KABI $KVER"
	rm -rf "$K.tmp" && mkdir -p "$K.tmp"
	# An assignment, so that fetch_deb's exit status (3) is the script's.
	deb=$(fetch_deb "linux-binary-$KABI" "$KVER" "$SHA_KERNEL")
	dpkg-deb -x "$deb" "$K.tmp/x"
	mv "$K.tmp/x/usr/lib/modules/$KABI/vmlinuz" "$K.tmp/vmlinuz"
	rm -rf "$K.tmp/x" "$K" && mv "$K.tmp" "$K"
fi

# --- example sched_ext schedulers, static, built once in a sid chroot ----------
B=$CACHE/scx-$KABI-r$SCHED_RECIPE
if [ ! -f "$B/.done" ]; then
	log "building tools/sched_ext schedulers from linux-source-7.2 $KVER (once; about 2 minutes)"
	W=$CACHE/build.tmp
	# debootstrap unmounts what it mounts in the chroot; never rm -rf
	# through a mount that was left behind.
	rm_build() {
		if grep -q " $W/" /proc/mounts; then
			log "refusing to remove $W: something is still mounted in it"
			exit 4
		fi
		rm -rf "$W"
	}
	rm_build && mkdir -p "$W"
	deb=$(fetch_deb debootstrap)
	dpkg-deb -x "$deb" "$W/debootstrap"
	DEBOOTSTRAP_DIR=$W/debootstrap/usr/share/debootstrap "$W/debootstrap/usr/sbin/debootstrap" \
		--variant=minbase \
		--include=clang,llvm,make,gcc,libc6-dev,libelf-dev,zlib1g-dev,libzstd-dev,pkgconf,python3-minimal,libssl-dev \
		"$SUITE" "$W/root" "$MIRROR" >"$W/debootstrap.log" 2>&1 || {
		tail -30 "$W/debootstrap.log" >&2
		exit 4
	}
	deb=$(fetch_deb linux-source-7.2 "$KVER" "$SHA_SOURCE")
	dpkg-deb -x "$deb" "$W/src"
	mkdir -p "$W/root/src" "$W/root/build/out"
	tar -xJf "$W"/src/usr/src/linux-source-7.2.tar.xz -C "$W/root/src" --strip-components=1 \
		linux-source-7.2/tools linux-source-7.2/include linux-source-7.2/scripts \
		linux-source-7.2/Makefile linux-source-7.2/arch/x86/include linux-source-7.2/kernel/bpf
	# vmlinux.h must come from the target kernel's BTF, not the host's.
	"$W/root/src/scripts/extract-vmlinux" "$K/vmlinuz" >"$W/root/build/vmlinux"
	chroot "$W/root" sh -ec '
		mk() { make -C /src/tools/sched_ext VMLINUX_BTF=/build/vmlinux O=/build/out -j"$(nproc)" >>/build/build.log 2>&1 ||
			{ tail -40 /build/build.log; exit 1; }; }
		link() { gcc -static -o /build/static/$2 /build/out/build/obj/sched_ext/$1.o /build/out/build/obj/libbpf/libbpf.a -lelf -lz -lzstd -lpthread; }
		mkdir -p /build/static
		mk
		for s in scx_simple scx_flatcg scx_central; do link $s $s; done
		# The stand-in for scx_layered: scx_simple named "layered".
		f=/src/tools/sched_ext/scx_simple.bpf.c
		[ "$(grep -c "\.name[[:space:]]*=[[:space:]]*\"simple\"" $f)" = 1 ] || { echo "cannot find the ops name in $f"; exit 1; }
		sed -i "s/\(\.name[[:space:]]*=[[:space:]]*\)\"simple\"/\1\"layered\"/" $f
		mk
		link scx_simple scx_layered_standin'
	rm -rf "$B" && mkdir -p "$B"
	for s in "${SCHEDS[@]}"; do cp "$W/root/build/static/$s" "$B/"; done
	touch "$B/.done"
	rm_build
	rm -f "$CACHE"/debs/linux-source-7.2_*.deb
fi
flock -u 9

# --- initramfs -------------------------------------------------------------------
R=$(mktemp -d "${TMPDIR:-/tmp}/temper-vm.XXXXXX")
cleanup() { if [ -z "$keep" ]; then rm -rf "$R"; else log "kept $R"; fi; }
trap cleanup EXIT
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mkdir -p "$R"/root/{bin,dev,proc,sys,tmp,scx,tests}
cp /bin/busybox "$R/root/bin/"
for s in "${SCHEDS[@]}"; do cp "$B/$s" "$R/root/scx/"; done
cp -r "$payload"/. "$R/root/tests/"
cp "$here/guest/init" "$R/root/init"
chmod +x "$R/root/init"
# A per-run nonce makes the result markers unforgeable by test output.
nonce=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
echo "$nonce" >"$R/root/nonce"
# Uncompressed: the payload holds a few hundred MB of Go binaries (the
# agent end to end ships etcd and kube-apiserver), and inflating them under
# TCG costs far more than QEMU copying them into guest memory.
(cd "$R/root" && find . | cpio -o -H newc --quiet >"$R/initrd.cpio")
t1=$(now)

# --- boot --------------------------------------------------------------------------
# TCG only: KVM is unusable on these machines. thread=single: MTTCG in QEMU
# 7.2 sometimes oopses when sched_ext patches static keys on attach/detach.
# -nodefaults: no NIC (the guest has no network), no VGA. panic=-1 and
# -no-reboot: a kernel panic ends QEMU at once. ttyS0 is the console (live
# here and in console.log), ttyS1 the clean result channel.
# TEMPER_VM_KERNEL boots another sched_ext kernel image (the schedulers in
# /scx stay the 7.2.13 build; CO-RE carries them across 7.2.x), e.g. to
# load the tier scheduler's object on more kernel versions.
kimg=${TEMPER_VM_KERNEL:-$K/vmlinuz}
log "booting ${TEMPER_VM_KERNEL:-$KABI} (timeout ${timeout_s}s)"
set +e
timeout -k 5 "$timeout_s" qemu-system-x86_64 -nodefaults -display none -no-reboot \
	-accel tcg,thread=single -cpu max -smp 2 -m "${TEMPER_VM_MEMORY:-3072}" \
	-kernel "$kimg" -initrd "$R/initrd.cpio" -append "console=ttyS0 panic=-1 quiet" \
	-serial stdio -serial "file:$R/result.log" </dev/null | tee "$R/console.log"
qrc=${PIPESTATUS[0]}
set -e
t2=$(now)
rc=$(sed -n "s/^@@TEMPER-VM-$nonce RC=\([0-9]*\)\$/\1/p" "$R/result.log" | tail -1)
log "$(awk -v a="$t0" -v b="$t1" -v c="$t2" 'BEGIN{printf "prepare %.1fs, guest %.1fs, total %.1fs", b-a, c-b, c-a}'), qemu status $qrc"
grep "^@@TEMPER-VM-$nonce PKG " "$R/result.log" | sed "s/^@@TEMPER-VM-$nonce PKG /vm: package /" >&2 || true
if [ -z "$rc" ]; then
	keep=1
	log "FAIL: no result from the guest (kernel panic, hang, or the ${timeout_s}s limit; qemu status $qrc)"
	log "console log ($R/console.log), last 80 lines:"
	tail -80 "$R/console.log" | tr -d '\r' | sed 's/^/console| /' >&2
	exit 125
fi
if [ "$rc" != 0 ]; then
	keep=1
	log "FAIL: guest tests exited $rc; console log: $R/console.log, results: $R/result.log"
fi
exit "$rc"
