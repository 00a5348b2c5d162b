#!/usr/bin/env bash
# bench_poller.sh: one poller process holding BENCH_DEVICES (5000) devices
# in long-poll against the simulated homeserver. The accumulator is the
# bench_poller stand-in (ROUTER + the real since compare-and-set in
# Postgres, no body storage), so the figures are the poller's own.
# Reports: RSS per device (VmRSS with 0 devices vs all devices in
# long-poll), CPU while idle (utime+stime over BENCH_IDLE_SECS, default 30),
# and completed (acked) polls per second while to-device messages flow to
# random devices for BENCH_LOAD_SECS (default 20).
# usage: tests/bench/bench_poller.sh   (after cmake --build build)
set -u
source "$(dirname "$0")/../integration/lib.sh"
NDEV=${BENCH_DEVICES:-5000}
IDLE=${BENCH_IDLE_SECS:-30}
LOAD=${BENCH_LOAD_SECS:-20}
export SYNCV3_LOG_LEVEL=info SYNCV3_MAX_INITIAL=${BENCH_MAX_INITIAL:-64}

rss_kb() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
acks() { tail -1 "$T/accumulator.log" | sed 's/.* acks=\([0-9]*\).*/\1/'; }

it_setup
start_simhs
psql_q "CREATE TABLE syncv3_schema_migrations (version int PRIMARY KEY,
    name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
for f in "$IT_ROOT"/deploy/sql/[0-9][0-9][0-9]_*.sql; do
	psql_q "$(cat "$f")" >/dev/null || fail "schema $f"
	n=$(basename "$f"); psql_q "INSERT INTO syncv3_schema_migrations VALUES (${n%%_*}, '${n%.sql}')"
done
start_proc accumulator "$BIN/bench_poller" -i "$SYNCV3_INGEST" -d "$SYNCV3_DB"
start_poller poller
PID=${IT_PIDS[poller]}
wait_for "grep -q 'polling http' '$T/poller.log'" 20 || fail "poller did not start"
sleep 2
rss0=$(rss_kb "$PID")

log "creating $NDEV users on the simulated homeserver"
sim scenario "{\"users\":$NDEV,\"rooms_per_user\":0,\"prefix\":\"b\"}" >"$T/users.json" ||
    fail "scenario"
jq -r '.users[] | [.user_id, .device_id, .access_token] | @tsv' "$T/users.json" >"$T/u.tsv"
cut -f3 "$T/u.tsv" | "$BIN/syncv3-tokenenc" - >"$T/enc.tsv"
paste <(cut -f1,2 "$T/u.tsv") "$T/enc.tsv" >"$T/devices.tsv"
t0=$(date +%s%N)
psql_q "\\copy syncv3_devices (user_id, device_id, token_hash, token_enc) FROM '$T/devices.tsv'" ||
    fail "copy"
psql_q "NOTIFY syncv3_devices"
wait_for "[ \$(psql_q \"SELECT count(*) FROM syncv3_devices WHERE since <> ''\") = $NDEV ]" 300 ||
    fail "not all devices synced"
wait_for "[ \$(sim_get stats | jq .waiters) -ge $NDEV ]" 60 || fail "not all in long-poll"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
sleep 3
rss1=$(rss_kb "$PID")
log "all $NDEV devices claimed, initially synced and in long-poll after ${ms} ms"

c0=$(cpu_ticks "$PID"); a0=$(acks); sleep "$IDLE"; c1=$(cpu_ticks "$PID"); a1=$(acks)
hz=$(getconf CLK_TCK)
idle_cpu=$(awk -v t=$((c1 - c0)) -v hz="$hz" -v s="$IDLE" 'BEGIN { printf "%.2f", 100 * t / hz / s }')
idle_polls=$(awk -v a=$((a1 - a0)) -v s="$IDLE" 'BEGIN { printf "%.1f", a / s }')

# load: batches of to-device messages to random devices, each wakes a poll
log "load: to-device messages to random devices for ${LOAD}s"
cut -f1,2 "$T/u.tsv" >"$T/ud.tsv"
end=$(( $(date +%s) + LOAD ))
c0=$(cpu_ticks "$PID"); a0=$(acks); s0=$(date +%s%N)
while [ "$(date +%s)" -lt "$end" ]; do
	shuf -n 500 "$T/ud.tsv" | jq -Rsc '{messages: [split("\n")[] | select(length > 0) | split("\t") |
	    {sender: "@load:localhost", type: "m.bench", user_id: .[0], device_id: .[1], content: {x: 1}}]}' >"$T/batch.json"
	curl -sS -f -X POST -H 'Content-Type: application/json' --data @"$T/batch.json" \
	    "$SIMHS_URL/_simhs/to_device" >/dev/null || fail "to_device"
done
sleep 2
c1=$(cpu_ticks "$PID"); a1=$(acks); s1=$(date +%s%N)
secs=$(awk -v d=$((s1 - s0)) 'BEGIN { printf "%.2f", d / 1e9 }')
load_polls=$(awk -v a=$((a1 - a0)) -v s="$secs" 'BEGIN { printf "%.0f", a / s }')
load_cpu=$(awk -v t=$((c1 - c0)) -v hz="$hz" -v s="$secs" 'BEGIN { printf "%.1f", 100 * t / hz / s }')
rss2=$(rss_kb "$PID")
is_running poller || fail "poller died"
grep -c ' warn: ' "$T/poller.log" >"$T/nwarn" || true

cat <<REPORT
poller benchmark: $NDEV devices, one poller process (pid $PID), simhs + stand-in accumulator on this machine
  VmRSS with 0 devices:          ${rss0} KiB
  VmRSS with $NDEV in long-poll: ${rss1} KiB
  RSS per device:                $(( (rss1 - rss0) * 1024 / NDEV )) bytes
  claim + initial sync of all:   ${ms} ms
  idle (${IDLE}s, long-poll 30 s): CPU ${idle_cpu}% of one core, ${idle_polls} polls/s (timeouts)
  load (${secs}s of to-device):  ${load_polls} completed polls/s, CPU ${load_cpu}% of one core
  VmRSS after load:              ${rss2} KiB
  warnings logged:               $(cat "$T/nwarn")
REPORT
it_pass
