#!/usr/bin/env bash
# Crash safety of the accumulator (DESIGN.md contracts 1, 6, 7): while a
# fleet of simulated pollers (syncv3-bench-ingest: one DEALER, every
# device in flight, since chained, resend on timeout, reload the since on
# a mismatch nack, like syncv3-poller) delivers bodies with timeline
# events, state, typing and one to-device message each, the accumulator
# is killed with SIGKILL at random moments (so, under this load, in the
# middle of a batch) and restarted, several times. Afterwards every event
# and every to-device message is stored exactly once, every device's
# since is the last next_batch, no (room, type, state_key) has two
# current entries, and the position covers every event.
source "$(dirname "$0")/lib.sh"

KILLS=${ACC_CRASH_KILLS:-6}
it_setup
start_accumulator
start_proc driver "$BIN/syncv3-bench-ingest" -V -T crash -D 30 -m 40 -r 3 \
    -e 10 -t 1500
for i in $(seq "$KILLS"); do
	sleep "0.$((RANDOM % 7 + 3))"
	is_running driver || break
	log "kill -9 accumulator ($i/$KILLS) at position $(psql_q 'SELECT pos FROM syncv3_position')"
	kill9 accumulator
	start_accumulator
done
# The driver finishes once everything is acked (it resends what was lost).
for _ in $(seq 600); do is_running driver || break; sleep 0.2; done
is_running driver && fail "driver did not finish"
wait "${IT_PIDS[driver]}"
rc=$?
unset "IT_PIDS[driver]"
cat "$T/driver.log" >&2
assert_eq "$rc" 0 "driver verification"
assert_eq "$(psql_q "SELECT count(*) - count(DISTINCT event_id) FROM syncv3_events")" 0 \
    "no event stored twice"
assert_eq "$(psql_q "SELECT count(*) FROM (SELECT json FROM syncv3_to_device GROUP BY user_id, device_id, json HAVING count(*) > 1) x")" 0 \
    "no to-device message stored twice"
# the last accumulator still works and shuts down cleanly on SIGTERM
stop_proc accumulator
grep -q "exiting" "$T/accumulator.log" || fail "no clean exit on SIGTERM"
it_pass
