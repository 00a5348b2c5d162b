#!/usr/bin/env bash
# Synapse-equivalent behaviours (SYNAPSE-EQUIVALENTS.md): room
# subscriptions (test_room_subscriptions.py), invites
# (test_rooms_invites.py), and leaves, rejected invites and being "state
# reset" out of a room (test_sliding_sync.py): never a room the user may
# not see, nothing past a leave, invites with their stripped state only.
# Bob is polled too, so the proxy holds rooms alice is not in.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_ss_syn.sh"

start_stack
A=@alice:localhost B=@bob:localhost
alice=$(sim_login $A A1)
bob=$(sim_login $B B1)
ss_first "$bob" '{}'
ss_first "$alice" '{}'
sub() { printf '{"room_subscriptions":{"%s":{"required_state":%s,"timeline_limit":%s}}}' "$1" "${2:-[]}" "$3"; }

# --- test_room_subscriptions_with_join_membership
j=$(mkroom $B "joined" '{"topic":"t"}')
msg "$j" $B "hello" >/dev/null
stored "$(member join "$j" "{\"user_id\":\"$A\"}")"
out=$(ss "$alice" "" "$(sub "$j" '[["*","*"]]' 1)")
assert_jq "$out" ".rooms[\"$j\"] | [.initial, has(\"lists\")]" '[true,false]' "test_room_subscriptions_with_join_membership: initial, in no list"
assert_eq "$(state_keys "$out" "$j")" "$(sim_state_keys "$j" true)" "test_room_subscriptions_with_join_membership: current state"
assert_eq "$(timeline_of "$out" "$j")" "$(sim_timeline "$j" 1)" "test_room_subscriptions_with_join_membership: timeline"
assert_jq "$out" '.lists // {} | length' 0 "no lists asked, none answered"

# --- test_room_subscriptions_with_leave_membership: up to the leave
l=$(mkroom $B "left")
member join "$l" "{\"user_id\":\"$A\"}" >/dev/null
msg "$l" $B "before the leave" >/dev/null
leave=$(member leave "$l" "{\"user_id\":\"$A\"}")
state "$l" $B m.room.topic "" '{"topic":"after"}' >/dev/null
stored "$(msg "$l" $B "after the leave")"
out=$(ss "$alice" "" "$(sub "$l" '[["*","*"]]' 2)")
assert_jq "$out" "[.rooms[\"$l\"].timeline[]? | .event_id] | last" "\"$leave\"" \
    "test_room_subscriptions_with_leave_membership: the timeline ends at the leave"
assert_jq "$out" "[.rooms[\"$l\"].required_state[]? | select(.type == \"m.room.topic\")] | length" 0 \
    "test_room_subscriptions_with_leave_membership: no state after the leave"
assert_jq "$out" "[.rooms[\"$l\"].required_state[]? | select(.type == \"m.room.member\" and .state_key == \"$A\") | .content.membership]" '["leave"]' \
    "test_room_subscriptions_with_leave_membership: her own leave in the state"

# --- test_room_subscriptions_no_leak_private_room / _world_readable
p=$(mkroom $B "private")
stored "$(msg "$p" $B "secret")"
out=$(ss "$alice" "" "$(sub "$p" '[["*","*"]]' 5)")
ss_ok "$out" "no leak"
assert_jq "$out" ".rooms // {} | has(\"$p\")" 'false' "test_room_subscriptions_no_leak_private_room"
w=$(mkroom $B "world readable")
state "$w" $B m.room.history_visibility "" '{"history_visibility":"world_readable"}' >/dev/null
stored "$(msg "$w" $B "public words")"
out=$(ss "$alice" "" "$(sub "$w" '[["*","*"]]' 5)")
assert_jq "$out" ".rooms // {} | has(\"$w\")" 'false' "test_room_subscriptions_world_readable: no peeking (as Synapse today)"
out=$(ss "$alice" "" "{\"room_subscriptions\":{\"!nosuchroom:localhost\":{\"required_state\":[],\"timeline_limit\":1}}}")
ss_ok "$out" "unknown room"
assert_jq "$out" '.rooms // {} | length' 0 "a subscription to an unknown room is ignored"

