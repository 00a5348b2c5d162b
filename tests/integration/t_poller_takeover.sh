#!/usr/bin/env bash
# it: serial
# t_poller_takeover: stable poller ids and fast takeover (issue #15).
#  a) SIGKILL a poller and restart it under the same id: its devices are
#     polled again within about SYNCV3_TAKEOVER_MS (1.2 s), not a lease
#  b) SIGKILL a poller for good: the other takes its devices within that
#  c) a second process under a live poller's id waits and polls nothing;
#     it takes over once the first dies
#  d) no device ever has two requests in flight at the homeserver
#  e) a poller frozen past its deadline (SIGSTOP) loses its devices to the
#     other and, thawed, stops them instead of polling them too
# Unpolled time: from the SIGKILL until every device of the killed poller
# has a new /sync request at the simulated homeserver.
source "$(dirname "$0")/lib.sh"

. "$(dirname "$0")/lib_poller.sh"

# Long leases: a takeover faster than this can only come from liveness.
export SYNCV3_POLL_TIMEOUT_MS=5000 SYNCV3_LEASE_SECS=30
LIMIT_MS=${TAKEOVER_LIMIT_MS:-3000} # 2 s goal, slack for ASan on 2 cores
it_setup
start_simhs
start_accumulator
N=10
pt_two_pollers pa pb $N
split() { [ "$(pt_owned pa) $(pt_owned pb)" = "5 5" ] && [ "$(pt_polled)" = $N ]; }
wait_for split 30 || fail "devices not split: pa=$(pt_owned pa) pb=$(pt_owned pb)"
maxinf() { sim_get stats | jq -c '[.sync_inflight_max | to_entries[] | select(.value > 1) | .key]'; }

# unpolled PROC ID ACTION...: SIGKILLs process PROC (poller id ID), runs
# ACTION, sets ms to the unpolled time of the devices ID held (not in a
# subshell: ACTION may start processes the trap must know)
unpolled() {
	local proc=$1 id=$2 devs t0
	shift 2
	mapfile -t devs < <(pt_held "$id")
	[ ${#devs[@]} -gt 0 ] || fail "$id holds nothing"
	pt_req_counts >"$T/before"
	t0=$(date +%s%N)
	kill9 "$proc"
	"$@"
	ms=$(pt_unpolled_ms "$t0" 20 "$T/before" "${devs[@]}") ||
	    fail "devices of $id not polled within 20 s"
}

# --- a) SIGKILL and restart under the same id ----------------------------
unpolled pa pa start_poller pa
log "a) restart under the same id: unpolled for ${ms} ms"
[ "$ms" -le "$LIMIT_MS" ] || fail "restart: devices unpolled for ${ms} ms"
wait_for split 30 || fail "no rebalance after restart: pa=$(pt_owned pa) pb=$(pt_owned pb)"

# --- b) SIGKILL for good: the other takes over ---------------------------
unpolled pa pa true
log "b) takeover of a dead poller: unpolled for ${ms} ms"
[ "$ms" -le "$LIMIT_MS" ] || fail "takeover: devices unpolled for ${ms} ms"
wait_for "[ \$(pt_owned pb) = $N ]" 5 || fail "pb holds $(pt_owned pb), not $N"

# --- c) a second process under a live id waits ---------------------------
start_poller pa
wait_for split 30 || fail "no rebalance: pa=$(pt_owned pa) pb=$(pt_owned pb)"
start_proc pa2 env SYNCV3_POLLER_ID=pa "$BIN/syncv3-poller"
wait_for "grep -q 'held by another live process' '$T/pa2.log'" 10 ||
    fail "the second process under id pa did not wait"
sleep 2
grep -q 'claimed\|polling http' "$T/pa2.log" && fail "the second process under id pa polled"
assert_eq "$(pt_owned pa) $(pt_owned pb)" "5 5" "leases while two processes share an id"
unpolled pa pa true
log "c) second process under the id waited; took over ${ms} ms after the first died"
[ "$ms" -le "$LIMIT_MS" ] || fail "same-id successor: devices unpolled for ${ms} ms"
wait_for split 30 || fail "no rebalance: pa=$(pt_owned pa) pb=$(pt_owned pb)"

# --- d) never two requests in flight for one device ------------------------
assert_eq "$(maxinf)" "[]" "devices with two requests in flight"

# --- e) frozen past the deadline ------------------------------------------
# (the frozen poller's parked long-polls stay open at the homeserver, so
# two in flight are expected here: the bound is the long-poll timeout)
kill -STOP "${IT_PIDS[pb]}"
wait_for "[ \$(pt_owned pa) = $N ]" 5 || fail "pa2 did not take a frozen poller's devices"
kill -CONT "${IT_PIDS[pb]}"
wait_for "grep -q 'liveness lost' '$T/pb.log'" 5 || fail "the thawed poller did not notice its lapse"
wait_for "grep -q 'liveness back' '$T/pb.log'" 5 || fail "the thawed poller did not come back"
wait_for split 30 || fail "no rebalance after the thaw: pa=$(pt_owned pa) pb=$(pt_owned pb)"
wait_for "[ \$(pt_polled) = $N ]" 10 || fail "not every device polled after the thaw"
it_pass
