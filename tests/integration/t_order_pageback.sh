#!/usr/bin/env bash
# Paging back from a timeline's prev_batch in a room with events placed
# late (lib_order.sh's premise, then bob's poller places c1..c3 before the
# anchors b2, b3). A device of bob that logs in afterwards asks for the
# room with every timeline_limit from 1 to 9, in sliding sync and in the
# v3 room_list, and pages back through the api's /messages (simhs's, in
# the homeserver's order) from the prev_batch it got: what it paged back
# followed by its timeline, repeats dropped, must be the whole room in
# upstream's order (nothing skipped), and it may repeat only events of
# its timeline (docs/INTERNALS.md, "prev_batch" and "Late events:
# timeline order"). Passes on ad29cfc: h-order7's CHUNK_AT compares
# boundaries by the order key already; this is the real test of it.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_order.sh"

sb='{"room_subscriptions":{"ROOM":{"timeline_limit":20,"required_state":[]}}}'
late_premise pageback
sim fail/clear >/dev/null
wait_for "stored c1 && stored c2 && stored c3" 30 || fail "bob's poller did not store c1..c3"
[ "$(psql_q "SELECT count(*) FROM syncv3_events WHERE room_id = '$r' AND ord IS NOT NULL")" -ge 3 ] ||
    fail "nothing placed (test premise)"
all=$(sim_get "rooms/$r/events" | jq -c '[.events[].event_id]')
bob2=$(sim_login $B B2)
v3 "$bob2" "" '{}' 15000 >/dev/null

# back TOKEN: the events before TOKEN, oldest first, through the api
back() {
	local from=$1 page ids='[]' room
	room=$(jq -rn --arg r "$r" '$r|@uri')
	while :; do
		page=$(curl -sS -H "Authorization: Bearer $bob2" \
		    "$API_URL/_matrix/client/v3/rooms/$room/messages?dir=b&limit=4&from=$(jq -rn --arg s "$from" '$s|@uri')")
		ids=$(jq -cn --argjson a "$ids" --argjson p "$page" '($p.chunk // [] | map(.event_id) | reverse) + $a')
		[ "$(printf '%s' "$page" | jq '.chunk // [] | length')" -gt 0 ] || break
		from=$(printf '%s' "$page" | jq -r .end)
	done
	printf '%s' "$ids"
}
# pages WHAT LIMIT TIMELINE_IDS PREV_BATCH
pages() {
	local b n
	[ -n "$4" ] || fail "$1: limit $2: no prev_batch"
	n=$(printf '%s' "$all" | jq length)
	assert_eq "$3" "$(printf '%s' "$all" | jq -c --argjson l "$2" '.[-$l:]')" "$1: limit $2: the newest events, upstream's order"
	b=$(back "$4")
	assert_jq "$(jq -cn --argjson b "$b" --argjson t "$3" --argjson a "$all" \
	    '$b + $t | reduce .[] as $e ([]; if index([$e]) then . else . + [$e] end) | map(. as $e | $a | index([$e]))')" \
	    ". == [range(0; $n)]" true "$1: limit $2: paged back + timeline is the room, in order, nothing skipped"
	assert_jq "$(jq -cn --argjson b "$b" --argjson t "$3" '$b - $t')" \
	    ". == $(printf '%s' "$all" | jq -c --argjson l "$2" '.[:-$l]')" true "$1: limit $2: only timeline events repeated"
}

for lim in 1 2 3 4 5 6 7 8 9; do
	out=$(ss "$bob2" "" "{\"room_subscriptions\":{\"$r\":{\"timeline_limit\":$lim,\"required_state\":[]}}}" 0)
	pages ss "$lim" "$(printf '%s' "$out" | jq -c ".rooms[\"$r\"].timeline|map(.event_id)")" \
	    "$(printf '%s' "$out" | jq -r ".rooms[\"$r\"].prev_batch // empty")"
	out=$(v3 "$bob2" "" "{\"room_list\":{\"timeline_limit\":$lim}}" 0)
	room=$(printf '%s' "$out" | jq -c --arg r "$r" '.room_list.rooms[] | select(.room_id == $r)')
	pages v3 "$lim" "$(printf '%s' "$room" | jq -c '[.timeline[].event_id]')" \
	    "$(printf '%s' "$room" | jq -r '.prev_batch // empty')"
done
it_pass
