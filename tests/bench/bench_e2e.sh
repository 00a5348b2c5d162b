#!/usr/bin/env bash
# tests/bench/bench_e2e.sh: only run.sh's e2e scenario (K clients
# long-polling room_list + to_device, events at a steady rate), on a
# private stack, with Postgres's per-statement figures. After
# `cmake --build build`:
#
#     tests/bench/bench_e2e.sh [-K CLIENTS] [-R ROOMS] [-r RATE] [-t SECS]
#
# (defaults as run.sh: 100, 5, 1000, 20; typing and to-device 20/s).
# Prints loadgen's JSON (p50/p95/p99, CPU s per 1000 events per daemon),
# the latency by hop (accumulator, api, the rest), the load average
# before/after, the top statements by execution time
# with their planning time and number of plans (pg_stat_statements, reset
# just before loadgen registers its clients), and each Postgres backend's
# CPU grouped by its last statement (which daemon's connection it is).
# TEST_KEEP=1 keeps the temp dir.
here=$(cd "$(dirname "$0")" && pwd)
K=100 R=5 RATE=1000 SECS=20
while getopts K:R:r:t: o; do
	case $o in
	K) K=$OPTARG ;; R) R=$OPTARG ;; r) RATE=$OPTARG ;; t) SECS=$OPTARG ;;
	*) sed -n 2,15p "$0" >&2; exit 2 ;;
	esac
done
source "$here/../integration/lib.sh"
IT_NAME=bench_e2e
# a private cluster with pg_stat_statements (lib.sh's has no preload)
mkdir -p "$T/pg"
[ "$(id -u)" = 0 ] && chown "${IT_PG_OSUSER:-postgres}" "$T/pg"
as_pg_user "$(pg_bindir)/initdb" -D "$T/pg/data" -E UTF8 --no-locale \
    -A trust -U postgres >"$T/pg/initdb.log" 2>&1 || fail initdb
as_pg_user "$(pg_bindir)/pg_ctl" -D "$T/pg/data" -w -l "$T/pg/pg.log" \
    -o "-c listen_addresses='' -k $T/pg -c fsync=off -c max_connections=300 -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all -c pg_stat_statements.track_planning=on" \
    start >/dev/null || fail "postgres did not start"
export IT_PGHOST=$T/pg IT_PGPORT=5432 IT_PGDIR=$T/pg IT_OWN_PG=1
export SYNCV3_LOG_LEVEL=${SYNCV3_LOG_LEVEL:-info}
export SYNCV3_API_SESSION_IDLE_SECS=3600
start_stack
psql_q "CREATE EXTENSION pg_stat_statements" || fail "pg_stat_statements"
pm=$(head -1 "$T/pg/data/postmaster.pid")
PIDS="accumulator=${IT_PIDS[accumulator]},poller=${IT_PIDS[poller]}"
PIDS="$PIDS,api=${IT_PIDS[api]},simhs=${IT_PIDS[simhs]},postgres=+$pm"
load0=$(cut -d' ' -f1-3 /proc/loadavg)
psql_q "SELECT pg_stat_statements_reset()" >/dev/null
polls0=$(curl -s "$SIMHS_URL/_simhs/stats" | jq .sync_requests_total)
t0=$(date +%s.%N)
"$BIN/syncv3-loadgen" e2e -s "$SIMHS_URL" -a "$API_URL" -d "$SYNCV3_DB" \
    -P "$PIDS" -K "$K" -R "$R" -r "$RATE" -t "$SECS" -y 20 -x 20 \
    -L "$T/accumulator.log" >"$T/r_e2e.json" 2>"$T/loadgen.log" || { tail "$T/loadgen.log"; fail loadgen; }
t1=$(date +%s.%N)
sims=$(curl -s "$SIMHS_URL/_simhs/stats")
load1=$(cut -d' ' -f1-3 /proc/loadavg)
jq -c '{p50_ms, p95_ms, p99_ms, events_sent, events_received, responses,
    errors, cpu_s_per_1000_events}' "$T/r_e2e.json"
log "load average: before $load0, after $load1"
secs=$(echo "$t1 - $t0" | bc)
log "top statements (whole loadgen run, $secs s, incl. registration)"
psql_q "SELECT rpad(round(total_exec_time)::text, 7) || rpad(round(total_plan_time)::text, 7) || rpad(plans::text, 8) || rpad(calls::text, 8) ||
    rpad(round(calls / $secs, 1)::text, 8) || rpad(round(mean_exec_time::numeric, 3)::text, 8) ||
    left(regexp_replace(query, '\\s+', ' ', 'g'), 110)
    FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 15" |
    sed '1i exec   plan   plans   calls   /s      mean_ms query'
health=$(curl -s "$API_URL/health")
echo "$health"
# The latency by hop (issue #13): the accumulator's (a body received ->
# acked, its notices right after: queue wait + batch commit) and the
# api's (notice received -> response written: pool queue + statements),
# from their own clocks; the rest of the end-to-end figure is simhs
# holding the event until the device's next poll (which waits for the
# previous body's ack), that poll's round trip and the notice's transit.
# Medians do not subtract exactly: a rough split, not a sum.
# A device's poll cycle (upstream /sync answered -> acked -> next /sync
# answered), the mean over the run's devices: an event waits for about
# half of one at simhs.
cycle=$(echo "$sims" | jq --argjson p0 "$polls0" --arg s "$(echo "$t1 - $t0" | bc)" \
    '(.sync_requests | length) * ($s | tonumber) * 1000 /
     ((.sync_requests_total - $p0) | if . > 0 then . else 1 end) | round')
jq -r --argjson h "$health" --argjson c "$cycle" '[["hop", "p50_ms", "p99_ms"],
    ["end to end (simhs ack -> client)", (.p50_ms | round), (.p99_ms | round)],
    ["accumulator: received -> acked", .ack_latency.p50_ms_median_interval,
     .ack_latency.p99_ms_median_interval],
    ["  of which batch commit (avg, max)", (.ack_latency.commit_ms_avg |
     round), .ack_latency.commit_ms_max],
    ["  bodies per commit (avg)", (.ack_latency.bodies_per_commit_avg |
     round), "-"],
    ["device poll cycle (mean, whole run)", $c, "-"],
    ["api: notice -> response written", $h.wake_lat_p50_ms, $h.wake_lat_p99_ms],
    ["rest: simhs -> poller -> accumulator, notice transit",
     ((.p50_ms - .ack_latency.p50_ms_median_interval - $h.wake_lat_p50_ms)
      | round), "-"]] | .[] | @tsv' "$T/r_e2e.json" |
    column -t -s "$(printf '\t')" | sed 's/^/  /'
log "postgres backends: CPU s (utime+stime) by client, whole run"
psql_q "SELECT pid, coalesce(nullif(application_name, ''), backend_type)
    || ': ' || left(regexp_replace(query, '\\s+', ' ', 'g'), 40)
    FROM pg_stat_activity" | tr '|' '\t' >"$T/pg_pids.tsv"
for p in $(pgrep -P "$pm"); do
	[ -r "/proc/$p/stat" ] || continue
	printf '%s\t%s\n' "$(awk -v h="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / h }' "/proc/$p/stat")" \
	    "$(awk -F'\t' -v p="$p" '$1 == p { print $2 }' "$T/pg_pids.tsv")"
done | awk -F'\t' '{ c[$2] += $1; n[$2]++ } END { for (k in c) printf "%8.2f %4d  %s\n", c[k], n[k], k }' | sort -rn
it_pass
