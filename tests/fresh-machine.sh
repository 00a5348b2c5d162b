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

CHROOT_TAG=fresh-machine
. "$ROOT/tests/lib_chroot.sh"
git -C "$ROOT" rev-parse -q --verify HEAD >/dev/null ||
    die "$ROOT is not a git checkout with a commit"

start=$(date +%s)

# --- the cached base ---------------------------------------------------------
chroot_base "$refresh"

# --- a clean copy --------------------------------------------------------------
chroot_workdir fresh
R=$W/root

phase "unpacking a clean root in $R"
chroot_root "$R"
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
	    ${extra_env[@]+"${extra_env[@]}"} ${net_env[@]+"${net_env[@]}"} \
	    bash -c "cd /root/syncv3 && $*" </dev/null >"$log" 2>&1 || rc=$?
	say "   last lines of '$*' (exit $rc):"
	tail -n "$TAIL" "$log" | sed 's/^/   | /'
	if [ "$rc" = 0 ] && ! grep -Eq -- "$expect" "$log"; then
		say "   its output lacks /$expect/"
		rc=1
	fi
	return "$rc"
}

# A network that inspects TLS (as this workplace's does) signs with its own
# CA, which the host trusts and a fresh root cannot: apt uses plain HTTP
# and gets by, but npm (node keeps its own CA list) is refused, and the JS
# scenarios skip. Hand node the host's trust, as a machine on this network
# would be given it; nothing is installed in the root by this.
net_env=()
host_ca=${NODE_EXTRA_CA_CERTS:-$(npm config get cafile 2>/dev/null || true)}
if [ -n "$host_ca" ] && [ "$host_ca" != null ] && [ -f "$host_ca" ]; then
	cp "$host_ca" "$R/etc/syncv3-network-ca.crt"
	net_env=(NODE_EXTRA_CA_CERTS=/etc/syncv3-network-ca.crt)
	say "   node in the root trusts the host's CA file $host_ca"
fi

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
