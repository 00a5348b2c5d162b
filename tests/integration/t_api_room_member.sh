#!/usr/bin/env bash
# room_member: seed scenarios (pagination by_name over a pinned snapshot,
# by_pl, streaming deltas in position order, limit) and visibility after leaving.
source "$(dirname "$0")/lib.sh"

start_stack
alice=$(sim_login @alice:localhost A1)
room=$(sim rooms '{"creator":"@alice:localhost","name":"Big"}' | jq -r .room_id)
for u in bob charlie doris eve; do sim "rooms/$room/join" "{\"user_id\":\"@$u:localhost\"}" >/dev/null; done
v3 "$alice" "" '{}' 10000 >/dev/null
out=$(v3 "$alice" "" "{\"room_member\":{\"room_id\":\"$room\",\"limit\":2,\"sort\":\"by_name\"}}" 0)
assert_jq "$out" '[.room_member.events[].state_key]' '["@alice:localhost","@bob:localhost"]' "page 0"
assert_jq "$out" '.room_member.limit' '2' "limit echoed"
s0=$(printf '%s' "$out" | jq -r .next_batch)
sim "rooms/$room/join" '{"user_id":"@aaron:localhost"}' >/dev/null
out=$(v3 "$alice" "$s0" '{"room_member":{"next_page":"1"}}' 0)
assert_jq "$out" '[.room_member.events[].state_key]' '["@charlie:localhost","@doris:localhost"]' "page 1 (snapshot pinned)"
out=$(v3 "$alice" "$s0" '{"room_member":{"next_page":"2"}}' 0)
assert_jq "$out" '[.room_member.events[].state_key]' '["@eve:localhost"]' "page 2"
assert_jq "$out" '.room_member.next_page' 'null' "last page"
out=$(v3 "$alice" "" "{\"room_member\":{\"room_id\":\"$room\"}}" 0)
assert_jq "$out" '.room_member.events[0].state_key' '"@alice:localhost"' "by_pl: creator first"
assert_jq "$out" '.room_member.sort' '"by_pl"' "sort echoed"
# streaming deltas after the pinned snapshot, position order, limit 2
out=$(v3 "$alice" "$s0" '{"room_member":{"next_page":null}}' 5000)
assert_jq "$out" '[.room_member.events[].state_key]' '["@aaron:localhost"]' "delta"
s1=$(printf '%s' "$out" | jq -r .next_batch)
for u in zed yan xav; do sim "rooms/$room/join" "{\"user_id\":\"@$u:localhost\"}" >/dev/null; done
sleep 0.5
out=$(v3 "$alice" "$s1" '{"room_member":{"limit":2}}' 5000)
assert_jq "$out" '[.room_member.events[].state_key]' '["@zed:localhost","@yan:localhost"]' "deltas in order, limited"
s2=$(printf '%s' "$out" | jq -r .next_batch)
out=$(v3 "$alice" "$s2" '{}' 5000)
assert_jq "$out" '[.room_member.events[].state_key]' '["@xav:localhost"]' "rest"
# eve leaves: she still sees the room up to her leave, not after
eve=$(sim_login @eve:localhost E1)
v3 "$eve" "" '{}' 10000 >/dev/null
sim "rooms/$room/leave" '{"user_id":"@eve:localhost"}' >/dev/null
sleep 0.5
sim "rooms/$room/join" '{"user_id":"@late:localhost"}' >/dev/null
sleep 0.5
out=$(v3 "$eve" "" "{\"room_member\":{\"room_id\":\"$room\",\"limit\":100}}" 0)
assert_eq "$(last_status)" 200 "left user may read up to the leave"
assert_jq "$out" '[.room_member.events[].state_key]|index("@late:localhost")' 'null' "nothing after the leave"
it_pass
