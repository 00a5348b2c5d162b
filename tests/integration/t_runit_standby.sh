#!/usr/bin/env bash
# it: serial
# The launcher with SYNCV3_ACCUMULATORS=2 (issue #15): two accumulator
# services, each bound to its own entry of the SYNCV3_INGEST and
# SYNCV3_NOTICES lists the pollers and the api connect to; one is the
# writer, the other stands by. Freeze the writer
# frozen (SIGSTOP), the standby fences it and takes over, and the thawed
# one stands by; SIGKILL the new writer, and runit's restart or the
# standby takes over. Typing sent upstream still reaches a v3 client.
. "$(dirname "$0")/lib.sh"

export SYNCV3_HOME=$T/stack SYNCV3_BUILD=$(dirname "$BIN")
export SYNCV3_BINDADDR=127.0.0.1:$(free_port) SIMHS_LISTEN=127.0.0.1:$(free_port)
export SYNCV3_ACCUMULATORS=2 SYNCV3_LOG_LEVEL=info
unset SYNCV3_DB SYNCV3_SERVER SYNCV3_INGEST SYNCV3_NOTICES
CTL=$IT_ROOT/deploy/syncv3ctl
it_on_exit() {
	for d in "$SYNCV3_HOME"/service/*/; do
		cp "$d/log/main/current" "$T/$(basename "$d").log" 2>/dev/null
	done
	"$CTL" down >/dev/null 2>&1
}
API_URL=http://$SYNCV3_BINDADDR
SIMHS_URL=http://$SIMHS_LISTEN

"$CTL" up || fail "launcher could not bring the stack up"
svc_pid() {
	sv status "$SYNCV3_HOME/service/$1" |
	    sed -n 's/^run: [^:]*: (pid \([0-9]*\)).*/\1/p'
}
logof() { cat "$SYNCV3_HOME/service/$1/log/main/current" 2>/dev/null; }
# writer: the service holding the writer lock now, by its liveness row
writer() {
	"$(pg_bindir)/psql" "$(cat "$SYNCV3_HOME/env/SYNCV3_DB")" -XAtq -c \
	    "SELECT a.owner FROM syncv3_accumulator a JOIN pg_locks l ON l.pid = a.backend_pid AND l.locktype = 'advisory' AND l.granted" 2>/dev/null |
	    sed -n 's|.*/ingest\(-[0-9]*\)\{0,1\}\.sock$|syncv3-accumulator\1|p'
}
assert_eq "$(cat "$SYNCV3_HOME/env/SYNCV3_INGEST")" \
    "ipc://$SYNCV3_HOME/run/ingest.sock,ipc://$SYNCV3_HOME/run/ingest-2.sock" "the pollers' and api's list"
wait_for '[ -n "$(svc_pid syncv3-accumulator-2)" ]' 20 || fail "no second accumulator service"
wait_for '[ "$(writer | wc -l)" = 1 ]' 30 || fail "not exactly one writer: $(writer)"
w=$(writer)
other=syncv3-accumulator
[ "$w" = syncv3-accumulator ] && other=syncv3-accumulator-2
logof "$w" | grep -q "listening on ipc://$SYNCV3_HOME/run/ingest${w#syncv3-accumulator}.sock" ||
    fail "$w did not bind its own entry"

# typing set upstream (bob types in the demo data, so another list)
# shows up in a v3 long-poll: the whole pipeline
# Each try first clears the list upstream: the accumulator stores (and
# notifies) typing only when the list changes, so a try whose long poll
# ended before a slow restart had stored the list would otherwise leave
# every later try with nothing new to see.
typing_seen() {
	local since
	curl -sf -m 5 -X POST -H 'Content-Type: application/json' \
	    --data '{"user_ids":[]}' \
	    "$SIMHS_URL/_simhs/rooms/!demo:localhost/typing" >/dev/null || return 1
	sleep 0.5
	since=$(curl -sf -m 15 -X POST -H 'Authorization: Bearer syt_alice_demo' \
	    --data '{"typing":{"room_id":"!demo:localhost"}}' \
	    "$API_URL/_matrix/client/v3/sync?timeout=0" | jq -r .next_batch) || return 1
	curl -sf -X POST -H 'Content-Type: application/json' \
	    --data "{\"user_ids\":[\"$1\"]}" \
	    "$SIMHS_URL/_simhs/rooms/!demo:localhost/typing" >/dev/null || return 1
	curl -sf -m 15 -X POST -H 'Authorization: Bearer syt_alice_demo' --data '{}' \
	    "$API_URL/_matrix/client/v3/sync?timeout=10000&since=$since" |
	    jq -e --arg u "$1" '.typing.user_ids | index($u)' >/dev/null
}
wait_for 'typing_seen @alice:localhost' 30 || fail "no typing through the stack"
# frozen (runit sees nothing wrong): the standby fences it and takes over
old=$(svc_pid "$w")
kill -STOP "$old"
wait_for '[ "$(writer)" = "$other" ]' 10 || fail "$other did not take over from the frozen $w"
log "$w (pid $old) frozen: $other is the writer"
kill -CONT "$old"
wait_for "logof $w | grep -q 'another accumulator is the writer; standing by'" 10 ||
    fail "the thawed $w does not stand by"
assert_eq "$(svc_pid "$w")" "$old" "the thawed $w kept running"
wait_for 'typing_seen @bob:localhost' 30 || fail "no typing through the stack after the takeover"
# killed: runit restarts it at once, so the standby or the restarted
# process becomes the writer, whichever takes the lock first
old=$(svc_pid "$other")
kill -KILL "$old"
wait_for "p=\$(svc_pid $other); [ -n \"\$p\" ] && [ \"\$p\" != $old ]" 20 || fail "$other was not restarted"
wait_for '[ "$(writer | wc -l)" = 1 ]' 20 || fail "not exactly one writer after the kill: $(writer)"
log "$other (pid $old) killed: $(writer) is the writer"
wait_for 'typing_seen @alice:localhost' 30 || fail "no typing through the stack after the kill"
"$CTL" down >/dev/null 2>&1
it_pass
