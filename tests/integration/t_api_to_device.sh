#!/usr/bin/env bash
# to_device: seed scenarios (byte-equal delivery, limit paging, redelivery
# until acked, two sessions) and session expiry releasing messages.
source "$(dirname "$0")/lib.sh"

export SYNCV3_API_SESSION_IDLE_SECS=6
start_stack
tok=$(sim_login @alice:localhost A1)
sim_get pos >/dev/null
v3 "$tok" "" '{}' 10000 >/dev/null   # registers the device, initial sync
msg() { sim to_device "{\"user_id\":\"@alice:localhost\",\"device_id\":\"A1\",\"sender\":\"@bob:localhost\",\"type\":\"m.x\",\"content\":{\"n\":$1}}" >/dev/null; }
msg 0
out=$(v3 "$tok" "" '{"to_device":{}}' 5000)
assert_jq "$out" '.to_device.events' '[{"sender":"@bob:localhost","type":"m.x","content":{"n":0}}]' "delivered"
assert_jq "$out" '.to_device.limit' '100' "default limit echoed"
anchor=$(printf '%s' "$out" | jq -r .next_batch)
# a second session of the same device
out2=$(v3 "$tok" "" '{"to_device":{}}' 0)
anchor2=$(printf '%s' "$out2" | jq -r .next_batch)
msg 1
for i in 1 2 3; do
	out=$(v3 "$tok" "$anchor" '{}' 5000)
	assert_jq "$out" '[.to_device.events[].content.n]' '[1]' "redelivered until acked ($i)"
done
next=$(printf '%s' "$out" | jq -r .next_batch)
v3 "$tok" "$next" '{}' 0 >/dev/null
out=$(v3 "$tok" "$anchor" '{}' 0)
assert_jq "$out" '.to_device.events' '[]' "acked: present and empty"
# session 2 has not acked: still there
out=$(v3 "$tok" "$anchor2" '{}' 0)
assert_jq "$out" '[.to_device.events[].content.n]' '[1]' "second session still gets it"
# limit paging
for i in $(seq 2 31); do msg $i; done
s=$(printf '%s' "$out" | jq -r .next_batch)
out=$(v3 "$tok" "$s" '{"to_device":{"limit":20}}' 5000)
assert_jq "$out" '[.to_device.events[].content.n]|length' '20' "limit 20"
assert_jq "$out" '.to_device.events[0].content.n' '2' "in order"
s=$(printf '%s' "$out" | jq -r .next_batch)
out=$(v3 "$tok" "$s" '{}' 5000)
assert_jq "$out" '[.to_device.events[].content.n]' "$(seq 22 31 | jq -sc .)" "next page"
out=$(v3 "$tok" "" '{"to_device":{"limit":5000}}' 0)
assert_jq "$out" '.to_device.limit' '1000' "limit capped"
# expiry: the idle session 1 (anchor) no longer holds messages back
sleep 8
out=$(v3 "$tok" "$anchor" '{}' 0)
assert_eq "$(last_status)" 400 "expired session"
assert_jq "$out" .errcode '"M_UNKNOWN_SYNC_SESSION"' "expired errcode"
fresh=$(v3 "$tok" "" '{"to_device":{}}' 0 | jq -r .next_batch)
v3 "$tok" "$fresh" '{}' 0 >/dev/null
sleep 1
n=$(psql_q "SELECT count(*) FROM syncv3_to_device WHERE user_id='@alice:localhost'")
assert_eq "$n" 0 "messages released once every live session acked"
it_pass
