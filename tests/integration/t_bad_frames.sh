#!/usr/bin/env bash
# Bad input between the daemons: a broken poller (junk on the ingest
# socket), a broken accumulator as seen by the api (junk notices) and by a
# poller (junk acks). Each daemon logs the rejection, keeps running, and
# the pipeline still carries data afterwards.
. "$(dirname "$0")/lib.sh"
start_stack
ZJ=$BIN/syncv3-zjunk
ROOM=$(sim rooms '{"creator":"@alice:localhost","name":"frames"}' | jq -r .room_id)
TOKEN=$(sim_login @alice:localhost ADEV)

typing_roundtrip() { # LIST_JSON: set typing upstream and see it through the api
	local r since
	r=$(v3 "$TOKEN" "" "{\"typing\":{\"room_id\":\"$ROOM\"}}" 10000)
	since=$(printf '%s' "$r" | jq -r .next_batch)
	sim "rooms/$ROOM/typing" "{\"user_ids\":$1}" >/dev/null
	r=$(v3 "$TOKEN" "$since" '{}' 10000)
	assert_jq "$r" '.typing.user_ids' "$1" "typing after junk"
}
typing_roundtrip '["@alice:localhost"]'

# 1. Junk from a "poller": the accumulator rejects it and stays up. Only
# envelopes that decode get an answer, and every answer is a nack.
out=$("$ZJ" dealer "$SYNCV3_INGEST" 44)
is_running accumulator || fail "accumulator died on junk frames"
case $out in "replies "*" ok 0") ;; *) fail "junk was acked: $out" ;; esac
[ "$(psql_q "SELECT count(*) FROM syncv3_events")" -gt 0 ] || fail "no events"
grep -qiE 'bad|malformed|reject|invalid|drop' "$T/accumulator.log" ||
    fail "accumulator logged no rejection"
typing_roundtrip '["@bob:localhost"]'

# 2. Junk notices: point a second api at a junk publisher.
stop_proc api
ep="ipc://$T/junk-notices.sock"
"$ZJ" pub "$ep" 70 >"$T/zjunk-pub.log" 2>&1 &
jpid=$!
SYNCV3_NOTICES=$ep start_api
wait $jpid
is_running api || fail "api died on junk notices"
r=$(v3 "$TOKEN" "" "{\"typing\":{\"room_id\":\"$ROOM\"}}" 0)
assert_eq "$(last_status)" 200 "api still serves after junk notices"
stop_proc api
start_api

# 3. Junk acks: a poller whose accumulator answers garbage keeps running
# and does not advance (nothing is lost: the real accumulator gets the data
# once the poller talks to it again).
stop_proc poller
ep="ipc://$T/junk-ingest.sock"
"$ZJ" router "$ep" 4 >"$T/zjunk-router.log" 2>&1 &
jpid=$!
sim "rooms/$ROOM/typing" '{"user_ids":["@carol:localhost"]}' >/dev/null
SYNCV3_INGEST=$ep start_poller poller
wait $jpid
is_running poller || fail "poller died on junk acks"
stop_proc poller
start_poller poller
r=$(v3 "$TOKEN" "" "{\"typing\":{\"room_id\":\"$ROOM\"}}" 10000)
wait_for "v3 '$TOKEN' '' '{\"typing\":{\"room_id\":\"$ROOM\"}}' 0 | jq -e '.typing.user_ids == [\"@carol:localhost\"]'" 15 ||
    fail "data fetched during the junk-ack period was not delivered"
typing_roundtrip '["@dave:localhost"]'
it_pass
