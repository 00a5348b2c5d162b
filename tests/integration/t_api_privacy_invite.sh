#!/usr/bin/env bash
# Issue #9, privacy: an invitee sees only the stripped state upstream sent
# (invite_state), never the room's timeline, state or members as the proxy
# knows them from bob, another proxy user in the room; room events do not
# wake the invitee's long-poll.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_privacy.sh"

v3 "$bob" "" '{}' 10000 >/dev/null
out=$(v3 "$alice" "" '{"room_list":{"timeline_limit":10,"state_events":[["m.room.member","*"]]}}' 10000)
s=$(printf '%s' "$out" | jq -r .next_batch)
# invite: stripped state only, in room_list and room_member
ri=$(mk "Invitation")
say $ri "private talk"
sim "rooms/$ri/invite" "{\"sender\":\"$B\",\"user_id\":\"$A\"}" >/dev/null
wait_for "ur_is $A $ri invite" 15 || fail "alice's poller did not see the invite"
out=$(v3 "$alice" "$s" '{}' 5000)
inv=".room_list.rooms[]|select(.room_id==\"$ri\")"
assert_jq "$out" "[$inv|.membership]" '["invite"]' "invite streamed"
assert_jq "$out" "[$inv|.timeline[]]" '[]' "invite: no timeline"
assert_jq "$out" "[$inv|.state_events[]]" '[]' "invite: no state, no members"
assert_jq "$out" "[$inv|.invite_state|length > 0]" '[true]' "invite: stripped state"
assert_jq "$out" "[$inv|.name]" '["Invitation"]' "invite: named from its stripped state"
s=$(printf '%s' "$out" | jq -r .next_batch)
sim "rooms/$ri/send" "{\"sender\":\"$B\",\"type\":\"m.room.name\",\"state_key\":\"\",\"content\":{\"name\":\"Renamed\"}}" >/dev/null
say $ri "more private talk"
wait_for "[ \"\$(psql_q \"SELECT count(*) FROM syncv3_events WHERE json LIKE '%more private talk%'\")\" = 1 ]" 15 ||
    fail "bob's poller did not store the new events"
w0=$(health | jq .wakeups)
out=$(v3 "$alice" "$s" '{}' 1500)
assert_jq "$out" '[.room_list.rooms[]?]' '[]' "invite: room events not streamed"
assert_eq "$(health | jq .wakeups)" "$w0" "invite: room events woke the invitee"
out=$(v3 "$alice" "" '{"room_list":{"timeline_limit":10,"state_events":[["*","*"]]}}' 0)
assert_jq "$out" "[$inv|[.name,(.timeline|length),(.state_events|length)]]" '[["Invitation",0,0]]' "invite on a first page: stripped state only"
v3 "$alice" "" "{\"room_member\":{\"room_id\":\"$ri\"}}" 0 >/dev/null
assert_eq "$(last_status)" 403 "room_member refuses an invitee"

it_pass
