#!/usr/bin/env bash
# it: serial
# Typing before the commit (issue #13, item 2; docs/DESIGN.md contract 3,
# the exception for typing): while a psql session holds a lock the
# accumulator's batch needs (syncv3_typing), a long-polling client still
# gets the new typing list, from the early notice, with no statement of
# the api on its path; once the lock goes and the batch commits, the
# commit of the same list wakes nobody (a long-poll with the token from
# the early answer waits its whole timeout and says no typing) and a
# request with that token shows nothing again; then an api restarted
# (empty table, Postgres answers) does not show the stored list again
# either.
source "$(dirname "$0")/lib.sh"

start_stack
alice=$(sim_login @alice:localhost A1)
room=$(sim rooms '{"creator":"@alice:localhost","name":"Early"}' | jq -r .room_id)
sim "rooms/$room/join" '{"user_id":"@bob:localhost"}' >/dev/null
health() { curl -sf "$API_URL/health"; }
stored() { psql_q "SELECT user_ids FROM syncv3_typing WHERE room_id = '$room'" | jq -c .; }

# The first request reads Postgres, the second fills the typing table
# with alice's membership (as in t_api_typing_fast.sh).
s=$(typing_warm "$alice" "$room") || fail "typing warm-up"

# early LABEL USERS...: with the batch held behind the lock, a long-poll
# is woken by a typing change with the new list before Postgres has it.
early() {
	local label=$1 q0 q1 w0 want
	shift
	want=$(jq -nc '$ARGS.positional | sort' --args "$@")
	hold_table_lock syncv3_typing SHARE ShareLock 4
	v3 "$alice" "$s" '{}' 10000 >"$T/w.out" &
	local poll=$!
	wait_for "[ \"\$(health | jq .waiters)\" = 1 ]" 15 || fail "$label: not waiting"
	q0=$(health | jq .queries)
	sim_typing "$room" "$@"
	wait $poll
	q1=$(health | jq .queries)
	out=$(cat "$T/w.out")
	assert_jq "$out" '.typing.user_ids' "$want" "$label: woken with the new list"
	[ "$(stored)" != "$want" ] || fail "$label: the answer waited for the commit"
	is_running locker || fail "$label: the lock went before the answer"
	assert_eq "$((q1 - q0))" 0 "$label: statements on the early wake"
	s=$(printf '%s' "$out" | jq -r .next_batch)

	# the commit of the same list: no second wake, nothing shown again
	w0=$(health | jq .wakeups)
	v3 "$alice" "$s" '{}' 6000 >"$T/w2.out" &
	poll=$!
	wait_for "[ \"\$(stored)\" = '$want' ]" 15 || fail "$label: never stored"
	wait $poll
	assert_eq "$(last_status)" 200 "$label: the long-poll after the commit"
	assert_jq "$(cat "$T/w2.out")" 'has("typing")' 'false' \
	    "$label: the stored list is not shown again"
	assert_eq "$(health | jq .wakeups)" "$w0" "$label: woken by the commit"
	s=$(jq -r .next_batch "$T/w2.out")
	# the next request: still nothing, and its token names the row
	out=$(v3 "$alice" "$s" '{}' 0)
	assert_jq "$out" 'has("typing")' 'false' "$label: shown again once stored"
	s=$(printf '%s' "$out" | jq -r .next_batch)
	wait "${IT_PIDS[locker]}" 2>/dev/null
	unset "IT_PIDS[locker]"
}
early "bob" @bob:localhost
early "bob and alice" @alice:localhost @bob:localhost
early "nobody"
log "3 typing changes answered while their batch waited on a lock"

# An api restarted answers from Postgres: the list a token has seen (and
# a request has since moved to its row) is not shown again.
early "bob again" @bob:localhost
stop_proc api
start_api
wait_for "[ \"\$(health | jq .gaps)\" -ge 1 ]" 15 || fail "restarted api heard no notice"
out=$(v3 "$alice" "$s" '{}' 0)
assert_eq "$(last_status)" 200 "restarted api"
assert_jq "$out" 'has("typing")' 'false' "restarted api: the stored list again"
it_pass
