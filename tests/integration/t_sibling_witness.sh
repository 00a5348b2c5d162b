#!/usr/bin/env bash
# One witness per catch-up (issue #13 item 1, docs/DESIGN.md "Sibling
# devices"): when a new device's first sync without rooms is stored, the
# poller restarts one synced sibling's long-poll, not every device of the
# user: each restart is one more upstream sync (of every room at 10,000
# rooms), and they were served one after another. The new device is
# synced by that one catch-up and answered with the account's rooms.
# And its first request is woken at most once, by the device becoming synced: no
# poll state of the new device goes through the accumulator ahead of its
# first body (it took a transaction of its own there, and its notice
# woke the held request for nothing).
source "$(dirname "$0")/lib.sh"

export SYNCV3_API_SESSION_IDLE_SECS=600
export SYNCV3_SIBLING_WAIT_MS=1500
start_stack
U=@alice:localhost
LIST='{"room_list":{"limit":20,"timeline_limit":5},"to_device":{}}'
synced() { [ "$(psql_q "SELECT is_initial_done FROM syncv3_devices WHERE user_id='$U' AND device_id='$1'")" = t ]; }
# catchups TOKEN: the device's /sync requests with a since and timeout 0
catchups() { curl -sS "$SIMHS_URL/_simhs/sync_log?access_token=$1" | jq '[.requests[].query|select(test("since=") and test("timeout=0(&|$)"))]|length'; }

r1=$(sim rooms "{\"creator\":\"$U\",\"name\":\"one\"}" | jq -r .room_id)
r2=$(sim rooms "{\"creator\":\"$U\",\"name\":\"two\"}" | jq -r .room_id)
toks=()
for d in A1 A2 A3; do
	t=$(sim_login $U $d)
	toks+=("$t")
	v3 "$t" "" "$LIST" 10000 >/dev/null
	assert_eq "$(last_status)" 200 "$d answered"
	wait_for "synced $d" 10 || fail "$d not synced"
done
wait_for "[ \"\$(psql_q \"SELECT count(*) FROM syncv3_devices WHERE user_id='$U' AND poll_state = 'polling' AND is_initial_done\")\" = 3 ]" 10 ||
	fail "A1-A3 not polling"
sleep 2 # past every sibling wait: A1, A2 and A3 may each be a witness
before=0
for t in "${toks[@]}"; do before=$((before + $(catchups "$t"))); done

wakeups() { curl -sS "$API_URL/metrics" | awk '$1 == "syncv3_api_wakeups_total" { print $2 }'; }
w0=$(wakeups)
tokB=$(sim_login $U B1)
out=$(v3 "$tokB" "" "$LIST" 0)
assert_eq "$(last_status)" 200 "B answered"
synced B1 || fail "B answered before it was synced"
assert_jq "$out" '[.room_list.rooms[].room_id]|sort' "$(jq -cn --arg a "$r1" --arg b "$r2" '[$a,$b]|sort')" "B's rooms"
# once, or not at all when B became synced while the api read its device
# row (a device notice then makes it read the row again, no wake-up)
woken=$(($(wakeups) - w0))
[ "$woken" -le 1 ] || fail "B's first request woken $woken times"
wait_for "[ \"\$(psql_q \"SELECT poll_state FROM syncv3_devices WHERE device_id='B1'\")\" = polling ]" 5 ||
	fail "B1's poll state not written"
sleep 0.5 # a second restarted sibling would have asked by now
after=0
for t in "${toks[@]}"; do after=$((after + $(catchups "$t"))); done
assert_eq "$((after - before))" 1 "catch-up requests of A1-A3 for B1"
grep -q "B1: no sibling caught up" "$T/poller.log" && fail "B1 refilled"
it_pass
