#!/usr/bin/env bash
# Issue #11, prev_batch: a timeline's prev_batch lets a client page back
# with upstream's /messages (through the api's pass-through) from right
# before the timeline, with no gap, whatever the timeline_limit and
# however upstream cut the room into chunks (one /sync timeline each).
# For each limit, the events paged back followed by the timeline, with
# repeats dropped, must be simhs's whole event list; events are repeated
# only when the timeline's oldest event is not where a stored chunk
# began (docs/INTERNALS.md, "prev_batch"). The same for sliding sync and
# for the v3 room_list, and a room stored with fewer events than the
# limit answers limited.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_ss_syn.sh"

start_stack
# bob is never polled: only carol's syncs cut the chunks
r=$(mkroom @bob:localhost "chunks")
sim "rooms/$r/join" '{"user_id":"@carol:localhost"}' >/dev/null
batch() { # N PREFIX: N messages from bob in one go upstream
	sim "rooms/$r/send_batch" "$(jq -cn --argjson n "$1" --arg p "$2" \
	    '{events:[range(1;$n+1)|{sender:"@bob:localhost",type:"m.room.message",content:{body:"\($p)\(.)"}}]}')" |
	    jq -r '.event_ids[-1]'
}
batch 70 old >/dev/null
carol=$(sim_login @carol:localhost C1)
ss_first "$carol" '{}'
# the poller's initial sync takes the last 50 (limited); then chunks of
# 5, 3, 1 and 2 events, each stored before the next is sent
for n in 5 3 1 2; do stored "$(batch $n "c$n-")"; done
all=$(sim_get "rooms/$r/events" | jq -c '[.events[].event_id]')
starts=$(psql_q "SELECT coalesce(json_agg(e.event_id), '[]') FROM syncv3_chunks c JOIN syncv3_events e ON e.nid = c.nid WHERE c.room_id = '$r' AND NOT c.is_end")
nstored=$(psql_q "SELECT count(*) FROM syncv3_events WHERE room_id = '$r' AND is_timeline")
[ "$(printf '%s' "$starts" | jq length)" -ge 5 ] || fail "chunks not stored: $starts"

# pageback TOKEN: every event before TOKEN, oldest first, through the api
pageback() {
	local from=$1 page ids='[]' n
	for n in $(seq 1 50); do
		page=$(curl -sS -H "Authorization: Bearer $carol" \
		    "$API_URL/_matrix/client/v3/rooms/$(jq -rn --arg r "$r" '$r|@uri')/messages?dir=b&limit=16&from=$(jq -rn --arg s "$from" '$s|@uri')")
		[ "$(printf '%s' "$page" | jq '.chunk | length')" -gt 0 ] || break
		ids=$(jq -cn --argjson a "$ids" --argjson p "$page" '($p.chunk | map(.event_id) | reverse) + $a')
		from=$(printf '%s' "$page" | jq -r .end)
	done
	printf '%s' "$ids"
}

# check WHAT LIMIT TIMELINE_IDS PREV_BATCH: the rules above
check() {
	local what=$1 lim=$2 tl=$3 pb=$4 back oldest want exact
	[ -n "$pb" ] || fail "$what: limit $lim: no prev_batch"
	back=$(pageback "$pb")
	# by index in the room's list, so that a failure reads short
	assert_jq "$(jq -cn --argjson b "$back" --argjson t "$tl" --argjson a "$all" \
	    '$b + $t | reduce .[] as $e ([]; if index([$e]) then . else . + [$e] end) | map(. as $e | $a | index([$e]))')" \
	    ". == [range(0; $(printf '%s' "$all" | jq length))]" true "$what: limit $lim: paged back + timeline is the whole room, no gap"
	oldest=$(printf '%s' "$tl" | jq -r '.[0]')
	# exact when the timeline starts where a chunk began
	exact=$(jq -n --argjson s "$starts" --arg e "$oldest" '$s | index([$e]) != null')
	want=$(jq -cn --argjson a "$all" --arg e "$oldest" '$a[: ($a | index([$e]))]')
	if [ "$exact" = true ]; then
		assert_eq "$back" "$want" "$what: limit $lim: starts at a chunk: continues exactly before it"
	else
		assert_jq "$back" "(.[: ($want | length)] == $want) and (. - $tl == $want)" true \
		    "$what: limit $lim: inside a chunk: only timeline events repeated"
	fi
}

for lim in 1 2 3 4 5 6 8 9 11 12 20 50 60 100; do
	out=$(ss "$carol" "" "{\"room_subscriptions\":{\"$r\":{\"timeline_limit\":$lim,\"required_state\":[]}}}")
	tl=$(timeline_of "$out" "$r")
	n=$((lim < nstored ? lim : nstored))
	assert_eq "$tl" "$(printf '%s' "$all" | jq -c --argjson n "$n" '.[-$n:]')" "ss: limit $lim: the newest events"
	# the room has more upstream than was stored: limited at any limit
	assert_jq "$out" ".rooms[\"$r\"].limited" true "ss: limit $lim: limited"
	check ss "$lim" "$tl" "$(printf '%s' "$out" | jq -r ".rooms[\"$r\"].prev_batch // empty")"
done

for lim in 1 3 6 12 50; do
	out=$(v3 "$carol" "" "{\"room_list\":{\"timeline_limit\":$lim}}" 10000)
	room=$(printf '%s' "$out" | jq -c --arg r "$r" '.room_list.rooms[] | select(.room_id == $r)')
	tl=$(printf '%s' "$room" | jq -c '[.timeline[].event_id]')
	assert_eq "$tl" "$(printf '%s' "$all" | jq -c --argjson n "$lim" '.[-$n:]')" "room_list: limit $lim: the newest events"
	check room_list "$lim" "$tl" "$(printf '%s' "$room" | jq -r '.prev_batch // empty')"
done

# a room stored from its start (upstream: not limited) is not limited
s=$(mkroom @carol:localhost "short")
stored "$(msg "$s" @carol:localhost "only one")"
out=$(ss "$carol" "" "{\"room_subscriptions\":{\"$s\":{\"timeline_limit\":100,\"required_state\":[]}}}")
tl=$(timeline_of "$out" "$s")
assert_jq "$(sim_get "rooms/$s/events" | jq -c '[.events[].event_id]')" ".[-$(printf '%s' "$tl" | jq length):] == $tl" true \
    "short room: the newest events"
assert_jq "$out" ".rooms[\"$s\"].limited // false" false "short room: not limited"
it_pass
