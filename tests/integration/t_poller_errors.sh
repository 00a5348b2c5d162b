#!/usr/bin/env bash
# t_poller_errors: how the poller meets upstream errors (issue #3).
#  - 500s: backs off (poll_state 'backoff'), recovers, since keeps going
#  - 429: waits retry_after_ms before the next request
#  - malformed and truncated bodies: no crash, since not advanced
#  - 401: poll_state 'expired', lease released, no more requests; the api
#    answers M_UNKNOWN_TOKEN; a new token for the device
#    resumes polling
source "$(dirname "$0")/lib.sh"

. "$(dirname "$0")/lib_poller.sh"

export SYNCV3_POLL_TIMEOUT_MS=1000 SYNCV3_BACKOFF_BASE_MS=200 \
    SYNCV3_BACKOFF_CAP_MS=2000 SYNCV3_LEASE_SECS=6
it_setup
start_simhs
start_accumulator
U=@alice:localhost D=ADEV
TOK=$(pt_register "$U" "$D")
start_poller poller
wait_for "[ -n \"\$(pt_col $U $D since)\" ]" 15 || fail "initial sync not committed"
wait_for "[ \"\$(pt_col $U $D poll_state)\" = polling ]" 5 || fail "state not polling"
assert_eq "$(pt_owner $U $D)" poller "lease owner"

# --- 500s: back off, then recover ------------------------------------
since0=$(pt_col $U $D since)
sim fail '{"path":"sync","status":500,"count":4}' >/dev/null
wait_for "[ \"\$(pt_col $U $D poll_state)\" = backoff ]" 10 || fail "500: no backoff state"
assert_eq "$(pt_col $U $D poll_error)" "http 500 M_UNKNOWN" "500: poll_error"
pt_todevice "$U" "$D" 1
wait_for "[ \"\$(pt_col $U $D poll_state)\" = polling ]" 15 || fail "500: did not recover"
wait_for "[ \"\$(pt_col $U $D since)\" != '$since0' ]" 10 || fail "500: since stuck"
grep -q "http 500.*retry in" "$T/poller.log" || fail "500: no backoff logged"
# exponential: the logged delays of the 4 failures are capped at 2000 ms
delays=$(grep -o 'http 500 M_UNKNOWN; retry in [0-9]*' "$T/poller.log" | grep -o '[0-9]*$' | tr '\n' ' ')
log "500 backoff delays (ms): $delays"
for d in $delays; do [ "$d" -le 2000 ] || fail "500: delay $d over the cap"; done

# --- 429: honour retry_after_ms ----------------------------------------
sim fail '{"path":"sync","status":429,"retry_after_ms":4000,"count":1}' >/dev/null
wait_for "grep -q 'M_LIMIT_EXCEEDED; retry in 4000 ms' '$T/poller.log'" 10 || fail "429: retry_after_ms not used"
n1=$(pt_requests "$TOK")
sleep 3
n2=$(pt_requests "$TOK")
assert_eq "$n2" "$n1" "429: requests during retry_after_ms"
wait_for "[ \"\$(pt_requests $TOK)\" -gt $n2 ]" 5 || fail "429: did not resume"

# --- malformed / truncated bodies: no crash, since unchanged ------------
# Between the first and the last bad body of a run the poller only backs
# off, so the committed since must not move.
nbad() { grep -cE "warn: device $U/$D: (http 200|network)" "$T/poller.log"; }
wait_for "[ \"\$(pt_col $U $D poll_state)\" = polling ]" 10
for mode in malformed truncated; do
	b0=$(nbad)
	sim fail "{\"path\":\"sync\",\"mode\":\"$mode\",\"count\":3}" >/dev/null
	pt_todevice "$U" "$D" 2
	wait_for "[ \$(nbad) -ge $((b0 + 1)) ]" 10 || fail "$mode: not seen"
	since_m=$(pt_col $U $D since)
	wait_for "[ \$(nbad) -ge $((b0 + 3)) ]" 15 || fail "$mode: not retried"
	assert_eq "$(pt_col $U $D since)" "$since_m" "$mode: since advanced"
	is_running poller || fail "poller died on a $mode body"
	wait_for "[ \"\$(pt_col $U $D poll_state)\" = polling ]" 15 || fail "$mode: did not recover"
done
grep -q 'body is not JSON' "$T/poller.log" || fail "malformed body not classified"

# --- 401: expired, lease released, polling stops ------------------------
sim revoke "{\"access_token\":\"$TOK\"}" >/dev/null
wait_for "[ \"\$(pt_col $U $D poll_state)\" = expired ]" 10 || fail "401: not expired"
assert_eq "$(pt_owner $U $D)" "" "401: lease not released"
n1=$(pt_requests "$TOK")
sleep 3
assert_eq "$(pt_requests "$TOK")" "$n1" "401: still polling"
start_api
v3 "$TOK" "" '{}' >/dev/null
assert_eq "$(last_status)" 401 "401: api status"
assert_jq "$(cat "$T/last_body")" .errcode '"M_UNKNOWN_TOKEN"' "401: api errcode"

# --- a new token for the same device resumes ---------------------------
since2=$(pt_col $U $D since)
TOK2=$(sim login "{\"user_id\":\"$U\",\"device_id\":\"$D\"}" | jq -r .access_token)
pt_register "$U" "$D" "$TOK2" >/dev/null
wait_for "[ \"\$(pt_col $U $D poll_state)\" = polling ]" 5 || fail "new token: not resumed"
pt_todevice "$U" "$D" 3
wait_for "[ \"\$(pt_col $U $D since)\" != '$since2' ]" 10 || fail "new token: since stuck"
[ "$(pt_requests "$TOK2")" -gt 0 ] || fail "new token not used"
is_running poller || fail "poller died"
assert_eq "$(sim_get stats | jq --arg k "$U|$D" '.sync_inflight_max[$k]')" 1 \
    "more than one request in flight for the device"
stop_proc poller
assert_eq "$(pt_owner $U $D)" "" "SIGTERM: lease not released"
it_pass
