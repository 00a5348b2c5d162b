#!/usr/bin/env bash
# Issue #13: a v3 room_list + to_device long-poll whose since is behind the
# api only by changes that are not the user's waits without a round (no
# statement beyond its session's, as many as with a since that is
# current), and is still answered with everything that is theirs: a
# message in their room while they waited, one sent before they asked, a
# to-device message, and a change committed before a restarted api began
# to hear notices.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_privacy.sh"

ra=$(mk "shared")
rb=$(mk "bob alone")
sim "rooms/$ra/join" "{\"user_id\":\"$A\"}" >/dev/null
say "$ra" "before"
v3 "$bob" "" '{}' 10000 >/dev/null
out=$(v3 "$alice" "" '{"room_list":{"timeline_limit":10},"to_device":{}}' 10000)
assert_jq "$out" '.room_list.count' 1 "alice's rooms"
s=$(printf '%s' "$out" | jq -r .next_batch)

# stored BODY: a poller has stored bob's message
stored() {
	wait_for "[ \"\$(psql_q \"SELECT count(*) FROM syncv3_events WHERE type = 'm.room.message' AND (json::json)->'content'->>'body' = '$1'\")\" = 1 ]" 15 ||
	    fail "message $1 not stored"
}
# caught_up: the api has heard of every commit
caught_up() {
	wait_for "[ \"\$(health | jq .pos)\" -ge \"\$(psql_q 'SELECT pos FROM syncv3_position')\" ]" 15 ||
	    fail "the api did not hear of the last commit"
}
# poll SINCE TIMEOUT: alice's long-poll in the background (pid lp),
# output in $T/lp.out; nq: the statements the api sent until it waited
poll() {
	local q0
	q0=$(health | jq .queries)
	v3 "$alice" "$1" '{}' "$2" >"$T/lp.out" &
	lp=$!
	wait_for "[ \"\$(health | jq .waiters)\" = 1 ]" 15 || fail "alice's long-poll not waiting"
	nq=$(($(health | jq .queries) - q0))
}
# now SINCE: alice's long-poll that the ring must answer at once, output
# in $T/lp.out
now() { v3 "$alice" "$1" '{}' 20000 >"$T/lp.out"; }
next() { jq -r .next_batch "$T/lp.out"; }
bodies() { jq -c '[.room_list.rooms[]?.timeline[].content.body]' "$T/lp.out"; }

# a since that is current: the statements of a request that waits at once
# (the second: the first wait also loads the set of alice's rooms)
caught_up
s=$(v3 "$alice" "$s" '{}' 0 | jq -r .next_batch)
for i in 1 2; do
	poll "$s" 1500
	q_current=$nq
	wait $lp
	s=$(next)
done

# bob's own room keeps the api's position moving past alice's since
for i in 1 2 3; do say "$rb" "alone $i"; done
stored "alone 3"
caught_up
w0=$(health | jq .wakeups)
poll "$s" 10000
assert_eq "$nq" "$q_current" "statements before waiting, since behind by others' changes"
assert_eq "$(health | jq .wakeups)" "$w0" "woken by a room alice is not in"
say "$ra" "while waiting"
wait $lp
assert_eq "$(bodies)" '["while waiting"]' "the message that woke her"
s=$(next)

# her room changed before she asked: the ring answers at once
say "$ra" "before asking"
stored "before asking"
caught_up
w0=$(health | jq .wakeups)
now "$s"
assert_eq "$(bodies)" '["before asking"]' "a message sent before the request"
assert_eq "$(health | jq .wakeups)" "$((w0 + 1))" "woken by the ring, not the timeout"
s=$(next)

# a to-device message before she asked
sim to_device "{\"user_id\":\"$A\",\"device_id\":\"A1\",\"sender\":\"$B\",\"type\":\"m.x\",\"content\":{\"n\":1}}" >/dev/null
wait_for "[ \"\$(psql_q \"SELECT count(*) FROM syncv3_to_device WHERE user_id = '$A'\")\" = 1 ]" 15 ||
    fail "to-device message not stored"
caught_up
w0=$(health | jq .wakeups)
now "$s"
assert_jq "$(cat "$T/lp.out")" '[.to_device.events[].content.n]' '[1]' "the to-device message"
assert_eq "$(health | jq .wakeups)" "$((w0 + 1))" "to-device: woken by the ring"
s=$(next)

# committed while no api heard notices: a restarted api has no ring for it
stop_proc api
say "$ra" "api down"
stored "api down"
start_api
now "$s"
assert_eq "$(bodies)" '["api down"]' "a change from before the api started"
assert_eq "$(health | jq .wakeups)" 1 "woken at once: the ring does not reach back"
it_pass
