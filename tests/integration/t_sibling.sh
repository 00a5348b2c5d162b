#!/usr/bin/env bash
# Sibling devices (issue #13 item 1, docs/DESIGN.md "Sibling devices"): a
# new device of a user whose other device is stored and polled first
# syncs upstream without rooms, and its first v3 response, served from
# what is stored, equals a cold device's: the same rooms, timelines and
# to-device. The race: the sibling's poller lags while events are sent
# and a room is joined before the new device's first poll; the new device
# is answered only once the sibling has caught up. And the fallback: a
# sibling that never catches up makes the new device refill.
source "$(dirname "$0")/lib.sh"

export SYNCV3_API_SESSION_IDLE_SECS=600
export SYNCV3_SIBLING_WAIT_MS=4000
start_stack
U=@alice:localhost
LIST='{"room_list":{"limit":20,"timeline_limit":5},"to_device":{}}'
mk() { sim rooms "{\"creator\":\"$U\",\"name\":\"$1\"}" | jq -r .room_id; }
say() { sim "rooms/$1/send" "{\"sender\":\"$U\",\"type\":\"m.room.message\",\"content\":{\"body\":\"$2\"}}" >/dev/null; }
todev() { sim to_device "{\"user_id\":\"$U\",\"device_id\":\"$1\",\"sender\":\"@bob:localhost\",\"type\":\"m.x\",\"content\":{\"for\":\"$1\"}}" >/dev/null; }
synced() { [ "$(psql_q "SELECT is_initial_done FROM syncv3_devices WHERE user_id='$U' AND device_id='$1'")" = t ]; }
# what a first response shows of the rooms: ids, names, timelines
view() { printf '%s' "$1" | jq -c '[.room_list.rooms[]|{room_id,name,t:[.timeline[].event_id]}]|sort_by(.room_id)'; }
first_query() { curl -sS "$SIMHS_URL/_simhs/sync_log?access_token=$1" | jq -r '.requests[0].query'; }
# the room.rooms of a query's filter (null: every room)
filter_rooms() { python3 -c 'import sys, json, urllib.parse as u; q = u.parse_qs(sys.argv[1]); print(json.dumps(json.loads(q["filter"][0])["room"].get("rooms")))' "$1"; }

r1=$(mk one); r2=$(mk two); r3=$(mk three)
for i in 1 2 3; do say "$r1" "m$i"; say "$r2" "n$i"; done
tokA=$(sim_login $U A1)
out=$(v3 "$tokA" "" '{}' 10000)
assert_eq "$(last_status)" 200 "A registered"
wait_for "synced A1 && [ \"\$(psql_q \"SELECT poll_state FROM syncv3_devices WHERE device_id='A1'\")\" = polling ]" 10 ||
	fail "A1 not synced and polling"
wait_for "[ \"\$(psql_q \"SELECT count(*) FROM syncv3_leases WHERE device_id='A1'\")\" = 1 ]" 5 || fail "no lease"

# --- the race: A's poller lags while the account changes ---
# every next /sync of A1 is held 2.5 s; a to-device message wakes A1's
# parked long-poll so that its next one is a slow one
sim fail "{\"path\":\"sync\",\"access_token\":\"$tokA\",\"mode\":\"slow\",\"delay_ms\":2500,\"count\":3}" >/dev/null
todev A1
sleep 0.3
say "$r1" "in the gap"
r4=$(mk four)
say "$r4" "new room"
todev B1
tokB=$(sim_login $U B1)
t0=$(now_ms)
outB=$(v3 "$tokB" "" "$LIST" 0)
t1=$(now_ms)
assert_eq "$(last_status)" 200 "B answered"
q=$(first_query "$tokB")
case "$q" in
*since=*) fail "B's first poll had a since: $q" ;;
esac
assert_eq "$(filter_rooms "$q")" "[]" "B's first poll asks for no rooms"
synced B1 || fail "B answered before it was synced"
assert_jq "$outB" "[.room_list.rooms[].room_id]|index(\"$r4\") != null" 'true' "room joined in the gap is there"
assert_jq "$outB" "[.room_list.rooms[]|select(.room_id==\"$r1\")|.timeline[-1].content.body]" '["in the gap"]' "event sent in the gap is there"
assert_jq "$outB" '[.to_device.events[].content.for]' '["B1"]' "B's to-device"
log "sibling first response after $((t1 - t0)) ms (A lagging 2.5 s)"

# --- a cold device sees the same: no sibling-first for it ---
stop_proc poller
SYNCV3_SIBLING_WAIT_MS=0 start_poller poller
todev C1
tokC=$(sim_login $U C1)
outC=$(v3 "$tokC" "" "$LIST" 15000)
assert_eq "$(last_status)" 200 "C answered"
assert_eq "$(filter_rooms "$(first_query "$tokC")")" "null" "C's first poll asks for every room"
assert_eq "$(view "$outB")" "$(view "$outC")" "sibling B sees what cold C sees"
assert_jq "$outC" '[.to_device.events[].content.for]' '["C1"]' "C's to-device"
assert_jq "$outB" '.room_list.count' "$(printf '%s' "$outC" | jq -c .room_list.count)" "same count"

# --- a sibling that never catches up: the new device refills ---
stop_proc poller
start_poller poller
wait_for "[ \"\$(psql_q \"SELECT count(*) FROM syncv3_leases WHERE user_id='$U'\")\" = 3 ]" 10 || fail "not reclaimed"
sleep 0.5
# every /sync of A1, B1 and C1 from now on is held a minute, wakes them
for t in "$tokA" "$tokB" "$tokC"; do
	sim fail "{\"path\":\"sync\",\"access_token\":\"$t\",\"mode\":\"slow\",\"delay_ms\":60000,\"count\":100}" >/dev/null
done
for d in A1 B1 C1; do todev $d; done
sleep 0.5
say "$r2" "while stuck"
r5=$(mk five)
tokD=$(sim_login $U D1)
t0=$(now_ms)
outD=$(v3 "$tokD" "" "$LIST" 0)
t1=$(now_ms)
assert_eq "$(last_status)" 200 "D answered"
synced D1 || fail "D answered before it was synced"
assert_jq "$outD" "[.room_list.rooms[].room_id]|index(\"$r5\") != null" 'true' "refill: room joined while siblings were stuck"
assert_jq "$outD" "[.room_list.rooms[]|select(.room_id==\"$r2\")|.timeline[-1].content.body]" '["while stuck"]' "refill: event"
[ $((t1 - t0)) -ge 3500 ] || fail "D answered in $((t1 - t0)) ms, before its sibling wait"
grep -q "D1: refilled" "$T/poller.log" || fail "no refill logged"
n=$(curl -sS "$SIMHS_URL/_simhs/sync_log?access_token=$tokD" | jq '[.requests[].query|select(test("since=")|not)]|length')
assert_eq "$n" 2 "D: one sibling-first and one refill initial sync"
it_pass
