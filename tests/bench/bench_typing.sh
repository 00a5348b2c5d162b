#!/usr/bin/env bash
# tests/bench/bench_typing.sh: typing and to-device messages upstream ->
# long-polling client (issue #13, item 2), quiet and under load. One
# command, after
# `cmake --build build`:
#
#     tests/bench/bench_typing.sh [-k SAMPLES] [-r RATE] [-K CLIENTS]
#
# (defaults 300, 1000, 100; BIN=dir overrides build/bin). Starts a private
# stack (tests/integration/lib.sh) and runs bench_api's latency phase (a
# long-poll on a room's typing, ~30 ms later a typing change upstream, the
# time from sending it to the woken response; 10 idle long-polls beside)
# twice: on a quiet stack, then while syncv3-loadgen's e2e scenario sends
# RATE events/s to CLIENTS room_list long-polls; each time also with a
# to-device message to the client's device as the change (a long-poll on
# to_device). Prints one JSON object with p50/p99 of each (to-device
# under "to_device") and the api's statements per wake; asserts nothing.
# -r 0 skips the second run. BENCH_SAMPLES=1 prints every sample (its
# latency, when it was answered, the token) on stderr, to find the slow
# ones (a lost wake shows as one long-poll timeout, 30 s).
here=$(cd "$(dirname "$0")" && pwd)
K=300 RATE=1000 CLIENTS=100
while getopts k:r:K: o; do
	case $o in
	k) K=$OPTARG ;; r) RATE=$OPTARG ;; K) CLIENTS=$OPTARG ;;
	*) sed -n 2,14p "$0" >&2; exit 2 ;;
	esac
done
source "$here/../integration/lib.sh"
source "$here/lib_typing.sh"
IT_NAME=bench_typing
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
export SYNCV3_LOG_LEVEL=warn SYNCV3_API_MAX_TIMEOUT_MS=600000
export SYNCV3_API_SESSION_IDLE_SECS=3600
start_stack
health() { curl -sf "$API_URL/health"; }

typing_sessions

# sample NAME [to_device]: bench_api's latency phase; its JSON in
# $T/NAME.json.
sample() {
	local q0 q1 w0 w1 k=${2:-typing}
	# an api older than the "queries" count reports null
	q0=$(health | jq '.queries // "null"') w0=$(health | jq .wakeups)
	typing_bench 10 "$K" "$T/$1.json" "$k"
	q1=$(health | jq '.queries // "null"') w1=$(health | jq .wakeups)
	[ "$q0" = '"null"' ] && q1=null q0=0
	jq -c --argjson q "$( [ "$q1" = null ] && echo null || echo $((q1 - q0)))" \
	    --argjson w $((w1 - w0)) --arg k "$k" \
	    '{p50_ms: .[$k + "_to_response_p50_ms"], p99_ms: .[$k + "_to_response_p99_ms"],
	      max_ms: .[$k + "_to_response_max_ms"], samples: .latency_samples,
	      early: .latency_early,
	      api_statements: $q, api_wakeups: $w}' "$T/$1.json" >"$T/$1.sum"
	log "$1: $(cat "$T/$1.sum")"
}

log "quiet: $K samples"
sample quiet
sample quiet_td to_device

if [ "$RATE" = 0 ]; then	# -r 0: the quiet figures only
	jq -c --slurpfile td "$T/quiet_td.sum" --arg load "$(cut -d' ' -f1-3 /proc/loadavg)" \
	    '{loadavg: $load, quiet: ., to_device: {quiet: $td[0]}}' "$T/quiet.sum"
	it_pass
	exit 0
fi
log "under load: e2e at $RATE ev/s, $CLIENTS clients"
PIDS="accumulator=${IT_PIDS[accumulator]},poller=${IT_PIDS[poller]}"
PIDS="$PIDS,api=${IT_PIDS[api]},simhs=${IT_PIDS[simhs]}"
secs=$((K / 20 + 40))
start_proc loadgen "$BIN/syncv3-loadgen" e2e -s "$SIMHS_URL" -a "$API_URL" \
    -d "$SYNCV3_DB" -P "$PIDS" -K "$CLIENTS" -R 5 -r "$RATE" -t "$secs" \
    -y 20 -x 20
# the e2e scenario sets up its users first; sample once events flow
wait_for "[ \$(health | jq .wakeups) -gt $(( $(health | jq .wakeups) + CLIENTS )) ]" 120 ||
    fail "load did not start"
sample load
sample load_td to_device
stop_proc loadgen

jq -n --slurpfile q "$T/quiet.sum" --slurpfile l "$T/load.sum" \
    --slurpfile qd "$T/quiet_td.sum" --slurpfile ld "$T/load_td.sum" \
    --arg commit "$(git -C "$IT_ROOT" rev-parse --short HEAD 2>/dev/null)" \
    --arg bin "$BIN" --arg nproc "$(nproc)" --arg load "$(cut -d' ' -f1-3 /proc/loadavg)" \
    --argjson rate "$RATE" --argjson clients "$CLIENTS" \
    '{commit: $commit, bin: $bin, nproc: ($nproc | tonumber), loadavg: $load,
      quiet: $q[0], load: ($l[0] + {rate: $rate, clients: $clients}),
      to_device: {quiet: $qd[0], load: ($ld[0] + {rate: $rate, clients: $clients})}}'
it_pass
