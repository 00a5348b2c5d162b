#!/usr/bin/env bash
# Issue #9, timeline order: a user's first sync of a room with more events
# than the timeline limit (upstream: limited, prev_batch, the last N
# events oldest first, the state before them) gives room_list the same
# chronological order, as do incremental timelines.
source "$(dirname "$0")/lib.sh"

start_stack
# gappy initial sync: upstream sends the last N events, oldest first
# (limited, prev_batch, the state before them); room_list keeps that order
rg=$(sim rooms '{"creator":"@eve:localhost","name":"Busy"}' | jq -r .room_id)
sim "rooms/$rg/join" '{"user_id":"@dave:localhost"}' >/dev/null
ev=$(jq -cn '{events:[range(1;81)|{sender:"@eve:localhost",type:"m.room.message",content:{body:"m\(.)"}}]}')
sim "rooms/$rg/send_batch" "$ev" >/dev/null
up=$(curl -sf -H "Authorization: Bearer $(sim_login @dave:localhost D0)" \
    "$SIMHS_URL/_matrix/client/v3/sync?filter=$(jq -rn '{room:{timeline:{limit:5}}}|tojson|@uri')")
upr=".rooms.join[\"$rg\"]"
assert_jq "$up" "$upr.timeline.limited" true "upstream: limited"
assert_jq "$up" "$upr.timeline.prev_batch|length > 0" true "upstream: prev_batch"
assert_jq "$up" "[$upr.state.events[].type]|index(\"m.room.name\") != null" true "upstream: state before the gap"
want=$(printf '%s' "$up" | jq -c "[$upr.timeline.events[].content.body]")
assert_eq "$want" '["m76","m77","m78","m79","m80"]' "upstream: last events, oldest first"
dave=$(sim_login @dave:localhost D1)
out=$(v3 "$dave" "" '{"room_list":{"timeline_limit":5}}' 10000)
assert_jq "$out" '[.room_list.rooms[0].timeline[].content.body]' "$want" "gappy initial sync: upstream order"
s=$(printf '%s' "$out" | jq -r .next_batch)
( sleep 0.3; for i in a b c; do sim "rooms/$rg/send" "{\"sender\":\"@eve:localhost\",\"type\":\"m.room.message\",\"content\":{\"body\":\"$i\"}}" >/dev/null; done ) &
sleep 1
out=$(v3 "$dave" "$s" '{}' 5000)
assert_jq "$out" '[.room_list.rooms[0].timeline[].content.body]' '["a","b","c"]' "incremental timeline in order"
it_pass
