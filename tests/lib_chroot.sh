# shellcheck shell=bash
# lib_chroot.sh: clean Debian roots for the tests that need a fresh machine
# (tests/fresh-machine.sh, tests/docker-chroot.sh). Sourced, as root, by a
# bash script with `set -euo pipefail` that sets CHROOT_TAG (its name, for
# messages) and may set keep=1 (leave the roots behind). It gives:
#
#   say/die/phase/phase_end   messages, and each phase's time
#   chroot_base [1]           $BASE: a debootstrapped $SUITE $VARIANT root,
#                             cached as a tarball in $CACHE (1: rebuild it)
#   chroot_workdir [NAME]     $W, a scratch directory removed on exit, with
#                             the cleanup trap set
#   chroot_root DIR           a clean copy of the base in DIR (under $W),
#                             with apt sources, resolv.conf, a policy-rc.d
#                             that starts no service, /proc /sys /dev mounted
#   inroot_pids [DIR]         the processes whose root is DIR (default $R)
#   mnt ARGS... TARGET        mount, undone by the cleanup
#
# On exit every process left in any root is killed, the mounts undone and
# $W removed (unless keep=1, or something is still mounted there); a
# script's chroot_on_exit, if defined, runs first.

CACHE=${FRESH_CACHE:-/var/cache/syncv3-fresh}
SUITE=bookworm
VARIANT=minbase
ARCH=$(dpkg --print-architecture)
BASE=$CACHE/$SUITE-$VARIANT-$ARCH.tar
keep=${keep:-0}
mounted=()
roots=()

say() { printf '%s: %s\n' "$CHROOT_TAG" "$*"; }
die() { say "$*" >&2; exit 1; }

phase_t0=0
phase() { phase_t0=$(date +%s); say "== $*"; }
phase_end() { say "   $1 took $(( $(date +%s) - phase_t0 ))s"; }

# mirror SUITE: the first archive URI apt is configured with for SUITE, in
# one-line (.list) or deb822 (.sources) form.
mirror() {
	local suite=$1 f
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -f "$f" ] || continue
		awk -v s="$suite" '
		    $1 == "deb" { sub(/\[[^]]*\] */, ""); if ($3 == s) { print $2; exit } }' "$f"
	done
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		awk -v s="$suite" 'BEGIN { RS = ""; FS = "\n" }
		    {
			t = u = ok = 0
			for (i = 1; i <= NF; i++) {
				if ($i ~ /^#/) continue
				n = split($i, w, /[ \t]+/)
				if (w[1] == "Types:") for (j = 2; j <= n; j++) if (w[j] == "deb") t = 1
				if (w[1] == "URIs:") u = w[2]
				if (w[1] == "Suites:") for (j = 2; j <= n; j++) if (w[j] == s) ok = 1
			}
			if (t && u && ok) { print u; exit }
		    }' "$f"
	done | head -1
}

[ "$(id -u)" = 0 ] || die "needs root (chroot, mounts)"
MIRROR=$(mirror "$SUITE" | head -1)
SECURITY=$(mirror "$SUITE-security" | head -1)
[ -n "$MIRROR" ] || die "no apt source for $SUITE in /etc/apt/sources.list*"

chroot_base() {
	local refresh=${1:-0} tmp
	command -v debootstrap >/dev/null ||
	    die "needs debootstrap (apt-get install debootstrap)"
	mkdir -p "$CACHE"
	exec 9>"$CACHE/lock"
	flock 9
	if [ "$refresh" = 1 ] || [ ! -f "$BASE" ]; then
		phase "debootstrap $VARIANT $SUITE from $MIRROR (cached in $BASE)"
		tmp=$(mktemp -d "$CACHE/build.XXXXXX")
		debootstrap --variant="$VARIANT" --arch="$ARCH" "$SUITE" "$tmp/root" \
		    "$MIRROR" >"$tmp/debootstrap.log" 2>&1 || {
			tail -20 "$tmp/debootstrap.log"; rm -rf "$tmp"
			die "debootstrap failed"; }
		rm -rf "$tmp/root/var/cache/apt/archives/"*.deb
		tar -C "$tmp/root" --numeric-owner -cf "$BASE.tmp" .
		mv "$BASE.tmp" "$BASE"
		rm -rf "$tmp"
		phase_end debootstrap
	else
		say "== base: $BASE (cached $(date -ur "$BASE" '+%F %T UTC'); --refresh rebuilds it)"
	fi
	flock -u 9
}

# The processes running inside a root: those whose root directory is it.
inroot_pids() {
	local root=${1:-$R} p
	for p in /proc/[0-9]*; do
		[ "$(readlink "$p/root" 2>/dev/null)" = "$root" ] && echo "${p#/proc/}"
	done
	return 0
}

chroot_cleanup() {
	local rc=$? m p i r
	set +e
	declare -F chroot_on_exit >/dev/null && chroot_on_exit
	# Whatever the commands left running inside the roots (the demo leaves
	# its stack up on purpose, and a failed down may leave it all).
	for r in ${roots[@]+"${roots[@]}"}; do
		for p in $(inroot_pids "$r"); do kill -KILL "$p" 2>/dev/null; done
	done
	sleep 0.5
	for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
		m=${mounted[i]}
		umount "$m" 2>/dev/null || umount -l "$m"
	done
	if [ "$keep" = 1 ]; then
		say "kept $W"
	elif ! grep -q " $W/" /proc/mounts; then
		rm -rf "$W"
	else
		say "still mounted under $W; not removing it"
	fi
	exit "$rc"
}

chroot_workdir() { # [NAME]
	W=$(mktemp -d "${TMPDIR:-/var/tmp}/syncv3-${1:-$CHROOT_TAG}.XXXXXX")
	trap chroot_cleanup EXIT
	trap 'exit 130' INT TERM
}

mnt() { # mount ARGS... TARGET
	mount "$@"
	mounted+=("${!#}")
}

chroot_root() {
	local r=$1
	mkdir "$r"
	roots+=("$r")
	tar -C "$r" --numeric-owner -xf "$BASE"
	{
		echo "deb $MIRROR $SUITE main"
		echo "deb $MIRROR $SUITE-updates main"
		[ -n "$SECURITY" ] && echo "deb $SECURITY $SUITE-security main"
	} >"$r/etc/apt/sources.list"
	rm -f "$r"/etc/apt/sources.list.d/*
	cp -L /etc/resolv.conf "$r/etc/resolv.conf"
	# Packages' maintainer scripts must not start system services (Debian's
	# own PostgreSQL cluster) on the shared host network: the usual chroot
	# policy-rc.d. Our commands start what they need themselves.
	printf '#!/bin/sh\nexit 101\n' >"$r/usr/sbin/policy-rc.d"
	chmod 755 "$r/usr/sbin/policy-rc.d"
	mnt --bind /proc "$r/proc"
	mnt --bind /sys "$r/sys"
	mnt --bind /dev "$r/dev"
	mnt --bind /dev/pts "$r/dev/pts"
	mnt -t tmpfs -o mode=1777,size=1g tmpfs "$r/dev/shm"
}
