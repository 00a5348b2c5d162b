#!/usr/bin/env bash
# A leave that alice's own sync reports (rooms.leave) without its event,
# so no poller stores it in the room's state (the simulator's
# sync_without_event): while she is away bob keeps the room busy; after
# she rejoins, what happened in between must stay hidden from her, as
# with a leave whose event arrived (t_api_privacy.sh).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_privacy.sh"

r=$(mk "gap")
sim "rooms/$r/join" "{\"user_id\":\"$A\"}" >/dev/null
say $r "before"
v3 "$bob" "" '{}' 10000 >/dev/null
out=$(v3 "$alice" "" '{"room_list":{"timeline_limit":10}}' 10000)
assert_jq "$out" '.room_list.count' 1 "alice's room"
wait_for "ur_is $A $r join" 15 || fail "alice's poller did not see her join"

sim "rooms/$r/leave" "{\"user_id\":\"$A\",\"sync_without_event\":true}" >/dev/null
wait_for "ur_is $A $r leave" 15 || fail "alice's poller did not see her leave"
assert_eq "$(psql_q "SELECT count(*) FROM syncv3_events WHERE room_id = '$r' AND state_key = '$A' AND membership = 'leave'")" 0 \
    "the leave event is stored nowhere"
say $r "after"
sim "rooms/$r/send" "{\"sender\":\"$B\",\"type\":\"m.room.name\",\"state_key\":\"\",\"content\":{\"name\":\"secret\"}}" >/dev/null
sim "rooms/$r/join" '{"user_id":"@carol:localhost"}' >/dev/null
wait_for "[ \"\$(psql_q \"SELECT count(*) FROM syncv3_state WHERE state_key = '@carol:localhost'\")\" = 1 ]" 15 ||
    fail "bob's poller did not store the events of the gap"

sim "rooms/$r/join" "{\"user_id\":\"$A\"}" >/dev/null
wait_for "ur_is $A $r join" 15 || fail "alice's poller did not see her rejoin"
wait_for "[ \"\$(psql_q \"SELECT count(*) FROM syncv3_state WHERE room_id = '$r' AND state_key = '$A' AND membership = 'join'\")\" = 2 ]" 15 ||
    fail "the rejoin was not stored"
out=$(v3 "$alice" "" '{"room_list":{"timeline_limit":20,"state_events":[["*","*"]]}}' 0)
assert_jq "$out" '.room_list.rooms[0].membership' '"join"' "rejoined"
tl=$(printf '%s' "$out" | jq -c '[.room_list.rooms[0].timeline[]|.content.body // .content.name // empty]')
assert_jq "$tl" '[.[]|select(. == "after" or . == "secret")]' '[]' "nothing from while alice was away in the timeline"
assert_jq "$tl" 'index("before") != null' 'true' "the history before the leave (shared)"
assert_jq "$out" '[.room_list.rooms[0].timeline[]|select(.state_key=="@carol:localhost")]' '[]' "no member who joined while alice was away"

it_pass
