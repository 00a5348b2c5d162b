#!/usr/bin/env bash
# it: serial
# How many times the store waits for Postgres to commit one small body
# (issue #13: a to-device message's latency upstream -> client is mostly
# its batch's round trips). syncv3_acc_pg_round_trips_total counts every
# wait of the store's connection; a lone body's batch is
#   BEGIN + SET LOCAL + SAVEPOINT and the CAS on the device row: one
#     pipeline (db_begin_later; they were a simple query and the CAS)
#   the statements whose results it reads (typing: the room and
#     membership reads, the typing upsert; a to-device body has none: its
#     rows' INSERT and the device keys' upsert, whose result is read after
#     the commit, db_q_later, go with the commit)
#   the since, position, COMMIT and WAL position: one pipeline
# so a to-device body takes at most 2 and a typing body at most 5 (they
# took 10 and 11 with a statement per step, a COPY and a RELEASE, then 4
# and 6). A room message: the CAS, the group's lookups (known events,
# room rows, the users' rows: one pipeline, db_qv; they were one wait
# each, 9 in all), the position block if one is due and the commit: at
# most 4. Its new events and state ranges go in the commit's pipeline as
# INSERT ... unnest (a small group's, below ROWS_COPY_MIN rows); as COPYs
# they were two waits each and a wait for the writes before them: 7 for
# a message, 9 for a join, which also opens a state range. The messages
# are still delivered once each, after their commit. Counts, no time.
source "$(dirname "$0")/lib.sh"

start_stack_acc_prom
[ -n "$(acc_metric syncv3_acc_pg_round_trips_total)" ] || fail "no round trip counter"

tok=$(sim_login @alice:localhost A1)
room=$(sim rooms '{"creator":"@alice:localhost","name":"Trips"}' | jq -r .room_id)
sim "rooms/$room/join" '{"user_id":"@bob:localhost"}' >/dev/null
s=$(v3 "$tok" "" '{"to_device":{}}' 10000 | jq -r .next_batch)
[ "$s" != null ] || fail "no initial sync"

# trips LABEL MAX CMD...: runs CMD (one upstream change) and asserts that
# the one batch it caused waited for Postgres at most MAX times. Tried
# again if another batch (a poll timing out) came in between.
trips() {
	local label=$1 max=$2 b0 r0 b1 r1 i
	shift 2
	for i in 1 2 3; do
		b0=$(acc_metric syncv3_acc_batches_total)
		r0=$(acc_metric syncv3_acc_pg_round_trips_total)
		"$@"
		wait_for "[ \$(acc_metric syncv3_acc_batches_total) -gt $b0 ]" 15 ||
		    fail "$label: no batch"
		sleep 0.3 # a second batch would show here
		b1=$(acc_metric syncv3_acc_batches_total)
		r1=$(acc_metric syncv3_acc_pg_round_trips_total)
		[ $((b1 - b0)) = 1 ] || { log "$label: $((b1 - b0)) batches, again"; continue; }
		log "$label: $((r1 - r0)) round trips"
		[ $((r1 - r0)) -le "$max" ] ||
		    fail "$label: $((r1 - r0)) round trips, more than $max"
		return 0
	done
	fail "$label: never one batch alone"
}

n=0
msg() {
	n=$((n + 1))
	sim to_device "{\"user_id\":\"@alice:localhost\",\"device_id\":\"A1\",\"sender\":\"@bob:localhost\",\"type\":\"m.x\",\"content\":{\"n\":$n}}" >/dev/null
}
say() {
	sim "rooms/$room/send" '{"sender":"@bob:localhost","type":"m.room.message","content":{"body":"hi"}}' >/dev/null
}
trips to-device 2 msg
trips typing 5 sim_typing "$room" @bob:localhost
join() {
	sim "rooms/$room/join" '{"user_id":"@carol:localhost"}' >/dev/null
}
trips message 4 say
trips join 4 join

# every message reaches the device once, in order, after its commit
out=$(v3 "$tok" "$s" '{}' 10000)
assert_jq "$out" '[.to_device.events[].content.n]' "$(seq 1 $n | jq -sc .)" "delivered once each"
s=$(printf '%s' "$out" | jq -r .next_batch)
out=$(v3 "$tok" "$s" '{}' 0)
assert_jq "$out" '.to_device.events' '[]' "acked: not again"
it_pass
