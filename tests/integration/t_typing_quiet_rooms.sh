#!/usr/bin/env bash
# Issue #13 item 2: a typing change alone is ephemeral. Upstream sends
# the room with an empty timeline whose prev_batch names the current
# position; stored as the room's prev_batch, it rewrote the user's room
# row on every typing change (a write per typing body on the quiet path),
# moved prev_batch past the events it had been before, and made a
# room_list stream send the room again with nothing new in it.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_privacy.sh"

stored() {
	wait_for "[ \"\$(psql_q \"SELECT count(*) FROM syncv3_events WHERE type = 'm.room.message' AND (json::json)->'content'->>'body' = '$1'\")\" = 1 ]" 15 ||
	    fail "message $1 not stored"
}
row() { psql_q "SELECT prev_batch || ' ' || updated_pos FROM syncv3_user_rooms WHERE user_id = '$A' AND room_id = '$room'"; }
typing_is() { [ "$(psql_q "SELECT user_ids FROM syncv3_typing WHERE room_id = '$room'")" = "$1" ]; }

room=$(mk "Quiet")
sim "rooms/$room/join" "{\"user_id\":\"$A\"}" >/dev/null
v3 "$bob" "" '{}' 10000 >/dev/null
v3 "$alice" "" '{}' 10000 >/dev/null
say "$room" "hello"
stored "hello"
wait_for "[ \"\$(v3 \"\$alice\" '' '{\"room_list\":{\"limit\":5}}' 0 | jq -r '.room_list.rooms[0].timeline[-1].content.body')\" = hello ]" 15 ||
    fail "the message did not reach the list"
first=$(v3 "$alice" "" '{"room_list":{"limit":5,"timeline_limit":1}}' 0)
s=$(printf '%s' "$first" | jq -r .next_batch)
before=$(row)
pb=$(printf '%s' "$first" | jq -r '.room_list.rooms[0].prev_batch')

for k in 1 2 3; do
	sim "rooms/$room/typing" "{\"user_id\":\"$B\",\"user_ids\":[\"$B\"]}" >/dev/null
	wait_for "typing_is '[\"$B\"]'" 15 || fail "typing $k not stored"
	sim "rooms/$room/typing" "{\"user_id\":\"$B\",\"user_ids\":[]}" >/dev/null
	wait_for "typing_is '[]'" 15 || fail "typing stop $k not stored"
done
assert_eq "$(row)" "$before" "typing alone leaves the user's room row as it was"
out=$(v3 "$alice" "$s" '{}' 0)
assert_jq "$out" '[.room_list.rooms[]?.room_id]' '[]' "typing alone sends no room_list update"
assert_jq "$(v3 "$alice" "" '{"room_list":{"limit":5,"timeline_limit":1}}' 0)" \
    '.room_list.rooms[0].prev_batch' "\"$pb\"" "prev_batch still before the timeline shown"

# a message still moves both
say "$room" "again"
stored "again"
wait_for "[ \"\$(row)\" != \"\$before\" ]" 15 || fail "a message did not change the row"
assert_jq "$(v3 "$alice" "$s" '{}' 0)" '[.room_list.rooms[]?.room_id]' "[\"$room\"]" \
    "a message is a room_list update"
it_pass
