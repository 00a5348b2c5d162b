#!/usr/bin/env bash
# Group commit sized by what arrived, never by a timer (issue #13 item 3).
# SYNCV3_ACC_BATCH_DELAY_MS is at its largest (60 s) and a batch has room
# for 64 bodies, yet a device that sends its bodies one after another
# (each once the previous is acked, as a poller does) has each committed
# alone, as soon as it arrives: the stats lines count one commit of one
# body per ack. A store that waited for company, or for the delay, would
# show fewer and larger commits, or not finish. Then 40 devices at once:
# every body acked in order per device and stored exactly once (-V), in
# commits that together took every body once.
source "$(dirname "$0")/lib.sh"

export SYNCV3_ACC_STATS_SECS=1 SYNCV3_ACC_BATCH_MAX=64
export SYNCV3_ACC_BATCH_DELAY_MS=60000
SYNCV3_LOG_LEVEL=info
it_setup
start_accumulator

# commits and bodies over the stats lines so far: "<commits> <bodies>"
commit_sums() {
	grep -o 'commits [0-9]* bodies [0-9]* max [0-9]*' \
	    "$T/accumulator.log" |
	    awk '{ c += $2; b += $4; if ($6 > m) m = $6 }
	        END { printf "%d %d %d\n", c, b, m }'
}
# acks so far, from the last stats line
acks() {
	grep -o 'ingest: acks [0-9]*' "$T/accumulator.log" | tail -1 |
	    awk '{ print $3 + 0 }'
}

# one device, 20 bodies in turn (a resend timeout past the run, so every
# body is sent once)
"$BIN/syncv3-bench-ingest" -V -T nt1 -D 1 -m 20 -r 1 -e 5 -t 60000 \
    >"$T/one.log" 2>&1 || fail "one device: $(cat "$T/one.log")"
n=20	# the initial body among them
wait_for "[ \"\$(acks)\" = $n ]" 10 ||
    fail "acks: $(acks), want $n"
# the last commit's line may come a second after its ack's
wait_for "[ \"\$(commit_sums | cut -d' ' -f1)\" = $n ]" 5 ||
    fail "commits: $(commit_sums) (commits bodies max), want $n of one body"
read -r c b m <<<"$(commit_sums)"
assert_eq "$b" "$n" "bodies committed"
assert_eq "$m" 1 "largest commit, in bodies"

# 40 devices, 5 bodies each, all in flight at once
"$BIN/syncv3-bench-ingest" -V -T nt40 -D 40 -m 5 -r 1 -e 5 -t 60000 \
    >"$T/many.log" 2>&1 || fail "40 devices: $(cat "$T/many.log")"
want=$((n + 40 * 5))
wait_for "[ \"\$(acks)\" = $want ]" 10 || fail "acks: $(acks), want $want"
wait_for "[ \"\$(commit_sums | cut -d' ' -f2)\" = $want ]" 5 ||
    fail "bodies in commits: $(commit_sums), want $want"
read -r c b m <<<"$(commit_sums)"
log "40 devices: $((c - n)) commits for $((want - n)) bodies, largest $m"
it_pass
