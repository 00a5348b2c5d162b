#!/usr/bin/env bash
# What a large initial sync costs the accumulator's loop once it is
# committed (accumulator/ingest.c, pub_run and item_release): its frame
# and change set are freed, and the heap trimmed, on a thread of their
# own (syncv3_acc_frees_detached_total counts each such body), and its
# notices go out after its ack, in slices, still in commit order. So the
# whole account is stored and acked, every room's notice is published
# (syncv3_acc_notices_total grows by at least the rooms), a message sent
# afterwards reaches a long poll, and the loop's stall gauge is exported.
# The mechanism is asserted, not a time: this machine's load varies.
source "$(dirname "$0")/lib.sh"

export SYNCV3_API_SESSION_IDLE_SECS=600
N=${BIG_ROOMS:-600}
it_setup
start_simhs
ACC_PROM=127.0.0.1:$(free_port)
export SYNCV3_PROM=$ACC_PROM
start_accumulator
unset SYNCV3_PROM
start_poller poller
start_api
wait_for "curl -sf http://$ACC_PROM/health" 10 || fail "accumulator /health"
# metric NAME: the sample's value (empty when absent)
metric() {
	curl -sS -f "http://$ACC_PROM/metrics" |
	    awk -v k="$1" '$1 == k && !f { print $2; f = 1 }'
}
[ -n "$(metric syncv3_acc_loop_stall_max_ms)" ] || fail "no loop stall gauge"
fd0=$(metric syncv3_acc_frees_detached_total)
no0=$(metric syncv3_acc_notices_total)

u=$(sim scenario "{\"users\":1,\"rooms_per_user\":$N,\"members_per_room\":3,\"messages_per_room\":10,\"prefix\":\"big\"}" |
	jq -r '.users[0].user_id')
tok=$(sim_login "$u" BIGDEV)
REQ='{"room_list":{"limit":5,"timeline_limit":1}}'
first=$(v3 "$tok" "" "$REQ" 0)
assert_eq "$(last_status)" 200 "first window"
wait_for "[ \"\$(psql_q \"SELECT is_initial_done FROM syncv3_devices WHERE device_id = 'BIGDEV'\")\" = t ]" 60 ||
	fail "the initial sync was never stored"
wait_for "[ \"\$(metric syncv3_acc_frees_detached_total)\" -gt $fd0 ]" 20 ||
	fail "the initial sync's body was freed on the loop's thread"
wait_for "[ \"\$(metric syncv3_acc_notices_total)\" -ge $((no0 + N)) ]" 20 ||
	fail "notices: $(metric syncv3_acc_notices_total), want >= $((no0 + N))"
all=$(v3 "$tok" "" "$REQ" 0)
assert_jq "$all" .room_list.count "$N" "every room stored"

# notices still flow, in order, after the sliced ones
r=$(printf '%s' "$all" | jq -r '.room_list.rooms[2].room_id')
s0=$(printf '%s' "$all" | jq -r .next_batch)
sim "rooms/$r/send" "{\"sender\":\"$u\",\"type\":\"m.room.message\",\"content\":{\"body\":\"after\"}}" >/dev/null
out=$(v3 "$tok" "$s0" "$REQ" 10000)
assert_jq "$out" "[.room_list.rooms[]|select(.room_id==\"$r\")|.timeline[-1].content.body]" '["after"]' "the later message is streamed"
it_pass
