#!/usr/bin/env bash
# How many statements a sliding sync request costs the api (/health's
# queries): a new connection with one list, timeline_limit 1 and
# required_state reads its list and rooms in one statement, timelines,
# state and the chunks their prev_batch comes from in one more, and
# creates the connection with its first response in that second statement
# (SS_DETAIL_SAVE): 2. Background statements
# (expiry timers) can only add, so the fewest over a few tries counts.
# The response is checked too: every room initial, with its timeline and
# a prev_batch that pages back.
# A long poll woken by a message runs 3 (its connection loaded, its list
# and rooms, timelines and the save in one: SS_DETAIL_SAVE_CONT).
# A long poll that continues the response the api just saved, the same
# request but for its pos, waits at once: its connection loaded, no round
# that would read its lists first, and none at its timeout with nothing
# notified (1 statement, not 3: the same pos and counts); a message wakes
# it, and a request that differs (a longer timeline) runs its round at
# once.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_ss.sh"

start_stack
alice=$(sim_login @alice:localhost A1)
for i in 1 2 3; do
	r=$(sim rooms "{\"creator\":\"@alice:localhost\",\"name\":\"r$i\"}" | jq -r .room_id)
	sim "rooms/$r/join" '{"user_id":"@bob:localhost"}' >/dev/null
	sim_msg "$r" @bob:localhost "m$i"
done
body='{"lists":{"all":{"ranges":[[0,9]],"timeline_limit":1,"required_state":[["m.room.name",""]]}}}'
# stored (the first request holds for the device's initial sync) and the
# token known: the requests measured start at once
for i in $(seq 1 50); do
	out=$(ss "$alice" "" "$body")
	[ "$(printf '%s' "$out" | jq '[.rooms[]?.timeline[-1].content.body] | sort')" = '["m1","m2","m3"]' ] && break
	sleep 0.2
done
assert_jq "$out" '[.rooms[].timeline[-1].content.body] | sort' '["m1","m2","m3"]' "all three rooms"
queries() { curl -s "$API_URL/health" | jq .queries; }
best=
for i in 1 2 3 4 5; do
	q0=$(queries)
	out=$(ss "$alice" "" "$body")
	q1=$(queries)
	assert_eq "$(last_status)" 200 "new connection $i"
	n=$((q1 - q0))
	[ -z "$best" ] || [ "$n" -lt "$best" ] && best=$n
done
log "statements per new connection: $best"
[ "$best" -le 2 ] || fail "a new connection ran $best statements, want at most 2"
assert_jq "$out" '[.rooms[] | .initial] | unique' '[true]' "every room initial"
assert_jq "$out" '[.rooms[] | .required_state | length] | unique' '[1]' "the name of each"
assert_jq "$out" '[.rooms[] | .prev_batch | type] | unique' '["string"]' "a prev_batch each"
# the prev_batch pages back through the homeserver to what came before
r=$(printf '%s' "$out" | jq -r '.rooms | keys[0]')
pb=$(printf '%s' "$out" | jq -r --arg r "$r" '.rooms[$r].prev_batch')
msgs=$(curl -s -H "Authorization: Bearer $alice" \
    "$API_URL/_matrix/client/v3/rooms/$(jq -rn --arg s "$r" '$s|@uri')/messages?dir=b&limit=5&from=$(jq -rn --arg s "$pb" '$s|@uri')")
printf '%s' "$msgs" | jq -e '.chunk | length > 0' >/dev/null || fail "prev_batch pages back: $msgs"

p=$(ss_pos "$out")
best=
for i in 1 2 3; do
	q0=$(queries)
	lp=$(ss "$alice" "$p" "$body" 1000)
	q1=$(queries)
	assert_eq "$(last_status)" 200 "long poll $i"
	assert_jq "$lp" '[(.rooms // {} | length), .lists.all.count, .pos]' "[0,3,\"$p\"]" "nothing new $i"
	n=$((q1 - q0))
	[ -z "$best" ] || [ "$n" -lt "$best" ] && best=$n
done
log "statements of a long poll with nothing new: $best"
[ "$best" -le 1 ] || fail "a long poll with nothing new ran $best statements, want 1"
# the woken round's steps are timed (api/prom.c ss_hop, the hop table
# of tests/bench/bench_ss_e2e.sh): one each of the steps it ran
h0=$(ss_hops)
ss "$alice" "$p" "$body" 20000 >"$T/lp.json" &
pid=$!
sleep 0.5
sim_msg "$r" @bob:localhost late
wait $pid
h1=$(ss_hops)
assert_eq "$(last_status)" 200 "woken"
assert_jq "$(cat "$T/lp.json")" "[.rooms[\"$r\"].timeline[].content.body]" '["late"]' "the message wakes it"
steps=$(ss_hops_grown "$h0" "$h1")
log "woken round's steps: $steps"
assert_eq "$steps" "wake+1 list+1 detail+1 ext+1 save+1 write+1 " "the woken round's steps, timed"
p=$(jq -r .pos "$T/lp.json")
# a long poll woken by a message: its connection loaded, then its list
# and rooms in one statement, timelines with its response saved in one
# more (SS_DETAIL_SAVE_CONT): 3, not 4. Each continues the one before,
# which the fold saved: only the new message, not limited
best=
for i in 1 2 3; do
	q0=$(queries)
	ss "$alice" "$p" "$body" 20000 >"$T/lp.json" &
	pid=$!
	sleep 0.5
	sim_msg "$r" @bob:localhost "w$i"
	wait $pid
	q1=$(queries)
	assert_eq "$(last_status)" 200 "woken $i"
	assert_jq "$(cat "$T/lp.json")" "[.rooms[\"$r\"] | (.timeline | map(.content.body)), .limited]" "[[\"w$i\"],null]" "woken $i: the message alone"
	p=$(jq -r .pos "$T/lp.json")
	n=$((q1 - q0))
	[ -z "$best" ] || [ "$n" -lt "$best" ] && best=$n
done
log "statements of a long poll woken by a message: $best"
[ "$best" -le 3 ] || fail "a long poll woken by a message ran $best statements, want 3"
longer=${body/\"timeline_limit\":1/\"timeline_limit\":2}
ss "$alice" "$p" "$longer" 60000 >"$T/lp.json" &
pid=$!
wait_for "! kill -0 $pid" 15 || fail "a request with a longer timeline waited"
wait $pid
assert_jq "$(cat "$T/lp.json")" "[.rooms[\"$r\"] | .initial, (.timeline | length)]" '[true,2]' "sent again, longer"
# in full: its name too, though the room is otherwise unchanged since it
# was sent (SS_QUIET must not skip a room whose timeline_limit grew)
name=$(printf '%s' "$out" | jq -r --arg r "$r" '.rooms[$r].name')
assert_jq "$(cat "$T/lp.json")" ".rooms[\"$r\"].name" "\"$name\"" "with its name"
it_pass
