#!/usr/bin/env bash
# Synapse-equivalent behaviours (SYNAPSE-EQUIVALENTS.md): the room fields
# of test_rooms_meta.py: name, avatar, heroes, counts, bump_stamp, is_dm,
# for joined, invited and banned rooms, initial and incremental. Bob is
# polled by the proxy too, so it does store what happens after alice's
# ban: the api must not show it to her.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_ss_syn.sh"

start_stack
A=@alice:localhost B=@bob:localhost C=@carol:localhost
alice=$(sim_login $A A1)
bob=$(sim_login $B B1)
sim users '{"localpart":"carol"}' >/dev/null
ss_first "$bob" '{}'

L0='{"lists":{"foo-list":{"ranges":[[0,99]],"required_state":[],"timeline_limit":0}}}'
L1='{"lists":{"foo-list":{"ranges":[[0,99]],"required_state":[],"timeline_limit":1}}}'
# --- name/avatar, joined (test_rooms_meta_when_joined_initial)
r=$(mkroom $B "my super room")
state "$r" $B m.room.avatar "" '{"url":"mxc://DUMMY_MEDIA_ID"}' >/dev/null
member join "$r" "{\"user_id\":\"$A\",\"displayname\":\"Alice\"}" >/dev/null
ev=$(member invite "$r" "{\"sender\":\"$B\",\"user_id\":\"$C\"}")
stored "$ev"
ss_first "$alice" "$L0"
stored "$ev"
out=$(ss "$alice" "" "$L1")
assert_jq "$out" ".rooms[\"$r\"] | [.initial, .name, .avatar, .joined_count, .invited_count, .membership // \"join\"]" \
    '[true,"my super room","mxc://DUMMY_MEDIA_ID",2,1,"join"]' "test_rooms_meta_when_joined_initial"
assert_jq "$out" ".rooms[\"$r\"] | has(\"heroes\")" 'false' "no heroes when the room has a name"
pos=$(ss_pos "$out")
# --- nothing changed (test_rooms_meta_when_joined_incremental_no_change)
ev=$(msg "$r" $B "no meta change")
stored "$ev"
out=$(ss "$alice" "$pos" "$L1" 5000)
assert_jq "$out" ".rooms[\"$r\"] | [has(\"name\"), has(\"avatar\"), has(\"initial\") and .initial]" '[false,false,false]' \
    "test_rooms_meta_when_joined_incremental_no_change"
pos=$(ss_pos "$out")
# --- changed (test_rooms_meta_when_joined_incremental_with_state_change)
state "$r" $B m.room.name "" '{"name":"my super duper room"}' >/dev/null
ev=$(state "$r" $B m.room.avatar "" '{"url":"mxc://UPDATED_DUMMY_MEDIA_ID"}')
stored "$ev"
out=$(ss "$alice" "$pos" "$L1" 5000)
assert_jq "$out" ".rooms[\"$r\"] | [.name, .avatar]" '["my super duper room","mxc://UPDATED_DUMMY_MEDIA_ID"]' \
    "test_rooms_meta_when_joined_incremental_with_state_change"
assert_jq "$out" ".rooms[\"$r\"].initial // false" 'false' "a changed room is not initial"

# --- invited (test_rooms_meta_when_invited): name/avatar from the invite
ri=$(mkroom $B "invite room")
state "$ri" $B m.room.avatar "" '{"url":"mxc://INVITE"}' >/dev/null
member invite "$ri" "{\"sender\":\"$B\",\"user_id\":\"$A\"}" >/dev/null
has_membership $A "$ri" invite
out=$(ss "$alice" "" "$L0")
assert_jq "$out" ".rooms[\"$ri\"] | [.initial, .name, .avatar, .membership // \"invite\"]" \
    '[true,"invite room","mxc://INVITE","invite"]' "test_rooms_meta_when_invited"
assert_jq "$out" ".rooms[\"$ri\"].invite_state | map(select(.type == \"m.room.member\" and .state_key == \"$A\")) | .[0].content.membership" \
    '"invite"' "an invite carries its invite_state"

