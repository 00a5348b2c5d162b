#!/usr/bin/env bash
# The light first sync (issue #11 item 8, docs/DESIGN.md "The first
# window first"): a device whose user the proxy has never seen first asks
# upstream for one timeline event per room, then continues incrementally
# from that since. A room opened later with timeline_limit 20 answers
# limited with a prev_batch from which /messages pages back without a gap
# or a repeat; a message sent afterwards arrives once. The first window
# (the accumulator's window of 10 rooms) is what a later request returns.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_ss.sh"

export SYNCV3_ACC_WINDOW_ROOMS=10 SYNCV3_FIRST_TIMELINE_LIMIT=1
start_stack
out=$(sim scenario '{"users":1,"rooms_per_user":30,"members_per_room":3,"messages_per_room":5,"prefix":"l"}')
u=$(printf '%s' "$out" | jq -r '.users[0].user_id')
tok=$(sim_login "$u" LDEV)
LIST='{"ranges":[[0,19]],"timeline_limit":1,"required_state":[["m.room.name",""]]}'
first=$(ss "$tok" "" "{\"lists\":{\"a\":$LIST}}")
assert_eq "$(last_status)" 200 "first window"
assert_jq "$first" '.rooms|length' 20 "a full range"
# the first upstream sync of this token asked for one event per room
q=$(curl -sS "$SIMHS_URL/_simhs/sync_log?access_token=$tok" | jq -r '.requests[0].query')
f=$(python3 -c 'import sys, urllib.parse as u; print(u.parse_qs(sys.argv[1])["filter"][0])' "$q")
assert_jq "$f" .room.timeline.limit 1 "the first sync asks for one event per room"
assert_jq "$f" '.room.state.lazy_load_members // false' false "and no lazy-loaded members"

# a room of the window opened with timeline_limit 20
r=$(printf '%s' "$first" | jq -r '.rooms|keys[0]')
pos=$(ss_pos "$first")
sub=$(ss "$tok" "$pos" "{\"lists\":{\"a\":$LIST},\"room_subscriptions\":{\"$r\":{\"timeline_limit\":20}}}")
assert_jq "$sub" ".rooms[\"$r\"].limited" true "the older history is not stored: limited"
pb=$(printf '%s' "$sub" | jq -r ".rooms[\"$r\"].prev_batch")
[ -n "$pb" ] && [ "$pb" != null ] || fail "no prev_batch"
have=$(printf '%s' "$sub" | jq -c "[.rooms[\"$r\"].timeline[].event_id]")
# upstream's whole history of the room, newest first
now=$(curl -sS "$SIMHS_URL/_simhs/pos" | jq -r .token)
all=$(curl -sS -H "Authorization: Bearer $tok" \
	"$SIMHS_URL/_matrix/client/v3/rooms/$r/messages?dir=b&limit=100&from=$now" | jq -c '[.chunk[].event_id]')
# paged back through the proxy from prev_batch: what comes before ours
back=$(curl -sS -H "Authorization: Bearer $tok" \
	"$API_URL/_matrix/client/v3/rooms/$r/messages?dir=b&limit=100&from=$(jq -rn --arg s "$pb" '$s|@uri')" |
	jq -c '[.chunk[].event_id]')
assert_eq "$(jq -cn --argjson h "$have" --argjson b "$back" '($h | reverse) + $b')" "$all" \
	"the timeline and /messages from prev_batch: the whole history, no gap, no repeat"

# the first window is what a new connection sees once everything is stored
wait_for "[ \"\$(psql_q \"SELECT is_initial_done FROM syncv3_devices WHERE device_id = 'LDEV'\")\" = t ]" 30 ||
	fail "the initial sync was never stored"
view() { printf '%s' "$1" | jq -c '[.rooms | to_entries[] | {r: .key, n: .value.name, b: .value.bump_stamp, t: [.value.timeline[].event_id], l: .value.limited}] | sort_by(-.b, .r)'; }
later=$(ss "$tok" "" "{\"conn_id\":\"later\",\"lists\":{\"a\":$LIST}}")
assert_eq "$(view "$later")" "$(view "$first")" "the first window, as later"
assert_jq "$later" .lists.a.count 30 "every room counted"

# the poller continues from the light sync's since: a new message arrives once
pos=$(ss_pos "$sub")
sim_msg "$r" "$u" "after the light sync"
next=$(ss "$tok" "$pos" "{\"lists\":{\"a\":$LIST}}" 10000)
assert_jq "$next" "[.rooms[\"$r\"].timeline[].content.body]" '["after the light sync"]' "a later message, once"
it_pass
