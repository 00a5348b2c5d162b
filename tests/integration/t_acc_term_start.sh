#!/usr/bin/env bash
# it: serial
# SIGTERM while the accumulator is still starting (docker stop right after
# a restart): it must exit 0 with its "exiting" line, not die by the
# signal's default action. A psql session holds the schema migration lock,
# so the accumulator waits inside its start-up for as long as we like.
source "$(dirname "$0")/lib.sh"

it_setup
start_proc locker psql -h "$IT_PGHOST" -U postgres -d "${SYNCV3_DB##*dbname=}" -qAt -c \
    "SELECT pg_advisory_lock(x'7370796e637633'::bigint), pg_sleep(30)"
wait_for "[ \"\$(psql_q \"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted\")\" -ge 1 ]" 10 ||
    fail "no migration lock held"
start_proc accumulator "$BIN/syncv3-accumulator"
wait_for "[ \"\$(psql_q \"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted\")\" -ge 1 ]" 10 ||
    fail "the accumulator is not waiting for the migration lock"
kill -TERM "${IT_PIDS[accumulator]}"
sleep 0.3
psql_q "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted" >/dev/null
stop_proc locker
wait_for "! is_running accumulator" 20 || fail "the accumulator did not stop"
wait "${IT_PIDS[accumulator]}"
rc=$?
unset "IT_PIDS[accumulator]"
assert_eq "$rc" 0 "exit status after a TERM during start-up"
grep -q exiting "$T/accumulator.log" || fail "no clean exit: $(tail -2 "$T/accumulator.log")"
it_pass
