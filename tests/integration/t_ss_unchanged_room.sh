#!/usr/bin/env bash
# A room with nothing new is not sent again (issue #11, [compat] 4): typing
# or another member's receipt comes in extensions only, not as the room
# again with its unread counts unchanged (matrix-rust-sdk would process a
# room update that changes nothing). Counts that did change (the user's
# own read receipt) and new events still send the room.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_ss.sh"

start_stack
alice=$(sim_login @alice:localhost A1)
r=$(sim rooms '{"creator":"@alice:localhost","name":"pub"}' | jq -r .room_id)
sim "rooms/$r/join" '{"user_id":"@bob:localhost"}' >/dev/null
for i in 1 2 3; do sim_msg "$r" @bob:localhost "m$i"; done
body='{"conn_id":"room-list","lists":{"all":{"ranges":[[0,9]],"timeline_limit":1,"required_state":[]}},"extensions":{"typing":{"enabled":true},"receipts":{"enabled":true}}}'
out=$(ss "$alice" "" "$body" 10000)
assert_eq "$(last_status)" 200 "first"
# the first response may precede the last messages: read until m3 is in
for i in 1 2 3 4 5; do
	[ "$(printf '%s' "$out" | jq -r --arg r "$r" '.rooms[$r].timeline[-1].content.body // empty')" = m3 ] && break
	out=$(ss "$alice" "$(ss_pos "$out")" "$body" 3000)
done
assert_jq "$out" ".rooms[\"$r\"].notification_count" '3' "three unread"
p=$(ss_pos "$out")
m3=$(printf '%s' "$out" | jq -r --arg r "$r" '.rooms[$r].timeline[-1].event_id')

# next WHAT: long-polls until the extension WHAT has the room; prints the
# response and leaves its pos in $p
next() {
	local o i
	for i in 1 2 3 4 5; do
		o=$(ss "$alice" "$p" "$body" 5000)
		[ "$(last_status)" = 200 ] || fail "$1: $(last_status) $o"
		p=$(ss_pos "$o")
		printf '%s' "$o" | jq -e --arg r "$r" --arg w "$1" '.extensions[$w].rooms[$r] != null' >/dev/null && break
	done
	printf '%s' "$o"
}
sim_typing "$r" @bob:localhost
out=$(next typing)
assert_jq "$out" ".extensions.typing.rooms[\"$r\"].content.user_ids" '["@bob:localhost"]' "bob types"
assert_jq "$out" ".rooms // {} | has(\"$r\")" 'false' "typing alone: the room is not sent again"
sim_typing "$r"
out=$(next typing)
assert_jq "$out" ".extensions.typing.rooms[\"$r\"].content.user_ids" '[]' "bob stops typing"
assert_jq "$out" ".rooms // {} | has(\"$r\")" 'false' "typing stopped: the room is not sent again"
sim "rooms/$r/receipt" "{\"user_id\":\"@bob:localhost\",\"event_id\":\"$m3\"}" >/dev/null
out=$(next receipts)
assert_jq "$out" ".extensions.receipts.rooms[\"$r\"].content[\"$m3\"][\"m.read\"]|keys" '["@bob:localhost"]' "bob's receipt"
assert_jq "$out" ".rooms // {} | has(\"$r\")" 'false' "another's receipt: the room is not sent again"

# alice reads: her counts change, so the room is sent with them
sim "rooms/$r/receipt" "{\"user_id\":\"@alice:localhost\",\"event_id\":\"$m3\"}" >/dev/null
out=$(next receipts)
if [ "$(printf '%s' "$out" | jq -c --arg r "$r" '.rooms[$r].notification_count')" = null ]; then
	out=$(ss "$alice" "$p" "$body" 3000); p=$(ss_pos "$out")
fi
assert_jq "$out" ".rooms[\"$r\"] | [.notification_count, .highlight_count, .timeline]" '[0,0,null]' "own receipt: the counts, nothing else"
# a new event after all that: sent
sim_msg "$r" @bob:localhost "m4"
out=$(ss "$alice" "$p" "$body" 5000)
assert_jq "$out" "[.rooms[\"$r\"].timeline[]?.content.body, .rooms[\"$r\"].notification_count]" '["m4",1]' "a new event: sent with its count"
it_pass
