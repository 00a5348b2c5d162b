#!/usr/bin/env bash
# it: serial
# A typing list that reaches the api while a request's typing read is in
# Postgres, and that sits above the position the request's round answers
# at (a commit came in between), is shown by that request. It used to be
# neither shown nor woken for: the read took the table's list (newer than
# Postgres's row) but left it out as above the round, and marked it seen,
# so its early notice (already past) and its commit (the same list) woke
# nothing, and the request waited its whole timeout. Under load (typing
# waiting behind a busy Postgres) that was a 30 s typing latency about
# once in 300 changes (issue #13, tests/bench/bench_typing.sh).
source "$(dirname "$0")/lib.sh"

start_stack
alice=$(sim_login @alice:localhost A1)
room=$(sim rooms '{"creator":"@alice:localhost","name":"Above"}' | jq -r .room_id)
other=$(sim rooms '{"creator":"@alice:localhost","name":"Other"}' | jq -r .room_id)
sim "rooms/$room/join" '{"user_id":"@bob:localhost"}' >/dev/null
health() { curl -sf "$API_URL/health"; }
stored() { psql_q "SELECT user_ids FROM syncv3_typing WHERE room_id = '$room'" | jq -c .; }
waiting_on_typing() {
	psql_q "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'syncv3_typing'::regclass"
}

s=$(typing_warm "$alice" "$room") || fail "typing warm-up"
# a restarted api has an empty table: the next typing read goes to Postgres
stop_proc api
start_api
wait_for "[ \"\$(health | jq .gaps)\" -ge 1 ]" 15 || fail "restarted api heard no notice"

# The read waits behind the lock, then a commit moves the position above
# the round's, then the typing change: its early notice fills the table
# while the read still waits (its batch waits on the lock too).
hold_table_lock syncv3_typing 'ACCESS EXCLUSIVE' AccessExclusiveLock 5
t0=$(date +%s%N)
v3 "$alice" "$s" '{}' 15000 >"$T/w.out" &
poll=$!
wait_for "[ \"\$(waiting_on_typing)\" = 1 ]" 10 || fail "the typing read is not waiting on the lock"
p0=$(health | jq .pos)
sim "rooms/$other/send" '{"sender":"@alice:localhost","type":"m.room.message","content":{"msgtype":"m.text","body":"above"}}' >/dev/null
wait_for "[ \"\$(health | jq .pos)\" -gt $p0 ]" 10 || fail "no commit while the read waited"
sim_typing "$room" @bob:localhost
wait_for "[ \"\$(waiting_on_typing)\" = 2 ]" 10 || fail "the typing batch is not behind the lock"
is_running locker || fail "the lock went too early"
wait $poll
ms=$((($(date +%s%N) - t0) / 1000000))
out=$(cat "$T/w.out")
assert_eq "$(last_status)" 200 "the long-poll"
assert_jq "$out" '.typing.user_ids' '["@bob:localhost"]' "woken with the list (after ${ms} ms)"
s=$(printf '%s' "$out" | jq -r .next_batch)
wait "${IT_PIDS[locker]}" 2>/dev/null
unset "IT_PIDS[locker]"

# once stored, the same list is not shown again
wait_for "[ \"\$(stored)\" = '[\"@bob:localhost\"]' ]" 15 || fail "never stored"
out=$(v3 "$alice" "$s" '{}' 0)
assert_jq "$out" 'has("typing")' 'false' "the stored list shown again"
it_pass
