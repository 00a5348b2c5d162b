#!/usr/bin/env bash
# Issue #13: v3 to_device rounds that start in the same loop pass (the
# clients one notice woke) are read in one statement (s_to_device.c,
# Q_TO_DEVICE). Each client still gets exactly its own device's messages,
# each once and in order: alice and bob share a room and long-poll
# room_list and to_device; a message in the room wakes both at once (one
# to_device read for both, seen in the api's log), and messages queued for
# each device, with room messages waking both together, reach only their
# own device, each once, in the order sent.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_privacy.sh"

rs=$(mk "shared")
sim "rooms/$rs/join" "{\"user_id\":\"$A\"}" >/dev/null
body='{"room_list":{"timeline_limit":10},"to_device":{}}'
count() { v3 "$1" "" "$body" 10000 | jq .room_list.count; }
wait_for "[ \"\$(count \"\$alice\")\" = 1 ]" 20 || fail "alice's room"
wait_for "[ \"\$(count \"\$bob\")\" = 1 ]" 20 || fail "bob's room"
sa=$(v3 "$alice" "" "$body" 0 | jq -r .next_batch)
sb=$(v3 "$bob" "" "$body" 0 | jq -r .next_batch)
# td USER DEVICE N: a to-device message n for the device
td() { sim to_device "{\"user_id\":\"$1\",\"device_id\":\"$2\",\"sender\":\"@carol:localhost\",\"type\":\"m.x\",\"content\":{\"n\":\"$3\"}}" >/dev/null; }
# the to-device messages in WHO's answers so far, in order
seen_td() { cat "$T/$1".ans 2>/dev/null | jq -r '.to_device.events[]?.content.n' | tr '\n' ' '; }
# poll_both: one long poll each at once, answers kept, since moved on
poll_both() {
	v3 "$alice" "$sa" '{}' "$1" >"$T/a.out" &
	local pa=$!
	v3 "$bob" "$sb" '{}' "$1" >"$T/b.out" &
	local pb=$!
	wait $pa $pb
	jq -c . "$T/a.out" >>"$T/alice.ans"
	jq -c . "$T/b.out" >>"$T/bob.ans"
	sa=$(jq -r .next_batch "$T/a.out")
	sb=$(jq -r .next_batch "$T/b.out")
}

# one message in the shared room while both wait: one to_device read
n0=$(grep -c 'to_device: .* rounds in one read' "$T/api.log")
v3 "$alice" "$sa" '{}' 10000 >"$T/a.out" &
pa=$!
v3 "$bob" "$sb" '{}' 10000 >"$T/b.out" &
pb=$!
wait_for "[ \"\$(health | jq .waiters)\" = 2 ]" 15 || fail "both long-polls waiting"
say "$rs" "s1"
wait $pa $pb
sa=$(jq -r .next_batch "$T/a.out")
sb=$(jq -r .next_batch "$T/b.out")
assert_jq "$(cat "$T/a.out")" '[.room_list.rooms[].timeline[].content.body]' '["s1"]' "alice: the message"
assert_jq "$(cat "$T/b.out")" '[.room_list.rooms[].timeline[].content.body]' '["s1"]' "bob: the message"
assert_jq "$(cat "$T/a.out")" '.to_device.events' '[]' "alice: no to-device yet"
grep 'to_device: .* rounds in one read' "$T/api.log" | tail -n +"$((n0 + 1))" |
    grep -q 'to_device: 2 rounds in one read' ||
    fail "the two woken to_device rounds were not read together"

# each device's own messages, with room messages waking both together
td "$A" A1 a1
td "$B" B1 b1
td "$A" A1 a2
say "$rs" "s2"
td "$B" B1 b2
td "$A" A1 a3
say "$rs" "s3"
for i in $(seq 20); do
	[ "$(seen_td alice)" = "a1 a2 a3 " ] && [ "$(seen_td bob)" = "b1 b2 " ] && break
	poll_both 2000
done
assert_eq "$(seen_td alice)" "a1 a2 a3 " "alice: her device's messages, once, in order"
assert_eq "$(seen_td bob)" "b1 b2 " "bob: his device's messages, once, in order"
# acknowledged: nothing comes again
poll_both 0
assert_eq "$(seen_td alice)" "a1 a2 a3 " "alice: nothing again"
assert_eq "$(seen_td bob)" "b1 b2 " "bob: nothing again"
it_pass
