#!/usr/bin/env bash
# A reset together with a leave (lib_order.sh's premise): bob's v3 client
# and sliding sync connection hold the anchors b2, b3; bob leaves, alice
# talks on (a4), then bob's poller catches up and places c1..c3 before
# the anchors. A client inside the gap must get the room as bob left it:
# the leave, nothing after it (a4), never the room as joined, in both
# APIs, and once. (Passes on ad29cfc: v3 lists the room under "left"
# with no timeline, sliding sync sends its leave, not a reset.)
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_order.sh"

sb='{"lists":{"l":{"ranges":[[0,9]],"timeline_limit":20,"required_state":[["m.room.member","*"]]}}}'
late_premise leave
s1=$s p1=$p

sim "rooms/$r/leave" "{\"user_id\":\"$B\"}" >/dev/null
sim "rooms/$r/send" "{\"sender\":\"$A\",\"type\":\"m.room.message\",\"content\":{\"body\":\"a4\"}}" >/dev/null
wait_for "stored a4" 15 || fail "alice's poller did not store a4"
sim fail/clear >/dev/null
wait_for "stored c1 && stored c2 && stored c3" 30 || fail "bob's poller did not store c1..c3"
wait_for "ur_is '$B' '$r' leave" 15 || fail "bob's leave not stored"
[ "$(psql_q "SELECT count(*) FROM syncv3_order_gaps WHERE room_id = '$r'")" -ge 1 ] ||
    fail "no gap recorded (test premise)"

# leave LAST: the event is bob's leave
is_leave='.type == "m.room.member" and .state_key == "@bob:localhost" and .content.membership == "leave"'
out=$(v3 "$bob" "$s1" "$rl" 0)
assert_jq "$out" "[.room_list.rooms[]?|select(.room_id==\"$r\")]|length" 0 "v3: the room is not sent as one bob is in"
assert_jq "$out" ".room_list.left|index([\"$r\"]) != null" true "v3: the room is left"
printf '%s' "$out" | grep -q '"a4"' && fail "v3: an event after the leave: $out"
s2=$(printf '%s' "$out" | jq -r .next_batch)
out=$(v3 "$bob" "$s2" "$rl" 0)
assert_jq "$out" "[(.room_list.rooms[]?|select(.room_id==\"$r\")), (.room_list.left[]?|select(.==\"$r\"))]|length" 0 "v3: the leave is sent once"

out=$(ss "$bob" "$p1" "$sb" 0)
assert_eq "$(last_status)" 200 "ss: the pos inside the gap"
assert_jq "$out" ".rooms[\"$r\"].timeline[-1]|$is_leave" true "ss: the timeline ends with the leave"
assert_jq "$out" "[.rooms[\"$r\"].required_state[]?|select(.type==\"m.room.member\" and .state_key==\"$B\")|.content.membership]" '["leave"]' "ss: bob's membership is the leave"
printf '%s' "$out" | grep -q '"a4"' && fail "ss: an event after the leave: $out"
p2=$(ss_pos "$out")
out=$(ss "$bob" "$p2" "$sb" 0)
assert_jq "$out" ".rooms[\"$r\"]" null "ss: the leave is sent once"
printf '%s' "$out" | grep -q '"a4"' && fail "ss: an event after the leave later: $out"
it_pass
