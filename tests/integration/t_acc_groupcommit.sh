#!/usr/bin/env bash
# Group commit (issue #13): while the store's transaction waits on
# Postgres, the accumulator keeps reading bodies (they queue, already
# normalised), and when the commit returns the next batch takes all of
# them at once. A session holds syncv3_position locked, so the first
# batch blocks in its COMMIT path (pos_save); 40 devices send their first
# body meanwhile. While the lock is held the accumulator's stats line
# shows all 40 queued (before, the loop was blocked in libpq and read
# nothing); after it is released everything is acked and stored exactly
# once (syncv3-bench-ingest -V) in two batches at most: the blocked one
# and one with everything that queued.
source "$(dirname "$0")/lib.sh"

N=40
export SYNCV3_ACC_STATS_SECS=1 SYNCV3_ACC_BATCH_MAX=64
SYNCV3_LOG_LEVEL=info
it_setup
start_accumulator
hold_table_lock syncv3_position EXCLUSIVE ExclusiveLock 8
start_proc driver "$BIN/syncv3-bench-ingest" -V -T gc -D "$N" -m 1 -r 1 \
    -e 5 -t 60000
wait_for "grep -q 'ingest: acks 0 .* queued $N ' '$T/accumulator.log'" 7 ||
    fail "the accumulator did not take in all $N bodies while the commit waited"
is_running locker || fail "the lock was released too early for this test"
wait_for "! is_running driver" 30 || fail "driver did not finish"
wait "${IT_PIDS[driver]}" ||
    fail "driver verification (every event stored once): $(cat "$T/driver.log")"
# Two batches, or one if all 40 were read before the store's thread woke.
wait_for "grep -Eq 'ingest: acks $N .* batches [12] ' '$T/accumulator.log'" 5 ||
    fail "more than two batches: $(grep 'ingest: acks' "$T/accumulator.log" | tail -1)"
it_pass
