#!/usr/bin/env bash
# t_poller_errors: how the poller meets upstream errors (issue #3).
#  - 500s: backs off (poll_state 'backoff'), recovers, since keeps going
#  - 429: waits retry_after_ms before the next request
#  - malformed and truncated bodies: no crash, since not advanced
#  - 401: poll_state 'expired', lease released, no more requests; the api
#    (when built) answers M_UNKNOWN_TOKEN; a new token for the device
#    resumes polling
# Uses the real accumulator when it is built, else bench_poller (a
# stand-in doing the same since compare-and-set).
source "$(dirname "$0")/lib.sh"

# ---- poller test helpers (the same block in every t_poller_*.sh) ----
# pt_start_accumulator: the real one, or the stand-in plus the schema.
pt_start_accumulator() {
	if [ -x "$BIN/syncv3-accumulator" ] && [ -z "${PT_STANDIN:-}" ]; then
		start_accumulator
		return
	fi
	log "no accumulator built: using bench_poller as a stand-in"
	psql_q "CREATE TABLE syncv3_schema_migrations (version int PRIMARY KEY,
	    name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
	for f in "$IT_ROOT"/deploy/sql/[0-9][0-9][0-9]_*.sql; do
		psql_q "$(cat "$f")" >/dev/null || fail "schema $f"
		n=$(basename "$f"); psql_q "INSERT INTO syncv3_schema_migrations
		    VALUES (${n%%_*}, '${n%.sql}')"
	done
	start_proc accumulator "$BIN/bench_poller" -i "$SYNCV3_INGEST" \
	    -d "$SYNCV3_DB" -o "$T/acks.txt"
	PT_STANDIN=1
}
# pt_register USER DEVICE [TOKEN]: stores the device the way the api does
# (token hash + encrypted token, poll_state 'new', NOTIFY). Prints the token.
pt_register() {
	local tok=${3:-} hash enc
	[ -z "$tok" ] && tok=$(sim_login "$1" "$2")
	read -r hash enc < <(printf '%s\n' "$tok" | "$BIN/syncv3-poller" -E -)
	psql_q "INSERT INTO syncv3_devices (user_id, device_id, token_hash,
	    token_enc) VALUES ('$1', '$2', '$hash', '$enc')
	    ON CONFLICT (user_id, device_id) DO UPDATE SET
	    token_hash = excluded.token_hash, token_enc = excluded.token_enc,
	    poll_state = 'new', poll_error = ''; NOTIFY syncv3_devices" >/dev/null
	printf '%s\n' "$tok"
}
pt_col() { psql_q "SELECT $3 FROM syncv3_devices WHERE user_id='$1' AND device_id='$2'"; }
# pt_requests TOKEN: /sync requests the simulated homeserver saw for it
pt_requests() {
	sim_get stats | jq --arg t "$1" '.tokens[$t].requests // 0'
}
pt_todevice() {
	sim to_device "{\"sender\":\"@sender:localhost\",\"type\":\"m.test\",\"user_id\":\"$1\",\"device_id\":\"$2\",\"content\":{\"n\":$3}}" >/dev/null
}
# ---------------------------------------------------------------------

export SYNCV3_POLL_TIMEOUT_MS=1000 SYNCV3_BACKOFF_BASE_MS=200 \
    SYNCV3_BACKOFF_CAP_MS=2000 SYNCV3_LEASE_SECS=6
it_setup
start_simhs
pt_start_accumulator
U=@alice:localhost D=ADEV
TOK=$(pt_register "$U" "$D")
start_poller poller
wait_for "[ -n \"\$(pt_col $U $D since)\" ]" 15 || fail "initial sync not committed"
wait_for "[ \"\$(pt_col $U $D poll_state)\" = polling ]" 5 || fail "state not polling"
assert_eq "$(pt_col $U $D lease_owner)" poller "lease owner"

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
assert_eq "$(pt_col $U $D "coalesce(lease_owner,'')")" "" "401: lease not released"
n1=$(pt_requests "$TOK")
sleep 3
assert_eq "$(pt_requests "$TOK")" "$n1" "401: still polling"
if [ -x "$BIN/syncv3-api" ] && [ -z "${PT_STANDIN:-}" ]; then
	start_api
	v3 "$TOK" "" '{}' >/dev/null
	assert_eq "$(last_status)" 401 "401: api status"
	assert_jq "$(cat "$T/last_body")" .errcode '"M_UNKNOWN_TOKEN"' "401: api errcode"
fi

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
assert_eq "$(pt_col $U $D "coalesce(lease_owner,'')")" "" "SIGTERM: lease not released"
it_pass
