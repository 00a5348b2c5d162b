#!/usr/bin/env bash
# room_list beyond paging: restricting to the children of a space, the
# "*" state_key wildcard in state_events, invited rooms (membership
# "invite", named from their stripped state) and unread counts.
source "$(dirname "$0")/lib.sh"

start_stack
alice=$(sim_login @alice:localhost A1)
mk() { sim rooms "{\"creator\":\"$1\",\"name\":\"$2\"}" | jq -r .room_id; }
space=$(mk @alice:localhost "The space")
inside=$(mk @alice:localhost "inside")
outside=$(mk @alice:localhost "outside")
sim "rooms/$space/send" "{\"sender\":\"@alice:localhost\",\"type\":\"m.space.child\",\"state_key\":\"$inside\",\"content\":{\"via\":[\"localhost\"]}}" >/dev/null
# bob's room: alice is invited, and bob talks in a room they share
bobs=$(mk @bob:localhost "Bob's lair")
sim "rooms/$bobs/invite" '{"sender":"@bob:localhost","user_id":"@alice:localhost"}' >/dev/null
sim "rooms/$outside/join" '{"user_id":"@bob:localhost","displayname":"Bob"}' >/dev/null
for i in 1 2 3; do
	sim "rooms/$outside/send" "{\"sender\":\"@bob:localhost\",\"type\":\"m.room.message\",\"content\":{\"body\":\"m$i\"}}" >/dev/null
done

out=$(v3 "$alice" "" '{"room_list":{"sort":["by_name"],"limit":10,"state_events":[["m.room.member","*"]]}}' 10000)
assert_eq "$(last_status)" 200 "full list"
assert_jq "$out" '[.room_list.rooms[].name]' '["Bob'"'"'s lair","inside","outside","The space"]' "joined and invited rooms, by name"
assert_jq "$out" "[.room_list.rooms[]|select(.room_id==\"$bobs\")|.membership]" '["invite"]' "invited room membership"
assert_jq "$out" "[.room_list.rooms[]|select(.room_id==\"$inside\")|.membership]" '["join"]' "joined room membership"
# the wildcard returns every member event of the room
assert_jq "$out" "[.room_list.rooms[]|select(.room_id==\"$outside\")|.state_events[]|select(.type==\"m.room.member\")|.state_key]|sort" '["@alice:localhost","@bob:localhost"]' "state_key wildcard"
# unread counts come from upstream (3 messages from bob, no receipt)
assert_jq "$out" "[.room_list.rooms[]|select(.room_id==\"$outside\")|.notification_count]" '[3]' "unread count"

out=$(v3 "$alice" "" "{\"room_list\":{\"sort\":[\"by_name\"],\"spaces\":[\"$space\"]}}" 0)
assert_eq "$(last_status)" 200 "space filter"
assert_jq "$out" '[.room_list.rooms[].room_id]' "[\"$inside\"]" "only the space's children"

# a space the user is not in restricts to nothing
other=$(mk @bob:localhost "Bob's space")
sim "rooms/$other/send" "{\"sender\":\"@bob:localhost\",\"type\":\"m.space.child\",\"state_key\":\"$outside\",\"content\":{\"via\":[\"localhost\"]}}" >/dev/null
sleep 1
out=$(v3 "$alice" "" "{\"room_list\":{\"spaces\":[\"$other\"]}}" 0)
assert_jq "$out" '[.room_list.rooms[]?.room_id]' '[]' "a space the user is not in"
it_pass
