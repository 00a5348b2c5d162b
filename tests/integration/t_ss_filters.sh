#!/usr/bin/env bash
# Sliding sync lists: every filter (is_dm from m.direct, is_invite,
# is_encrypted, room_types/not_room_types with null for "no type",
# tags/not_tags from m.tag, spaces: direct children of joined spaces),
# and a window over 1,000 rooms sorted by activity as a message moves a
# room into it and another out.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_ss.sh"

start_stack
alice=$(sim_login @alice:localhost A1)
mk() { sim rooms "{\"creator\":\"@alice:localhost\",\"name\":\"$1\"${2:-}}" | jq -r .room_id; }
plain=$(mk plain)
dm=$(mk dm)
enc=$(mk enc ',"encrypted":true')
space=$(mk space ',"room_type":"m.space"')
child=$(mk child)
fav=$(mk fav)
inv=$(sim rooms '{"creator":"@carol:localhost","name":"inv"}' | jq -r .room_id)
sim "rooms/$inv/invite" '{"sender":"@carol:localhost","user_id":"@alice:localhost"}' >/dev/null
other=$(sim rooms '{"creator":"@carol:localhost","name":"otherspace","room_type":"m.space"}' | jq -r .room_id)
# invites into an encrypted room and a space: the stripped state tells
einv=$(sim rooms '{"creator":"@carol:localhost","name":"encinv","encrypted":true}' | jq -r .room_id)
sinv=$(sim rooms '{"creator":"@carol:localhost","name":"spaceinv","room_type":"m.space"}' | jq -r .room_id)
for r in "$einv" "$sinv"; do sim "rooms/$r/invite" '{"sender":"@carol:localhost","user_id":"@alice:localhost"}' >/dev/null; done
sim "rooms/$space/send" "{\"sender\":\"@alice:localhost\",\"type\":\"m.space.child\",\"state_key\":\"$child\",\"content\":{\"via\":[\"localhost\"]}}" >/dev/null
sim "rooms/$other/send" "{\"sender\":\"@carol:localhost\",\"type\":\"m.space.child\",\"state_key\":\"$plain\",\"content\":{\"via\":[\"localhost\"]}}" >/dev/null
sim account_data "{\"user_id\":\"@alice:localhost\",\"type\":\"m.direct\",\"content\":{\"@bob:localhost\":[\"$dm\"]}}" >/dev/null
sim account_data "{\"user_id\":\"@alice:localhost\",\"room_id\":\"$fav\",\"type\":\"m.tag\",\"content\":{\"tags\":{\"m.favourite\":{}}}}" >/dev/null
# rooms of list $1 with filters $2, sorted
rooms() {
	ss "$alice" "" "{\"lists\":{\"$1\":{\"ranges\":[[0,99]],\"timeline_limit\":0,\"filters\":$2}}}" 10000 |
	    jq -c "[.rooms|keys[]]|sort"
}
want() { printf '%s\n' "$@" | jq -R . | jq -sc 'sort'; }
all=$(want "$plain" "$dm" "$enc" "$space" "$child" "$fav" "$inv" "$einv" "$sinv")
# the statement each list ran (api debug log): a list without filters
# the one without their branches (SS_LIST_ROOMS_PLAIN), one with any
# filter the full one
stmts() { grep -c ": list 0: $1\$" "$T/api.log"; }
assert_eq "$(rooms a '{}')" "$all" "no filter: all"
[ "$(stmts api_ss_list_rooms_plain)" -ge 1 ] || fail "no filter: api_ss_list_rooms_plain not run"
assert_eq "$(stmts api_ss_list_rooms)" 0 "no filter: api_ss_list_rooms not run"
n_plain=$(stmts api_ss_list_rooms_plain)
assert_eq "$(rooms a '{"is_dm":true}')" "$(want "$dm")" "is_dm"
[ "$(stmts api_ss_list_rooms)" -ge 1 ] || fail "is_dm: api_ss_list_rooms not run"
assert_eq "$(rooms a '{"is_dm":false,"is_invite":false}')" "$(want "$plain" "$enc" "$space" "$child" "$fav")" "not is_dm"
assert_eq "$(rooms a '{"is_invite":true}')" "$(want "$inv" "$einv" "$sinv")" "is_invite"
assert_eq "$(rooms a '{"is_invite":true,"is_encrypted":true}')" "$(want "$einv")" "an invite's encryption from its stripped state"
assert_eq "$(rooms a '{"is_invite":true,"room_types":["m.space"]}')" "$(want "$sinv")" "an invite's room type from its stripped state"
assert_eq "$(rooms a '{"is_invite":true,"room_types":[null],"is_encrypted":false}')" "$(want "$inv")" "an invite with no type, unencrypted"
assert_eq "$(rooms a '{"is_invite":false}')" "$(want "$plain" "$dm" "$enc" "$space" "$child" "$fav")" "not is_invite"
assert_eq "$(rooms a '{"is_encrypted":true}')" "$(want "$enc" "$einv")" "is_encrypted"
assert_eq "$(rooms a '{"room_types":["m.space"]}')" "$(want "$space" "$sinv")" "room_types"
assert_eq "$(rooms a '{"room_types":[null],"is_invite":false}')" "$(want "$plain" "$dm" "$enc" "$child" "$fav")" "room_types null: no type"
assert_eq "$(rooms a '{"not_room_types":["m.space"],"is_invite":false}')" "$(want "$plain" "$dm" "$enc" "$child" "$fav")" "not_room_types"
assert_eq "$(rooms a '{"room_types":["m.space"],"not_room_types":["m.space"]}')" '[]' "not_room_types wins"
assert_eq "$(rooms a '{"tags":["m.favourite"]}')" "$(want "$fav")" "tags"
assert_eq "$(rooms a '{"not_tags":["m.favourite"],"is_invite":false}')" "$(want "$plain" "$dm" "$enc" "$space" "$child")" "not_tags"
assert_eq "$(rooms a "{\"spaces\":[\"$space\"]}")" "$(want "$child")" "spaces: children of a joined space"
assert_eq "$(rooms a "{\"spaces\":[\"$other\"]}")" '[]' "spaces: a space the user is not in is ignored"
assert_eq "$(stmts api_ss_list_rooms_plain)" "$n_plain" "every filter: api_ss_list_rooms_plain not run"
out=$(ss "$alice" "" '{"lists":{"dms":{"ranges":[[0,9]],"filters":{"is_dm":true}},"rest":{"ranges":[[0,9]],"filters":{"is_dm":false}}}}' 0)
assert_jq "$out" '[.lists.dms.count, .lists.rest.count]' '[1,8]' "two lists, a count each"
assert_eq "$(stmts api_ss_list_plain)" 0 "two filtered lists: api_ss_list_plain not run"
# several lists without filters: SS_LIST without their branches each
out=$(ss "$alice" "" '{"lists":{"a":{"ranges":[[0,9]],"filters":{}},"b":{"ranges":[[0,2]]}}}' 0)
n=$(printf '%s' "$all" | jq length)
assert_jq "$out" '[.lists.a.count, .lists.b.count, (.rooms|length)]' "[$n,$n,$n]" "two lists without filters: every room"
assert_eq "$(grep -c ': list [01]: api_ss_list_plain$' "$T/api.log")" 2 "two lists without filters: api_ss_list_plain for each"
out=$(ss4 "$alice" '{"lists":{"i":{"range":[0,9],"filters":{"is_invited":true}}}}')
assert_jq "$out" "[.rooms|keys[]]|sort" "$(want "$inv" "$einv" "$sinv")" "v4 is_invited"