# --- test_room_subscription_required_state_expansion_returns_immediately
# and _change_returns_immediately: a stronger subscription for a room the
# list already sent answers a long poll at once
e=$(mkroom $A "expand" '{"topic":"topic"}')
stored "$(msg "$e" $A "x")"
LW='{"lists":{"foo-list":{"ranges":[[0,0]],"required_state":[["m.room.create",""]],"timeline_limit":1}}}'
out=$(ss "$alice" "" "$LW")
assert_eq "$(rooms_of "$out")" "$(ids "$e")" "the list holds the room"
pos=$(ss_pos "$out")
t0=$(now_ms)
out=$(ss "$alice" "$pos" "$(jq -c --arg r "$e" '. + {room_subscriptions: {($r): {required_state: [["m.room.create",""],["m.room.topic",""]], timeline_limit: 1}}}' <<<"$LW")" 10000)
dt=$(($(now_ms) - t0))
assert_jq "$out" "[.rooms[\"$e\"].required_state[]? | .type]" '["m.room.topic"]' "expansion: the new state"
[ "$dt" -lt 5000 ] || fail "test_room_subscription_required_state_expansion_returns_immediately: held $dt ms"
pos=$(ss_pos "$out")
t0=$(now_ms)
out=$(ss "$alice" "$pos" "$(jq -c --arg r "$e" '. + {room_subscriptions: {($r): {required_state: [["m.room.create",""],["m.room.topic",""],["m.room.name",""]], timeline_limit: 1}}}' <<<"$LW")" 10000)
dt=$(($(now_ms) - t0))
assert_jq "$out" "[.rooms[\"$e\"].required_state[]? | .type]" '["m.room.name"]' "change: the new state"
[ "$dt" -lt 5000 ] || fail "test_room_subscription_required_state_change_returns_immediately: held $dt ms"
pos=$(ss_pos "$out")
# the subscription is sticky: a request without it keeps it (js-sdk sends
# it once); unsubscribe_rooms drops it
stored "$(state "$e" $A m.room.name "" '{"name":"renamed"}')"
out=$(ss "$alice" "$pos" "$LW" 5000)
assert_jq "$out" "[.rooms[\"$e\"].required_state[]? | [.type, .content.name]]" '[["m.room.name","renamed"]]' \
    "a subscription is sticky until unsubscribed"
pos=$(ss_pos "$out")
out=$(ss "$alice" "$pos" "$(jq -c --arg r "$e" '. + {unsubscribe_rooms: [$r]}' <<<"$LW")" 0)
pos=$(ss_pos "$out")
stored "$(state "$e" $A m.room.name "" '{"name":"renamed again"}')"
out=$(ss "$alice" "$pos" "$LW" 3000)
assert_jq "$out" "[.rooms[\"$e\"].required_state[]? | .type]" '[]' "unsubscribe_rooms drops it (the list asks no name)"

# --- invites (test_rooms_invite_shared_history_initial_sync, _incremental,
# _world_readable_history_*): invite_state, and nothing of the room
for vis in shared world_readable; do
	i=$(mkroom $B "invite $vis")
	state "$i" $B m.room.history_visibility "" "{\"history_visibility\":\"$vis\"}" >/dev/null
	msg "$i" $B "activity before" >/dev/null
	LI='{"lists":{"foo-list":{"ranges":[[0,99]],"required_state":[["*","*"]],"timeline_limit":3,"filters":{"is_invite":true}}}}'
	out=$(ss "$alice" "" "$LI")
	pos=$(ss_pos "$out")
	member invite "$i" "{\"sender\":\"$B\",\"user_id\":\"$A\"}" >/dev/null
	stored "$(msg "$i" $B "activity after")"
	has_membership $A "$i" invite
	for when in incremental initial; do
		if [ $when = incremental ]; then out=$(ss "$alice" "$pos" "$LI" 5000); else out=$(ss "$alice" "" "$LI"); fi
		assert_jq "$out" ".rooms[\"$i\"] | [has(\"timeline\"), has(\"required_state\"), has(\"num_live\"), has(\"limited\"), has(\"prev_batch\")]" \
		    '[false,false,false,false,false]' "test_rooms_invite_${vis}_history_${when}_sync: nothing of the room"
		assert_jq "$out" ".rooms[\"$i\"].invite_state | [.[] | select(.type == \"m.room.member\" and .state_key == \"$A\") | .content.membership]" \
		    '["invite"]' "test_rooms_invite_${vis}_history_${when}_sync: the invite in invite_state"
		assert_jq "$out" ".rooms[\"$i\"].invite_state | map(has(\"event_id\") and .type != \"m.room.member\") | any" 'false' \
		    "test_rooms_invite_${vis}_history_${when}_sync: stripped state events"
	done
