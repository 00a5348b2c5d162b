#!/usr/bin/env bash
# tests/bench/run.sh: the whole-pipeline benchmark (issue #6). Starts its
# own stack in a temporary directory (a private Postgres that is durable,
# fsync on, with deploy/postgres/syncv3.conf, see tests/bench/pg.sh; the
# simulated homeserver, accumulator, poller, api; see
# tests/integration/lib.sh),
# runs every scenario of build/bin/syncv3-loadgen against it, prints a
# table with the goals beside the figures and writes them all to a JSON
# file. Never asserts a time: the figures are for people to read.
#
# usage: tests/bench/run.sh [-o FILE] [--tiny] [--users N] [--rooms N]
#          [--shared N] [--members N] [--events N] [--clients N]
#          [--rate N] [--secs N] [--typing N] [--to-device N]
#          [--sizes 100,1000,10000] [--repeats N] [--long-polls N]
#          [--devices N]
# (after cmake --build build). TEST_KEEP=1 keeps the temp dir and logs.
set -u
here=$(cd "$(dirname "$0")" && pwd)
OUT=bench-results.json
USERS=200 ROOMS=5 SHARED=20 MEMBERS=10 EVENTS=45
CLIENTS=100 RATE=1000 SECS=20 TYPING=20 TODEV=20
SIZES=100,1000,10000 REPEATS=50 LONGPOLLS=10000 DEVICES=2000
usage() { sed -n '9,13p' "$0" >&2; exit 2; }
while [ $# -gt 0 ]; do
	case $1 in
	-o) OUT=$2; shift ;;
	--tiny)
		USERS=10 ROOMS=2 SHARED=2 MEMBERS=3 EVENTS=10
		CLIENTS=5 RATE=50 SECS=3 TYPING=5 TODEV=5
		SIZES=20,100 REPEATS=5 LONGPOLLS=200 DEVICES=100 ;;
	--users) USERS=$2; shift ;;
	--rooms) ROOMS=$2; shift ;;
	--shared) SHARED=$2; shift ;;
	--members) MEMBERS=$2; shift ;;
	--events) EVENTS=$2; shift ;;
	--clients) CLIENTS=$2; shift ;;
	--rate) RATE=$2; shift ;;
	--secs) SECS=$2; shift ;;
	--typing) TYPING=$2; shift ;;
	--to-device) TODEV=$2; shift ;;
	--sizes) SIZES=$2; shift ;;
	--repeats) REPEATS=$2; shift ;;
	--long-polls) LONGPOLLS=$2; shift ;;
	--devices) DEVICES=$2; shift ;;
	*) usage ;;
	esac
	shift
