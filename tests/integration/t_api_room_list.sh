#!/usr/bin/env bash
# room_list: pagination over the pinned snapshot (by_recency, by_name with
# spec names and heroes), state_events, timeline, streaming changes, joins
# and leaves.
source "$(dirname "$0")/lib.sh"

export SYNCV3_API_SESSION_IDLE_SECS=600
start_stack
alice=$(sim_login @alice:localhost A1)
mk() { sim rooms "{\"creator\":\"@alice:localhost\"${1:+,\"name\":\"$1\"}}" | jq -r .room_id; }
r1=$(mk "banana"); r2=$(mk "Apple"); r3=$(mk "cherry")
r4=$(mk "")
sim "rooms/$r4/join" '{"user_id":"@bob:localhost","displayname":"Bobby"}' >/dev/null
sim "rooms/$r1/send" '{"sender":"@alice:localhost","type":"m.room.message","content":{"body":"hi"}}' >/dev/null
# wait for the initial sync, then page by name
out=$(v3 "$alice" "" '{"room_list":{"sort":["by_name"],"limit":2,"state_events":[["m.room.create",""]]}}' 10000)
assert_eq "$(last_status)" 200 "page 1"
assert_jq "$out" '[.room_list.rooms[].name]' '["Apple","banana"]' "by_name page 1"
assert_jq "$out" '.room_list.count' '4' "count"
assert_jq "$out" '.room_list.next_page' '"1"' "next_page"
assert_jq "$out" '.room_list.rooms[0].state_events[0].type' '"m.room.create"' "state_events"
assert_jq "$out" '.room_list.rooms[1].timeline[0].content.body' '"hi"' "timeline"
s0=$(printf '%s' "$out" | jq -r .next_batch)
# a change while paginating does not move the snapshot
r5=$(mk "aardvark")
out=$(v3 "$alice" "$s0" '{"room_list":{"next_page":"1"}}' 0)
assert_jq "$out" '[.room_list.rooms[].name]' '["Bobby","cherry"]' "by_name page 2 (heroes)"
assert_jq "$out" '.room_list.next_page' 'null' "last page"
out=$(v3 "$alice" "$s0" '{"room_list":{"next_page":"9"}}' 0)
assert_eq "$(last_status)" 400 "page past the end"
assert_jq "$out" .errcode '"M_INVALID_PARAM"' "page past the end errcode"
# streaming: clear next_page, the new room arrives, then a message in r1
out=$(v3 "$alice" "$s0" '{"room_list":{"next_page":null}}' 5000)
assert_jq "$out" '[.room_list.rooms[].room_id]' "[\"$r5\"]" "new room streamed"
s1=$(printf '%s' "$out" | jq -r .next_batch)
( sleep 0.3; sim "rooms/$r2/send" '{"sender":"@alice:localhost","type":"m.room.message","content":{"body":"yo"}}' >/dev/null ) &
out=$(v3 "$alice" "$s1" '{}' 5000)
assert_jq "$out" "[.room_list.rooms[]|select(.room_id==\"$r2\")|.timeline[-1].content.body]" '["yo"]' "changed room streamed with its new event"
assert_jq "$out" "[.room_list.rooms[]|select(.room_id==\"$r1\" or .room_id==\"$r3\")]|length" '0' "unchanged rooms not streamed"
s2=$(printf '%s' "$out" | jq -r .next_batch)
sim "rooms/$r3/leave" '{"user_id":"@alice:localhost"}' >/dev/null
out=$(v3 "$alice" "$s2" '{}' 5000)
assert_jq "$out" '.room_list.left' "[\"$r3\"]" "left room"
# by_recency (default): the room with the newest event first
out=$(v3 "$alice" "" '{"room_list":{}}' 0)
assert_jq "$out" '.room_list.rooms[0].room_id' "\"$r2\"" "by_recency"
assert_jq "$out" '.room_list.limit' '20' "default limit echoed"
it_pass
