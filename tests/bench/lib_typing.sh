#!/usr/bin/env bash
# Helpers of the typing benchmarks (bench_api.sh, bench_typing.sh), sourced
# after tests/integration/lib.sh once the stack runs.

# typing_sessions: alice in two rooms with bob, Idle (never typed in) and
# Latency; a typing session on each (since tokens $si, $sl), and a
# to_device session ($sd).
typing_sessions() {
	alice=$(sim_login @alice:localhost A1)
	ridle=$(sim rooms '{"creator":"@alice:localhost","name":"Idle"}' | jq -r .room_id)
	rlat=$(sim rooms '{"creator":"@alice:localhost","name":"Latency"}' | jq -r .room_id)
	for r in "$ridle" "$rlat"; do sim "rooms/$r/join" '{"user_id":"@bob:localhost"}' >/dev/null; done
	si=$(v3 "$alice" "" "{\"typing\":{\"room_id\":\"$ridle\"}}" 0 | jq -r .next_batch)
	sl=$(v3 "$alice" "" "{\"typing\":{\"room_id\":\"$rlat\"}}" 0 | jq -r .next_batch)
	sd=$(v3 "$alice" "" '{"to_device":{}}' 0 | jq -r .next_batch)
	[ "$si" != null ] && [ "$sl" != null ] && [ "$sd" != null ] || { log "no sessions"; exit 1; }
}

# typing_bench N K OUT [to_device]: bench_api (N idle long polls, K typing
# samples; with to_device, K to-device messages to alice's A1 on a
# to_device session instead, its since $sd from typing_sessions).
typing_bench() {
	local lat=$sl dev=()
	[ "${4:-}" = to_device ] && lat=$sd dev=(-d A1)
	"$BIN/bench_api" -a "$API_URL" -s "$SIMHS_URL" -t "$alice" -i "$si" \
	    -l "$lat" -r "$rlat" -p "${IT_PIDS[api]}" -n "$1" -k "$2" "${dev[@]}" >"$3" || {
		log "bench_api failed"; exit 1; }
}
