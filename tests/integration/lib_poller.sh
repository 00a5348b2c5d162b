#!/usr/bin/env bash
# Helpers for the poller scenarios (t_poller_*.sh), sourced after lib.sh.
# They register devices the way the api does, without going through it,
# so a scenario controls exactly which devices exist and when.
# pt_register USER DEVICE [TOKEN]: stores the device the way the api does
# (token hash + encrypted token, poll_state 'new', NOTIFY). Prints the token.
pt_register() {
	local tok=${3:-} hash enc
	[ -z "$tok" ] && tok=$(sim_login "$1" "$2")
	read -r hash enc < <(printf '%s\n' "$tok" | "$BIN/syncv3-tokenenc" -)
	psql_q "INSERT INTO syncv3_devices (user_id, device_id, token_hash,
	    token_enc) VALUES ('$1', '$2', '$hash', '$enc')
	    ON CONFLICT (user_id, device_id) DO UPDATE SET
	    token_hash = excluded.token_hash, token_enc = excluded.token_enc,
	    poll_state = 'new', poll_error = ''; NOTIFY syncv3_devices" >/dev/null
	printf '%s\n' "$tok"
}
pt_col() { psql_q "SELECT $3 FROM syncv3_devices WHERE user_id='$1' AND device_id='$2'"; }
# pt_owner USER DEVICE: the poller holding the device's lease, or nothing
pt_owner() { psql_q "SELECT owner FROM syncv3_leases WHERE user_id='$1' AND device_id='$2'"; }
# pt_requests TOKEN: /sync requests the simulated homeserver saw for it
pt_requests() {
	sim_get stats | jq --arg t "$1" '.tokens[$t].requests // 0'
}
pt_todevice() {
	sim to_device "{\"sender\":\"@sender:localhost\",\"type\":\"m.test\",\"user_id\":\"$1\",\"device_id\":\"$2\",\"content\":{\"n\":$3}}" >/dev/null
}
