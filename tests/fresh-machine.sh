#!/usr/bin/env bash
# fresh-machine.sh: runs the README's two commands on a clean Debian 12
# root, as a tester on a new machine would: debootstraps bookworm (minbase:
# less than Debian's default base, so anything we rely on must be in
# deploy/packages.txt), clones this checkout's HEAD into /root/syncv3 (mode
# 700, as on a real machine) and runs, as root inside a chroot,
# `deploy/syncv3ctl demo` (then status and down) and `deploy/syncv3ctl test`.
# Prints each phase's time and each command's last lines; exits non-zero if
# either command fails.
#
#   sudo tests/fresh-machine.sh [--demo-only | --test-only] [--dirty] [--keep]
#
#   --dirty   also carry the uncommitted changes of the checkout over
#   --keep    leave the root (and its logs) behind, unmounted
#   --refresh rebuild the cached base root
#
# Needs root, debootstrap and the Debian mirror apt already uses (read from
# /etc/apt/sources.list*). The debootstrapped base is cached as a tarball in
# $FRESH_CACHE (default /var/cache/syncv3-fresh); every run unpacks a clean
# copy of it. Not part of tests/run_all.sh: it takes minutes (about 10 on 2
# cores, most of it the full test run) and needs root.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${FRESH_CACHE:-/var/cache/syncv3-fresh}
SUITE=bookworm
VARIANT=minbase
ARCH=$(dpkg --print-architecture)
BASE=$CACHE/$SUITE-$VARIANT-$ARCH.tar
TAIL=${FRESH_TAIL:-25}
do_demo=1 do_test=1 dirty=0 keep=0 refresh=0

for a in "$@"; do
	case $a in
	--demo-only) do_test=0 ;;
	--test-only) do_demo=0 ;;
	--dirty) dirty=1 ;;
	--keep) keep=1 ;;
	--refresh) refresh=1 ;;
	*) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
	esac
done

