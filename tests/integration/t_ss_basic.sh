#!/usr/bin/env bash
# Sliding sync, the vertical slice (Synapse dialect, as matrix-js-sdk 43
# sends it): one list, rooms newest first with initial/name/timeline,
# count, pos; an incremental response carries only what changed; a long
# poll is woken by an upstream message and not by another user's room;
# the same request on /v4/sync in the merged dialect.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_ss.sh"

start_stack
alice=$(sim_login @alice:localhost A1)
mk() { sim rooms "{\"creator\":\"@alice:localhost\"${1:+,\"name\":\"$1\"}}" | jq -r .room_id; }
r1=$(mk "one"); r2=$(mk "two"); r3=$(mk "three"); sleep 0.01
other=$(sim rooms '{"creator":"@carol:localhost","name":"not alice"}' | jq -r .room_id)
sim_msg "$r2" @alice:localhost "hello two"; sleep 0.01
sim_msg "$r1" @alice:localhost "hello one"
# the device's initial sync is stored before the first answer
list='{"lists":{"all":{"ranges":[[0,1]],"timeline_limit":1,"required_state":[["m.room.create",""]],"filters":{},"sort":["by_recency"]}}}'
out=$(ss "$alice" "" "$list" 10000)
assert_eq "$(last_status)" 200 "first request"
assert_jq "$out" '.lists.all.count' '3' "count over all rooms"
assert_jq "$out" '.rooms|keys|length' '2' "window [0,1] holds two rooms"
assert_jq "$out" ".rooms[\"$r1\"].initial" 'true' "initial on first sending"
assert_jq "$out" ".rooms[\"$r1\"].name" '"one"' "name"
assert_jq "$out" ".rooms[\"$r1\"].timeline|length" '1' "timeline_limit 1"
assert_jq "$out" ".rooms[\"$r1\"].timeline[0].content.body" '"hello one"' "newest event"
assert_jq "$out" ".rooms[\"$r1\"].limited" 'true' "limited"
assert_jq "$out" ".rooms[\"$r1\"].required_state[0].type" '"m.room.create"' "required_state"
assert_jq "$out" ".rooms[\"$r1\"].joined_count" '1' "joined_count"
assert_jq "$out" "[.rooms[\"$r1\"].bump_stamp > .rooms[\"$r2\"].bump_stamp]" '[true]' "bump_stamp follows activity"
assert_jq "$out" ".rooms[\"$other\"]" 'null' "never a room the user is not in"
p1=$(ss_pos "$out")
# nothing changed: a zero timeout answers at once with no rooms
out=$(ss "$alice" "$p1" "$list" 0)
assert_eq "$(last_status)" 200 "incremental"
assert_jq "$out" '.rooms' '{}' "nothing changed, nothing sent"
p2=$(ss_pos "$out")
# long-poll: another user's room does not wake it, alice's room does
t0=$(now_ms)
( sleep 0.5; sim_msg "$other" @carol:localhost "not for alice"; sleep 0.5; sim_msg "$r3" @alice:localhost "live" ) &
out=$(ss "$alice" "$p2" "$list" 10000)
t1=$(now_ms)
wait $!
[ $((t1 - t0)) -ge 900 ] || fail "woken early ($((t1 - t0)) ms): by another user's room?"
[ $((t1 - t0)) -lt 5000 ] || fail "not woken by the message ($((t1 - t0)) ms)"
assert_jq "$out" ".rooms|keys" "[\"$r3\"]" "the room moved into the window"
assert_jq "$out" ".rooms[\"$r3\"].initial" 'true' "new in the window: initial"
assert_jq "$out" ".rooms[\"$r3\"].timeline[-1].content.body" '"live"' "the live message"
p3=$(ss_pos "$out")
# a message in a room already sent: only the new event, not initial
( sleep 0.3; sim_msg "$r3" @alice:localhost "again" ) &
out=$(ss "$alice" "$p3" "$list" 10000)
wait $!
assert_jq "$out" ".rooms[\"$r3\"].initial" 'null' "incremental: no initial"
assert_jq "$out" "[.rooms[\"$r3\"].timeline[].content.body]" '["again"]' "only the new event"
assert_jq "$out" ".rooms[\"$r3\"].num_live" '1' "num_live"
# timeout holds that long when nothing happens, then answers empty
p4=$(ss_pos "$out")
t0=$(now_ms)
out=$(ss "$alice" "$p4" "$list" 1000)
t1=$(now_ms)
assert_jq "$out" '.rooms' '{}' "empty after the timeout"
[ $((t1 - t0)) -ge 950 ] || fail "answered early and empty ($((t1 - t0)) ms)"
# the merged dialect on /v4/sync
out=$(ss4 "$alice" '{"conn_id":"v4","lists":{"all":{"range":[0,9],"timeline_limit":1,"required_state":{"include":[{"type":"m.room.create","state_key":""}]}}}}')
assert_eq "$(last_status)" 200 "v4"
assert_jq "$out" '.lists.all.count' '3' "v4 count"
assert_jq "$out" ".rooms[\"$r3\"].membership" '"join"' "v4 membership"
assert_jq "$out" ".rooms[\"$r3\"].lists" '["all"]' "v4 lists"
assert_jq "$out" ".rooms[\"$r3\"].notification_count" 'null' "v4 has no notification_count"
v=$(ss_pos "$out")
out=$(ss4 "$alice" "{\"conn_id\":\"v4\",\"pos\":\"$v\",\"timeout\":0,\"lists\":{\"all\":{\"range\":[0,9],\"timeline_limit\":1}}}")
assert_eq "$(last_status)" 200 "v4 incremental"
assert_jq "$out" '.rooms' '{}' "v4 incremental, nothing new"
it_pass
