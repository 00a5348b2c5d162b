#!/usr/bin/env bash
# Issue #9, privacy: a user's first visible range of a room starts where
# the room's m.room.history_visibility lets a newly joined member read
# from (client-server spec, "History visibility"; api/visible.h): shared
# and world_readable from the room's beginning, invited from their invite,
# joined from their join; a visibility that changed under a stricter value
# holds the start back to the change. A rejoin still shows nothing of the
# gap, and an invitee only stripped state, even under world_readable.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_privacy.sh"

# hv ROOM VALUE: bob sets the room's history visibility
hv() { sim "rooms/$1/send" "{\"sender\":\"$B\",\"type\":\"m.room.history_visibility\",\"state_key\":\"\",\"content\":{\"history_visibility\":\"$2\"}}" >/dev/null; }
# stored BODY: bob's poller has stored the message
stored() { [ "$(psql_q "SELECT count(*) FROM syncv3_events WHERE json LIKE '%\"$1\"%'")" = 1 ]; }
# says ROOM TAG N: bob sends TAG1..TAGN, stored before anyone joins
says() {
	for i in $(seq 1 "$3"); do say "$1" "$2$i"; done
	wait_for "stored $2$3" 15 || fail "bob's poller did not store $2$3"
}
# room NAME VISIBILITY TAG N: bob's new room (R) with N messages
room() {
	R=$(mk "$1")
	[ "$2" = shared ] || hv $R "$2"
	says $R "$3" "$4"
}
# invite ROOM: bob invites alice, and her own poller has seen it
invite() {
	sim "rooms/$1/invite" "{\"sender\":\"$B\",\"user_id\":\"$A\"}" >/dev/null
	wait_for "ur_is $A $1 invite" 15 || fail "alice's poller did not see the invite"
}
# joins ROOM: alice joins and her own poller has seen it
joins() {
	sim "rooms/$1/join" "{\"user_id\":\"$A\"}" >/dev/null
	wait_for "ur_is $A $1 join" 15 || fail "alice's poller did not see her join of $1"
}
# tl OUT ROOM: the room's timeline as labels (a body, type:state_key:membership)
tl() { printf '%s' "$1" | jq -c "[.room_list.rooms[]|select(.room_id==\"$2\")|.timeline[]|.content.body // \"\(.type):\(.state_key // \"\"):\(.content.membership // .content.history_visibility // \"\")\"]"; }
first() { v3 "$alice" "" '{"room_list":{"timeline_limit":30}}' 10000; }
v3 "$bob" "" '{}' 10000 >/dev/null
v3 "$alice" "" '{}' 10000 >/dev/null

# shared (the simulated homeserver's default): bob's earlier messages
room Shared shared s 10; rs=$R
joins $rs
got=$(tl "$(first)" $rs)
assert_eq "$(printf '%s' "$got" | jq -c '[.[]|select(startswith("s"))]')" \
    '["s1","s2","s3","s4","s5","s6","s7","s8","s9","s10"]' "shared: earlier messages"
assert_jq "$got" '.[0]' '"m.room.create::"' "shared: from the room's beginning"
assert_jq "$got" '.[-1]' "\"m.room.member:$A:join\"" "shared: up to the join"

# world_readable: the same
room World world_readable w 3; rw=$R
joins $rw
got=$(tl "$(first)" $rw)
assert_eq "$(printf '%s' "$got" | jq -c '[.[]|select(startswith("w"))]')" '["w1","w2","w3"]' "world_readable: earlier messages"

# joined: from the join only
room Joined joined j 10; rj=$R
joins $rj
got=$(tl "$(first)" $rj)
assert_eq "$got" "[\"m.room.member:$A:join\"]" "joined: from the join"

# invited: from the invite, not before
room Invited invited b 3; ri=$R
invite $ri
says $ri i 2
joins $ri
got=$(tl "$(first)" $ri)
assert_eq "$got" "[\"m.room.member:$A:invite\",\"i1\",\"i2\",\"m.room.member:$A:join\"]" "invited: from the invite"

# shared, then joined, then shared again: only from the second shared
room Changed shared x 2; rc=$R
hv $rc joined
says $rc y 2
hv $rc shared
says $rc z 2
joins $rc
got=$(tl "$(first)" $rc)
assert_eq "$got" "[\"m.room.history_visibility::shared\",\"z1\",\"z2\",\"m.room.member:$A:join\"]" "changed: from the last change to shared"

# world_readable invite: stripped state only
room "World invite" world_readable v 2; rv=$R
invite $rv
out=$(first)
assert_jq "$out" "[.room_list.rooms[]|select(.room_id==\"$rv\")|[.membership,(.timeline|length)]]" '[["invite",0]]' "world_readable invite: no timeline"

# leave and rejoin the shared room: the history before the leave, nothing
# of the gap, the rejoin
s=$(printf '%s' "$out" | jq -r .next_batch)
sim "rooms/$rs/leave" "{\"user_id\":\"$A\"}" >/dev/null
wait_for "ur_is $A $rs leave" 15 || fail "alice's poller did not see her leave"
says $rs g 3
joins $rs
out=$(v3 "$alice" "$s" '{"room_list":{"timeline_limit":30}}' 5000)
got=$(tl "$out" $rs)
assert_eq "$(printf '%s' "$got" | jq -c '[.[]|select(startswith("g"))]')" '[]' "rejoin (streamed): nothing of the gap"
assert_jq "$got" '.[-1]' "\"m.room.member:$A:join\"" "rejoin (streamed): ends with the rejoin"
got=$(tl "$(first)" $rs)
assert_eq "$(printf '%s' "$got" | jq -c '[.[]|select(startswith("g"))]')" '[]' "rejoin (first page): nothing of the gap"
assert_eq "$(printf '%s' "$got" | jq -c '[.[]|select(startswith("s"))]|length')" 10 "rejoin (first page): the history before the leave"
assert_jq "$got" '.[-2:]' "[\"m.room.member:$A:leave\",\"m.room.member:$A:join\"]" "rejoin (first page): the leave, then the rejoin"

it_pass