done
case $OUT in /*) ;; *) OUT=$PWD/$OUT ;; esac

source "$here/../integration/lib.sh"
source "$here/pg.sh"
IT_NAME=bench
LG=$BIN/syncv3-loadgen
[ -x "$LG" ] || fail "$LG missing: cmake --build build first"
# one fd per long-poll on both ends, plus slack
ulimit -n "$(ulimit -Hn)" 2>/dev/null
[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -gt $((LONGPOLLS + 500)) ] ||
    fail "ulimit -n $(ulimit -n) is too low for $LONGPOLLS long-polls"
export SYNCV3_LOG_LEVEL=${SYNCV3_LOG_LEVEL:-info}
# idle sessions must outlive the run
export SYNCV3_API_SESSION_IDLE_SECS=3600
# the accumulator's ack latency per second, for the ingest figures
export SYNCV3_ACC_STATS_SECS=1

start_proc loadavg bash -c 'while :; do cat /proc/loadavg; sleep 5; done'
load0=$(cut -d' ' -f1-3 /proc/loadavg)
t_start=$(date +%s)
bench_pg_start "$T/pg" || fail "postgres did not start"
start_stack
pgset=$(bench_pg_settings)
pm=$(head -1 "$(psql_q "SHOW data_directory")/postmaster.pid")
PIDS="accumulator=${IT_PIDS[accumulator]},poller=${IT_PIDS[poller]}"
PIDS="$PIDS,api=${IT_PIDS[api]},simhs=${IT_PIDS[simhs]},postgres=+$pm"
lg() {
	local name=$1; shift
	log "scenario $name"
	"$LG" "$name" -s "$SIMHS_URL" -a "$API_URL" -d "$SYNCV3_DB" -P "$PIDS" \
	    "$@" >"$T/r_$name.json" 2>"$T/loadgen_$name.log" || {
		tail -20 "$T/loadgen_$name.log" >&2; fail "loadgen $name"; }
	grep 'loadgen: info' "$T/loadgen_$name.log" | sed 's/^/  /' >&2
}

lg first -z "$SIZES" -n "$REPEATS"
lg ingest -U "$USERS" -R "$ROOMS" -S "$SHARED" -M "$MEMBERS" -E "$EVENTS" \
    -L "$T/accumulator.log"
lg e2e -K "$CLIENTS" -R "$ROOMS" -r "$RATE" -t "$SECS" -y "$TYPING" -x "$TODEV"
lg idle -K "$LONGPOLLS"
# A fresh poller for the per-device figure: heap left over from the big
# initial syncs above would otherwise absorb the new devices' memory. It
# takes over every device so far before the baseline is read.
w=$(sim_get stats | jq .waiters)
stop_proc poller
start_poller poller
wait_for "[ \$(sim_get stats | jq .waiters) -ge $w ]" 120 ||
    log "warning: fresh poller holds fewer long-polls than before"
sleep 2
PIDS="accumulator=${IT_PIDS[accumulator]},poller=${IT_PIDS[poller]}"
PIDS="$PIDS,api=${IT_PIDS[api]},simhs=${IT_PIDS[simhs]},postgres=+$pm"
lg devices -D "$DEVICES"

log "postgres sizes"
psql_q "VACUUM ANALYZE syncv3_events, syncv3_state" >/dev/null 2>&1
psql_q "SELECT json_build_object(
    'events', (SELECT count(*) FROM syncv3_events),
    'state_rows', (SELECT count(*) FROM syncv3_state),
    'events_bytes', pg_total_relation_size('syncv3_events'),
    'state_bytes', pg_total_relation_size('syncv3_state'),
    'database_bytes', pg_database_size(current_database()))" >"$T/r_pg.json" ||
    fail "postgres sizes"
for p in accumulator poller api; do is_running "$p" || fail "$p died"; done
load1=$(cut -d' ' -f1-3 /proc/loadavg)
loadmax=$(awk '$1 > m { m = $1 } END { print m + 0 }' "$T/loadavg.log")

jq -n --slurpfile first "$T/r_first.json" --slurpfile ingest "$T/r_ingest.json" \
    --slurpfile e2e "$T/r_e2e.json" --slurpfile idle "$T/r_idle.json" \
    --slurpfile dev "$T/r_devices.json" --slurpfile pg "$T/r_pg.json" \
    --argjson pgset "$pgset" \
    --arg nproc "$(nproc)" --arg load0 "$load0" --arg load1 "$load1" \
    --arg loadmax "$loadmax" --arg secs "$(( $(date +%s) - t_start ))" \
    --arg commit "$(git -C "$IT_ROOT" rev-parse --short HEAD 2>/dev/null)" \
    --arg sizes "$SIZES" '
  ($pg[0] | . + {bytes_per_event: ((.events_bytes + .state_bytes) / ([.events, 1] | max)),
                 database_bytes_per_event: (.database_bytes / ([.events, 1] | max))}) as $p |
  {
    machine: {nproc: ($nproc | tonumber), loadavg_start: $load0, loadavg_end: $load1,
              loadavg_1min_max: ($loadmax | tonumber), commit: $commit,
              run_secs: ($secs | tonumber), postgres_settings: $pgset},
    ingest: $ingest[0], e2e: $e2e[0], first_response: $first[0],
    idle_long_polls: $idle[0], poller_devices: $dev[0], postgres: $p,
    figures: ({
      ingest_events_per_s: $ingest[0].events_per_s,
      ingest_events_per_s_min: $ingest[0].events_per_s_min,
      ingest_events_per_s_median: $ingest[0].events_per_s_median,
      ingest_events_per_s_max: $ingest[0].events_per_s_max,
      ingest_ack_p50_ms: $ingest[0].ack_latency.p50_ms_median_interval,
      ingest_ack_p95_ms: $ingest[0].ack_latency.p95_ms_worst_interval,
      ingest_ack_p99_ms: $ingest[0].ack_latency.p99_ms_worst_interval,
      ingest_ack_max_ms: $ingest[0].ack_latency.max_ms,
      e2e_p50_ms: $e2e[0].p50_ms, e2e_p95_ms: $e2e[0].p95_ms, e2e_p99_ms: $e2e[0].p99_ms,
      e2e_rate: $e2e[0].rate,
      api_bytes_per_idle_long_poll: $idle[0].bytes_per_long_poll,
      poller_bytes_per_idle_device: $dev[0].bytes_per_device,
      pg_bytes_per_event: $p.bytes_per_event,
      cpu_s_per_1000_events_accumulator: $ingest[0].cpu_s_per_1000_events.accumulator,
      cpu_s_per_1000_events_poller: $ingest[0].cpu_s_per_1000_events.poller,
      cpu_s_per_1000_events_api: $ingest[0].cpu_s_per_1000_events.api,
      cpu_s_per_1000_events_postgres: $ingest[0].cpu_s_per_1000_events.postgres,
      cpu_s_per_1000_events_simhs: $ingest[0].cpu_s_per_1000_events.simhs
    } + ([$sizes | split(",")[] as $s |
          {("first_response_p50_ms_" + $s): $first[0][$s].p50_ms,
           ("first_response_p99_ms_" + $s): $first[0][$s].p99_ms}] | add))
  }' >"$OUT" || fail "writing $OUT"

# The table: figure, value, goal (where the issue sets one).
jq -r --arg sizes "$SIZES" '
  def n(x; d): if x == null then "-" else (x * pow(10; d) | round / pow(10; d) | tostring) end;
  def row(a; b; c): "\(a)\t\(b)\t\(c)";
  .figures as $f | .ingest as $i | .e2e as $e | .idle_long_polls as $l |
  .poller_devices as $d | .postgres as $p | .first_response as $fr |
  row("figure"; "value"; "goal"),
  row("ingest, timeline events/s (\($i.events_committed)/\($i.events_sent) ev, \($i.devices) devices, \($i.rooms) rooms)"; n($f.ingest_events_per_s; 0); ">= 40000 (200 devices)"),
  row("ingest events/s over whole seconds, min / median / max"; "\(n($f.ingest_events_per_s_min; 0)) / \(n($f.ingest_events_per_s_median; 0)) / \(n($f.ingest_events_per_s_max; 0))"; "steady"),
  row("ingest ack latency ms (accumulator, 1 s intervals): p50 median, p95 / p99 worst, max"; "\(n($f.ingest_ack_p50_ms; 0)) \(n($f.ingest_ack_p95_ms; 0))/\(n($f.ingest_ack_p99_ms; 0)) \(n($f.ingest_ack_max_ms; 0))"; ""),
  row("end-to-end p50 ms (\($e.rate) ev/s, \($e.clients) clients, \($e.events_received)/\($e.events_sent) seen)"; n($e.p50_ms; 1); ""),
  row("end-to-end p95 ms"; n($e.p95_ms; 1); ""),
  row("end-to-end p99 ms"; n($e.p99_ms; 1); "<= 50 (at 1000 ev/s)"),
  ($sizes | split(",")[] as $s |
    row("first response p50 ms, \($s) rooms"; n($fr[$s].p50_ms; 1); ""),
    row("first response p99 ms, \($s) rooms"; n($fr[$s].p99_ms; 1);
        if $s == "10000" then "<= 50" else "" end)),
  row("api bytes per idle long-poll (\($l.long_polls) held)"; n($f.api_bytes_per_idle_long_poll; 0); "<= 20480"),
  row("poller bytes per idle device (\($d.devices) devices)"; n($f.poller_bytes_per_idle_device; 0); "<= 65536"),
  row("postgres bytes per event (events+state, \($p.events) events)"; n($f.pg_bytes_per_event; 0); ""),
  row("postgres bytes per event (whole database)"; n($p.database_bytes_per_event; 0); ""),
  (["accumulator", "poller", "api", "postgres", "simhs"][] as $k |
    row("CPU s per 1000 events (ingest), \($k)"; n($i.cpu_s_per_1000_events[$k]; 3); "")),
  (["accumulator", "poller", "api", "postgres", "simhs"][] as $k |
    row("CPU s per 1000 events (e2e steady), \($k)"; n($e.cpu_s_per_1000_events[$k]; 3); "")),
  row("postgres: fsync \(.machine.postgres_settings.fsync), synchronous_commit \(.machine.postgres_settings.synchronous_commit), max_wal_size \(.machine.postgres_settings.max_wal_size), wal_compression \(.machine.postgres_settings.wal_compression)"; ""; ""),
  row("machine: nproc \(.machine.nproc), load \(.machine.loadavg_start) -> \(.machine.loadavg_end), max 1-min \(.machine.loadavg_1min_max)"; "\(.machine.run_secs) s"; "")
' "$OUT" | awk -F'\t' '{ printf "%-72s %12s  %s\n", $1, $2, $3 }'
log "figures written to $OUT"
it_pass
