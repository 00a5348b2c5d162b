#!/usr/bin/env bash
# tests/bench/bench_ss.sh: sliding sync benchmark. One command, after
# `cmake --build build`:
#
#     tests/bench/bench_ss.sh [-r ROOMS] [-q REPEATS]
#
# (defaults 10000, 50; BIN=dir overrides build/bin). Starts a private
# stack (tests/integration/lib.sh), makes a user in ROOMS rooms (simhs
# POST /_simhs/scenario), waits for its initial sync to be stored, then
# opens REPEATS new connections, each with one list [0,19],
# timeline_limit 1 and name/avatar/encryption state (the Synapse
# dialect, as Element sends it), and prints the p50/p99 of the request's
# time (curl's time_total). Goal: p50 <= 2 ms, p99 <= 10 ms at 10,000
# rooms. Prints figures, asserts none. PROFILE=1 logs the plans of
# statements over 5 ms (auto_explain) and prints them at the end.
here=$(cd "$(dirname "$0")" && pwd)
ROOMS=10000 REPEATS=50
while getopts r:q: o; do
	case $o in
	r) ROOMS=$OPTARG ;; q) REPEATS=$OPTARG ;;
	*) sed -n 2,16p "$0" >&2; exit 2 ;;
	esac
done
source "$here/../integration/lib.sh"
source "$here/../integration/lib_ss.sh"
export SYNCV3_LOG_LEVEL=warn SYNCV3_API_INITIAL_WAIT_MS=600000
export SYNCV3_API_MAX_TIMEOUT_MS=600000
if [ "${PROFILE:-0}" = 1 ]; then
	export PGOPTIONS="-c session_preload_libraries=auto_explain -c auto_explain.log_min_duration=5 -c auto_explain.log_analyze=on -c auto_explain.log_timing=on"
fi
start_stack
unset PGOPTIONS
pct() { sort -n | awk -v p="$1" '{v[NR]=$1} END {i=int((NR-1)*p/100+0.5)+1; printf "%.2f", v[i]}'; }

tok=$(sim scenario "{\"users\":1,\"rooms_per_user\":$ROOMS,\"members_per_room\":2,\"messages_per_room\":1,\"prefix\":\"big\"}" |
    jq -r '.users[0].access_token')
body='{"lists":{"all":{"ranges":[[0,19]],"timeline_limit":1,"required_state":[["m.room.name",""],["m.room.avatar",""],["m.room.encryption",""]],"filters":{}}}}'
t0=$(date +%s)
ss "$tok" "" "$body" 600000 >"$T/first.json"
log "initial sync of $ROOMS rooms stored, first window after $(( $(date +%s) - t0 )) s (status $(last_status), count $(jq .lists.all.count "$T/first.json"))"
url="$API_URL/_matrix/client/unstable/org.matrix.simplified_msc3575/sync?timeout=0"
: >"$T/new.txt"
for i in $(seq 1 "$REPEATS"); do
	curl -s -o "$T/win.json" -w '%{time_total}\n' -X POST -H "Authorization: Bearer $tok" \
	    --data "$body" "$url" | awk '{printf "%.3f\n", $1 * 1000}' >>"$T/new.txt"
done
jq -e '.rooms|length == 20' "$T/win.json" >/dev/null || log "window has $(jq '.rooms|length' "$T/win.json") rooms"
printf '{"rooms":%d,"new_connection_samples":%d,"new_connection_p50_ms":%s,"new_connection_p99_ms":%s}\n' \
    "$ROOMS" "$REPEATS" "$(pct 50 <"$T/new.txt")" "$(pct 99 <"$T/new.txt")"
if [ "${PROFILE:-0}" = 1 ]; then
	grep -E "duration:|actual time=" "$T/pg/pg.log" | tail -60
fi
