#!/usr/bin/env bash
# bench_acc_takeover.sh (issue #15): standby takeover time. Two
# accumulators, a poller, an api and a long-polling client under a steady
# flow of room and to-device messages; BENCH_KILLS (20) times the active
# accumulator is SIGKILLed (BENCH_SIGNAL=STOP: frozen instead, thawed once
# replaced) and restarted as the standby. Takeover of one kill: from the
# signal until the other accumulator holds the writer lock and has
# committed (syncv3_position moved; checked every 20 ms). Prints every
# kill, then p50/max (nearest rank) and what the client got: lost,
# duplicated, out of order, over all kills.
# usage: BIN=build/bin tests/bench/bench_acc_takeover.sh
set -u
source "$(dirname "$0")/../integration/lib.sh"
. "$(dirname "$0")/../integration/lib_standby.sh"
KILLS=${BENCH_KILLS:-20}
SIG=${BENCH_SIGNAL:-KILL}
export SYNCV3_LOG_LEVEL=info

standby_stack
standby_flow
sleep 2
res=()
for k in $(seq "$KILLS"); do
	v=$(acc_active)
	[ -n "$v" ] || fail "kill $k: no writer"
	sleep 0.$((RANDOM % 10)) # at a random point of the renewal cycle
	takeover_from "$v" "$SIG"
	res+=("$TOOK")
	if [ "$SIG" = KILL ]; then
		standby_restart "$v"
	else
		kill -CONT "${IT_PIDS[$v]}"
		wait_for "[ \$(grep -c 'another accumulator is the writer; standing by' $T/$v.log) -ge 1 ]" 10 ||
		    fail "kill $k: the thawed $v did not stand by"
		mv "$T/$v.log" "$T/$v.log.$k"
		stop_proc "$v"
		start_acc "$v"
	fi
	sleep 1
done
standby_count
sorted=$(printf '%s\n' "${res[@]}" | sort -n)
n=${#res[@]}
p50=$(printf '%s\n' "$sorted" | sed -n "$(((n + 1) / 2))p")
max=$(printf '%s\n' "$sorted" | tail -1)
log "takeover over $n SIG$SIG of the active accumulator: p50 ${p50} ms, max ${max} ms; client: sent $(wc -l <"$T/sent"), lost $LOST, duplicated $DUP, in order $ORDERED; stored twice $STORED_DUP"
[ "$LOST" = 0 ] && [ "$DUP" = 0 ] && [ "$ORDERED" = 1 ] && [ "$STORED_DUP" = 0 ] ||
    fail "messages lost, duplicated or out of order"
it_pass
