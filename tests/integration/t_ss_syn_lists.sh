#!/usr/bin/env bash
# Synapse-equivalent behaviours (SYNAPSE-EQUIVALENTS.md): lists, ranges,
# ordering, long-poll and every list filter, as Synapse's
# test_sliding_sync.py and test_lists_filters.py assert them.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_ss_syn.sh"

start_stack
A=@alice:localhost B=@bob:localhost C=@carol:localhost
alice=$(sim_login $A A1)
bob=$(sim_login $B B1) # polled too: the proxy stores what happens after alice leaves
ss_first "$bob" '{}'

# --- lists, order, ranges (test_sync_list, test_sort_list, test_sliced_windows)
r1=$(mkroom $A "one") r2=$(mkroom $A "two") r3=$(mkroom $A "three")
msg "$r3" $A "activity in room3" >/dev/null
msg "$r1" $A "activity in room1" >/dev/null
last=$(msg "$r2" $A "activity in room2")
L='{"lists":{"foo-list":{"ranges":[[0,99]],"required_state":[],"timeline_limit":1}}}'
ss_first "$alice" "$L"
ss_ok "$out" "initial"
# the first sync may have been answered before the last message was stored
stored "$last"
out=$(ss "$alice" "" "$L")
assert_jq "$out" '.lists["foo-list"].count' 3 "test_sync_list: count"
# (the Synapse dialect names no lists per room, as Synapse; the merged does)
out4=$(ss4 "$alice" '{"conn_id":"v4","lists":{"foo-list":{"range":[0,99],"required_state":{},"timeline_limit":1}}}')
assert_jq "$out4" '[.rooms[] | .lists] | unique' '[["foo-list"]]' "test_sync_list: each room names its list (v4)"
assert_eq "$(rooms_of "$out")" "$(ids "$r1" "$r2" "$r3")" "test_sort_list: [0,99] has every room"
assert_jq "$out" "[.rooms | to_entries | sort_by(-.value.bump_stamp)[] | .key]" "[\"$r2\",\"$r1\",\"$r3\"]" \
    "test_sort_list: bump_stamp follows activity"
out=$(ss "$alice" "" '{"lists":{"foo-list":{"ranges":[[0,1]],"required_state":[],"timeline_limit":1}}}')
assert_eq "$(rooms_of "$out")" "$(ids "$r2" "$r1")" "test_sort_list: [0,1] is the two most recent"
assert_jq "$out" '.lists["foo-list"].count' 3 "test_sort_list: count ignores the range"
out=$(ss "$alice" "" '{"lists":{"foo-list":{"ranges":[[0,0]],"required_state":[],"timeline_limit":1}}}')
assert_eq "$(rooms_of "$out")" "$(ids "$r2")" "test_sliced_windows: [0,0] is inclusive: one room"
out=$(ss "$alice" "" '{"lists":{"foo-list":{"ranges":[[1,2]],"required_state":[],"timeline_limit":1}}}')
assert_eq "$(rooms_of "$out")" "$(ids "$r1" "$r3")" "test_sliced_windows: [1,2] both ends inclusive"

# --- empty config still sends the room (test_empty_initial_room_comes_down_sync)
out=$(ss "$alice" "" '{"lists":{"l":{"ranges":[[0,0]],"required_state":[],"timeline_limit":0}}}')
assert_jq "$out" ".rooms[\"$r2\"] | [.initial, (.timeline // [] | length), (.required_state // [] | length)]" \
    '[true,0,0]' "test_empty_initial_room_comes_down_sync"

# --- incremental (test_rooms_with_no_updates_do_not_come_down_incremental_sync)
out=$(ss "$alice" "" "$L")
pos=$(ss_pos "$out")
out=$(ss "$alice" "$pos" "$L" 0)
ss_ok "$out" "incremental"
assert_jq "$out" '.rooms // {} | length' 0 "test_rooms_with_no_updates_do_not_come_down_incremental_sync"
pos=$(ss_pos "$out")

