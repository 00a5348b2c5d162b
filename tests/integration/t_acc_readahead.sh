#!/usr/bin/env bash
# The accumulator reads ahead of a blocked store only so far: at four
# batches' worth (here SYNCV3_ACC_BATCH_MAX=2, so 8 messages) it stops
# reading and the rest wait in ZeroMQ and at the pollers, so a commit
# stuck on Postgres cannot make its memory grow without bound. Before the
# bound every body was read and parsed (all 40 queued). Once the lock is
# released every body is acked and stored exactly once.
source "$(dirname "$0")/lib.sh"

N=40
export SYNCV3_ACC_STATS_SECS=1 SYNCV3_ACC_BATCH_MAX=2
it_setup
start_accumulator
hold_table_lock syncv3_position EXCLUSIVE ExclusiveLock 6
start_proc driver "$BIN/syncv3-bench-ingest" -V -T ra -D "$N" -m 1 -r 1 \
    -e 5 -t 60000
sleep 3
is_running locker || fail "the lock was released too early for this test"
q=$(grep -Eo 'ingest: acks 0 .* queued [0-9]+ ' "$T/accumulator.log" | tail -1 |
    grep -Eo 'queued [0-9]+' | grep -Eo '[0-9]+')
[ -n "$q" ] || fail "no stats line while the commit waited"
[ "$q" -le 8 ] || fail "read $q messages ahead of a blocked store (bound 8)"
log "read ahead while blocked: $q messages (bound 8)"
wait_for "! is_running driver" 40 || fail "driver did not finish"
wait "${IT_PIDS[driver]}" ||
    fail "driver verification (every event stored once): $(cat "$T/driver.log")"
it_pass
