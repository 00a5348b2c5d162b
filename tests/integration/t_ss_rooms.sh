#!/usr/bin/env bash
# Sliding sync room results and list membership rules: invites (only the
# stripped state), a room left by the user (sent once with the leave,
# nothing of it after), kicks and bans (sent once, kept in the list),
# banned-never-joined (never), a room left before this connection (not
# listed); subscriptions are sticky, only for rooms the user may see, and
# one raising timeline_limit re-sends the room with initial and the
# longer timeline; $LAZY sends each member once; heroes for unnamed rooms.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_ss.sh"

start_stack
alice=$(sim_login @alice:localhost A1)
# carol syncs through the proxy too: it stores her rooms' activity
carol=$(sim_login @carol:localhost C1)
ss "$carol" "" '{"lists":{"a":{"ranges":[[0,9]]}}}' 10000 >/dev/null
mk() { sim rooms "{\"creator\":\"$1\",\"name\":\"$2\"}" | jq -r .room_id; }
rl=$(mk @alice:localhost leaveme)
rk=$(mk @carol:localhost kickme); sim "rooms/$rk/join" '{"user_id":"@alice:localhost"}' >/dev/null
rb=$(mk @carol:localhost banme); sim "rooms/$rb/join" '{"user_id":"@alice:localhost"}' >/dev/null
rn=$(mk @carol:localhost nevermind); sim "rooms/$rn/ban" '{"sender":"@carol:localhost","user_id":"@alice:localhost"}' >/dev/null
rold=$(mk @alice:localhost oldroom); sim "rooms/$rold/leave" '{"user_id":"@alice:localhost"}' >/dev/null
rh=$(sim rooms '{"creator":"@alice:localhost"}' | jq -r .room_id)
sim "rooms/$rh/join" '{"user_id":"@bob:localhost","displayname":"Bobby"}' >/dev/null
rs=$(mk @carol:localhost secret)
for i in 1 2 3 4 5; do sim_msg "$rl" @alice:localhost "l$i"; done
list='{"lists":{"all":{"ranges":[[0,49]],"timeline_limit":1,"required_state":[]}}}'
out=$(ss "$alice" "" "$list" 10000)
assert_eq "$(last_status)" 200 "first"
assert_jq "$out" '.lists.all.count' '4' "joined rooms only (banned-never-joined and left-before are not listed)"
assert_jq "$out" ".rooms[\"$rn\"]" 'null' "banned, never joined: never"
assert_jq "$out" ".rooms[\"$rold\"]" 'null' "left before this connection: not listed"
assert_jq "$out" ".rooms[\"$rs\"]" 'null' "not in the room"
assert_jq "$out" ".rooms[\"$rh\"].heroes" '[{"user_id":"@bob:localhost","displayname":"Bobby"}]' "heroes without a name"
assert_jq "$out" ".rooms[\"$rh\"].name" 'null' "no name"
p=$(ss_pos "$out")

# an invite: initial, invite_state only
sim "rooms/$rs/invite" '{"sender":"@carol:localhost","user_id":"@alice:localhost"}' >/dev/null
out=$(ss "$alice" "$p" "$list" 5000)
assert_jq "$out" ".rooms[\"$rs\"].initial" 'true' "invite initial"
assert_jq "$out" "[.rooms[\"$rs\"].invite_state[]|select(.type==\"m.room.name\")|.content.name]" '["secret"]' "invite_state"
assert_jq "$out" ".rooms[\"$rs\"].timeline" 'null' "invite: no timeline"
assert_jq "$out" '.lists.all.count' '5' "invite counted"
p=$(ss_pos "$out")
# review R2: the room's activity is not the invitee's; her unchanged
# invite is not sent again (it would tell her when the room is busy)
sim_msg "$rs" @carol:localhost "while invited"
wait_for "[ \"\$(psql_q \"SELECT count(*) FROM syncv3_events WHERE room_id = '$rs' AND type = 'm.room.message'\")\" = 1 ]" 20 ||
    fail "carol's message never stored"
out=$(ss "$alice" "$p" "$list" 1500)
assert_jq "$out" ".rooms // {} | has(\"$rs\")" 'false' "an unchanged invite is not re-sent for the room's activity"
p=$(ss_pos "$out")

