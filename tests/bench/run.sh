#!/usr/bin/env bash
# tests/bench/run.sh: the whole benchmark (issues #6, #11, #13). Starts its
# own stack in a temporary directory (a private Postgres that is durable,
# fsync on, with deploy/postgres/syncv3.conf, see tests/bench/pg.sh; the
# simulated homeserver, accumulator, poller, api; see
# tests/integration/lib.sh), runs every scenario of
# build/bin/syncv3-loadgen against it, and before that the benchmark
# scripts beside it, each on a stack of its own (cold logins and new
# devices, typing and to-device latency, RSS after large logins, sliding
# sync); prints a table with the goals beside the figures and writes them
# all to a JSON file (tests/bench/compare.sh compares two). Never asserts
# a time: the figures are for people to read.
#
# usage: tests/bench/run.sh [-o FILE] [--tiny] [--skip S,S] [--only S,S]
#          [--users N] [--rooms N] [--shared N] [--members N] [--events N]
#          [--clients N] [--rate N] [--secs N] [--typing N] [--to-device N]
#          [--sizes 100,1000,10000] [--repeats N] [--long-polls N]
#          [--devices N] [--cold-sizes 1000,10000] [--latency-samples N]
#          [--rss-rooms N] [--rss-logins N] [--ss-rooms N]
#          [--ss-samples N] [--ss-login-sizes 1000,10000] [--ss-idle N]
#          [--ingest-secs N] [--parallel | --serial]
# sections (--skip/--only): first ingest e2e idle devices (loadgen, one
# stack) cold typing rss ss ss_e2e ss_login (one stack each, in turn;
# --parallel, implied by --tiny: all at once, for a quick check only).
# (after cmake --build build). TEST_KEEP=1 keeps the temp dir and logs.
set -u
here=$(cd "$(dirname "$0")" && pwd)
OUT=bench-results.json
USERS=200 ROOMS=5 SHARED=20 MEMBERS=10 EVENTS=45
# the ingest firehose's length: long enough for a rate per second over
# time and ack latencies of many intervals (0: one burst of EVENTS a room)
INGEST_SECS=20
CLIENTS=100 RATE=1000 SECS=20 TYPING=20 TODEV=20
SIZES=100,1000,10000 REPEATS=50 LONGPOLLS=10000 DEVICES=2000
SECTIONS="first ingest e2e idle devices cold typing rss ss ss_e2e ss_login"
SKIP= ONLY= PARALLEL=
# the scripts' sizes; ss_e2e's background rates are #11's (25 and 1000/s)
COLD_ARGS=(--sizes 1000,10000 --repeats 5 --cold 3)
TYPING_ARGS=(-k 300) RSS_ARGS=(-r 10000 -l 5) SS_ARGS=(-r 10000 -q 50)
SS_E2E_ARGS=(-n 200 -K 50 -l 25 -h 1000)
SS_LOGIN_ARGS=(-z 1000,10000 -q 3 -n 1000)
usage() { sed -n '14,25p' "$0" >&2; exit 2; }
while [ $# -gt 0 ]; do
	case $1 in
	-o) OUT=$2; shift ;;
	--tiny)
		USERS=10 ROOMS=2 SHARED=2 MEMBERS=3 EVENTS=10 INGEST_SECS=2
		CLIENTS=5 RATE=50 SECS=3 TYPING=5 TODEV=5
		SIZES=20,100 REPEATS=5 LONGPOLLS=200 DEVICES=100
		COLD_ARGS=(--sizes 30 --repeats 2 --cold 1)
		TYPING_ARGS=(-k 10) RSS_ARGS=(-r 200 -l 2 -i 1)
		SS_ARGS=(-r 30 -q 5) SS_E2E_ARGS=(-n 10 -K 5 -l 5 -h 50 -s 4)
		SS_LOGIN_ARGS=(-z 30 -q 1 -n 20) PARALLEL=1 ;;
	--parallel) PARALLEL=1 ;;
	--serial) PARALLEL= ;;
	--skip) SKIP=${2//,/ }; shift ;;
	--only) ONLY=${2//,/ }; shift ;;
	--cold-sizes) COLD_ARGS+=(--sizes "$2"); shift ;;
	--latency-samples) TYPING_ARGS+=(-k "$2"); SS_E2E_ARGS+=(-n "$2"); shift ;;
	--rss-rooms) RSS_ARGS+=(-r "$2"); shift ;;
	--rss-logins) RSS_ARGS+=(-l "$2"); shift ;;
	--ss-rooms) SS_ARGS+=(-r "$2"); shift ;;
	--ss-samples) SS_ARGS+=(-q "$2"); shift ;;
	--ss-login-sizes) SS_LOGIN_ARGS+=(-z "$2"); shift ;;
	--ss-idle) SS_LOGIN_ARGS+=(-n "$2"); shift ;;
	--users) USERS=$2; shift ;;
	--rooms) ROOMS=$2; shift ;;
	--shared) SHARED=$2; shift ;;
	--members) MEMBERS=$2; shift ;;
	--events) EVENTS=$2; shift ;;
	--ingest-secs) INGEST_SECS=$2; shift ;;
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
for s in $SKIP $ONLY; do
	case " $SECTIONS " in *" $s "*) ;; *) echo "unknown section $s" >&2; usage ;; esac