# --- long-poll (test_wait_for_new_data, test_wait_for_new_data_timeout)
t0=$(now_ms)
out=$(ss "$alice" "$pos" "$L" 1500)
dt=$(($(now_ms) - t0))
ss_ok "$out" "timeout"
assert_jq "$out" '.rooms // {} | length' 0 "test_wait_for_new_data_timeout: nothing"
[ "$dt" -ge 1400 ] || fail "test_wait_for_new_data_timeout: returned after $dt ms, before its 1500 ms timeout"
pos=$(ss_pos "$out")
sim "rooms/$r3/join" "{\"user_id\":\"$B\"}" >/dev/null
stored "$(sim_get "rooms/$r3/events" | jq -r '.events[-1].event_id')"
out=$(ss "$alice" "$pos" "$L" 0)
pos=$(ss_pos "$out")
bg_then 1 msg "$r3" $B "late"
t0=$(now_ms)
out=$(ss "$alice" "$pos" "$L" 10000)
dt=$(($(now_ms) - t0))
bg_wait
assert_jq "$out" "[.rooms[\"$r3\"].timeline[]? | .content.body]" '["late"]' "test_wait_for_new_data: the new message"
[ "$dt" -lt 10000 ] || fail "test_wait_for_new_data: held $dt ms, the whole timeout"
log "woken after $dt ms (message sent after ~1000)"

# --- filters
dm=$(mkroom $A "dm with bob" '{"is_direct":true}')
member join "$dm" "{\"user_id\":\"$B\"}" >/dev/null
enc=$(mkroom $A "encrypted" '{"encrypted":true}')
space=$(mkroom $A "a space" '{"room_type":"m.space"}')
child=$(mkroom $A "child")
state "$space" $A m.space.child "$child" '{"via":["localhost"]}' >/dev/null
fav=$(mkroom $A "favourite")
low=$(mkroom $A "low and fav")
sim account_data "{\"user_id\":\"$A\",\"type\":\"m.direct\",\"content\":{\"$B\":[\"$dm\"]}}" >/dev/null
sim account_data "{\"user_id\":\"$A\",\"room_id\":\"$fav\",\"type\":\"m.tag\",\"content\":{\"tags\":{\"m.favourite\":{}}}}" >/dev/null
sim account_data "{\"user_id\":\"$A\",\"room_id\":\"$low\",\"type\":\"m.tag\",\"content\":{\"tags\":{\"m.favourite\":{},\"m.lowpriority\":{}}}}" >/dev/null
# invites from carol, whom the proxy does not poll: all it knows of these
# rooms is their stripped state (a remote invite, for Synapse's tests)
sim users '{"localpart":"carol"}' >/dev/null
inv=$(mkroom $C "invite from carol" '{"encrypted":true}')
member invite "$inv" "{\"sender\":\"$C\",\"user_id\":\"$A\"}" >/dev/null
invspace=$(mkroom $C "space invite" '{"room_type":"m.space"}')
member invite "$invspace" "{\"sender\":\"$C\",\"user_id\":\"$A\"}" >/dev/null
has_membership $A "$inv" invite
has_membership $A "$invspace" invite
stored_sql "SELECT count(*) FROM syncv3_account_data WHERE user_id = '$A' AND room_id = '$low' AND type = 'm.tag'"
stored_sql "SELECT count(*) FROM syncv3_account_data WHERE user_id = '$A' AND type = 'm.direct'"

joined=$(ids "$r1" "$r2" "$r3" "$dm" "$enc" "$space" "$child" "$fav" "$low")
flist() { # flist FILTER_JSON: the rooms of a list with that filter
	ss "$alice" "" "{\"lists\":{\"f\":{\"ranges\":[[0,99]],\"required_state\":[],\"timeline_limit\":0,\"filters\":$1}}}" |
	    jq -c '[.rooms // {} | keys[]] | sort'
}
assert_eq "$(flist '{}')" "$(ids "$r1" "$r2" "$r3" "$dm" "$enc" "$space" "$child" "$fav" "$low" "$inv" "$invspace")" "no filter: joined and invited"
assert_eq "$(flist '{"is_dm":true}')" "$(ids "$dm")" "test_filters_is_dm: true"
assert_eq "$(flist '{"is_dm":false}')" "$(ids "$r1" "$r2" "$r3" "$enc" "$space" "$child" "$fav" "$low" "$inv" "$invspace")" "test_filters_is_dm: false"
assert_eq "$(flist '{"is_encrypted":true}')" "$(ids "$enc" "$inv")" \
    "test_filters_is_encrypted (+ _with_remote_invite_encrypted_room: from the invite's stripped state)"