# a subscription raising timeline_limit: re-sent with initial and 4 events
sub="{\"lists\":{\"all\":{\"ranges\":[[0,49]],\"timeline_limit\":1,\"required_state\":[]}},\"room_subscriptions\":{\"$rl\":{\"timeline_limit\":4,\"required_state\":[[\"m.room.member\",\"\$LAZY\"]]},\"$rn\":{\"timeline_limit\":4},\"!nosuch:localhost\":{\"timeline_limit\":4}}}"
out=$(ss "$alice" "$p" "$sub" 5000)
assert_jq "$out" ".rooms[\"$rl\"].initial" 'true' "expanded: initial (js-sdk 43)"
assert_jq "$out" ".rooms[\"$rl\"].unstable_expanded_timeline" 'true' "expanded flag"
assert_jq "$out" "[.rooms[\"$rl\"].timeline[].content.body]" '["l2","l3","l4","l5"]' "longer timeline, oldest first"
assert_jq "$out" ".rooms[\"$rl\"].name" '"leaveme"' "expanded: with its name (SS_ROOMS, SS_QUIET)"
assert_jq "$out" "[.rooms[\"$rl\"].required_state[]|select(.type==\"m.room.member\")|.state_key]" '["@alice:localhost"]' "\$LAZY: the sender's member event"
assert_jq "$out" ".rooms[\"$rn\"]" 'null' "subscription to a room the user may not see: ignored"
assert_jq "$out" '.rooms["!nosuch:localhost"]' 'null' "subscription to an unknown room: ignored"
p=$(ss_pos "$out")
# $LAZY: a member already sent is not sent again; a new sender is
sim "rooms/$rl/join" '{"user_id":"@dave:localhost","displayname":"Dave"}' >/dev/null
sim_msg "$rl" @alice:localhost "l6"
sim_msg "$rl" @dave:localhost "d1"
out=$(ss "$alice" "$p" "$list" 5000)
assert_jq "$out" "[.rooms[\"$rl\"].timeline[].content.body]" '[null,"l6","d1"]' "sticky subscription: new events (join, l6, d1)"
assert_jq "$out" "[.rooms[\"$rl\"].required_state[]?|select(.type==\"m.room.member\")|.state_key]" '["@dave:localhost"]' "\$LAZY: dave only, alice was sent"
p=$(ss_pos "$out")
# unsubscribe: back to the list's timeline_limit for new events
out=$(ss "$alice" "$p" "{\"unsubscribe_rooms\":[\"$rl\"],\"lists\":{\"all\":{\"ranges\":[[0,49]],\"timeline_limit\":1}}}" 0)
assert_eq "$(last_status)" 200 "unsubscribe"
p=$(ss_pos "$out")

# the user leaves: sent once with the leave, then nothing of that room
sim "rooms/$rl/leave" '{"user_id":"@alice:localhost"}' >/dev/null
out=$(ss "$alice" "$p" "$list" 5000)
assert_jq "$out" ".rooms[\"$rl\"].timeline[-1].content.membership" '"leave"' "leave sent"
p=$(ss_pos "$out")
sim_msg "$rl" @dave:localhost "after"
sleep 0.5
out=$(ss "$alice" "$p" "$list" 1000)
assert_jq "$out" ".rooms[\"$rl\"]" 'null' "nothing after the leave"
p=$(ss_pos "$out")