done

# cold and ss_login measure a deployment's cold login: the poller's own
# first timeline limit (1) unless the caller sets one, not the 50 lib.sh
# gives the scenarios (a 54 MB first body at 10,000 rooms of bench_cold's
# accounts, not 31 MB: what made its v3 figure about twice sliding sync's)
FIRST_TL=${SYNCV3_FIRST_TIMELINE_LIMIT:-1}
source "$here/../integration/lib.sh"
source "$here/pg.sh"
IT_NAME=bench
# LG: another build's loadgen, to drive an older stack the same way
LG=${LG:-$BIN/syncv3-loadgen}
[ -x "$LG" ] || fail "$LG missing: cmake --build build first"

# on SECTION: whether this run includes it (--only, --skip)
on() {
	case " ${ONLY:-$SECTIONS} " in *" $1 "*) ;; *) return 1 ;; esac
	case " $SKIP " in *" $1 "*) return 1 ;; esac
}
# script SECTION FILE ARG...: a benchmark script of this directory on a
# stack of its own; the JSON objects it prints, as one array, in
# $T/r_SECTION.json. With --parallel it runs in the background and
# scripts_wait collects it.
declare -A SCRIPT_PIDS=() SCRIPT_T0=() SCRIPT_L0=()
script() {
	local s=$1 f=$2
	shift 2
	on "$s" || return 0
	log "section $s: $f $*"
	SCRIPT_T0[$s]=$(date +%s) SCRIPT_L0[$s]=$(cut -d' ' -f1-3 /proc/loadavg)
	bash "$here/$f" "$@" >"$T/$s.out" 2>"$T/$s.log" &
	SCRIPT_PIDS[$s]=$!
	[ -n "$PARALLEL" ] || scripts_wait
}
scripts_wait() {
	local s failed=
	for s in "${!SCRIPT_PIDS[@]}"; do
		if ! wait "${SCRIPT_PIDS[$s]}"; then
			tail -20 "$T/$s.log" >&2
			failed="$failed $s"
			continue
		fi
		grep '^\[bench_' "$T/$s.log" | sed "s/^/  $s: /" >&2
		timed "$s" "${SCRIPT_T0[$s]}" "${SCRIPT_L0[$s]}"
		# pretty-printed objects, or one per line among other lines
		jq -cs . "$T/$s.out" >"$T/r_$s.json" 2>/dev/null ||
		    jq -Rcs '[splits("\n") | fromjson?]' "$T/$s.out" >"$T/r_$s.json"
	done
	SCRIPT_PIDS=()
	[ -z "$failed" ] || fail "section$failed"
}
# timed SECTION T0 LOAD0: how long it took and the load around it, for
# reading its figures, in $T/t_SECTION.json
timed() {
	local secs=$(( $(date +%s) - $2 ))
	log "section $1: done after $secs s"
	jq -nc --argjson secs "$secs" --arg l0 "$3" --arg l1 "$(cut -d' ' -f1-3 /proc/loadavg)" \
	    '{secs: $secs, loadavg_start: $l0, loadavg_end: $l1}' >"$T/t_$1.json"
}
# On a failure elsewhere, the scripts still running stop their stacks
# (their own exit traps) before this one removes its directory.
bench_on_exit() {
	local s
	for s in "${!SCRIPT_PIDS[@]}"; do
		kill -TERM "${SCRIPT_PIDS[$s]}" 2>/dev/null
		wait "${SCRIPT_PIDS[$s]}" 2>/dev/null
	done
}

