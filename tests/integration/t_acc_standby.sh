#!/usr/bin/env bash
# it: serial
# t_acc_standby (issue #15, item 2): two accumulators, one poller, one api
# that name both (SYNCV3_INGEST/SYNCV3_NOTICES lists). The standby binds
# nothing while it waits. Under a steady flow of room and to-device
# messages, the active one is SIGKILLed (twice: each in turn) and later
# frozen with SIGSTOP; each time the other must commit again within 2 s
# (the frozen one is fenced: its writer session is ended), the killed one
# comes back as a standby, and the frozen one, once thawed, finds itself
# replaced and stands by without exiting. At the end a long-polling
# client got every message exactly once and in order, and storage holds
# each once.
source "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_standby.sh"

TAKEOVER_MAX_MS=${TAKEOVER_MAX_MS:-2000}
standby_stack
[ -e "$T/ingest2.sock" ] || [ -e "$T/notices2.sock" ] && fail "the standby bound its endpoints"
assert_eq "$(acc_active)" accumulator "the first one stays the writer"
standby_flow
sleep 2

took() {
	takeover_from "$1" "$2"
	[ "$TOOK" -le "$TAKEOVER_MAX_MS" ] || fail "takeover from $1 took $TOOK ms (at most $TAKEOVER_MAX_MS)"
}
took accumulator KILL
standby_restart accumulator
sleep 1
took accumulator2 KILL
standby_restart accumulator2
sleep 1
took accumulator STOP
kill -CONT "${IT_PIDS[accumulator]}"
wait_for "grep -q 'another accumulator is the writer; standing by' $T/accumulator.log" 10 ||
    fail "the thawed accumulator did not stand by"
sleep 1
is_running accumulator || fail "the thawed accumulator exited"
assert_eq "$(acc_active)" accumulator2 "the thawed one stays a standby"
sleep 1

standby_count
assert_eq "$LOST" 0 "messages lost at the client"
assert_eq "$DUP" 0 "messages duplicated at the client"
assert_eq "$ORDERED" 1 "messages in order at the client"
assert_eq "$STORED_DUP" 0 "rows stored twice"
for d in accumulator accumulator2 poller api; do
	is_running "$d" || fail "$d died"
	stop_proc "$d"
done
grep -q exiting "$T/accumulator.log" || fail "the standby did not exit cleanly"
san=$(it_sanitizer_logs)
[ -z "$san" ] || fail "sanitizer reports in: $(echo $san)"
it_pass
