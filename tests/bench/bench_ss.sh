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
# rooms. Also prints the statements the api ran per new connection
# (/health's queries) and its CPU per new connection, which the load of
# a shared machine does not skew as much as times do. Prints figures,
# asserts none. PROFILE=1 logs the plans of statements over 5 ms
# (PROFILE_MS=n: over n ms; auto_explain) and prints them at the end; STATS=1 prints the
# statements' Postgres time per new connection (pg_stat_statements).
# PERF=1 prints the api's perf profile over the new connections. INCR=1
# also times REPEATS rounds with nothing new on the last connection.
# ANALYZE=1 runs VACUUM ANALYZE before measuring; PG_EXTRA adds server
# options ('-c autovacuum=off': a database never analysed).
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
	export PGOPTIONS="-c session_preload_libraries=auto_explain -c auto_explain.log_min_duration=${PROFILE_MS:-5} -c auto_explain.log_analyze=on -c auto_explain.log_timing=on"
fi
if [ "${STATS:-0}" = 1 ]; then
	export IT_PG_OPTS="-c fsync=off -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all"
fi
# PG_EXTRA: more server options, e.g. '-c autovacuum=off' for the plans of
# a database never analysed (a fresh deployment before autovacuum ran)
[ -n "${PG_EXTRA:-}" ] && export IT_PG_OPTS="${IT_PG_OPTS:-} $PG_EXTRA"
start_stack
unset PGOPTIONS
[ "${STATS:-0}" = 1 ] && { psql_q "CREATE EXTENSION pg_stat_statements" || fail "pg_stat_statements"; }
queries() { curl -s "$API_URL/health" | jq .queries; }
api_cpu() { awk -v h="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / h }' "/proc/${IT_PIDS[api]}/stat"; }
pct() { sort -n | awk -v p="$1" '{v[NR]=$1} END {i=int((NR-1)*p/100+0.5)+1; printf "%.2f", v[i]}'; }

tok=$(sim scenario "{\"users\":1,\"rooms_per_user\":$ROOMS,\"members_per_room\":2,\"messages_per_room\":1,\"prefix\":\"big\"}" |
    jq -r '.users[0].access_token')
body='{"lists":{"all":{"ranges":[[0,19]],"timeline_limit":1,"required_state":[["m.room.name",""],["m.room.avatar",""],["m.room.encryption",""]],"filters":{}}}}'
t0=$(date +%s)
ss "$tok" "" "$body" 600000 >"$T/first.json"
log "initial sync of $ROOMS rooms stored, first window after $(( $(date +%s) - t0 )) s (status $(last_status), count $(jq .lists.all.count "$T/first.json"))"
# the first window comes before the rest is stored: measure after it is
for i in $(seq 1 600); do
	[ "$(psql_q "SELECT bool_and(is_initial_done) FROM syncv3_devices")" = t ] && break
	sleep 0.5
done
sleep 2
# ANALYZE=1: the plans of a database vacuumed and analysed (autovacuum may
# or may not have come by in a run this short; PG_EXTRA above for never)
[ "${ANALYZE:-0}" = 1 ] && psql_q "VACUUM ANALYZE" >/dev/null
url="$API_URL/_matrix/client/unstable/org.matrix.simplified_msc3575/sync?timeout=0"
: >"$T/new.txt"
[ "${STATS:-0}" = 1 ] && psql_q "SELECT pg_stat_statements_reset()" >/dev/null
q0=$(queries) c0=$(api_cpu) load0=$(cut -d' ' -f1-3 /proc/loadavg)
# PERF=1: the api's profile over the new connections (perf report, top)
if [ "${PERF:-0}" = 1 ]; then
	perf record -q --call-graph dwarf,16384 -p "${IT_PIDS[api]}" -o "$T/perf.data" 2>/dev/null &
	perf_pid=$!
	sleep 0.5
fi
for i in $(seq 1 "$REPEATS"); do
	curl -s -o "$T/win.json" -w '%{time_total}\n' -X POST -H "Authorization: Bearer $tok" \
	    --data "$body" "$url" | awk '{printf "%.3f\n", $1 * 1000}' >>"$T/new.txt"
done
q1=$(queries) c1=$(api_cpu)
if [ -n "${perf_pid:-}" ]; then
	kill -INT "$perf_pid"; wait "$perf_pid"
	perf report -i "$T/perf.data" --stdio --no-children --percent-limit 1.5 -g none 2>/dev/null |
	    grep -v '^#' | grep -v '^$' | head -"${PERF_LINES:-40}"
fi
log "load average: before $load0, after $(cut -d' ' -f1-3 /proc/loadavg)"
jq -e '.rooms|length == 20' "$T/win.json" >/dev/null || log "window has $(jq '.rooms|length' "$T/win.json") rooms"
printf '{"rooms":%d,"new_connection_samples":%d,"new_connection_p50_ms":%s,"new_connection_p99_ms":%s,"statements_per_connection":%s,"api_cpu_ms_per_connection":%s}\n' \
    "$ROOMS" "$REPEATS" "$(pct 50 <"$T/new.txt")" "$(pct 99 <"$T/new.txt")" \
    "$(echo "scale=2; ($q1 - $q0) / $REPEATS" | bc)" \
    "$(echo "scale=3; ($c1 - $c0) * 1000 / $REPEATS" | bc)"
if [ "${STATS:-0}" = 1 ]; then
	log "statements during the new connections: Postgres ms per connection, calls, mean ms"
	psql_q "SELECT rpad(round((total_exec_time / $REPEATS)::numeric, 3)::text, 8) || rpad(calls::text, 7) ||
	    rpad(round(mean_exec_time::numeric, 3)::text, 8) || left(regexp_replace(query, '\\s+', ' ', 'g'), 90)
	    FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat_statements%' ORDER BY total_exec_time DESC LIMIT 12"
	psql_q "SELECT 'total Postgres ms per connection: ' || round((sum(total_exec_time) / $REPEATS)::numeric, 3) FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat_statements%'"
fi
# INCR=1: then REPEATS rounds of the last connection with nothing new
# (its pos, timeout 0: a woken long poll's round without the rooms that
# changed), each the same pos again
if [ "${INCR:-0}" = 1 ]; then
	p=$(jq -r .pos "$T/win.json")
	: >"$T/incr.txt"
	[ "${STATS:-0}" = 1 ] && psql_q "SELECT pg_stat_statements_reset()" >/dev/null
	q0=$(queries) c0=$(api_cpu)
	for i in $(seq 1 "$REPEATS"); do
		curl -s -o "$T/incr.json" -w '%{time_total}\n' -X POST -H "Authorization: Bearer $tok" \
		    --data "$body" "$url&pos=$(jq -rn --arg s "$p" '$s|@uri')" | awk '{printf "%.3f\n", $1 * 1000}' >>"$T/incr.txt"
	done
	q1=$(queries) c1=$(api_cpu)
	[ "$(jq -r .pos "$T/incr.json")" = "$p" ] || log "a round with nothing new moved the pos: $(head -c 300 "$T/incr.json")"
	printf '{"rooms":%d,"incremental_samples":%d,"incremental_p50_ms":%s,"incremental_p99_ms":%s,"statements_per_round":%s,"api_cpu_ms_per_round":%s}\n' \
	    "$ROOMS" "$REPEATS" "$(pct 50 <"$T/incr.txt")" "$(pct 99 <"$T/incr.txt")" \
	    "$(echo "scale=2; ($q1 - $q0) / $REPEATS" | bc)" \
	    "$(echo "scale=3; ($c1 - $c0) * 1000 / $REPEATS" | bc)"
	if [ "${STATS:-0}" = 1 ]; then
		psql_q "SELECT rpad(round((total_exec_time / $REPEATS)::numeric, 3)::text, 8) || rpad(calls::text, 7) ||
		    rpad(round(mean_exec_time::numeric, 3)::text, 8) || left(regexp_replace(query, '\\s+', ' ', 'g'), 90)
		    FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat_statements%' ORDER BY total_exec_time DESC LIMIT 4"
	fi
fi
if [ "${PROFILE:-0}" = 1 ]; then
	grep -E "duration:|actual time=" "$T/pg/pg.log" | tail -"${PROFILE_LINES:-60}"
fi
