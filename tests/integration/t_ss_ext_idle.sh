#!/usr/bin/env bash
# A long poll of a connection with extensions on (what Element X sends
# on every request: to_device with the since of the last response, e2ee,
# account_data, receipts, typing) that continues the response the api
# just saved waits at once, as one without extensions does
# (t_ss_statements.sh): with nothing new it costs the statements of one
# round (at its timeout, which still answers what the extensions always
# say: key counts, the same next_batch), not two. It misses nothing: a
# to-device message stored between the response and the request answers
# it at once, one sent while it waits wakes it, and when the last
# response had a full page of messages the rest comes at once too.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_ss_ext.sh"

start_stack
tok=$(sim_login @alice:localhost A1)
r=$(ss_mk r1)
sim_msg "$r" @alice:localhost m1
body() { # SINCE: the request, to_device acknowledging SINCE
	local since=""
	[ -n "${1:-}" ] && since=",\"since\":\"$1\""
	echo "{\"lists\":{\"all\":{\"ranges\":[[0,19]],\"timeline_limit\":1,\"required_state\":[[\"m.room.name\",\"\"],[\"m.room.member\",\"\$LAZY\"]]}},\"extensions\":{\"to_device\":{\"enabled\":true,\"limit\":2$since},\"e2ee\":{\"enabled\":true},\"account_data\":{\"enabled\":true},\"receipts\":{\"enabled\":true},\"typing\":{\"enabled\":true}}}"
}
td() { # N: a to-device message for A1, stored
	sim to_device "{\"user_id\":\"@alice:localhost\",\"device_id\":\"A1\",\"sender\":\"@bob:localhost\",\"type\":\"m.x\",\"content\":{\"n\":$1}}" >/dev/null
	wait_for "[ \$(psql_q \"SELECT count(*) FROM syncv3_to_device WHERE device_id = 'A1' AND json::jsonb->'content'->>'n' = '$1'\") = 1 ]" 10 ||
	    fail "to-device $1 not stored"
}
ns() { printf '%s' "$1" | jq -c '[.extensions.to_device.events[].content.n]'; }
nb() { printf '%s' "$1" | jq -r .extensions.to_device.next_batch; }
# at_once NAME WANT WHAT: a long poll (5 s) from the last response ($p,
# $s) answers before its timeout with the messages WANT; moves $p and $s
at_once() {
	ss_bg "$1" "$tok" "$p" "$(body "$s")" 5000
	ss_wait "$1"
	assert_woken "$1" 4000
	assert_eq "$(ns "$out")" "$2" "$3"
	p=$(ss_pos "$out")
	s=$(nb "$out")
}
queries() { curl -s "$API_URL/health" | jq .queries; }
# fewest statements of CMD over three tries (background ones only add)
fewest() {
	local best= q0 q1 i
	for i in 1 2 3; do
		q0=$(queries)
		eval "$1" >"$T/fewest.out"
		q1=$(queries)
		[ -z "$best" ] || [ $((q1 - q0)) -lt "$best" ] && best=$((q1 - q0))
	done
	echo "$best"
}

out=$(ss_ready "$tok" "$(body)")
assert_jq "$out" "[.rooms[\"$r\"].timeline[].content.body]" '["m1"]' "first response"
p=$(ss_pos "$out")
s=$(nb "$out")
# one round: the request that answers at once (timeout 0)
round=$(fewest 'ss "$tok" "$p" "$(body "$s")" 0')
assert_jq "$(cat "$T/fewest.out")" '.pos' "\"$p\"" "nothing new, same pos"
# the long poll: waits without a round, the round at its timeout
lp=$(fewest 'ss "$tok" "$p" "$(body "$s")" 1000')
out=$(cat "$T/fewest.out")
log "statements: a round $round, a long poll with nothing new $lp"
[ "$lp" -le "$round" ] || fail "a long poll with nothing new ran $lp statements, a round $round"
assert_jq "$out" '[.pos, .extensions.to_device.next_batch, (.rooms // {} | length)]' "[\"$p\",\"$s\",0]" "the same pos and next_batch"
assert_jq "$out" '.extensions.e2ee.device_one_time_keys_count | type' '"object"' "key counts at the timeout"

# stored after the response, before the request: answered at once
td 1
at_once early '[1]' "a message stored before the request"
# sent while it waits: woken
ss_woken_by woken "$tok" "$p" "$(body "$s")" "td 2"
assert_eq "$(ns "$out")" '[2]' "a message sent while it waits"
p=$(ss_pos "$out")
s=$(nb "$out")
# more than a page (limit 2) stored before: the rest comes at once
td 3
td 4
td 5
out=$(ss "$tok" "$p" "$(body "$s")" 0)
assert_eq "$(ns "$out")" '[3,4]' "a full page"
p=$(ss_pos "$out")
s=$(nb "$out")
at_once rest '[5]' "the rest of a full page at once"
# and a message in the room still wakes it
ss_woken_by room "$tok" "$p" "$(body "$s")" "sim_msg $r @alice:localhost m2"
assert_jq "$out" "[.rooms[\"$r\"].timeline[].content.body]" '["m2"]' "a message wakes it"
it_pass
