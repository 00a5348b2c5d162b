#!/usr/bin/env bash
# Sliding sync's first window first (issue #11 item 8, docs/DESIGN.md "The
# first window first"): a login the proxy has never seen gets its list
# [0,19] as soon as the window of its initial sync is stored, while the
# rest waits behind a lock on syncv3_to_device (which only the rest
# needs). The window must be the list a later request returns once
# everything is stored: same rooms in the same order, names, timelines,
# and a room subscribed with timeline_limit 20 the same as later. Rooms
# whose last event is recent but not a bump event (a reaction) are in the
# accumulator's window by recency yet sort low by bump_stamp: they must
# not show in the window. A request the window cannot answer (a range past
# it, a subscription to a room stored behind it) waits for the rest.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_ss.sh"

export SYNCV3_API_SESSION_IDLE_SECS=600
export SYNCV3_ACC_WINDOW_ROOMS=30
# the first sync brings 50 events per room (lib.sh too), so that the rooms recent only
# by a reaction are known to be old by bump_stamp (the light first sync
# knows one event per room: t_ss_cold_light.sh)
export SYNCV3_FIRST_TIMELINE_LIMIT=50
start_stack
N=150
scen() {
	sim scenario "{\"users\":1,\"rooms_per_user\":$N,\"members_per_room\":3,\"messages_per_room\":3,\"prefix\":\"$1\"}"
}
synced() { psql_q "SELECT is_initial_done FROM syncv3_devices WHERE device_id = '$1'"; }
LIST='{"ranges":[[0,19]],"timeline_limit":1,"required_state":[["m.room.name",""]]}'
REQ="{\"lists\":{\"a\":$LIST}}"
# the rooms of a response (its list's, when it names no room) in the
# order a client sorts them, with name and stamp
view() { printf '%s' "$1" | jq -c '[.rooms | to_entries[] | {r: .key, n: .value.name, b: .value.bump_stamp}] | sort_by(-.b, .r)'; }
ids() { printf '%s' "$1" | jq -r '.rooms | to_entries | sort_by(-.value.bump_stamp, .key)[].key'; }
tl() { printf '%s' "$1" | jq -c --arg r "$2" '{t: [.rooms[$r].timeline[].event_id], l: .rooms[$r].limited, p: (.rooms[$r].prev_batch != null), n: .rooms[$r].name}'; }

out=$(scen c)
u=$(printf '%s' "$out" | jq -r '.users[0].user_id')
mapfile -t rooms < <(printf '%s' "$out" | jq -r '.rooms[]')
# the five oldest rooms get a recent reaction: recent by their last event
# (the window takes them), old by bump_stamp (the list must not)
for i in 0 1 2 3 4; do
	sim "rooms/${rooms[$i]}/send" "{\"sender\":\"$u\",\"type\":\"m.reaction\",\"content\":{\"k\":$i}}" >/dev/null
done
tok=$(sim_login "$u" CDEV)
# the rest of the body writes syncv3_to_device: the lock holds it back
todev() { sim to_device "{\"user_id\":\"$1\",\"device_id\":\"$2\",\"sender\":\"@x:localhost\",\"type\":\"m.x\",\"content\":{}}" >/dev/null; }
todev "$u" CDEV
hold_table_lock syncv3_to_device "ACCESS EXCLUSIVE" AccessExclusiveLock 8
t0=$(now_ms)
first=$(ss "$tok" "" "$REQ")
t1=$(now_ms)
assert_eq "$(last_status)" 200 "first window"
assert_eq "$(synced CDEV)" f "answered before the whole initial sync was stored"
assert_eq "$(ids "$first" | wc -l)" 20 "a full range"
assert_jq "$first" .lists.a.count "$N" "count: the rooms stored behind the window too"
log "first window after $((t1 - t0)) ms, $(psql_q "SELECT window_rooms FROM syncv3_devices WHERE device_id = 'CDEV'") rooms stored first"
for i in 0 1 2 3 4; do
	assert_jq "$first" "[.rooms|keys[]|select(.==\"${rooms[$i]}\")]" '[]' "reacted room $i sorts low"
done
pos=$(ss_pos "$first")
# a room of the window opened with timeline_limit 20
r=$(ids "$first" | sed -n 6p)
SUB="{\"$r\":{\"timeline_limit\":20,\"required_state\":[[\"m.room.name\",\"\"]]}}"
sub=$(ss "$tok" "$pos" "{\"lists\":{\"a\":$LIST},\"room_subscriptions\":$SUB}")
assert_eq "$(last_status)" 200 "subscription from the window"
assert_eq "$(synced CDEV)" f "the subscription answered from the window too"
sub_tl=$(tl "$sub" "$r")
wait_for '[ "$(synced CDEV)" = t ]' 30 || fail "the rest was never stored"
stop_proc locker
# everything stored: a new connection sees the same list and room
later=$(ss "$tok" "" "$REQ")
assert_eq "$(view "$later")" "$(view "$first")" "same rooms, same order, same names"
assert_jq "$later" .lists.a.count "$N" "the same count"
for x in $(ids "$first"); do
	assert_eq "$(tl "$later" "$x")" "$(tl "$first" "$x")" "room $x: same timeline"
done
lsub=$(ss "$tok" "" "{\"room_subscriptions\":$SUB}")
assert_eq "$(tl "$lsub" "$r")" "$sub_tl" "the subscribed room as later"

# a range past the window, a filtered list and a subscription to a room
# of the rest wait
out=$(scen d)
u2=$(printf '%s' "$out" | jq -r '.users[0].user_id')
old=$(printf '%s' "$out" | jq -r '.rooms[3]')
tok2=$(sim_login "$u2" DDEV)
todev "$u2" DDEV
hold_table_lock syncv3_to_device "ACCESS EXCLUSIVE" AccessExclusiveLock 4
# a subscription to a room stored behind the window (its device's first
# request: the poller starts), meanwhile
(ss "$tok2" "" "{\"conn_id\":\"s2\",\"room_subscriptions\":{\"$old\":{\"timeline_limit\":1}}}" >"$T/sub2"
 synced DDEV >"$T/sub2_synced") &
sub_pid=$!
wait_for "[ \"\$(psql_q \"SELECT window_pos IS NOT NULL FROM syncv3_devices WHERE device_id = 'DDEV'\")\" = t ]" 20 ||
	fail "no window stored"
WIDE='{"lists":{"a":{"ranges":[[0,99]],"timeline_limit":1}}}'
(ss "$tok2" "" '{"conn_id":"f","lists":{"b":{"ranges":[[0,9]],"filters":{"is_encrypted":false}}}}' >"$T/filt"
 synced DDEV >"$T/filt_synced") &
filt_pid=$!
wide=$(ss "$tok2" "" "$WIDE")
assert_eq "$(synced DDEV)" t "a range past the window waits for the rest"
assert_eq "$(ids "$wide" | wc -l)" 100 "and is whole"
assert_jq "$wide" .lists.a.count "$N" "with the whole count"
wait "$filt_pid"
assert_eq "$(cat "$T/filt_synced")" t "a filtered list waits for the rest"
assert_jq "$(cat "$T/filt")" .lists.b.count "$N" "and counts every room"
wait "$sub_pid"
assert_eq "$(cat "$T/sub2_synced")" t "a subscription to a room of the rest waits for it"
assert_jq "$(cat "$T/sub2")" "[.rooms|keys[]]" "[\"$old\"]" "and gets it"
it_pass
