#!/usr/bin/env bash
# Sessions: several per device, each with its own sticky parameters;
# unknown or expired sessions and another device's since are refused
# (400 M_UNKNOWN_SYNC_SESSION); idle sessions expire after
# SYNCV3_API_SESSION_IDLE_SECS; sticky parameters survive across requests,
# next_page can be cleared, a stream is dropped with null; a client that
# disconnects during a long poll frees its waiter at once (/health).
source "$(dirname "$0")/lib.sh"

export SYNCV3_API_SESSION_IDLE_SECS=6
start_stack
alice=$(sim_login @alice:localhost A1)
alice2=$(sim_login @alice:localhost A2)
bob=$(sim_login @bob:localhost B1)
room=$(sim rooms '{"creator":"@alice:localhost","name":"Sessions"}' | jq -r .room_id)
sim "rooms/$room/join" '{"user_id":"@bob:localhost"}' >/dev/null
ms() { echo $(( $(date +%s%N) / 1000000 )); }
health() { curl -sf "$API_URL/health"; }
nb() { printf '%s' "$1" | jq -r .next_batch; }
sid() { printf '%s' "$1" | jq -r .next_batch | sed 's/_.*//'; }
for t in "$alice" "$alice2" "$bob"; do
	v3 "$t" "" '{}' 10000 >/dev/null
	assert_eq "$(last_status)" 200 "initial sync"
done

# several sessions of one device, each with its own parameters
a=$(v3 "$alice" "" "{\"typing\":{\"room_id\":\"$room\"}}" 0)
b=$(v3 "$alice" "" '{"to_device":{"limit":5}}' 0)
[ "$(sid "$a")" != "$(sid "$b")" ] || fail "two new sessions share an id"
sa=$(nb "$a"); sb=$(nb "$b")
sim "rooms/$room/typing" '{"user_id":"@bob:localhost","user_ids":["@bob:localhost"]}' >/dev/null
out=$(v3 "$alice" "$sa" '{}' 10000)
assert_jq "$out" '.typing.user_ids' '["@bob:localhost"]' "session A: typing"
assert_jq "$out" 'has("to_device")' 'false' "session A: no to_device"
sa=$(nb "$out")
out=$(v3 "$alice" "$sb" '{}' 0)
assert_eq "$(last_status)" 200 "session B"
assert_jq "$out" '.to_device.limit' '5' "session B: its own sticky limit"
assert_jq "$out" 'has("typing")' 'false' "session B: no typing"
sb=$(nb "$out")

# sticky: a field left out keeps its value, a stream left out continues
out=$(v3 "$alice" "$sb" "{\"typing\":{\"room_id\":\"$room\"}}" 0)
assert_jq "$out" '.to_device.limit' '5' "limit kept when another stream is added"
sb=$(nb "$out")
out=$(v3 "$alice" "$sb" '{"to_device":{"limit":7}}' 0)
assert_jq "$out" '.to_device.limit' '7' "limit replaced"
sb=$(nb "$out")
sim "rooms/$room/typing" '{"user_id":"@bob:localhost","user_ids":["@alice:localhost","@bob:localhost"]}' >/dev/null
out=$(v3 "$alice" "$sb" '{}' 10000)
assert_jq "$out" '.to_device.limit' '7' "limit still sticky"
assert_jq "$out" '.typing.user_ids|length' '2' "typing still sticky"
sb=$(nb "$out")
# a stream dropped with null is no longer served, even when it changes
out=$(v3 "$alice" "$sb" '{"typing":null}' 0)
sb=$(nb "$out")
sim "rooms/$room/typing" '{"user_id":"@bob:localhost","user_ids":[]}' >/dev/null
sleep 0.5
out=$(v3 "$alice" "$sb" '{}' 1000)
assert_jq "$out" 'has("typing")' 'false' "typing dropped"
assert_jq "$out" '.to_device.limit' '7' "to_device kept after dropping typing"
sb=$(nb "$out")

# next_page: pages, then cleared -> streaming (and a long poll blocks again)
out=$(v3 "$alice" "" "{\"room_member\":{\"room_id\":\"$room\",\"limit\":1,\"sort\":\"by_name\"}}" 0)
assert_jq "$out" '[.room_member.events[].state_key]' '["@alice:localhost"]' "members page 1"
assert_jq "$out" '.room_member.next_page' '"1"' "members next_page"
sm=$(nb "$out")
out=$(v3 "$alice" "$sm" '{"room_member":{"next_page":"1"}}' 0)
assert_jq "$out" '[.room_member.events[].state_key]' '["@bob:localhost"]' "members page 2"
assert_jq "$out" '.room_member.next_page' 'null' "last members page"
t0=$(ms)
out=$(v3 "$alice" "$sm" '{"room_member":{"next_page":null}}' 1500)
t1=$(ms)
assert_eq "$(last_status)" 200 "next_page cleared"
assert_jq "$out" '.room_member.next_page' 'null' "no pagination after clearing"
assert_jq "$out" '.room_member.events // []' '[]' "nothing new"
[ $((t1 - t0)) -ge 1400 ] || fail "cleared next_page did not block ($((t1 - t0)) ms)"
sm=$(nb "$out")
out=$(v3 "$alice" "$sm" '{}' 0)
assert_jq "$out" '.room_member.next_page' 'null' "next_page stays cleared"
assert_jq "$out" '.room_member.room_id' "\"$room\"" "room_id kept when next_page was cleared"
sm=$(nb "$out")
sb=$(nb "$(v3 "$alice" "$sb" '{}' 0)")

# another device's since (other user, and same user's other device)
v3 "$bob" "$sb" '{}' 0 >/dev/null
assert_error 400 M_UNKNOWN_SYNC_SESSION "bob with alice's since"
v3 "$alice2" "$sb" '{}' 0 >/dev/null
assert_error 400 M_UNKNOWN_SYNC_SESSION "alice's other device with A1's since"
# a forged or unknown session
forged=$(printf '%s' "$sb" | sed 's/^s[0-9]*_/s999999_/')
v3 "$alice" "$forged" '{}' 0 >/dev/null
assert_error 400 M_UNKNOWN_SYNC_SESSION "unknown session"

# a client that goes away during a long poll frees its waiter at once
curl -s -o /dev/null --max-time 1 -X POST -H "Authorization: Bearer $alice" -d '{}' \
    "$API_URL/_matrix/client/v3/sync?timeout=30000&since=$(jq -rn --arg s "$sm" '$s|@uri')"
wait_for "[ \"\$(health | jq .waiters)\" = 0 ]" 1 ||
    fail "waiter not freed after the client left: $(health)"
sm=$(nb "$(v3 "$alice" "$sm" '{}' 0)")
assert_eq "$(last_status)" 200 "session usable after a hang-up"

# idle expiry: session A has not been used for longer than the idle time
for i in 1 2 3; do
	sb=$(nb "$(v3 "$alice" "$sb" '{}' 0)")
	assert_eq "$(last_status)" 200 "session B in use $i"
	sleep 2.5
done
v3 "$alice" "$sa" '{}' 0 >/dev/null
assert_error 400 M_UNKNOWN_SYNC_SESSION "idle session"
wait_for "[ \"\$(psql_q \"SELECT count(*) FROM syncv3_sessions WHERE session_id = $(printf '%s' "$sa" | sed 's/^s//; s/_.*//')\")\" = 0 ]" 15 ||
    fail "idle session not deleted"
# the session kept in use did not expire
v3 "$alice" "$sb" '{}' 0 >/dev/null
assert_eq "$(last_status)" 200 "busy session survives"
it_pass