# --- banned (test_rooms_meta_when_banned): state as of the ban
rb=$(mkroom $B "before ban")
state "$rb" $B m.room.avatar "" '{"url":"mxc://BEFORE"}' >/dev/null
member join "$rb" "{\"user_id\":\"$A\"}" >/dev/null
member ban "$rb" "{\"sender\":\"$B\",\"user_id\":\"$A\"}" >/dev/null
state "$rb" $B m.room.name "" '{"name":"after ban"}' >/dev/null
ev=$(state "$rb" $B m.room.avatar "" '{"url":"mxc://AFTER"}')
stored "$ev"
out=$(ss "$alice" "" "$L0")
assert_jq "$out" ".rooms[\"$rb\"] | [.initial, .name, .avatar]" '[true,"before ban","mxc://BEFORE"]' \
    "test_rooms_meta_when_banned: no state after the ban"
assert_jq "$out" ".rooms[\"$rb\"] | [has(\"joined_count\"), has(\"invited_count\"), (.is_dm // false)]" '[false,false,false]' \
    "test_rooms_meta_when_banned: no counts"

# --- heroes (test_rooms_meta_heroes, _max, _empty_room_name)
rh=$(mkroom $B "")
member join "$rh" "{\"user_id\":\"$A\"}" >/dev/null
ev=$(member invite "$rh" "{\"sender\":\"$B\",\"user_id\":\"$C\"}")
stored "$ev"
out=$(ss "$alice" "" "$L0")
assert_jq "$out" ".rooms[\"$rh\"] | [has(\"name\"), ([.heroes[]?.user_id] | sort), .joined_count, .invited_count]" \
    "[false,[\"$B\",\"$C\"],2,1]" "test_rooms_meta_heroes: joined then invited, never yourself"
rmax=$(mkroom $B "")
member join "$rmax" "{\"user_id\":\"$A\"}" >/dev/null
for u in u1 u2 u3 u4 u5 u6; do
	sim users "{\"localpart\":\"$u\"}" >/dev/null
	ev=$(member join "$rmax" "{\"user_id\":\"@$u:localhost\"}")
done
stored "$ev"
out=$(ss "$alice" "" "$L0")
assert_jq "$out" ".rooms[\"$rmax\"] | [(.heroes | length), ([.heroes[].user_id] | index(\"$A\"))]" '[5,null]' \
    "test_rooms_meta_heroes_max: five, not yourself"
assert_jq "$out" ".rooms[\"$rmax\"].joined_count" 8 "heroes_max: joined_count counts everyone"
rempty=$(mkroom $B "")
state "$rempty" $B m.room.name "" '{"name":""}' >/dev/null
ev=$(member join "$rempty" "{\"user_id\":\"$A\"}")
stored "$ev"
out=$(ss "$alice" "" "$L0")
assert_jq "$out" ".rooms[\"$rempty\"] | [.heroes[]?.user_id]" "[\"$B\"]" "test_rooms_meta_heroes_empty_room_name"
# test_rooms_meta_heroes_when_banned: nobody who joined after the ban
rhb=$(mkroom $B "")
member join "$rhb" "{\"user_id\":\"$A\"}" >/dev/null
member ban "$rhb" "{\"sender\":\"$B\",\"user_id\":\"$A\"}" >/dev/null
ev=$(member join "$rhb" "{\"user_id\":\"$C\"}")
stored "$ev"
out=$(ss "$alice" "" "$L0")
assert_jq "$out" ".rooms[\"$rhb\"] | [.heroes[]?.user_id] | index(\"$C\")" 'null' "test_rooms_meta_heroes_when_banned"
# test_rooms_meta_heroes_incremental_sync_no_change / _with_membership_change
pos=$(ss_pos "$out")
ev=$(msg "$rh" $B "talk")
stored "$ev"
out=$(ss "$alice" "$pos" "$L0" 5000)
assert_jq "$out" ".rooms[\"$rh\"] | has(\"heroes\")" 'false' "test_rooms_meta_heroes_incremental_sync_no_change"
pos=$(ss_pos "$out")
ev=$(member join "$rh" "{\"user_id\":\"$C\"}")
stored "$ev"
out=$(ss "$alice" "$pos" "$L0" 5000)
assert_jq "$out" ".rooms[\"$rh\"] | [([.heroes[]?.user_id] | sort), .joined_count, .invited_count]" \
    "[[\"$B\",\"$C\"],3,0]" "test_rooms_meta_heroes_incremental_sync_with_membership_change"