# kicked and banned: sent once with the leave/ban, counted in the list
sim "rooms/$rk/kick" '{"sender":"@carol:localhost","user_id":"@alice:localhost"}' >/dev/null
sim "rooms/$rb/ban" '{"sender":"@carol:localhost","user_id":"@alice:localhost"}' >/dev/null
out=$(ss "$alice" "$p" "$list" 5000)
if [ "$(printf '%s' "$out" | jq -c ".rooms[\"$rb\"]")" = null ]; then
	p=$(ss_pos "$out"); out2=$(ss "$alice" "$p" "$list" 5000)
	out=$(jq -cn --argjson a "$out" --argjson b "$out2" '$a * $b')
	p=$(ss_pos "$out2")
else
	p=$(ss_pos "$out")
fi
assert_jq "$out" ".rooms[\"$rk\"].timeline[-1].content.membership" '"leave"' "kick sent"
assert_jq "$out" ".rooms[\"$rb\"].timeline[-1].content.membership" '"ban"' "ban sent"
sim_msg "$rk" @carol:localhost "after kick"
sim_msg "$rb" @carol:localhost "after ban"
sleep 0.5
out=$(ss "$alice" "$p" "$list" 1000)
assert_jq "$out" "[.rooms[\"$rk\"], .rooms[\"$rb\"]]" '[null,null]' "nothing after a kick or ban"
# nothing of a banned room after the ban: name, avatar, counts as before
sim "rooms/$rb/send" '{"sender":"@carol:localhost","type":"m.room.name","state_key":"","content":{"name":"renamed after ban"}}' >/dev/null
sim "rooms/$rb/send" '{"sender":"@carol:localhost","type":"m.room.avatar","state_key":"","content":{"url":"mxc://after"}}' >/dev/null
sleep 0.5
# a new connection: kicked and banned rooms are listed, the one left is not
out=$(ss "$alice" "" "$list" 0)
assert_jq "$out" "[.rooms[\"$rk\"] != null, .rooms[\"$rb\"] != null, .rooms[\"$rl\"] == null]" '[true,true,true]' "kicked/banned listed, left-by-self not"
assert_jq "$out" "[.rooms[\"$rk\"].timeline[].content.body]|index(\"after kick\")" 'null' "a kicked room shows nothing after the kick"
assert_jq "$out" "[.rooms[\"$rb\"].name, .rooms[\"$rb\"].avatar, .rooms[\"$rb\"].joined_count]" '["banme",null,null]' "a banned room as it was at the ban"
pn=$(ss_pos "$out")
# incremental: only what changed (no name again); a member change with
# timeline_limit 0 brings the room down with its new heroes and counts
sim_msg "$rh" @alice:localhost "hi"
out=$(ss "$alice" "$pn" "$list" 5000)
assert_jq "$out" "[.rooms[\"$rh\"].timeline[-1].content.body, .rooms[\"$rh\"].heroes, .rooms[\"$rh\"].joined_count]" '["hi",null,null]' "incremental: no unchanged fields"
pn=$(ss_pos "$out")
sim "rooms/$rh/join" '{"user_id":"@carol:localhost","displayname":"Carol"}' >/dev/null
out=$(ss "$alice" "$pn" '{"lists":{"all":{"ranges":[[0,49]],"timeline_limit":0,"required_state":[]}}}' 5000)
assert_jq "$out" "[.rooms[\"$rh\"].heroes[].user_id]" '["@bob:localhost","@carol:localhost"]' "member change: heroes"
assert_jq "$out" ".rooms[\"$rh\"].joined_count" '3' "member change: joined_count"
# required_state grown: only what the new config adds; $ME then $LAZY:
# a member already sent is not sent again, a changed one is
rq=$(mk @alice:localhost growing)
sim "rooms/$rq/join" '{"user_id":"@bob:localhost","displayname":"Bob"}' >/dev/null
sim_msg "$rq" @alice:localhost q1
sub() { printf '{"room_subscriptions":{"%s":{"timeline_limit":1,"required_state":%s}}}' "$rq" "$1"; }
out=$(ss "$alice" "" "$(sub '[["m.room.create",""],["m.room.member","$ME"]]')" 5000)
assert_jq "$out" "[.rooms[\"$rq\"].required_state[].type]|sort" '["m.room.create","m.room.member"]' "create and my member"
pq=$(ss_pos "$out")
# lazy FILTER EXPECTED MESSAGE: the next response with the grown config
# ($LAZY members); FILTER of it is EXPECTED; pq moves on
lazy() {
	out=$(ss "$alice" "$pq" "$(sub '[["m.room.create",""],["m.room.name",""],["m.room.member","$LAZY"]]')" 5000)
	assert_jq "$out" "$1" "$2" "$3"
	pq=$(ss_pos "$out")
}
bob_renames() { # NAME: bob's member event changes upstream
	sim "rooms/$rq/send" "{\"sender\":\"@bob:localhost\",\"type\":\"m.room.member\",\"state_key\":\"@bob:localhost\",\"content\":{\"membership\":\"join\",\"displayname\":\"$1\"}}" >/dev/null
}
members=".rooms[\"$rq\"].required_state[]?|select(.type==\"m.room.member\")|.content.displayname"
lazy "[.rooms[\"$rq\"].required_state[].type]" '["m.room.name"]' "grown config: only the name (my member was sent by \$ME)"
bob_renames "Bob 2"
sim_msg "$rq" @bob:localhost b1
lazy "[$members]" '["Bob 2"]' "\$LAZY: the sender's member"
bob_renames "Bob 3"
sim_msg "$rq" @bob:localhost b2
lazy "[$members]" '["Bob 3"]' "\$LAZY: a changed member is sent again"
sim_msg "$rq" @bob:localhost b3
lazy "[.rooms[\"$rq\"].timeline[-1].content.body, (.rooms[\"$rq\"].required_state // [] | length)]" '["b3",0]' "\$LAZY: an unchanged member is not"
# a member changed out of the timeline is sent when they next speak
bob_renames "Bob 4"
sim_msg "$rq" @alice:localhost q2
sim_msg "$rq" @alice:localhost q3
lazy "[.rooms[\"$rq\"].timeline[-1].content.body]" '["q3"]' "alice's messages"
sim_msg "$rq" @bob:localhost b4
lazy "[$members]" '["Bob 4"]' "\$LAZY: changed while out of the timeline, sent when he speaks"
# v4: stripped_state and membership for the invite
out=$(ss4 "$alice" '{"lists":{"all":{"range":[0,49],"timeline_limit":1}}}')
assert_jq "$out" ".rooms[\"$rs\"].membership" '"invite"' "v4 invite membership"
assert_jq "$out" ".rooms[\"$rs\"].stripped_state|length > 0" 'true' "v4 stripped_state"
assert_jq "$out" ".rooms[\"$rk\"].membership" '"leave"' "v4 kicked membership"
# an invite rejected: its leave once, nothing of the room after it; a new
# connection cannot subscribe to it, nor to a room banned from unjoined
pi=$(ss_pos "$(ss "$alice" "" "$list" 0)")
sim "rooms/$rs/leave" '{"user_id":"@alice:localhost"}' >/dev/null
sim "rooms/$rs/send" '{"sender":"@carol:localhost","type":"m.room.topic","state_key":"","content":{"topic":"SECRET"}}' >/dev/null
sim "rooms/$rs/send" '{"sender":"@carol:localhost","type":"m.room.name","state_key":"","content":{"name":"after reject"}}' >/dev/null
sim "rooms/$rn/send" '{"sender":"@carol:localhost","type":"m.room.topic","state_key":"","content":{"topic":"BAN SECRET"}}' >/dev/null
sleep 0.5
out=$(ss "$alice" "$pi" '{"lists":{"all":{"ranges":[[0,49]],"timeline_limit":5,"required_state":[["*","*"]]}}}' 3000)
assert_jq "$out" "[.rooms[\"$rs\"].name, .rooms[\"$rs\"].timeline]" '[null,null]' "a rejected invite: nothing of the room"
assert_jq "$out" "[.rooms[\"$rs\"].required_state[] | [.type, .state_key, .content.membership]]" '[["m.room.member","@alice:localhost","leave"]]' \
    "a rejected invite: only her leave (the client drops the invite)"
assert_eq "$(printf '%s' "$out" | grep -c SECRET)" 0 "no state after the rejection"
out=$(ss "$alice" "" "{\"room_subscriptions\":{\"$rs\":{\"timeline_limit\":5,\"required_state\":[[\"*\",\"*\"]]},\"$rn\":{\"timeline_limit\":5,\"required_state\":[[\"*\",\"*\"]]}}}" 0)
assert_jq "$out" "[.rooms[\"$rs\"], .rooms[\"$rn\"]]" '[null,null]' "no subscription to a room never joined"
assert_eq "$(printf '%s' "$out" | grep -c SECRET)" 0 "nothing of them"

# unread counts changed alone (her read receipt, from any client) bring
# the room down with them: clients show them as the room's badge
rc=$(mk @carol:localhost counts); sim "rooms/$rc/join" '{"user_id":"@alice:localhost"}' >/dev/null
ev=$(sim "rooms/$rc/send" '{"sender":"@carol:localhost","type":"m.room.message","content":{"body":"unread"}}' | jq -r .event_id)
nc() { psql_q "SELECT notification_count FROM syncv3_user_rooms WHERE user_id = '@alice:localhost' AND room_id = '$rc'"; }
wait_for '[ "$(nc)" = 1 ]' 20 || fail "the unread count never stored"
out=$(ss "$alice" "" "$list" 0)
assert_jq "$out" ".rooms[\"$rc\"].notification_count" '1' "one unread"
pc=$(ss_pos "$out")
sim "rooms/$rc/receipt" "{\"user_id\":\"@alice:localhost\",\"event_id\":\"$ev\"}" >/dev/null
wait_for '[ "$(nc)" = 0 ]' 20 || fail "the read count never stored"
out=$(ss "$alice" "$pc" "$list" 0)
assert_jq "$out" ".rooms[\"$rc\"] | [.notification_count, .highlight_count, .timeline]" '[0,0,null]' \
    "counts changed alone: the room with its counts, nothing else"
it_pass