assert_eq "$(flist '{"is_encrypted":false}')" "$(ids "$r1" "$r2" "$r3" "$dm" "$space" "$child" "$fav" "$low" "$invspace")" \
    "test_filters_is_encrypted: false (+ _with_remote_invite_unencrypted_room)"
assert_eq "$(flist '{"is_invite":true}')" "$(ids "$inv" "$invspace")" "test_filters_is_invite_rooms: true"
assert_eq "$(flist '{"is_invite":false}')" "$joined" "test_filters_is_invite_rooms: false"
assert_eq "$(flist '{"room_types":["m.space"]}')" "$(ids "$space" "$invspace")" \
    "test_filters_room_types: m.space (+ _with_remote_invite_space)"
assert_eq "$(flist '{"room_types":[null]}')" "$(ids "$r1" "$r2" "$r3" "$dm" "$enc" "$child" "$fav" "$low" "$inv")" \
    "test_filters_room_types: null (+ _with_remote_invite_normal_room)"
assert_eq "$(flist '{"room_types":["m.space",null]}')" "$(flist '{}')" "test_filters_room_types: both"
assert_eq "$(flist '{"room_types":["org.unknown"]}')" '[]' "test_filters_room_types: unknown type"
assert_eq "$(flist '{"not_room_types":["m.space"]}')" "$(flist '{"room_types":[null]}')" "test_filters_not_room_types: m.space"
assert_eq "$(flist '{"not_room_types":[null]}')" "$(ids "$space" "$invspace")" "test_filters_not_room_types: null"
assert_eq "$(flist '{"room_types":["m.space"],"not_room_types":["m.space"]}')" '[]' "test_filters_not_room_types: not_ wins"
assert_eq "$(flist '{"tags":["m.favourite"]}')" "$(ids "$fav" "$low")" "test_filters_tags"
assert_eq "$(flist '{"tags":["m.favourite","org.none"]}')" "$(ids "$fav" "$low")" "test_filters_tags: OR"
assert_eq "$(flist '{"not_tags":["m.lowpriority"]}')" \
    "$(ids "$r1" "$r2" "$r3" "$dm" "$enc" "$space" "$child" "$fav" "$inv" "$invspace")" "test_filters_not_tags"
assert_eq "$(flist '{"tags":["m.favourite"],"not_tags":["m.lowpriority"]}')" "$(ids "$fav")" "test_filters_not_tags: priority over tags"
assert_eq "$(flist "{\"spaces\":[\"$space\"]}")" "$(ids "$child")" "spaces: direct children of a joined space"
assert_eq "$(flist '{"is_dm":false,"is_encrypted":true}')" "$(ids "$enc" "$inv")" "filters combine (AND)"
assert_eq "$(flist '{"is_invite":true,"is_encrypted":true}')" "$(ids "$inv")" "filters combine: invite AND encrypted"
assert_eq "$(flist '{"unknown_filter":true}')" "$(flist '{}')" "unknown filter fields are ignored"

# test_multiple_filters_and_multiple_lists: each list its own filter;
# a room in two lists names both
# (v4: the merged form names a room's lists)
out=$(ss4 "$alice" '{"conn_id":"v4","lists":{"dms":{"range":[0,99],"required_state":{},"timeline_limit":0,"filters":{"is_dm":true}},
 "all":{"range":[0,99],"required_state":{},"timeline_limit":0,"filters":{"is_invited":false}},
 "enc":{"range":[0,99],"required_state":{},"timeline_limit":0,"filters":{"is_encrypted":true,"is_invited":false}}}}')
