#!/usr/bin/env bash
# The first window first (issue #13 item 4, docs/DESIGN.md): a login the
# proxy has never seen is answered as soon as the most recently active
# rooms of its initial sync are stored, while the rest is still being
# stored (held here behind a lock on syncv3_to_device, which only the
# rest needs). The window equals what later requests return (same rooms,
# order, names, timelines), the rooms stored behind it are not streamed
# as new joins, and nothing is lost: a message sent meanwhile, a room
# joined later and the device's to-device message all arrive.
source "$(dirname "$0")/lib.sh"

export SYNCV3_API_SESSION_IDLE_SECS=600
export SYNCV3_ACC_WINDOW_ROOMS=20
start_stack
N=150
u=$(sim scenario "{\"users\":1,\"rooms_per_user\":$N,\"members_per_room\":3,\"messages_per_room\":3,\"prefix\":\"w\"}" |
	jq -r '.users[0].user_id')
tok=$(sim_login "$u" WDEV)
sim to_device "{\"user_id\":\"$u\",\"device_id\":\"WDEV\",\"sender\":\"@x:localhost\",\"type\":\"m.x\",\"content\":{\"n\":1}}" >/dev/null
REQ='{"room_list":{"limit":10,"timeline_limit":3}}'
view() { printf '%s' "$1" | jq -c '[.room_list.rooms[]|{room_id,name,t:[.timeline[].event_id]}]'; }
synced() { psql_q "SELECT is_initial_done FROM syncv3_devices WHERE device_id = 'WDEV'"; }

hold_table_lock syncv3_to_device "ACCESS EXCLUSIVE" AccessExclusiveLock 8
t0=$(now_ms)
first=$(v3 "$tok" "" "$REQ" 0)
t1=$(now_ms)
assert_eq "$(last_status)" 200 "first window"
assert_eq "$(synced)" f "answered before the whole initial sync was stored"
assert_jq "$first" '.room_list.rooms|length' 10 "a full page"
cnt=$(printf '%s' "$first" | jq .room_list.count)
[ "$cnt" -ge 20 ] && [ "$cnt" -lt "$N" ] || fail "window count $cnt: the rooms stored so far"
log "first window after $((t1 - t0)) ms, count $cnt of $N"
s0=$(printf '%s' "$first" | jq -r .next_batch)
# a message in a room of the window while the rest waits
r=$(printf '%s' "$first" | jq -r '.room_list.rooms[3].room_id')
sim "rooms/$r/send" "{\"sender\":\"$u\",\"type\":\"m.room.message\",\"content\":{\"body\":\"meanwhile\"}}" >/dev/null
wait_for '[ "$(synced)" = t ]' 30 || fail "the rest was never stored"
stop_proc locker

wait_for "[ \"\$(psql_q \"SELECT count(*) FROM syncv3_events WHERE json LIKE '%meanwhile%'\")\" = 1 ]" 10 ||
	fail "the message sent meanwhile was not stored"

# a later first page is the window (the room with the new message first);
# count now says every room
later=$(v3 "$tok" "" "$REQ" 0)
want=$(view "$first" | jq -c --arg r "$r" '[$r] + ([.[]|.room_id] - [$r])')
assert_eq "$(view "$later" | jq -c '[.[]|.room_id]')" "$want" "same rooms, same order"
assert_eq "$(view "$later" | jq -c --arg r "$r" '[.[]|select(.room_id != $r)]')" \
	"$(view "$first" | jq -c --arg r "$r" '[.[]|select(.room_id != $r)]')" "same names and timelines"
assert_jq "$later" "[.room_list.rooms[]|select(.room_id==\"$r\")|.timeline[-1].content.body]" '["meanwhile"]' "the new message is there"
assert_jq "$later" .room_list.count "$N" "count converged"

# streaming from the window: the message, and none of the rooms stored
# behind it as if newly joined
out=$(v3 "$tok" "$s0" '{"to_device":{}}' 3000)
assert_jq "$out" '[.room_list.rooms[].room_id]' "[\"$r\"]" "only the room that changed is streamed"
assert_jq "$out" "[.room_list.rooms[0].timeline[].content.body]" '["meanwhile"]' "with its new event, once"
assert_jq "$out" '[.to_device.events[].content.n]' '[1]' "to-device stored behind the window arrives"
s1=$(printf '%s' "$out" | jq -r .next_batch)
# a room joined later is new, and streamed
nr=$(sim rooms "{\"creator\":\"$u\",\"name\":\"late\"}" | jq -r .room_id)
out=$(v3 "$tok" "$s1" '{}' 5000)
assert_jq "$out" '[.room_list.rooms[]|select(.room_id=="'"$nr"'")|.name]' '["late"]' "a later join is streamed"
[ "$(psql_q "SELECT fill_hi >= fill_lo AND window_pos < fill_lo FROM syncv3_devices WHERE device_id = 'WDEV'")" = t ] ||
	fail "fill range not recorded after the window"
it_pass
