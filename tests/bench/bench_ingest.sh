#!/usr/bin/env bash
# tests/bench/bench_ingest.sh: the accumulator alone under a firehose.
# Starts the benchmarks' durable Postgres (tests/bench/pg.sh: fsync on,
# deploy/postgres/syncv3.conf unless BENCH_PG_STOCK=1) and one
# accumulator, then runs syncv3-bench-ingest: DEVICES devices, each with
# one body in flight (as the poller has), MSGS bodies each of ROOMS rooms
# x EVENTS timeline events. Prints the driver's figures (events/s, ack
# latency p50/p95/p99/max, the events rate per second), the accumulator's
# stats lines and the load average before and after.
#
# usage: tests/bench/bench_ingest.sh [-D devices] [-m msgs] [-r rooms] [-e events]
# (BIN=build/bin by default; any SYNCV3_ACC_* variable is passed on)
# STATS=1 also loads pg_stat_statements and prints the statements by
# total time, per batch (calls of COMMIT), with shared blocks touched:
# where a batch's Postgres time goes.
set -u
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../integration/lib.sh"
source "$here/pg.sh"
IT_NAME=bench_ingest
export SYNCV3_LOG_LEVEL=info
[ "${STATS:-0}" = 1 ] && BENCH_PG_OPTS="${BENCH_PG_OPTS:-} -c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all"
bench_pg_start "$T/pg" || fail "postgres did not start"
it_setup
if [ "${STATS:-0}" = 1 ]; then
	psql_q "CREATE EXTENSION pg_stat_statements" >/dev/null ||
	    fail "pg_stat_statements"
fi
log "postgres: $(bench_pg_settings)"
start_accumulator
pm=$(head -1 "$T/pg/data/postmaster.pid")
acc0=$(bench_cpu_secs "${IT_PIDS[accumulator]}") pg0=$(bench_cpu_secs "$pm")
log "load before: $(cat /proc/loadavg)"
"$BIN/syncv3-bench-ingest" -V "$@" || fail "syncv3-bench-ingest failed"
log "load after: $(cat /proc/loadavg)"
log "CPU s: accumulator" \
    "$(echo "$(bench_cpu_secs "${IT_PIDS[accumulator]}") - $acc0" | bc)" \
    "postgres $(echo "$(bench_cpu_secs "$pm") - $pg0" | bc) (incl. verification)"
grep 'ingest: acks' "$T/accumulator.log" | sed 's/^/  /' >&2
if [ "${STATS:-0}" = 1 ]; then
	# the driver's own verification queries are in here too (few calls)
	log "statements (per batch = per COMMIT):"
	psql_q "WITH b AS (SELECT greatest(sum(calls), 1) AS n FROM
	    pg_stat_statements WHERE query = 'COMMIT')
	    SELECT round((total_exec_time / b.n)::numeric, 2) || ' ms ' ||
	    round((rows / b.n)::numeric) || ' rows ' ||
	    round(((shared_blks_hit + shared_blks_read) / b.n)::numeric) ||
	    ' blks ' || calls || ' calls  ' ||
	    left(regexp_replace(query, '\s+', ' ', 'g'), 90)
	    FROM pg_stat_statements, b ORDER BY total_exec_time DESC
	    LIMIT 14" | sed 's/^/  /' >&2
fi
# log_checkpoints is on by default: each line says why (wal, time)
log "checkpoints: $(grep -c 'checkpoint starting' "$T/pg/pg.log")" \
    "$(grep -o 'checkpoint starting: [a-z ]*' "$T/pg/pg.log" | sort | uniq -c | paste -sd' ')"
it_pass
