#!/usr/bin/env bash
# matrix-js-sdk 43 (tests/js, pinned) as a real sliding sync client
# (issue #11 "Must show", issue #12's last gap): it logs in through the
# passed-through /login knowing only syncv3's base URL, starts a
# MatrixClient with `slidingSync`, reaches PREPARED and SYNCING, builds
# Room objects for its window in bump_stamp order with names and
# timelines, opens a room outside the window by subscription, receives a
# to-device message, typing, a receipt and account data, sees messages sent
# upstream by another user arrive live (latency logged, asserted only as
# "within the sync timeout"), and sees its own message, sent through the
# pass-through, come back through sliding sync, and an invite it is sent
# then rejected upstream become "leave". The expected order and
# contents are computed here from what simhs holds, never written down.
# Skips (77) when node or the tests/js packages are unavailable.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_ss_syn.sh" # xfail
source "$(dirname "$0")/lib_js.sh"

js_setup
start_stack
A=@alice:localhost B=@bob:localhost
sim password "{\"user_id\":\"$A\",\"password\":\"js-secret\"}" >/dev/null
sim users '{"localpart":"bob"}' >/dev/null

# five rooms, each with its own messages; the window shows three
rooms=()
for i in 0 1 2 3 4; do
	r=$(sim rooms "{\"creator\":\"$A\",\"name\":\"Sliding $i\"}" | jq -r .room_id)
	sim "rooms/$r/join" "{\"user_id\":\"$B\",\"displayname\":\"Bob\"}" >/dev/null
	for m in 1 2 3; do
		sim "rooms/$r/send" "{\"sender\":\"$B\",\"type\":\"m.room.message\",\"content\":{\"msgtype\":\"m.text\",\"body\":\"room $i msg $m\"}}" >/dev/null
	done
	rooms+=("$r")
done
# activity moves room 1 to the top
sim "rooms/${rooms[1]}/send" "{\"sender\":\"$A\",\"type\":\"m.room.message\",\"content\":{\"msgtype\":\"m.text\",\"body\":\"room 1 bumped\"}}" >/dev/null

# expected window: rooms by the stream position of their last bump event
# (the MSC's bump types), newest first, as simhs recorded them
bumps='["m.room.create","m.room.message","m.room.encrypted","m.sticker","m.call.invite","m.poll.start","m.beacon_info"]'
order=$(for r in "${rooms[@]}"; do
	sim_get "rooms/$r/events" | jq -c --argjson b "$bumps" --arg r "$r" \
	    '{room_id: $r, bump: ([.events[] | select(.type as $t | $b | index($t)) | .pos] | max),
	      name: ([.events[] | select(.type == "m.room.name") | .content.name] | last),
	      last2: ([.events[] | select(.type == "m.room.message") | .content.body] | .[-2:])}'
done | jq -sc 'sort_by(-.bump)')
want_window=$(printf '%s' "$order" | jq -c '.[0:3] | map(.room_id)')
sub=$(printf '%s' "$order" | jq -r '.[-1].room_id')
sub_bodies=$(sim_get "rooms/$sub/events" | jq -c '[.events[] | select(.type == "m.room.message") | .content.body]')

js_run js.log 240 sliding_test.mjs API_URL="$API_URL" SIMHS_URL="$SIMHS_URL" \
    LOGIN_USER=alice LOGIN_PASSWORD=js-secret SUB_ROOM="$sub" PEER="$B" \
    WINDOW=3 POLL_MS=10000
out=$js_out
printf '%s\n' "$out" | jq . >"$T/result.json"

assert_jq "$out" '.synced' 'true' "client reached SYNCING"
assert_jq "$out" '[.states[] | select(. == "PREPARED" or . == "SYNCING")]' '["PREPARED","SYNCING"]' "PREPARED then SYNCING"
assert_jq "$out" '.list_count' "${#rooms[@]}" "list count is every joined room"
assert_jq "$out" '.window | map(.room_id)' "$want_window" "window in bump_stamp order"
assert_jq "$out" '[.window[].bump_stamp | type] | unique' '["number"]' "every window room has a bump_stamp"
# names and the newest timeline_limit (2) messages, as simhs holds them
assert_jq "$out" '.window | map({room_id, name, bodies})' \
    "$(printf '%s' "$order" | jq -c '.[0:3] | map({room_id, name, bodies: .last2})')" "window names and timelines"
assert_jq "$out" '.sub_before' 'false' "the subscribed room was not known before"
assert_jq "$out" '.subscription | [.room_id, .bodies]' "$(jq -nc --arg r "$sub" --argjson b "$sub_bodies" '[$r, $b]')" \
    "subscription opened the room with its whole timeline"
assert_jq "$out" '.to_device' "{\"sender\":\"$B\",\"content\":{\"hello\":\"to-device\"}}" "to-device message"
assert_jq "$out" '.typing' "[\"$B\"]" "typing"
assert_jq "$out" '.receipt != null and (.receipt_users | index("'"$B"'") != null)' 'true' "receipt reached the Room"
assert_jq "$out" '.account_data' '{"hello":"account data"}' "account data event"
assert_jq "$out" '.account_data_store' '{"hello":"account data"}' "account data stored"
assert_jq "$out" '[.live[] | .ms != null] | all' 'true' "every upstream message arrived live"
assert_jq "$out" '.live_in_room' "$(printf '%s' "$out" | jq -c '[.live[].body]')" "live messages in the timeline, in order"
assert_jq "$out" '.own | [.back]' '[true]' "own message came back through sliding sync"
assert_jq "$out" '.own_in_room' "$(printf '%s' "$out" | jq -c '.own.body')" "own message in the Room"
assert_jq "$out" '.invite' 'true' "an invite becomes a Room with membership invite"
assert_jq "$out" '.rejected_membership' '"leave"' "a rejected invite leaves the Room (not join, not a stuck invite)"
# the SDK sent only the unstable (Synapse dialect) endpoint and the
# pass-through; upstream saw the login, the send and the pushrules
for p in /_matrix/client/v3/login /_matrix/client/v3/pushrules/; do
	[ "$(sim_get stats | jq --arg p "$p" '.paths[$p] // 0')" -ge 1 ] || fail "$p never reached upstream"
done
log "live latency ms (upstream send -> Room timeline): $(printf '%s' "$out" | jq -c '[.live[].ms]')," \
    "own message round trip ms: $(printf '%s' "$out" | jq -c '.own.ms'), requests: $(printf '%s' "$out" | jq -c '.requests')"
it_pass
