#!/usr/bin/env bash
# it: serial
# The typing fast path (issue #13, item 2): a long-poll woken by a typing
# change is answered from the notice (the api's typing table,
# api/ephemeral.c) with no Postgres statement on its path (/health
# "queries" counts every statement the api sends), and says what Postgres
# stores; a member who is kicked is refused from Postgres again (the
# membership notice drops the table's confirmation); an api restarted with
# an empty table answers from Postgres, then fast again; a new accumulator
# epoch (notices may have been lost) empties the table.
source "$(dirname "$0")/lib.sh"

start_stack
alice=$(sim_login @alice:localhost A1)
charlie=$(sim_login @charlie:localhost C1)
room=$(sim rooms '{"creator":"@alice:localhost","name":"Fast"}' | jq -r .room_id)
for u in bob charlie; do
	sim "rooms/$room/join" "{\"user_id\":\"@$u:localhost\"}" >/dev/null
done
typing() { sim_typing "$@"; }
health() { curl -sf "$API_URL/health"; }
stored() { psql_q "SELECT user_ids FROM syncv3_typing WHERE room_id = '$room'" | jq -c .; }

# The first request waits for the initial sync and reads Postgres; the
# second fills the table with alice's membership.
s=$(typing_warm "$alice" "$room") || fail "typing warm-up"

# wake LABEL USERS...: a long-poll, then a typing change; no statement
# between the request waiting and its answer.
wake() {
	local label=$1 q0 q1 want
	shift
	v3 "$alice" "$s" '{}' 10000 >"$T/w.out" &
	local poll=$!
	wait_for "[ \"\$(health | jq .waiters)\" = 1 ]" 15 || fail "$label: not waiting"
	q0=$(health | jq .queries)
	typing "$room" "$@"
	wait $poll
	q1=$(health | jq .queries)
	out=$(cat "$T/w.out")
	want=$(jq -nc '$ARGS.positional | sort' --args "$@")
	assert_jq "$out" '.typing.user_ids' "$want" "$label: woken with the new list"
	assert_eq "$((q1 - q0))" 0 "$label: statements on the typing wake"
	s=$(printf '%s' "$out" | jq -r .next_batch)
	# the answer may come before the commit (t_api_typing_early.sh)
	wait_for "[ \"\$(stored)\" = '$want' ]" 15 ||
	    fail "$label: Postgres stores $(stored)"
	out=$(v3 "$alice" "$s" '{}' 0)
	assert_jq "$out" 'has("typing")' 'false' "$label: not shown again once stored"
	s=$(printf '%s' "$out" | jq -r .next_batch)
}
h0=$(health | jq .typing_table_hits)
wake "bob" @bob:localhost
wake "bob and charlie" @bob:localhost @charlie:localhost
wake "nobody"
[ "$(health | jq .typing_table_hits)" -ge $((h0 + 3)) ] || fail "typing table not used"
log "3 typing wakes, 0 statements"

# Unchanged: a request with nothing new says nothing (from the table too).
out=$(v3 "$alice" "$s" '{}' 0)
assert_jq "$out" 'has("typing")' 'false' "unchanged typing is not repeated"

# A kick of a member the table had confirmed: refused (Postgres decides).
out=$(v3 "$charlie" "" "{\"typing\":{\"room_id\":\"$room\"}}" 0)
sc=$(printf '%s' "$out" | jq -r .next_batch)
out=$(v3 "$charlie" "$sc" '{}' 0)
assert_eq "$(last_status)" 200 "charlie, joined"
sc=$(printf '%s' "$out" | jq -r .next_batch)
h1=$(health | jq .typing_table_hits)
out=$(v3 "$charlie" "$sc" '{}' 0)
[ "$(health | jq .typing_table_hits)" -gt "$h1" ] || fail "charlie's membership not in the table"
sim "rooms/$room/kick" '{"sender":"@alice:localhost","user_id":"@charlie:localhost"}' >/dev/null
wait_for "[ \"\$(psql_q \"SELECT membership FROM syncv3_state WHERE room_id = '$room' AND state_key = '@charlie:localhost' AND to_pos IS NULL\")\" = leave ]" 15 ||
    fail "kick not stored"
sleep 0.3
out=$(v3 "$charlie" "$sc" "{\"typing\":{\"room_id\":\"$room\"}}" 0)
assert_eq "$(last_status)" 403 "typing of a room charlie was kicked from"

# An api restarted has an empty table: Postgres answers, then the table.
typing "$room" @bob:localhost
wait_for "[ \"\$(stored)\" = '[\"@bob:localhost\"]' ]" 15 || fail "typing not stored"
stop_proc api
start_api
# its first notice (a new epoch to it) empties the table: wait for that
wait_for "[ \"\$(health | jq .gaps)\" -ge 1 ]" 15 || fail "restarted api heard no notice"
assert_eq "$(health | jq .typing_table_rooms)" 0 "a new api's table"
out=$(v3 "$alice" "$s" '{}' 0)
assert_jq "$out" '.typing.user_ids' '["@bob:localhost"]' "restarted api: the stored list"
s=$(printf '%s' "$out" | jq -r .next_batch)
wake "after the restart" @charlie:localhost @bob:localhost

# A new accumulator run: notices may have been lost, the table is dropped.
[ "$(health | jq .typing_table_rooms)" -ge 1 ] || fail "table empty before the epoch change"
stop_proc accumulator
start_accumulator
wait_for "[ \"\$(health | jq .typing_table_rooms)\" = 0 ]" 15 ||
    fail "table kept across a new accumulator epoch"
out=$(v3 "$alice" "$s" '{}' 0)
assert_jq "$out" 'has("typing")' 'false' "nothing new after the epoch change"
wake "after the epoch change (table rebuilt)" @bob:localhost
it_pass