done

# --- test_reject_remote_invite: a rejected invite comes down once, with
# the leave, so the client does not keep a stuck invite
r=$(mkroom $B "to reject")
member invite "$r" "{\"sender\":\"$B\",\"user_id\":\"$A\"}" >/dev/null
has_membership $A "$r" invite
LA='{"lists":{"foo-list":{"ranges":[[0,99]],"required_state":[["m.room.member","$ME"]],"timeline_limit":1}}}'
out=$(ss "$alice" "" "$LA")
assert_jq "$out" ".rooms | has(\"$r\")" 'true' "the invite is in the list"
pos=$(ss_pos "$out")
stored "$(member leave "$r" "{\"user_id\":\"$A\"}")"
out=$(ss "$alice" "$pos" "$LA" 5000)
assert_jq "$out" "[.rooms[\"$r\"] | (.required_state // []) + (.timeline // []) | .[] | select(.type == \"m.room.member\" and .state_key == \"$A\") | .content.membership] | unique" \
    '["leave"]' "test_reject_remote_invite: the rejection comes down with her leave"
assert_jq "$out" ".rooms[\"$r\"] | has(\"invite_state\")" 'false' "test_reject_remote_invite: no longer an invite"
# --- kicks: always in the list, once, nothing after
k=$(mkroom $B "kick")
stored "$(member join "$k" "{\"user_id\":\"$A\"}")"
kick=$(member kick "$k" "{\"sender\":\"$B\",\"user_id\":\"$A\"}")
stored "$(msg "$k" $B "after the kick")"
out=$(ss "$alice" "" "$LA")
assert_jq "$out" ".rooms[\"$k\"] | [([.required_state[]? | select(.state_key == \"$A\") | .content.membership] | last), ([.timeline[]?.event_id] | last)]" "[\"leave\",\"$kick\"]" \
    "a kicked room is in a new connection's list, up to the kick"
# a ban where the user was never joined is never listed
nb=$(mkroom $B "never joined")
stored "$(member ban "$nb" "{\"sender\":\"$B\",\"user_id\":\"$A\"}")"
out=$(ss "$alice" "" "$LA")
assert_jq "$out" ".rooms // {} | has(\"$nb\")" 'false' "banned but never joined: not listed"

# --- test_state_reset_room_comes_down_incremental_sync: upstream drops
# the user from a room with no leave event to show (simhs
# sync_without_event); the room comes down as left, nothing after
s=$(mkroom $B "my super room")
stored "$(member join "$s" "{\"user_id\":\"$A\"}")"
out=$(ss "$alice" "" "$LA")
pos=$(ss_pos "$out")
sim "rooms/$s/leave" "{\"user_id\":\"$A\",\"sync_without_event\":true}" >/dev/null
wait_for "[ \"\$(psql_q \"SELECT membership FROM syncv3_user_rooms WHERE user_id = '$A' AND room_id = '$s'\")\" = leave ]" 20 ||
    fail "the proxy never saw the leave"
out=$(ss "$alice" "$pos" "$LA" 5000)
assert_jq "$out" ".rooms | has(\"$s\") and (.[\"$s\"] | has(\"invite_state\") | not)" 'true' \
    "test_state_reset_room_comes_down_incremental_sync: comes down"
assert_jq "$out" ".rooms[\"$s\"] | [has(\"joined_count\"), has(\"invited_count\"), has(\"notification_count\"), has(\"highlight_count\")]" '[false,false,false,false]' \
    "test_state_reset_room_comes_down_incremental_sync: no counts once out"
it_pass
