#!/usr/bin/env bash
# unsigned.transaction_id reaches only the device that sent the event
# (client-server spec, the unsigned object; issues #9/#11): alice's device
# A sends with txn "t1" through the api; upstream only A's own sync
# carries it (as Synapse does); the proxy stores the event without it and
# gives it back in A's v3 room_list and sliding sync timelines, and never
# to alice's device B, to bob, or to a sliding sync connection of bob,
# whichever poller delivered the event first.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_ss.sh"

start_stack
A=$(sim_login @alice:localhost ADEV)
B=$(sim_login @alice:localhost BDEV)
BOB=$(sim_login @bob:localhost BOBDEV)
room=$(sim rooms '{"creator":"@alice:localhost","name":"txn"}' | jq -r .room_id)
sim "rooms/$room/join" '{"user_id":"@bob:localhost"}' >/dev/null
RL='{"room_list":{"timeline_limit":5}}'
for t in "$A" "$B" "$BOB"; do
	v3 "$t" "" "$RL" 10000 >/dev/null
	assert_eq "$(last_status)" 200 "initial sync stored"
done

# send TOKEN TXN: PUT .../send through the api; prints the event id.
enc=$(jq -rn --arg r "$room" '$r|@uri')
send() {
	curl -sS -X PUT -H "Authorization: Bearer $1" -H 'Content-Type: application/json' \
	    -d "{\"msgtype\":\"m.text\",\"body\":\"$2\"}" \
	    "$API_URL/_matrix/client/v3/rooms/$enc/send/m.room.message/$2" | jq -r .event_id
}
# tl_txn FILTER EVENT: the event's unsigned.transaction_id from a
# timeline, as JSON; "absent" while the event is not there.
tl_txn() { jq -c "[$1|select(.event_id==\"$2\")]|if length==0 then \"absent\" else .[0].unsigned.transaction_id end"; }
up_txn() { curl -sS -H "Authorization: Bearer $1" "$SIMHS_URL/_matrix/client/v3/sync" | tl_txn ".rooms.join[\"$room\"].timeline.events[]" "$2"; }
v3_txn() { v3 "$1" "" "$RL" 0 | tl_txn ".room_list.rooms[]|select(.room_id==\"$room\")|.timeline[]" "$2"; }
ss_txn() {
	ss "$1" "" '{"lists":{"l":{"ranges":[[0,9]],"timeline_limit":5}}}' 0 |
	    tl_txn ".rooms[\"$room\"].timeline[]?" "$2"
}
# hold TOKEN...: each device's next upstream /sync is answered 4 s late;
# a message makes every poller ask again, and the held ones' next ask is
# the late one, so the others store what is sent meanwhile first.
hold() {
	local t w
	for t in "$@"; do
		sim fail "{\"path\":\"sync\",\"access_token\":\"$t\",\"mode\":\"slow\",\"delay_ms\":4000}" >/dev/null
	done
	w=$(sim "rooms/$room/send" "{\"sender\":\"@bob:localhost\",\"type\":\"m.room.message\",\"content\":{\"body\":\"wake\"}}" | jq -r .event_id)
	for t in "$@"; do
		wait_for '[ "$(v3_txn "$t" "$w")" != "\"absent\"" ]' 10 || fail "held device never got the wake-up"
	done
}

# 1: device A's poller stores the event first (the leak: old code kept
# its transaction id in the bytes everyone gets)
hold "$B" "$BOB"
ev=$(send "$A" t1)
[ -n "$ev" ] && [ "$ev" != null ] || fail "send through the api"
# upstream, like Synapse: only the sending device's own sync has it
assert_eq "$(up_txn "$A" "$ev")" '"t1"' "simhs: the sender's device sees its txn id"
assert_eq "$(up_txn "$B" "$ev")" 'null' "simhs: the sender's other device does not"
assert_eq "$(up_txn "$BOB" "$ev")" 'null' "simhs: another user does not"
wait_for '[ "$(v3_txn "$A" "$ev")" != "\"absent\"" ]' 10 || fail "device A never got t1"
assert_eq "$(psql_q "SELECT count(*) FROM syncv3_events WHERE json LIKE '%transaction_id%'")" 0 \
    "stored without the transaction id though its sender's poller stored it"
assert_eq "$(v3_txn "$A" "$ev")" '"t1"' "device A's v3 timeline shows t1"
assert_eq "$(ss_txn "$A" "$ev")" '"t1"' "device A's sliding sync shows t1"
wait_for '[ "$(v3_txn "$B" "$ev")" != "\"absent\"" ]' 10 || fail "device B never got t1"
wait_for '[ "$(v3_txn "$BOB" "$ev")" != "\"absent\"" ]' 10 || fail "bob never got t1"
assert_eq "$(v3_txn "$B" "$ev")" 'null' "alice's other device: no transaction_id (v3)"
assert_eq "$(v3_txn "$BOB" "$ev")" 'null' "bob: no transaction_id (v3)"
assert_eq "$(ss_txn "$BOB" "$ev")" 'null' "bob's sliding sync: no transaction_id"
assert_eq "$(ss_txn "$B" "$ev")" 'null' "device B's sliding sync: no transaction_id"
assert_eq "$(psql_q "SELECT (json::jsonb)->'content'->>'body' FROM syncv3_events WHERE event_id = '$ev'")" t1 \
    "the rest of the event is stored"
assert_eq "$(psql_q "SELECT user_id || ' ' || device_id || ' ' || txn_id FROM syncv3_txns t JOIN syncv3_events e USING (nid) WHERE e.event_id = '$ev'")" \
    "@alice:localhost ADEV t1" "txn id recorded for the sending device"

# 2: another poller stores it first; device A's own sync brings the id later
hold "$A"
ev=$(send "$A" t2)
[ -n "$ev" ] && [ "$ev" != null ] || fail "send t2 through the api"
wait_for '[ "$(v3_txn "$BOB" "$ev")" != "\"absent\"" ]' 10 || fail "bob never got t2"
assert_eq "$(v3_txn "$BOB" "$ev")" 'null' "bob: no transaction_id for t2"
wait_for '[ "$(v3_txn "$A" "$ev")" = "\"t2\"" ]' 10 ||
    fail "device A lacks t2 when another poller stored it first: $(v3_txn "$A" "$ev")"
assert_eq "$(ss_txn "$A" "$ev")" '"t2"' "device A's sliding sync shows t2"
assert_eq "$(ss_txn "$B" "$ev")" 'null' "device B's sliding sync: no t2"
assert_eq "$(psql_q "SELECT count(*) FROM syncv3_events WHERE json LIKE '%transaction_id%'")" 0 \
    "no stored event carries a transaction id"
it_pass
