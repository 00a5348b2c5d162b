#!/usr/bin/env bash
# it: serial
# A large initial sync arriving slowly (issue #13): the poller validates
# the body as it arrives, so no step holds its loop near the liveness
# deadline. The takeover deadline is the shortest allowed (400 ms: a
# step over 300 ms lapses the lease), simhs writes the 30+ MB body at a
# throttled rate, and the poller must keep its liveness (nothing lapses
# in its log), fetch the initial sync once (no refetch from since ""),
# store it, and report its longest loop stall under the deadline.
# BIGBODY_ROOMS (default 10000, about 37 MB) sizes the body.
source "$(dirname "$0")/lib.sh"

ROOMS=${BIGBODY_ROOMS:-10000}
export SYNCV3_TAKEOVER_MS=400 SYNCV3_API_MAX_TIMEOUT_MS=900000
export SYNCV3_API_INITIAL_WAIT_MS=1000
it_setup
start_simhs
start_accumulator
PROM=127.0.0.1:$(free_port)
SYNCV3_PROM=$PROM start_poller poller
start_api
wait_for "curl -sf http://$PROM/health" 20 || fail "poller /health"
metric() {
	curl -sS -f "http://$PROM/metrics" |
	    awk -v k="$1" '$1 == k && !f { print $2; f = 1 }'
}

sc=$(sim scenario "{\"users\":1,\"rooms_per_user\":$ROOMS,\"members_per_room\":3,\"messages_per_room\":4,\"prefix\":\"big\"}")
user=$(printf '%s' "$sc" | jq -r '.users[0].user_id')
probe=$(printf '%s' "$sc" | jq -r '.users[0].access_token')
raw=$(curl -sS -o /dev/null -w '%{size_download}' -H "Authorization: Bearer $probe" \
    "$SIMHS_URL/_matrix/client/v3/sync?timeout=0")
gz=$(curl -sS --compressed -o /dev/null -w '%{size_download}' \
    -H "Authorization: Bearer $probe" "$SIMHS_URL/_matrix/client/v3/sync?timeout=0")
[ "$raw" -ge $((30 << 20)) ] || fail "initial sync is $raw bytes, want 30 MiB or more"
# about 6 s on the wire, well above the poller's low-speed limit
rate=$((gz / 6))
log "initial sync: $raw bytes, $gz gzipped, sent at $rate bytes/s"
sim throttle "{\"bytes_per_sec\":$rate}" >/dev/null
tok=$(sim_login "$user" BIGDEV)

t0=$(now_ms)
# the login makes the proxy poll; its answer is not what is tested
v3 "$tok" "" '{"room_list":{"limit":1}}' 0 >/dev/null
lapsed() { grep -E "liveness (lost|not renewed)|stopping all" "$T/poller.log"; }
stored() { [ "$(psql_q "SELECT is_initial_done FROM syncv3_devices WHERE device_id = 'BIGDEV'")" = t ]; }
wait_for "stored || lapsed" 600 || fail "the initial sync was never stored"
log "stored or lapsed after $(( $(now_ms) - t0 )) ms"
sim throttle '{"bytes_per_sec":0}' >/dev/null

if lapsed >"$T/lapses"; then
	fail "the poller lost its liveness: $(head -3 "$T/lapses")"
fi
stored || fail "the initial sync was not stored"
initial=$(sim_get "sync_log?access_token=$tok" |
	jq '[.requests[] | select(.query | test("since=") | not)] | length')
assert_eq "$initial" 1 "the initial sync was fetched once"
stall=$(metric syncv3_poller_loop_stall_max_ms)
[ -n "$stall" ] || fail "no syncv3_poller_loop_stall_max_ms"
log "longest loop stall: $stall ms"
[ "${stall%.*}" -lt 300 ] || fail "a loop stall of $stall ms reaches the liveness deadline"
hwm=$(awk '$1 == "VmHWM:" { print $2 }' "/proc/${IT_PIDS[poller]}/status")
log "poller peak RSS: $((hwm / 1024)) MiB"
it_pass
