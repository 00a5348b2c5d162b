#!/usr/bin/env bash
# [sec] 1: m.ignored_user_list. alice ignores carol; carol speaks in a room
# alice shares with bob, whose poller stores it. Like Synapse's /sync
# (filter_events_for_client), neither alice's v3 room_list nor her sliding
# sync timelines carry carol's messages, while carol's state events stay
# and bob still sees everything. simhs leaves them out of alice's own
# /sync too, and an invite from carol with them. Removing carol from the
# list shows her messages again in later responses.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_privacy.sh"
source "$(dirname "$0")/lib_ss.sh"
C=@carol:localhost
stored() { [ "$(psql_q "SELECT count(*) FROM syncv3_events WHERE json LIKE '%\"$1\"%'")" -ge 1 ]; }
# the [sender, body or type] of room $2's timeline in answer $1 (v3 or ss)
v3_tl() { printf '%s' "$1" | jq -c "[.room_list.rooms[]|select(.room_id==\"$2\")|.timeline[]|[.sender,.content.body // .type]]"; }
ss_tl() { printf '%s' "$1" | jq -c "[.rooms[\"$2\"].timeline[]?|[.sender,.content.body // .type]]"; }
has() { printf '%s' "$1" | jq -e --arg s "$2" --arg b "$3" 'any(.[]; . == [$s, $b])' >/dev/null; }

ignored_room shared
sim "rooms/$r/send" "{\"sender\":\"$C\",\"type\":\"m.room.message\",\"content\":{\"body\":\"carol-msg\"}}" >/dev/null
sim "rooms/$r/send" "{\"sender\":\"$C\",\"type\":\"m.room.topic\",\"state_key\":\"\",\"content\":{\"topic\":\"carol-topic\"}}" >/dev/null
say $r "bob-msg"
wait_for "stored carol-msg && stored carol-topic && stored bob-msg" 15 || fail "bob's poller did not store the room"

# alice's own upstream sync leaves carol's message out (Synapse does)
up=$(curl -sS -H "Authorization: Bearer $alice" "$SIMHS_URL/_matrix/client/v3/sync")
assert_eq "$(printf '%s' "$up" | jq -c "[.rooms.join[\"$r\"].timeline.events[]|select(.sender==\"$C\" and .state_key==null)]")" "[]" "simhs /sync of alice"

body='{"room_list":{"timeline_limit":20}}'
ssbody='{"lists":{"l":{"ranges":[[0,9]],"timeline_limit":20}}}'
# check API WHO TIMELINE: bob's message and carol's state event are there,
# carol's message only for bob
check() {
	has "$3" $B bob-msg || fail "$1 $2: bob's message missing: $3"
	has "$3" $C m.room.topic || fail "$1 $2: carol's state event missing: $3"
	if [ $2 = alice ]; then
		! has "$3" $C carol-msg || fail "$1 alice sees the ignored user's message: $3"
	else
		has "$3" $C carol-msg || fail "$1 bob: carol's message missing: $3"
	fi
}
for who in alice bob; do
	check v3 $who "$(v3_tl "$(v3 "${!who}" "" "$body" 0)" $r)"
	check ss $who "$(ss_tl "$(ss "${!who}" "" "$ssbody" 0)" $r)"
done

# an invite from carol reaches neither alice's own sync nor the api
ri=$(sim rooms "{\"creator\":\"$C\",\"name\":\"from-carol\"}" | jq -r .room_id)
sim "rooms/$ri/invite" "{\"sender\":\"$C\",\"user_id\":\"$A\"}" >/dev/null
say $r "after-invite"
wait_for "stored after-invite" 15 || fail "bob's poller"
sleep 1
up=$(curl -sS -H "Authorization: Bearer $alice" "$SIMHS_URL/_matrix/client/v3/sync")
assert_jq "$up" ".rooms.invite[\"$ri\"] // null" null "simhs /sync of alice: carol's invite"
out=$(v3 "$alice" "" "$body" 0)
assert_jq "$out" "[.room_list.rooms[]|select(.room_id==\"$ri\")]|length" 0 "v3 alice: carol's invite"

# the same into a room bob is in, whose poller stores alice's invite row
r2=$(mk bobs)
sim "rooms/$r2/join" "{\"user_id\":\"$C\"}" >/dev/null
sim "rooms/$r2/invite" "{\"sender\":\"$C\",\"user_id\":\"$A\"}" >/dev/null
say $r2 "after-invite-2"
wait_for "stored after-invite-2" 15 || fail "bob's poller"
sleep 1
out=$(v3 "$alice" "" "$body" 0)
assert_jq "$out" "[.room_list.rooms[]|select(.room_id==\"$r2\")]|length" 0 "v3 alice: carol's invite into bob's room"
out=$(ss "$alice" "" "$ssbody" 0)
assert_jq "$out" ".rooms[\"$r2\"] // null" null "ss alice: carol's invite into bob's room"

# the list changed: later responses follow it
ignore '{}'
tl=$(v3_tl "$(v3 "$alice" "" "$body" 0)" $r)
has "$tl" $C carol-msg || fail "v3 alice after un-ignoring: carol's message missing: $tl"
tl=$(ss_tl "$(ss "$alice" "" "$ssbody" 0)" $r)
has "$tl" $C carol-msg || fail "ss alice after un-ignoring: carol's message missing: $tl"
assert_eq "$(it_sanitizer_logs)" "" "sanitizer logs"
it_pass
