#!/usr/bin/env bash
# The launcher's stack works wherever the checkout is: in a directory whose
# path has spaces (the private cluster's socket path goes into SYNCV3_DB),
# and, as root, in a directory the postgres account cannot enter (a
# checkout under /root, mode 700): the cluster then lives under
# /var/lib/syncv3, and status and down still find and stop it.
. "$(dirname "$0")/lib.sh"

export SYNCV3_BUILD=$(dirname "$BIN") SYNCV3_LOG_LEVEL=debug
unset SYNCV3_DB SYNCV3_SERVER
CTL=$IT_ROOT/deploy/syncv3ctl
pgdirs=()
it_on_exit() {
	local d
	for d in "$T/with space/stack" "$T/hidden/stack"; do
		[ -d "$d/service" ] || continue
		cp "$d"/service/syncv3-postgres/log/main/current "$T/pg-$(basename "$(dirname "$d")").log" 2>/dev/null
		SYNCV3_HOME=$d "$CTL" down >/dev/null 2>&1
	done
	for d in ${pgdirs[@]+"${pgdirs[@]}"}; do
		case $d in /var/lib/syncv3/stack-*) rm -rf "$d" ;; esac
	done
}

# up_and_sync HOME: brings a stack up in HOME on free ports and gets one v3
# response through it; prints the private cluster's directory.
up_and_sync() {
	export SYNCV3_HOME=$1
	export SYNCV3_BINDADDR=127.0.0.1:$(free_port) SIMHS_LISTEN=127.0.0.1:$(free_port)
	"$CTL" up >"$T/up.log" 2>&1 || { cat "$T/up.log" >&2; fail "up in '$1'"; }
	wait_for "curl -sf -X POST -H 'Authorization: Bearer syt_alice_demo' \
	    --data '{\"typing\":{\"room_id\":\"!demo:localhost\"}}' \
	    'http://$SYNCV3_BINDADDR/_matrix/client/v3/sync?timeout=0' |
	    jq -e .next_batch" 30 || fail "no v3 response through the stack in '$1'"
	cat "$1/env/SYNCV3_PGDIR"
}

# down_and_check HOME PGDIR: down stops every process, the cluster included.
down_and_check() {
	SYNCV3_HOME=$1 "$CTL" down >/dev/null 2>&1
	wait_for "! pgrep -f -- '-D $2/data' " 10 ||
	    fail "the cluster in $2 still runs after down"
	pgrep -f "runsvdir -P $1/service" >/dev/null && fail "runsvdir still running"
	return 0
}

mkdir -p "$T/with space"
d=$(up_and_sync "$T/with space/stack") || fail "stack with a space"
pgdirs+=("$d")
log "stack in '$T/with space/stack', cluster in '$d'"
assert_eq "$d" "$T/with space/stack/pg" "cluster in the stack when reachable"
down_and_check "$T/with space/stack" "$d"

if [ "$(id -u)" != 0 ]; then
	log "not root: the cluster always lives in the stack"
	it_pass
	exit 0
fi

mkdir -m 700 "$T/hidden"
d=$(up_and_sync "$T/hidden/stack") || fail "stack postgres cannot reach"
pgdirs+=("$d")
log "stack in $T/hidden/stack (mode 700), cluster in $d"
case $d in
/var/lib/syncv3/stack-*) ;;
*) fail "cluster in $d, which postgres cannot reach" ;;
esac
assert_eq "$(stat -c %a "$T/hidden")" 700 "the stack's parent keeps its mode"
SYNCV3_HOME=$T/hidden/stack "$CTL" status 2>&1 | grep -qF "$d" ||
    fail "status does not say where the cluster is"
SYNCV3_HOME=$T/hidden/stack "$CTL" status 2>&1 | grep -q '^run: .*syncv3-postgres' ||
    fail "status does not show the cluster running"
down_and_check "$T/hidden/stack" "$d"

# Same stack, same cluster (data kept across down/up); it was stopped.
d2=$(up_and_sync "$T/hidden/stack") || fail "second up"
assert_eq "$d2" "$d" "the same stack gets the same cluster directory"
down_and_check "$T/hidden/stack" "$d"
it_pass
