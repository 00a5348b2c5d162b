#!/usr/bin/env bash
# The launcher brings the whole stack up under runit (private Postgres and
# simulated homeserver included); killing any daemon with SIGKILL gets it
# restarted by runit, and the stack keeps answering v3 requests.
. "$(dirname "$0")/lib.sh"

export SYNCV3_HOME=$T/stack SYNCV3_BUILD=$(dirname "$BIN")
export SYNCV3_BINDADDR=127.0.0.1:$(free_port) SIMHS_LISTEN=127.0.0.1:$(free_port)
export SYNCV3_LOG_LEVEL=debug
unset SYNCV3_DB SYNCV3_SERVER
CTL=$IT_ROOT/deploy/syncv3ctl
it_on_exit() {
	cp "$SYNCV3_HOME"/service/*/log/main/current "$T/" 2>/dev/null
	"$CTL" down >/dev/null 2>&1
}
API_URL=http://$SYNCV3_BINDADDR

"$CTL" up || fail "launcher could not bring the stack up"

svc_pid() {
	sv status "$SYNCV3_HOME/service/$1" |
	    sed -n 's/^run: [^:]*: (pid \([0-9]*\)).*/\1/p'
}

# A v3 request through the whole pipeline, as alice of the demo data.
sync_ok() {
	curl -sf -X POST -H 'Authorization: Bearer syt_alice_demo' \
	    --data '{"typing":{"room_id":"!demo:localhost"}}' \
	    "$API_URL/_matrix/client/v3/sync?timeout=0" | jq -e '.next_batch' >/dev/null
}
wait_for sync_ok 30 || fail "no v3 response through the stack"

for svc in syncv3-accumulator syncv3-poller syncv3-api syncv3-postgres; do
	old=$(svc_pid "$svc")
	[ -n "$old" ] || fail "$svc is not running under runit"
	kill -KILL "$old"
	wait_for "p=\$(svc_pid $svc); [ -n \"\$p\" ] && [ \"\$p\" != $old ]" 20 ||
	    fail "$svc was not restarted after SIGKILL"
	log "$svc: pid $old killed, restarted as $(svc_pid "$svc")"
	wait_for "curl -sf $API_URL/health" 30 || fail "api unhealthy after killing $svc"
done
wait_for sync_ok 30 || fail "no v3 response after the restarts"

"$CTL" down >/dev/null 2>&1
[ -z "$(ls "$SYNCV3_HOME/service" 2>/dev/null)" ] || fail "down left services behind"
pgrep -f "runsvdir -P $SYNCV3_HOME/service" >/dev/null && fail "runsvdir still running after down"
it_pass
