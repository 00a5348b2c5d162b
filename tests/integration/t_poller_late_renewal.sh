#!/usr/bin/env bash
# it: serial
# A liveness renewal sent past the poller's deadline but before its row
# expired (a loop held by a large body, or a loaded machine: the
# renewal's own round trip) keeps the poller's devices. The poller stops
# its requests at the deadline and lets Postgres decide: the row had not
# expired, so nobody could take a device, and a body waiting for its ack
# is not thrown away (before: the poller lapsed without asking, dropped
# the device and fetched its initial sync again from scratch).
# The poller is frozen (SIGSTOP) just after a renewal for longer than the
# deadline (3/4 of SYNCV3_TAKEOVER_MS) and shorter than the row's life,
# while its initial sync waits for the frozen accumulator's ack.
source "$(dirname "$0")/lib.sh"

export SYNCV3_TAKEOVER_MS=4000 SYNCV3_API_INITIAL_WAIT_MS=1000
FREEZE_S=3.4 # deadline 3 s, row 4 s after the renewal before the freeze
it_setup
start_simhs
start_accumulator
start_poller poller
start_api

sc=$(sim scenario '{"users":1,"rooms_per_user":5,"members_per_room":2,"messages_per_room":3,"prefix":"late"}')
user=$(printf '%s' "$sc" | jq -r '.users[0].user_id')
tok=$(sim_login "$user" LATEDEV)
initials() {
	sim_get "sync_log?access_token=$tok" |
	    jq '[.requests[] | select(.query | test("since=") | not)] | length'
}
kill -STOP "${IT_PIDS[accumulator]}"
v3 "$tok" "" '{"room_list":{"limit":1}}' 0 >/dev/null
wait_for '[ "$(initials)" -ge 1 ]' 20 || fail "the initial sync was never fetched"
sleep 0.5 # its body is published and waits for the ack

expires() { psql_q "SELECT expires FROM syncv3_pollers"; }
e0=$(expires)
wait_for '[ "$(expires)" != "$e0" ]' 10 || fail "no liveness renewal"
kill -STOP "${IT_PIDS[poller]}"
sleep "$FREEZE_S"
kill -CONT "${IT_PIDS[poller]}"
wait_for "grep -q 'liveness kept' '$T/poller.log'" 10 ||
	fail "no renewal after the thaw: $(grep -E 'liveness' "$T/poller.log" | tail -3)"
kill -CONT "${IT_PIDS[accumulator]}"
stored() { [ "$(psql_q "SELECT is_initial_done FROM syncv3_devices WHERE device_id = 'LATEDEV'")" = t ]; }
wait_for stored 30 || fail "the initial sync was never stored"

if grep -E "liveness (lost|not renewed)|stopping all" "$T/poller.log" >"$T/lapses"; then
	fail "the poller lapsed: $(head -3 "$T/lapses")"
fi
assert_eq "$(initials)" 1 "the initial sync was fetched once"
assert_eq "$(psql_q 'SELECT incarnation FROM syncv3_pollers')" 1 "the poller's incarnation"
# polling goes on after the thaw: the ack lets the next request out
polls() {
	sim_get "sync_log?access_token=$tok" |
	    jq '[.requests[] | select(.query | test("since="))] | length'
}
wait_for '[ "$(polls)" -ge 1 ]' 20 || fail "the device is not polled after the thaw"
it_pass
