#!/usr/bin/env bash
# Issue #13 item 5: the first room_list page by recency is read from the
# sort keys the accumulator keeps (deploy/sql/012_sortkeys.sql). It must
# follow activity as it moves rooms, count exactly, agree with the full
# computation (next pages, two sorts), show invites by their own time and
# never show a room the user left or was kicked from, even when the room
# stays busy.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_privacy.sh"

# stored BODY: some poller has stored the message with that body (matched
# exactly: a LIKE would also match an event or room id containing it)
stored() {
	wait_for "[ \"\$(psql_q \"SELECT count(*) FROM syncv3_events WHERE type = 'm.room.message' AND (json::json)->'content'->>'body' = '$1'\")\" = 1 ]" 15 ||
	    fail "message $1 not stored"
}
# first LIMIT [SORTS]: a new session's first page
first() { v3 "$alice" "" "{\"room_list\":{\"limit\":$1${2:+,\"sort\":$2}}}" 0; }
ids() { printf '%s' "$1" | jq -c '[.room_list.rooms[].room_id]'; }

r=()
for i in 1 2 3 4 5; do
	r[i]=$(mk "room $i")
	sim "rooms/${r[i]}/join" "{\"user_id\":\"$A\"}" >/dev/null
done
v3 "$bob" "" '{}' 10000 >/dev/null
v3 "$alice" "" '{}' 10000 >/dev/null
for i in 1 2 3 4 5; do
	say "${r[i]}" "m$i"
	sleep 0.05
done
stored m5
wait_for "[ \"\$(first 2 | jq -r .room_list.rooms[0].room_id)\" = ${r[5]} ]" 15 ||
    fail "r5's message did not reach the list"
out=$(first 2)
assert_jq "$out" '.room_list.count' 5 "count"
assert_eq "$(ids "$out")" "[\"${r[5]}\",\"${r[4]}\"]" "newest first"
assert_jq "$out" '.room_list.next_page' '"1"' "next_page"
# the next pages (pinned, the full computation) continue the first one
s=$(printf '%s' "$out" | jq -r .next_batch)
p1=$(v3 "$alice" "$s" '{"room_list":{"next_page":"1"}}' 0)
p2=$(v3 "$alice" "$s" '{"room_list":{"next_page":"2"}}' 0)
assert_eq "$(ids "$p1")" "[\"${r[3]}\",\"${r[2]}\"]" "page 2 continues page 1"
assert_eq "$(ids "$p2")" "[\"${r[1]}\"]" "page 3"
# and the full computation of the same order agrees with the keys
assert_eq "$(ids "$(first 50)")" "$(ids "$(first 50 '["by_recency","by_name"]')")" \
    "keys agree with the full computation"

# activity moves the oldest room to the top
say "${r[1]}" "again1"
stored again1
out=$(first 2)
assert_eq "$(ids "$out")" "[\"${r[1]}\",\"${r[5]}\"]" "activity moves a room up"
assert_jq "$out" '.room_list.count' 5 "count unchanged by activity"

# an invite counts and sorts by the invite's own time (the newest here)
ri=$(mk "Invitation")
say "$ri" "private talk"
sim "rooms/$ri/invite" "{\"sender\":\"$B\",\"user_id\":\"$A\"}" >/dev/null
wait_for "ur_is $A $ri invite" 15 || fail "alice's poller did not see the invite"
out=$(first 2)
assert_jq "$out" '.room_list.count' 6 "invite counted"
assert_jq "$out" '[.room_list.rooms[]|[.room_id, .membership]]' \
    "[[\"$ri\",\"invite\"],[\"${r[1]}\",\"join\"]]" "invite first, by its own time"
assert_eq "$(ids "$(first 50)")" "$(ids "$(first 50 '["by_recency","by_name"]')")" \
    "keys agree with the full computation, with an invite"

# leave the newest joined room, be kicked from another: neither shows,
# however busy bob keeps them
sim "rooms/${r[1]}/leave" "{\"user_id\":\"$A\"}" >/dev/null
sim "rooms/${r[5]}/kick" "{\"sender\":\"$B\",\"user_id\":\"$A\"}" >/dev/null
wait_for "ur_is $A ${r[1]} leave && ur_is $A ${r[5]} leave" 15 ||
    fail "alice's pollers did not see her leave"
say "${r[1]}" "after leave"
say "${r[5]}" "after kick"
stored "after kick"
stored "after leave"
out=$(first 50)
assert_jq "$out" '.room_list.count' 4 "left rooms not counted"
assert_jq "$out" "[.room_list.rooms[]|select(.room_id==\"${r[1]}\" or .room_id==\"${r[5]}\")]" '[]' \
    "left and kicked rooms never shown"
assert_eq "$(ids "$out")" "[\"$ri\",\"${r[4]}\",\"${r[3]}\",\"${r[2]}\"]" "the rest in order"
assert_eq "$(ids "$out")" "$(ids "$(first 50 '["by_recency","by_name"]')")" \
    "keys agree with the full computation after leaving"
# a rejoin brings the room back, by its newest event
sim "rooms/${r[1]}/join" "{\"user_id\":\"$A\"}" >/dev/null
wait_for "ur_is $A ${r[1]} join" 15 || fail "alice's poller did not see her rejoin"
wait_for "[ \"\$(first 50 | jq .room_list.count)\" = 5 ]" 15 || fail "rejoin not counted"
assert_eq "$(ids "$(first 50)")" "$(ids "$(first 50 '["by_recency","by_name"]')")" \
    "keys agree with the full computation after a rejoin"
it_pass
