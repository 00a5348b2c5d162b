#!/usr/bin/env bash
# t_poller_lease: device assignment through Postgres leases (contract 4).
#  - two pollers split ten devices evenly
#  - SIGKILL one: the other takes its devices over within the lease time
#  - a (re)started poller gets its fair share back (the other sheds)
#  - SIGTERM releases the leases at once
source "$(dirname "$0")/lib.sh"

. "$(dirname "$0")/lib_poller.sh"

export SYNCV3_POLL_TIMEOUT_MS=2000 SYNCV3_LEASE_SECS=5
it_setup
start_simhs
start_accumulator
N=10
pt_two_pollers poller poller2 $N
wait_for "[ \$(pt_polled) = $N ]" 20 || fail "not every device polled"
log "split: poller=$(pt_owned poller) poller2=$(pt_owned poller2)"
assert_eq "$(pt_owned poller) $(pt_owned poller2)" "5 5" "devices split evenly"

maxinf() { sim_get stats | jq -c '[.sync_inflight_max | to_entries[] | select(.value > 1) | .key]'; }
# --- SIGKILL poller2: poller takes its devices over after the lease --------
mapfile -t theirs < <(psql_q "SELECT user_id || ' ' || device_id FROM syncv3_leases WHERE owner = 'poller2'")
kill9 poller2
t0=$(date +%s%N)
wait_for "[ \$(pt_owned poller) = $N ]" 15 || fail "takeover did not happen"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
log "takeover after SIGKILL: ${ms} ms (lease ${SYNCV3_LEASE_SECS}s)"
[ $ms -le $(( SYNCV3_LEASE_SECS * 1000 + 1500 )) ] || fail "takeover took ${ms} ms"
# the taken-over devices really are polled again
read -r tu td <<<"${theirs[0]}"
s0=$(pt_col "$tu" "$td" since)
pt_todevice "$tu" "$td" 1
wait_for "[ \"\$(pt_col '$tu' '$td' since)\" != '$s0' ]" 10 || fail "taken-over device not polled"

# --- a new poller gets its share back ------------------------------------
start_poller poller2
wait_for "[ \"\$(pt_owned poller) \$(pt_owned poller2)\" = '5 5' ]" 15 ||
    fail "no rebalance: poller=$(pt_owned poller) poller2=$(pt_owned poller2)"
wait_for "[ \$(pt_polled) = $N ]" 10 || fail "not every device polled after rebalance"

# never two requests in flight for one device (two pollers at once), even
# while devices move between pollers
assert_eq "$(maxinf)" "[]" "devices with two requests in flight"
# --- SIGTERM releases at once: no lease wait --------------------------------
t0=$(date +%s%N)
stop_proc poller
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
[ $ms -le 3000 ] || fail "SIGTERM exit took ${ms} ms"
wait_for "[ \$(pt_owned poller2) = $N ]" 4 || fail "released devices not claimed quickly"
log "SIGTERM: exit in ${ms} ms, poller2 holds all $N"
# (after SIGTERM the simulated homeserver may still count the cut-off
# long-polls as in flight until they time out, so no check here)
it_pass