start_proc loadavg bash -c 'while :; do cat /proc/loadavg; sleep 5; done'
load0=$(cut -d' ' -f1-3 /proc/loadavg)
t_start=$(date +%s)

# The scripts first, one stack each, before this run's stack exists (with
# --parallel: beside it, which only --tiny should do, whose figures are
# checked, not read). A poller stalled on a 10k-room body would otherwise
# lapse on a loaded machine and start the initial sync again (README); a
# cold login's first request must wait as long as its first window takes
# (the api's 60 s default answered an empty window at load average 19).
SYNCV3_TAKEOVER_MS=${SYNCV3_TAKEOVER_MS:-10000} \
SYNCV3_API_INITIAL_WAIT_MS=${SYNCV3_API_INITIAL_WAIT_MS:-600000} \
SYNCV3_FIRST_TIMELINE_LIMIT=$FIRST_TL \
    script cold bench_cold.sh "${COLD_ARGS[@]}"
script typing bench_typing.sh "${TYPING_ARGS[@]}" -r "$RATE" -K "$CLIENTS"
SYNCV3_TAKEOVER_MS=${SYNCV3_TAKEOVER_MS:-10000} \
    script rss bench_rss.sh "${RSS_ARGS[@]}"
script ss bench_ss.sh "${SS_ARGS[@]}"
script ss_e2e bench_ss_e2e.sh "${SS_E2E_ARGS[@]}"
SYNCV3_FIRST_TIMELINE_LIMIT=$FIRST_TL \
    script ss_login bench_ss_login.sh "${SS_LOGIN_ARGS[@]}"

core=
for s in first ingest e2e idle devices; do on "$s" && core=1; done
pgset=null
if [ -n "$core" ]; then
	# one fd per long-poll on both ends, plus slack
	ulimit -n "$(ulimit -Hn)" 2>/dev/null
	[ "$(ulimit -n)" = unlimited ] || [ "$(ulimit -n)" -gt $((LONGPOLLS + 500)) ] ||
	    fail "ulimit -n $(ulimit -n) is too low for $LONGPOLLS long-polls"
	export SYNCV3_LOG_LEVEL=${SYNCV3_LOG_LEVEL:-info}
	# idle sessions must outlive the run
	export SYNCV3_API_SESSION_IDLE_SECS=3600
	# The idle scenario holds 100 sessions on each device (loadgen idle):
	# above the api's default of 20 a device's older sessions were expired
	# as the newer ones came, 8,000 of its 10,000 long-polls were answered
	# at once with 400, and the bytes per long-poll were shared among the
	# 2,000 actually held.
	export SYNCV3_API_SESSIONS_PER_DEVICE=1000
	# the accumulator's ack latency per second, for the ingest figures
	export SYNCV3_ACC_STATS_SECS=1
	# The idle scenario opens its sessions all at once: on a loaded machine
	# their statements queued past the api's 5 s deadline and the run
	# ended on a 503 (seen at load averages 8-15). Figures are latencies
	# of answered requests; the deadline only decides when one is dropped.
	export SYNCV3_API_DB_TIMEOUT_MS=${SYNCV3_API_DB_TIMEOUT_MS:-60000}
	bench_pg_start "$T/pg" || fail "postgres did not start"
	start_stack
	pgset=$(bench_pg_settings)
	pm=$(head -1 "$(psql_q "SHOW data_directory")/postmaster.pid")
