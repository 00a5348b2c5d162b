#!/usr/bin/env bash
# Issue #9, privacy: what a user may see of a room (api/visible.h). After
# alice leaves, is kicked or banned while bob (another proxy user) stays
# and keeps the room busy, nothing of it reaches her but the leave (once)
# and her long-poll is not woken; a rejoin shows the room again from the
# rejoin, not what happened while she was away.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_privacy.sh"

rl=$(mk "to leave"); rk=$(mk "to kick"); rb=$(mk "to ban")
for r in $rl $rk $rb; do
	sim "rooms/$r/join" "{\"user_id\":\"$A\"}" >/dev/null
	say $r "before"
done
v3 "$bob" "" '{}' 10000 >/dev/null
out=$(v3 "$alice" "" '{"room_list":{"timeline_limit":10,"state_events":[["m.room.member","*"]]}}' 10000)
assert_jq "$out" '.room_list.count' 3 "alice's rooms"
s=$(printf '%s' "$out" | jq -r .next_batch)

# leave, kick, ban: each reported once, as left
sim "rooms/$rl/leave" "{\"user_id\":\"$A\"}" >/dev/null
sim "rooms/$rk/kick" "{\"sender\":\"$B\",\"user_id\":\"$A\"}" >/dev/null
sim "rooms/$rb/ban" "{\"sender\":\"$B\",\"user_id\":\"$A\"}" >/dev/null
wait_for "ur_is $A $rl leave && ur_is $A $rk leave && ur_is $A $rb ban" 15 ||
    fail "alice's pollers did not see her leave"
out=$(v3 "$alice" "$s" '{}' 5000)
assert_jq "$out" '.room_list.left|sort' "$(jq -cn --arg a $rl --arg b $rk --arg c $rb '[$a,$b,$c]|sort')" "leave, kick and ban reported as left"
assert_jq "$out" '[.room_list.rooms[]?]' '[]' "left rooms not sent as rooms"
s=$(printf '%s' "$out" | jq -r .next_batch)

# bob keeps the rooms busy: messages, renames, a new member
w0=$(health | jq .wakeups)
v3 "$alice" "$s" '{}' 4000 >"$T/lp.out" &
lp=$!
wait_for "[ \"\$(health | jq .waiters)\" = 1 ]" 15 || fail "alice's long-poll not waiting"
for r in $rl $rk $rb; do
	say $r "after"
	sim "rooms/$r/send" "{\"sender\":\"$B\",\"type\":\"m.room.name\",\"state_key\":\"\",\"content\":{\"name\":\"secret $r\"}}" >/dev/null
	sim "rooms/$r/join" '{"user_id":"@carol:localhost"}' >/dev/null
done
wait_for "[ \"\$(psql_q \"SELECT count(*) FROM syncv3_state WHERE state_key = '@carol:localhost'\")\" = 3 ]" 15 ||
    fail "bob's poller did not store the new events"
wait $lp
out=$(cat "$T/lp.out")
assert_jq "$out" '[.room_list.rooms[]?]' '[]' "nothing of the left rooms after the leave"
assert_jq "$out" '.room_list.left' 'null' "the leave is reported only once"
assert_eq "$(health | jq .wakeups)" "$w0" "alice's long-poll woken by rooms she left"
s=$(printf '%s' "$out" | jq -r .next_batch)
out=$(v3 "$alice" "" "{\"room_member\":{\"room_id\":\"$rk\",\"limit\":100}}" 0)
assert_jq "$out" '[.room_member.events[].state_key]|index("@carol:localhost")' 'null' "room_member: nothing after the kick"
out=$(v3 "$alice" "" '{"room_list":{}}' 0)
assert_jq "$out" '.room_list.count' 0 "a fresh room list has no left rooms"

# rejoin: visible again from the rejoin, not what happened while away
# (the history before her first join stays visible: the room is shared)
sim "rooms/$rl/join" "{\"user_id\":\"$A\"}" >/dev/null
wait_for "ur_is $A $rl join" 15 || fail "alice's poller did not see her rejoin"
out=$(v3 "$alice" "$s" '{}' 5000)
assert_jq "$out" '[.room_list.rooms[].room_id]' "[\"$rl\"]" "rejoined room sent"
assert_jq "$out" '.room_list.rooms[0].membership' '"join"' "rejoined membership"
assert_jq "$out" '[.room_list.rooms[0].timeline[]|.content.body // .content.name // empty|select(. == "after" or startswith("secret"))]' '[]' "nothing from while alice was away"
assert_jq "$out" '[.room_list.rooms[0].timeline[]|.content.body // empty]' '["before"]' "the history before the leave (shared)"
assert_jq "$out" '[.room_list.rooms[0].timeline[]|select(.state_key=="@carol:localhost")]' '[]' "no member who joined while alice was away"
assert_jq "$out" '.room_list.rooms[0].timeline[-1]|[.state_key,.content.membership]' "[\"$A\",\"join\"]" "timeline ends with the rejoin"
s=$(printf '%s' "$out" | jq -r .next_batch)
( sleep 0.3; say $rl "welcome back" ) &
out=$(v3 "$alice" "$s" '{}' 5000)
assert_jq "$out" '[.room_list.rooms[].timeline[].content.body]' '["welcome back"]' "events after the rejoin"
s=$(printf '%s' "$out" | jq -r .next_batch)

it_pass
