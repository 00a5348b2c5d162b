#!/usr/bin/env bash
# SIGTERM while bodies are queued (contract 7: clean exit on SIGTERM):
# under a fleet of simulated pollers the accumulator is told to stop with
# bodies still in its queue. It finishes and acks what it had, exits 0
# with its "exiting" line, and a restarted one lets the fleet finish with
# everything stored exactly once. (Before, the first batch to come back
# after the SIGTERM dereferenced the read watcher ingest_stop had freed.)
source "$(dirname "$0")/lib.sh"

it_setup
start_accumulator
start_proc driver "$BIN/syncv3-bench-ingest" -V -T term -D 30 -m 40 -r 3 \
    -e 10 -t 1500
wait_for "grep -q 'ingest: acks [1-9]' $T/accumulator.log || [ \"\$(psql_q 'SELECT pos FROM syncv3_position')\" -gt 100 ]" 30 ||
    fail "no load on the accumulator"
kill -TERM "${IT_PIDS[accumulator]}"
wait "${IT_PIDS[accumulator]}"
rc=$?
unset "IT_PIDS[accumulator]"
grep -E 'stopping with [0-9]+ queued' "$T/accumulator.log" >&2
assert_eq "$rc" 0 "accumulator exit status after SIGTERM with bodies queued"
grep -q exiting "$T/accumulator.log" || fail "no clean exit on SIGTERM"
mv "$T/accumulator.log" "$T/accumulator.log.1"
start_accumulator
for _ in $(seq 600); do is_running driver || break; sleep 0.2; done
is_running driver && fail "driver did not finish"
wait "${IT_PIDS[driver]}"
rc=$?
unset "IT_PIDS[driver]"
assert_eq "$rc" 0 "driver verification"
assert_eq "$(psql_q "SELECT count(*) - count(DISTINCT event_id) FROM syncv3_events")" 0 \
    "no event stored twice"
san=$(it_sanitizer_logs)
[ -z "$san" ] || fail "sanitizer reports in: $(echo $san)"
stop_proc accumulator
it_pass