fi
# pg_writes: Postgres's buffer writes so far (by backends, by the
# checkpointer, by the background writer), as one JSON object
pg_writes() {
	psql_q "SELECT json_build_object('backend', buffers_backend,
	    'checkpoint', buffers_checkpoint, 'clean', buffers_clean)
	    FROM pg_stat_bgwriter"
}
pids() {
	PIDS="accumulator=${IT_PIDS[accumulator]},poller=${IT_PIDS[poller]}"
	PIDS="$PIDS,api=${IT_PIDS[api]},simhs=${IT_PIDS[simhs]},postgres=+$pm"
}
lg() {
	local name=$1 t0=$(date +%s) l0=$(cut -d' ' -f1-3 /proc/loadavg)
	shift
	on "$name" || return 0
	log "scenario $name"
	"$LG" "$name" -s "$SIMHS_URL" -a "$API_URL" -d "$SYNCV3_DB" -P "$PIDS" \
	    "$@" >"$T/r_$name.json" 2>"$T/loadgen_$name.log" || {
		tail -20 "$T/loadgen_$name.log" >&2; fail "loadgen $name"; }
	grep 'loadgen: info' "$T/loadgen_$name.log" | sed 's/^/  /' >&2
	timed "$name" "$t0" "$l0"
}

if [ -n "$core" ]; then
	pids
	lg first -z "$SIZES" -n "$REPEATS"
	bgw0=$(pg_writes)
	lg ingest -U "$USERS" -R "$ROOMS" -S "$SHARED" -M "$MEMBERS" -E "$EVENTS" \
	    -T "$INGEST_SECS" -L "$T/accumulator.log"
	# Buffers Postgres wrote during the firehose, by who wrote them: the
	# writer's own backend writes when the tables outgrow shared_buffers
	# and it must evict a dirty page to read the next (docs/POSTGRES.md)
	if on ingest && bgw1=$(pg_writes); then
		jq --argjson a "$bgw0" --argjson b "$bgw1" \
		    '. + {pg_buffers_written: ($b | with_entries(.value -= $a[.key]))}' \
		    "$T/r_ingest.json" >"$T/r_ingest.j" && mv "$T/r_ingest.j" "$T/r_ingest.json"
	fi
	lg e2e -K "$CLIENTS" -R "$ROOMS" -r "$RATE" -t "$SECS" -y "$TYPING" -x "$TODEV"
	lg idle -K "$LONGPOLLS"
fi
if on devices; then
	# A fresh poller for the per-device figure: heap left over from the
	# big initial syncs above would otherwise absorb the new devices'
	# memory. It takes over every device so far before the baseline is
	# read.
	w=$(sim_get stats | jq .waiters)
	stop_proc poller
	start_poller poller
	wait_for "[ \$(sim_get stats | jq .waiters) -ge $w ]" 120 ||
	    log "warning: fresh poller holds fewer long-polls than before"
	sleep 2
	pids
	lg devices -D "$DEVICES"
fi

if [ -n "$core" ]; then
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
fi
scripts_wait
load1=$(cut -d' ' -f1-3 /proc/loadavg)
loadmax=$(awk '$1 > m { m = $1 } END { print m + 0 }' "$T/loadavg.log")

# every section's result by name (absent: skipped)
for s in $SECTIONS pg; do
	[ -s "$T/r_$s.json" ] && jq -c --arg s "$s" '{($s): .}' "$T/r_$s.json"
done | jq -s 'add // {}' >"$T/sections.json" || fail "reading the results"
for s in $SECTIONS; do
	[ -s "$T/t_$s.json" ] && jq -c --arg s "$s" '{($s): .}' "$T/t_$s.json"
done | jq -s 'add // {}' >"$T/runs.json" || fail "reading the sections' times"

jq -n --slurpfile r "$T/sections.json" --slurpfile runs "$T/runs.json" \
    --argjson pgset "$pgset" \
    --arg nproc "$(nproc)" --arg load0 "$load0" --arg load1 "$load1" \
    --arg loadmax "$loadmax" --arg secs "$(( $(date +%s) - t_start ))" \
    --arg commit "$(git -C "$IT_ROOT" rev-parse --short HEAD 2>/dev/null)" \
    --arg sizes "$SIZES" --arg bin "$BIN" -f "$here/figures.jq" >"$OUT" ||
    fail "writing $OUT"

jq -r -f "$here/table.jq" "$OUT" >"$T/table.tsv" || fail "the table of $OUT"
awk -F'\t' '{ printf "%-72s %12s  %s\n", $1, $2, $3 }' "$T/table.tsv"
log "figures written to $OUT"
it_pass