# a window over 1,000 rooms, sorted by activity
sc=$(sim scenario '{"users":1,"rooms_per_user":1000,"members_per_room":2,"messages_per_room":1,"prefix":"w"}')
big=$(printf '%s' "$sc" | jq -r '.users[0].access_token')
wu=$(printf '%s' "$sc" | jq -r '.users[0].user_id')
wl='{"lists":{"w":{"ranges":[[0,9]],"timeline_limit":1}}}'
out=$(ss "$big" "" "$wl" 60000)
assert_eq "$(last_status)" 200 "1000 rooms"
assert_jq "$out" '.lists.w.count' '1000' "count 1000"
assert_jq "$out" '.rooms|length' '10' "window of 10"
top=$(psql_q "SELECT room_id FROM syncv3_user_rooms WHERE user_id = '$wu' ORDER BY ss_bump_ts DESC, ss_bump_nid DESC, room_id LIMIT 10" | jq -R . | jq -sc sort)
assert_eq "$(printf '%s' "$out" | jq -c '[.rooms|keys[]]|sort')" "$top" "the 10 newest rooms"
assert_jq "$out" '[.rooms[].bump_stamp]|length' '10' "bump_stamp on each"
assert_jq "$out" "[.rooms[].timeline[-1].origin_server_ts] == ([.rooms[].bump_stamp])" 'true' "bump_stamp is the newest event's time"
# (another conn_id: a request without pos restarts its own conn_id only)
second=$(ss4 "$big" '{"conn_id":"b","lists":{"w":{"range":[10,19],"timeline_limit":1}}}')
assert_jq "$second" "([.rooms[].bump_stamp]|max) <= ([$(printf '%s' "$out" | jq -c '[.rooms[].bump_stamp]|min')]|min)" 'true' "[10,19] is older than [0,9]"
p=$(ss_pos "$out")
# the first window may come before the rest of the initial sync is stored
wait_for "[ \"\$(psql_q \"SELECT count(*) FROM syncv3_user_rooms WHERE user_id = '$wu'\")\" = 1000 ]" 60 ||
    fail "the rest of the initial sync was not stored"
# a message in the 501st room moves it into the window; the 10th falls out
r500=$(psql_q "SELECT room_id FROM syncv3_user_rooms WHERE user_id = '$wu' ORDER BY ss_bump_ts DESC, ss_bump_nid DESC, room_id OFFSET 500 LIMIT 1")
sim_msg "$r500" "$wu" "up"
out=$(ss "$big" "$p" "$wl" 10000)
assert_jq "$out" ".rooms|keys" "[\"$r500\"]" "only the room that moved in is sent"
assert_jq "$out" ".rooms[\"$r500\"].initial" 'true' "new in the window: initial"
assert_jq "$out" '.lists.w.count' '1000' "count unchanged"
p=$(ss_pos "$out")
now=$(psql_q "SELECT room_id FROM syncv3_user_rooms WHERE user_id = '$wu' ORDER BY ss_bump_ts DESC, ss_bump_nid DESC, room_id LIMIT 1")
assert_eq "$now" "$r500" "it sorts first now"
it_pass
