#!/usr/bin/env bash
# it: serial
# t_poller_bounds: the poller's upstream bounds (issue #9).
#  - every upstream /sync carries a timeout, the initial one too
#  - an initial sync whose body stalls half way is abandoned within the
#    stall limit (SYNCV3_LOW_SPEED_*) and retried with backoff; since is
#    not advanced by the stalled body
#  - an upstream that answers at once with next_batch = since and nothing
#    else is polled with growing delays, not in a tight loop; polling
#    speeds up again once it makes progress
# Each part is checked on its own and the failures are listed at the end,
# so a run shows every bound that does not hold.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_poller.sh"

export SYNCV3_POLL_TIMEOUT_MS=1000 SYNCV3_BACKOFF_BASE_MS=200 \
    SYNCV3_BACKOFF_CAP_MS=2000 SYNCV3_LEASE_SECS=6 \
    SYNCV3_INITIAL_TIMEOUT_SECS=600 \
    SYNCV3_LOW_SPEED_LIMIT=1024 SYNCV3_LOW_SPEED_SECS=2
nbad=0
check_eq() { [ "$1" = "$2" ] || bad "$3: got '$1', want '$2'"; }
bad() { log "FAIL: $*"; nbad=$((nbad + 1)); }
# sync_queries TOKEN: the query of each /sync request made with TOKEN
sync_queries() {
	sim_get "sync_log?access_token=$1" | jq -r '.requests[].query'
}

it_setup
start_simhs
start_accumulator
start_poller poller

# --- stalled initial body: abandoned, retried, since not advanced ---------
U2=@stall:localhost D2=SDEV
TOK2=$(sim_login "$U2" "$D2")
sim fail "{\"path\":\"sync\",\"access_token\":\"$TOK2\",\"mode\":\"stall\",\"delay_ms\":600000,\"count\":2}" >/dev/null
t0=$(date +%s%N)
pt_register "$U2" "$D2" "$TOK2" >/dev/null
if wait_for "[ \$(pt_requests $TOK2) -ge 2 ]" 15; then
	check_eq "$(pt_col $U2 $D2 since)" "" "stall: since advanced by a stalled body"
else
	bad "stall: stalled initial sync not abandoned within 15 s ($(pt_requests "$TOK2") requests)"
fi
if wait_for "[ -n \"\$(pt_col $U2 $D2 since)\" ]" 20; then
	log "stall: committed after 2 stalled bodies in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
	grep -q "$U2/$D2: network: stalled" "$T/poller.log" || bad "stall: no stall logged"
else
	bad "stall: initial sync never committed after the stalls"
fi

# --- every request has a timeout, the initial one first -------------------
U=@alice:localhost D=ADEV
TOK=$(pt_register "$U" "$D")
wait_for "[ -n \"\$(pt_col $U $D since)\" ]" 15 || fail "initial sync not committed"
wait_for "[ \$(pt_requests $TOK) -ge 3 ]" 10 || fail "no incremental syncs"
first=$(sync_queries "$TOK" | head -n1)
case "&$first&" in *"&since="*) bad "timeout: first request has a since: $first" ;; esac
case "&$first" in *"&timeout="[0-9]*) ;; *) bad "timeout: initial sync without timeout: $first" ;; esac
nq=$(sync_queries "$TOK" | wc -l)
nt=$(sync_queries "$TOK" | grep -c '\(^\|&\)timeout=[0-9]')
[ "$nq" -gt 0 ] && [ "$nq" = "$nt" ] || bad "timeout: $nt of $nq requests carry a timeout"

# --- unchanged next_batch at once: backoff, reset on progress -------------
since0=$(pt_col $U $D since)
sim fail "{\"path\":\"sync\",\"access_token\":\"$TOK\",\"mode\":\"unchanged\",\"count\":100000}" >/dev/null
sleep 0.5
n0=$(pt_requests "$TOK")
sleep 4
n1=$(pt_requests "$TOK")
log "unchanged next_batch: $((n1 - n0)) requests in 4 s"
# Without backoff this is hundreds; with it (200 ms doubling, capped at the
# 1 s poll timeout) about 6.
[ $((n1 - n0)) -le 12 ] || bad "unchanged: $((n1 - n0)) requests in 4 s"
check_eq "$(pt_col $U $D since)" "$since0" "unchanged: since moved"
check_eq "$(pt_col $U $D poll_state)" polling "unchanged: poll_state"
# Progress again: the next change reaches the accumulator within a poll or
# two of the (capped) delay, and the delays start over.
sim fail/clear >/dev/null
pt_todevice "$U" "$D" 1
wait_for "[ \"\$(pt_col $U $D since)\" != '$since0' ]" 5 || bad "unchanged: no progress after upstream moved"
n2=$(pt_requests "$TOK")
sleep 2
n3=$(pt_requests "$TOK")
# Long-polling again: each request waits the 1 s poll timeout upstream.
[ $((n3 - n2)) -ge 1 ] && [ $((n3 - n2)) -le 4 ] || bad "unchanged: $((n3 - n2)) requests in 2 s after progress"

[ $nbad = 0 ] || fail "$nbad bound(s) not held"
it_pass
