#!/usr/bin/env bash
# A catch-up notice that reaches the poller while it runs a lease query
# (issue #13 item 1, docs/DESIGN.md "Sibling devices"). A blocking libpq
# query reads what the server sent before its result, NOTIFYs included,
# and leaves the socket empty: the poller's LISTEN event did not fire for
# such a notice, so the sibling was never restarted and the new device
# stayed unsynced until the next notice of any kind or its refill (a new
# device answered after 45 s in bench_cold.sh). Here the notice is made to
# arrive while the poller's claim is blocked on a lock: the accumulator is
# held (syncv3_position locked) with the new device's first body queued,
# the poller's next lease query is held (syncv3_pollers locked), then the
# accumulator goes on and commits (NOTIFY syncv3_catchup), then the
# poller does. The new device must become synced by its sibling's
# catch-up (no refill: the sibling wait is 10 minutes) and be answered.
source "$(dirname "$0")/lib.sh"

export SYNCV3_API_SESSION_IDLE_SECS=600
export SYNCV3_SIBLING_WAIT_MS=600000
# the poller is frozen in a query for a while: not dead for the others
export SYNCV3_TAKEOVER_MS=60000 SYNCV3_LEASE_SECS=120
start_stack
U=@alice:localhost
LIST='{"room_list":{"limit":20,"timeline_limit":5},"to_device":{}}'
synced() { [ "$(psql_q "SELECT is_initial_done FROM syncv3_devices WHERE user_id='$U' AND device_id='$1'")" = t ]; }
# lock_table NAME TABLE MODE: psql process NAME holds the lock until killed
lock_table() {
	start_proc "$1" "$(pg_bindir)/psql" -h "$IT_PGHOST" -U postgres \
	    -d "${SYNCV3_DB##*dbname=}" -XAtq -v ON_ERROR_STOP=1 \
	    -c "BEGIN; LOCK TABLE $2 IN $3 MODE; SELECT pg_sleep(120); COMMIT"
	wait_for "[ \"\$(psql_q \"SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = '$2' AND l.granted AND l.mode LIKE '%Exclusive%' AND l.pid <> pg_backend_pid()\")\" -ge 1 ]" 10 ||
	    fail "no lock on $2"
}
# waiters TABLE: sessions waiting for a lock on TABLE
waiters() { psql_q "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = '$1' AND NOT l.granted"; }
# unlock TABLE: ends the session holding TABLE's lock
unlock() {
	psql_q "SELECT pg_terminate_backend(l.pid) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = '$1' AND l.granted AND l.mode LIKE '%Exclusive%' AND l.pid <> pg_backend_pid()" >/dev/null
}

r1=$(sim rooms "{\"creator\":\"$U\",\"name\":\"one\"}" | jq -r .room_id)
sim "rooms/$r1/send" "{\"sender\":\"$U\",\"type\":\"m.room.message\",\"content\":{\"body\":\"hi\"}}" >/dev/null
tokA=$(sim_login $U A1)
v3 "$tokA" "" '{}' 10000 >/dev/null
assert_eq "$(last_status)" 200 "A registered"
wait_for "synced A1 && [ \"\$(psql_q \"SELECT poll_state FROM syncv3_devices WHERE device_id='A1'\")\" = polling ]" 10 ||
	fail "A1 not synced and polling"
sleep 0.5 # A1 parked in its long-poll

lock_table lock_pos syncv3_position EXCLUSIVE
tokB=$(sim_login $U B1)
(v3 "$tokB" "" "$LIST" 0 >"$T/outB"; last_status >"$T/statusB") &
bg=$!
# B1's sibling-first body is sent and waits behind the lock
wait_for "[ \"\$(curl -sS \"$SIMHS_URL/_simhs/sync_log?access_token=$tokB\" | jq '.requests|length')\" -ge 1 ]" 10 ||
	fail "B1 never polled"
wait_for "[ \"\$(waiters syncv3_position)\" -ge 1 ]" 10 || fail "accumulator not held"
lock_table lock_pollers syncv3_pollers 'ACCESS EXCLUSIVE'
wait_for "[ \"\$(waiters syncv3_pollers)\" -ge 1 ]" 10 || fail "poller not held"
unlock syncv3_position
wait_for "[ -n \"\$(psql_q \"SELECT since FROM syncv3_devices WHERE device_id='B1'\")\" ]" 10 ||
	fail "B1's first body not committed"
synced B1 && fail "B1 synced before any catch-up"
sleep 0.3 # the notice reaches the poller's session, busy in its query
unlock syncv3_pollers
wait_for "synced B1" 15 || fail "B1 not synced: the catch-up notice was lost"
wait "$bg"
assert_eq "$(cat "$T/statusB")" 200 "B answered"
assert_jq "$(cat "$T/outB")" "[.room_list.rooms[].room_id]" "[\"$r1\"]" "B's rooms"
grep -q "B1: no sibling caught up" "$T/poller.log" && fail "B1 refilled"
it_pass
