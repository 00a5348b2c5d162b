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
# pt_req_counts: "user|device count" per device, /sync requests the
# simulated homeserver saw
pt_req_counts() { sim_get stats | jq -r '.sync_requests | to_entries[] | "\(.key) \(.value)"'; }
# pt_unpolled_ms T0_NS MAX_S BEFORE DEV...: waits (50 ms steps, at most
# MAX_S seconds) until every DEV ("user|device") has more /sync requests
# than BEFORE (a file of pt_req_counts lines) says, and prints the ms from
# T0_NS (date +%s%N) to the last of them; returns 1 on timeout.
pt_unpolled_ms() {
	local t0=$1 max=$2 before=$3 now worst=0 d key n
	shift 3
	local -A c0=() c1=()
	local left=("$@") rest
	while read -r key n; do c0[$key]=$n; done <"$before"
	while [ ${#left[@]} -gt 0 ]; do
		now=$(( ($(date +%s%N) - t0) / 1000000 ))
		[ $now -gt $((max * 1000)) ] && return 1
		c1=()
		while read -r key n; do c1[$key]=$n; done < <(pt_req_counts)
		rest=()
		for d in "${left[@]}"; do
			if [ "${c1[$d]:-0}" -gt "${c0[$d]:-0}" ]; then worst=$now; else rest+=("$d"); fi
		done
		left=("${rest[@]+"${rest[@]}"}")
		[ ${#left[@]} -gt 0 ] && sleep 0.05
	done
	echo "$worst"
}
# pt_held OWNER: "user|device" of every lease OWNER holds
pt_held() { psql_q "SELECT user_id || '|' || device_id FROM syncv3_leases WHERE owner = '$1'"; }
# pt_two_pollers A B N: starts pollers A and B (their names are their
# ids), waits until both run, then registers devices D1..DN of @u1..@uN
pt_two_pollers() {
	start_poller "$1"
	start_poller "$2"
	wait_for "grep -q 'polling http' '$T/$1.log' && grep -q 'polling http' '$T/$2.log'" 20 ||
	    fail "pollers did not start"
	for i in $(seq "$3"); do pt_register "@u$i:localhost" "D$i" >/dev/null; done
}
# pt_owned OWNER: how many leases OWNER holds
pt_owned() { psql_q "SELECT count(*) FROM syncv3_leases WHERE owner = '$1'"; }
# pt_polled: devices with a since and poll_state 'polling'
pt_polled() { psql_q "SELECT count(*) FROM syncv3_devices WHERE since <> '' AND poll_state = 'polling'"; }
