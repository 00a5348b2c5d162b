#!/usr/bin/env bash
# How many statements a sliding sync request costs the api (/health's
# queries): a new connection with one list, timeline_limit 1 and
# required_state reads its list and rooms in one statement, creates the
# connection alongside, reads timelines, state and the chunks their
# prev_batch comes from in one more, and saves: 4. Background statements
# (expiry timers) can only add, so the fewest over a few tries counts.
# The response is checked too: every room initial, with its timeline and
# a prev_batch that pages back.
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
[ "$best" -le 4 ] || fail "a new connection ran $best statements, want at most 4"
assert_jq "$out" '[.rooms[] | .initial] | unique' '[true]' "every room initial"
assert_jq "$out" '[.rooms[] | .required_state | length] | unique' '[1]' "the name of each"
assert_jq "$out" '[.rooms[] | .prev_batch | type] | unique' '["string"]' "a prev_batch each"
# the prev_batch pages back through the homeserver to what came before
r=$(printf '%s' "$out" | jq -r '.rooms | keys[0]')
pb=$(printf '%s' "$out" | jq -r --arg r "$r" '.rooms[$r].prev_batch')
msgs=$(curl -s -H "Authorization: Bearer $alice" \
    "$API_URL/_matrix/client/v3/rooms/$(jq -rn --arg s "$r" '$s|@uri')/messages?dir=b&limit=5&from=$(jq -rn --arg s "$pb" '$s|@uri')")
printf '%s' "$msgs" | jq -e '.chunk | length > 0' >/dev/null || fail "prev_batch pages back: $msgs"
it_pass
