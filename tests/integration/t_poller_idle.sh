#!/usr/bin/env bash
# Devices that no session has used for SYNCV3_IDLE_SECS stop being polled
# (poll_state 'idle', lease released, no more upstream requests), and a
# v3 request for the device brings it back within seconds.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_poller.sh"
export SYNCV3_IDLE_SECS=4 SYNCV3_LEASE_SECS=3 SYNCV3_POLL_TIMEOUT_MS=1000
it_setup
start_simhs
start_accumulator
U=@idle:localhost D=IDEV
TOK=$(pt_register "$U" "$D")
start_poller poller
start_api
wait_for "[ -n \"\$(pt_col $U $D since)\" ]" 15 || fail "initial sync not committed"
assert_eq "$(pt_col $U $D poll_state)" polling "polling while fresh"

# Nobody uses the device: it goes idle and upstream stops seeing it.
wait_for "[ \"\$(pt_col $U $D poll_state)\" = idle ]" 20 || fail "device never went idle"
assert_eq "$(pt_owner $U $D)" "" "idle: lease released"
n1=$(pt_requests "$TOK")
sleep 3
assert_eq "$(pt_requests "$TOK")" "$n1" "idle: still polling upstream"

# A session uses it again: polling resumes.
v3 "$TOK" "" '{"to_device":{}}' 0 >/dev/null
assert_eq "$(last_status)" 200 "v3 request for an idle device"
wait_for "[ \"\$(pt_col $U $D poll_state)\" = polling ]" 10 || fail "polling did not resume"
wait_for "[ \"\$(pt_requests $TOK)\" -gt $n1 ]" 10 || fail "no upstream request after resuming"
# And what happens upstream now reaches the client.
sim to_device "{\"sender\":\"@x:localhost\",\"type\":\"m.back\",\"user_id\":\"$U\",\"device_id\":\"$D\",\"content\":{}}" >/dev/null
wait_for "v3 '$TOK' '' '{\"to_device\":{}}' 0 | jq -e '[.to_device.events[].type] | index(\"m.back\")'" 15 ||
    fail "message sent after resuming not delivered"
it_pass