# --- bump_stamp (test_rooms_bump_stamp, _no_change_incremental, _change_incremental)
L2='{"lists":{"foo-list":{"ranges":[[0,99]],"required_state":[],"timeline_limit":2}}}'
rs=$(mkroom $A "stamps")
m1=$(msg "$rs" $A "bump 1")
stored "$m1"
out=$(ss "$alice" "" "$L2")
s1=$(printf '%s' "$out" | jq ".rooms[\"$rs\"].bump_stamp")
[ "$s1" != null ] || fail "test_rooms_bump_stamp: no bump_stamp"
pos=$(ss_pos "$out")
ev=$(sim "rooms/$rs/send" "{\"sender\":\"$A\",\"type\":\"org.matrix.test\",\"content\":{}}" | jq -r .event_id)
stored "$ev"
out=$(ss "$alice" "$pos" "$L2" 5000)
assert_jq "$out" ".rooms[\"$rs\"] | [has(\"bump_stamp\"), [.timeline[]?.event_id] == [\"$ev\"]]" '[false,true]' \
    "test_rooms_bump_stamp_no_change_incremental: a non-bump event leaves it out"
pos=$(ss_pos "$out")
m2=$(msg "$rs" $A "bump 2")
for i in 1 2 3 4 5; do
	ev=$(sim "rooms/$rs/send" "{\"sender\":\"$A\",\"type\":\"org.matrix.test\",\"content\":{}}" | jq -r .event_id)
done
stored "$m2" "$ev"
out=$(ss "$alice" "$pos" "$L2" 5000)
s2=$(printf '%s' "$out" | jq ".rooms[\"$rs\"].bump_stamp")
assert_jq "$out" "[.rooms[\"$rs\"].timeline[]?.event_id] | index(\"$m2\")" 'null' "the bump event is not in the timeline"
[ "$s2" != null ] && [ "$s2" -gt "$s1" ] ||
    fail "test_rooms_bump_stamp_change_incremental: bump_stamp $s1 -> $s2"
out=$(ss "$alice" "" "$L2")
assert_jq "$out" ".rooms[\"$rs\"].bump_stamp" "$s2" "test_rooms_bump_stamp: a new connection sees the last bump event's stamp"
# test_rooms_bump_stamp_invites: an invite's stamp is its membership event
rinv=$(mkroom $B "stamp invite")
member invite "$rinv" "{\"sender\":\"$B\",\"user_id\":\"$A\"}" >/dev/null
has_membership $A "$rinv" invite
out=$(ss "$alice" "" "$L2")
si=$(printf '%s' "$out" | jq ".rooms[\"$rinv\"].bump_stamp")
ev=$(msg "$rinv" $B "after the invite")
stored "$ev"
out=$(ss "$alice" "" "$L2")
assert_jq "$out" ".rooms[\"$rinv\"].bump_stamp" "$si" "test_rooms_bump_stamp_invites: later events do not bump an invite"
[ "$si" != null ] || fail "test_rooms_bump_stamp_invites: no bump_stamp"
# and a room with activity after the invite stamps above it
stored "$(msg "$rs" $A "after the invite")"
out=$(ss "$alice" "" "$L2")
assert_jq "$out" "(.rooms[\"$rs\"].bump_stamp > .rooms[\"$rinv\"].bump_stamp)" 'true' \
    "activity after the invite stamps above it"

# --- is_dm (test_rooms_meta_is_dm)
rdm=$(mkroom $B "dm" '{"is_direct":true}')
stored "$(member join "$rdm" "{\"user_id\":\"$A\"}")"
sim account_data "{\"user_id\":\"$A\",\"type\":\"m.direct\",\"content\":{\"$B\":[\"$rdm\"]}}" >/dev/null
stored_sql "SELECT count(*) FROM syncv3_account_data WHERE user_id = '$A' AND type = 'm.direct'"
out=$(ss "$alice" "" "$L0")
assert_jq "$out" "[.rooms[\"$rdm\"].is_dm, (.rooms[\"$r\"].is_dm // false)]" '[true,false]' "test_rooms_meta_is_dm"
it_pass