say() { printf 'fresh-machine: %s\n' "$*"; }
die() { say "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (chroot, mounts)"
command -v debootstrap >/dev/null ||
    die "needs debootstrap (apt-get install debootstrap)"
git -C "$ROOT" rev-parse -q --verify HEAD >/dev/null ||
    die "$ROOT is not a git checkout with a commit"

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

start=$(date +%s) phase_t0=0
phase() { phase_t0=$(date +%s); say "== $*"; }
phase_end() { say "   $1 took $(( $(date +%s) - phase_t0 ))s"; }

MIRROR=$(mirror "$SUITE" | head -1)
SECURITY=$(mirror "$SUITE-security" | head -1)
[ -n "$MIRROR" ] || die "no apt source for $SUITE in /etc/apt/sources.list*"

# --- the cached base ---------------------------------------------------------
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

# --- a clean copy --------------------------------------------------------------
W=$(mktemp -d "${TMPDIR:-/var/tmp}/syncv3-fresh.XXXXXX")
R=$W/root
mounted=()

# The processes running inside the root: those whose root directory is $R.
inroot_pids() {
	local p
	for p in /proc/[0-9]*; do
		[ "$(readlink "$p/root" 2>/dev/null)" = "$R" ] && echo "${p#/proc/}"
	done
	return 0
}

cleanup() {
	local rc=$? m p i
	set +e
	# Whatever the commands left running inside the root (the demo leaves
	# its stack up on purpose, and a failed down may leave it all).
	for p in $(inroot_pids); do kill -KILL "$p" 2>/dev/null; done
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
trap cleanup EXIT
trap 'exit 130' INT TERM

phase "unpacking a clean root in $R"
mkdir "$R"
tar -C "$R" --numeric-owner -xf "$BASE"
{
	echo "deb $MIRROR $SUITE main"
	echo "deb $MIRROR $SUITE-updates main"
	[ -n "$SECURITY" ] && echo "deb $SECURITY $SUITE-security main"
} >"$R/etc/apt/sources.list"
rm -f "$R"/etc/apt/sources.list.d/*
cp -L /etc/resolv.conf "$R/etc/resolv.conf"
# Packages' maintainer scripts must not start system services (Debian's
# own PostgreSQL cluster) on the shared host network: the usual chroot
# policy-rc.d. Our commands start what they need themselves.
printf '#!/bin/sh\nexit 101\n' >"$R/usr/sbin/policy-rc.d"
chmod 755 "$R/usr/sbin/policy-rc.d"
mnt() { # mount ARGS... TARGET
	mount "$@"
	mounted+=("${!#}")
}
mnt --bind /proc "$R/proc"
mnt --bind /sys "$R/sys"
mnt --bind /dev "$R/dev"
mnt --bind /dev/pts "$R/dev/pts"
mnt -t tmpfs -o mode=1777,size=1g tmpfs "$R/dev/shm"
phase_end unpack

phase "cloning $ROOT (HEAD $(git -C "$ROOT" rev-parse --short HEAD)) into /root/syncv3"
git clone -q --no-hardlinks "$ROOT" "$R/root/syncv3"
if [ "$dirty" = 1 ]; then
	git -C "$ROOT" diff --binary HEAD | git -C "$R/root/syncv3" apply --allow-empty
	git -C "$ROOT" ls-files -z --others --exclude-standard |
	    (cd "$ROOT" && xargs -0r cp --parents -t "$R/root/syncv3")
	say "   with the checkout's uncommitted changes"
fi
say "   /root is mode $(stat -c %a "$R/root"), nothing installed beyond $VARIANT"
phase_end clone

# inroot LOG EXPECT CMD: runs CMD with bash in /root/syncv3 inside the
# root, as root, with a clean environment, output to $W/LOG; prints its
# last lines. Fails if CMD does, or if its output lacks EXPECT (an ERE).
inroot() {
	local log=$W/$1 expect=$2 rc=0
	shift 2
	chroot "$R" /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 \
	    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
	    ${extra_env[@]+"${extra_env[@]}"} \
	    bash -c "cd /root/syncv3 && $*" </dev/null >"$log" 2>&1 || rc=$?
	say "   last lines of '$*' (exit $rc):"
	tail -n "$TAIL" "$log" | sed 's/^/   | /'
	if [ "$rc" = 0 ] && ! grep -Eq -- "$expect" "$log"; then
		say "   its output lacks /$expect/"
		rc=1
	fi
	return "$rc"
}

# The demo's default ports may be taken by someone else's stack on this
# host (the root shares its network): then use free ones.
extra_env=()
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
if port_busy 8008 || port_busy 8009; then
	extra_env=(SYNCV3_BINDADDR="127.0.0.1:$(free_port)" SIMHS_LISTEN="127.0.0.1:$(free_port)")
	say "   8008/8009 busy on this host: demo uses ${extra_env[*]}"
fi

demo_rc=skipped test_rc=skipped
if [ "$do_demo" = 1 ]; then
	phase "deploy/syncv3ctl demo"
	demo_rc=0
	# The live part: a long-poll answered by a change upstream.
	inroot demo.log 'answered [0-9]+ ms after the typing change' \
	    deploy/syncv3ctl demo || demo_rc=1
	phase_end demo
	phase "deploy/syncv3ctl status, then down"
	inroot status.log '^run: .*syncv3-postgres' deploy/syncv3ctl status || demo_rc=1
	inroot down.log 'stack stopped' deploy/syncv3ctl down || demo_rc=1
	# down must have stopped everything it started, the cluster included.
	left=$(for p in $(inroot_pids); do tr '\0' ' ' <"/proc/$p/cmdline"; echo; done)
	if [ -n "$left" ]; then
		say "   still running after down:"; printf '   | %s\n' "$left"
		demo_rc=1
	fi
	phase_end status/down
fi
extra_env=()
if [ "$do_test" = 1 ]; then
	phase "deploy/syncv3ctl test"
	test_rc=0
	inroot test.log '^all: [0-9]+ passed, 0 failed' deploy/syncv3ctl test || test_rc=1
	phase_end test
fi

say "demo: $demo_rc, test: $test_rc, $(( $(date +%s) - start ))s in all (logs in $W while it exists; --keep keeps it)"
[ "$demo_rc" != skipped ] && [ "$demo_rc" != 0 ] && exit 1
[ "$test_rc" != skipped ] && [ "$test_rc" != 0 ] && exit 1
exit 0