assert_jq "$out" '[.lists.dms.count, .lists.all.count, .lists.enc.count]' "[1,$(printf '%s' "$joined" | jq length),1]" \
    "test_multiple_filters_and_multiple_lists: counts"
assert_jq "$out" ".rooms[\"$dm\"].lists | sort" '["all","dms"]' "test_multiple_filters_and_multiple_lists: a DM in two lists"
assert_jq "$out" ".rooms[\"$enc\"].lists | sort" '["all","enc"]' "test_multiple_filters_and_multiple_lists: encrypted in two lists"
assert_jq "$out" ".rooms[\"$r1\"].lists" '["all"]' "test_multiple_filters_and_multiple_lists: a plain room in one"

# test_filters_is_encrypted_updated: a room encrypted later moves lists
FE='{"lists":{"e":{"ranges":[[0,99]],"required_state":[],"timeline_limit":1,"filters":{"is_encrypted":true,"is_invite":false}}}}'
out=$(ss "$alice" "" "$FE")
pos=$(ss_pos "$out")
assert_jq "$out" '.lists.e.count' 1 "is_encrypted before"
ev=$(state "$r1" $A m.room.encryption "" '{"algorithm":"m.megolm.v1.aes-sha2"}')
stored "$ev"
out=$(ss "$alice" "$pos" "$FE" 5000)
assert_jq "$out" '.lists.e.count' 2 "test_filters_is_encrypted_updated: count"
assert_jq "$out" "[.rooms | keys[]]" "[\"$r1\"]" "test_filters_is_encrypted_updated: the newly encrypted room comes down"
assert_jq "$out" ".rooms[\"$r1\"].initial" 'true' "test_filters_is_encrypted_updated: new to this list's connection"

# test_filters_regardless_of_membership_server_left_room: a room of a
# filtered list the user then leaves still comes down with the leave
out=$(ss "$alice" "" "$FE")
pos=$(ss_pos "$out")
ev=$(member leave "$enc" "{\"user_id\":\"$A\"}")
stored "$ev"
out=$(ss "$alice" "$pos" "$FE" 5000)
assert_jq "$out" ".rooms[\"$enc\"].membership // \"leave\"" '"leave"' "test_filters_regardless_of_membership: the leave comes down"
assert_jq "$out" "[.rooms[\"$enc\"].timeline[]? | select(.type == \"m.room.member\") | .content.membership] | last" '"leave"' \
    "test_filters_regardless_of_membership: leave event in the timeline"
pos=$(ss_pos "$out")

# test_filters_is_encrypted_after_we_left: state after the leave is not
# used for filtering (r2 encrypted after alice left is still unencrypted for her)
out=$(ss "$alice" "" '{"lists":{"u":{"ranges":[[0,99]],"required_state":[],"timeline_limit":1,"filters":{"is_encrypted":false}}}}')
pos=$(ss_pos "$out")
ev=$(member leave "$r2" "{\"user_id\":\"$A\"}")
stored "$ev"
sim "rooms/$r2/join" "{\"user_id\":\"$B\"}" >/dev/null
ev=$(state "$r2" $B m.room.encryption "" '{"algorithm":"m.megolm.v1.aes-sha2"}')
stored "$ev"
out=$(ss "$alice" "$pos" '{"lists":{"u":{"ranges":[[0,99]],"required_state":[],"timeline_limit":1,"filters":{"is_encrypted":false}}}}' 3000)
assert_jq "$out" "[.rooms[\"$r2\"].timeline[]? | .type]" '["m.room.member"]' "test_filters_is_encrypted_after_we_left: only up to the leave"
out=$(ss "$alice" "$(ss_pos "$out")" '{"lists":{"e":{"ranges":[[0,99]],"required_state":[],"timeline_limit":1,"filters":{"is_encrypted":true}}}}' 0)
assert_jq "$out" "[.rooms // {} | keys[] | select(. == \"$r2\")]" '[]' "test_filters_is_encrypted_after_we_left: not encrypted for her"
it_pass
