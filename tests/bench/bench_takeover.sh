#!/usr/bin/env bash
# bench_takeover.sh: how long a SIGKILLed poller's devices go unpolled
# (issue #15). Two pollers share BENCH_DEVICES (10) devices; BENCH_KILLS
# (20) times, poller A is SIGKILLed and
#   BENCH_MODE=restart  started again at once, as runit does, or
#   BENCH_MODE=die      left dead while B takes over (A comes back after
#                       the measurement, for the next round).
# Unpolled time of one kill: from the SIGKILL until the last of A's devices
# has a new /sync request at the simulated homeserver (its per-device
# request counter moved; checked every 50 ms). Prints every kill and then
# p50/p99 (nearest rank).
# Ids: BENCH_IDS=runit (default) gives each poller what its runit service
# gives it (<hostname>:syncv3-poller, <hostname>:syncv3-poller-2);
# BENCH_IDS=default leaves SYNCV3_POLLER_ID unset, so each poller takes the
# binary's default (hostname:pid before issue #15).
# usage: BIN=build/bin tests/bench/bench_takeover.sh
set -u
source "$(dirname "$0")/../integration/lib.sh"
. "$(dirname "$0")/../integration/lib_poller.sh"
NDEV=${BENCH_DEVICES:-10}
KILLS=${BENCH_KILLS:-20}
MODE=${BENCH_MODE:-restart}
IDS=${BENCH_IDS:-runit}
export SYNCV3_LOG_LEVEL=info

host=$(hostname)
idof() { [ "$IDS" = runit ] && printf 'SYNCV3_POLLER_ID=%s' "$1"; }
start_a() { start_proc pA$1 env $(idof "$host:syncv3-poller") "$BIN/syncv3-poller"; A=pA$1; }

it_setup
start_simhs
start_accumulator
start_a 0
start_proc pB env $(idof "$host:syncv3-poller-2") "$BIN/syncv3-poller"
wait_for "grep -q 'polling http' '$T/pA0.log' && grep -q 'polling http' '$T/pB.log'" 20 ||
    fail "pollers did not start"
for i in $(seq "$NDEV"); do pt_register "@u$i:localhost" "D$i" >/dev/null; done
balanced() { [ "$(psql_q "SELECT count(DISTINCT owner) || ' ' || count(*) FROM syncv3_leases")" = "2 $NDEV" ] &&
    [ "$(psql_q "SELECT count(*) FROM syncv3_devices WHERE since <> '' AND poll_state = 'polling'")" = "$NDEV" ]; }
wait_for balanced 60 || fail "devices not split between two pollers"

res=()
for k in $(seq "$KILLS"); do
	wait_for balanced 90 || fail "kill $k: not rebalanced"
	sleep 0.$((RANDOM % 10)) # kill at a random point of the renewal cycles
	# A's lease owner name: its pid is in the default id, so ask Postgres
	apid=${IT_PIDS[$A]}
	if [ "$IDS" = runit ]; then aid="$host:syncv3-poller"; else aid="$host:$apid"; fi
	mapfile -t devs < <(pt_held "$aid")
	[ ${#devs[@]} -gt 0 ] || fail "kill $k: A ($aid) holds nothing"
	pt_req_counts >"$T/before"
	t0=$(date +%s%N)
	kill9 "$A"
	[ "$MODE" = restart ] && start_a "$k"
	worst=$(pt_unpolled_ms "$t0" 120 "$T/before" "${devs[@]}") ||
	    fail "kill $k: devices unpolled after 120 s"
	log "kill $k: ${#devs[@]} devices of $aid, unpolled for ${worst} ms"
	res+=("$worst")
	[ "$MODE" = die ] && start_a "$k"
done
mapfile -t s < <(printf '%s\n' "${res[@]}" | sort -n)
n=${#s[@]}
p50=${s[$(( (n * 50 + 99) / 100 - 1 ))]} p99=${s[$(( (n * 99 + 99) / 100 - 1 ))]}
log "RESULT mode=$MODE ids=$IDS kills=$n unpolled ms: p50=$p50 p99=$p99 max=${s[$((n - 1))]}"
it_pass
