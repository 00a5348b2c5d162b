#!/usr/bin/env bash
# [sec] 6: history_visibility "joined" and events that arrive late. bob and
# alice are on different pollers (SYNCV3_MAX_DEVICES=1); bob's poller is
# stopped with its long-poll parked, carol sends SECRET and fillers, alice
# joins and her own poller stores the join, then bob's poller delivers the
# pre-join events: their positions (arrival order) are after alice's join.
# Like the homeserver, neither alice's v3 room_list nor her sliding sync
# timeline may carry them; bob, joined before, still sees them, and alice
# sees what is sent after her join. Then a later event whose
# origin_server_ts is before her join (federation clock skew, forged in
# the store) is hidden too (the fail-closed limit of the rule, visible.h),
# and the timeline that lost it is limited with a prev_batch.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_ss.sh"
export SYNCV3_API_SESSION_IDLE_SECS=600
start_two_pollers
stored() { [ "$(psql_q "SELECT count(*) FROM syncv3_events WHERE json LIKE '%\"$1\"%'")" -ge 1 ]; }
msg() { sim "rooms/$r/send" "{\"sender\":\"$C\",\"type\":\"m.room.message\",\"content\":{\"body\":\"$1\"}}" >/dev/null; }
r=$(sim rooms "{\"creator\":\"$B\",\"name\":\"hvj\"}" | jq -r .room_id)
sim "rooms/$r/send" "{\"sender\":\"$B\",\"type\":\"m.room.history_visibility\",\"state_key\":\"\",\"content\":{\"history_visibility\":\"joined\"}}" >/dev/null
sim "rooms/$r/join" "{\"user_id\":\"$C\"}" >/dev/null
msg warmup
wait_for "stored warmup" 15 || fail "warmup not stored"
wait_for "[ \"\$(sim_get stats | jq '.sync_inflight[\"$B|B1\"] // 0')\" = 1 ]" 15 || fail "bob's poll not parked"
sleep 1
kill -STOP "${IT_PIDS[poller]}"
msg SECRET-before-alice-joined
sleep 0.2
sim "rooms/$r/send_batch" "$(jq -cn --arg c "$C" '{events:[range(60)|{sender:$c,type:"m.room.message",content:{body:"filler\(.)"}}]}')" >/dev/null
sleep 0.2
sim "rooms/$r/join" "{\"user_id\":\"$A\"}" >/dev/null
wait_for "[ \"\$(psql_q \"SELECT membership FROM syncv3_user_rooms WHERE user_id='$A' AND room_id='$r'\")\" = join ]" 15 ||
    fail "alice's join not stored"
stored SECRET-before-alice-joined && fail "the secret was stored before bob's poller resumed: no late arrival to test"
kill -CONT "${IT_PIDS[poller]}"
wait_for "stored SECRET-before-alice-joined" 20 || fail "bob's poller did not deliver the secret"
wait_for "stored filler59" 20 || fail "bob's poller did not deliver the fillers"
jn=$(psql_q "SELECT nid FROM syncv3_events WHERE room_id='$r' AND type='m.room.member' AND state_key='$A'")
sn=$(psql_q "SELECT nid FROM syncv3_events WHERE json LIKE '%SECRET-before%'")
[ "$sn" -gt "$jn" ] || fail "the secret ($sn) was not stored after alice's join ($jn)"
msg after-alice-joined
wait_for "stored after-alice-joined" 15 || fail "after-join message not stored"

# bodies TIMELINE_JQ JSON: the bodies of the timeline's messages, in order
bodies() { printf '%s' "$2" | jq -c "[$1[]? | select(.type == \"m.room.message\") | .content.body]"; }
v3_tl() { v3 "$1" "" '{"room_list":{"timeline_limit":80}}' 0; }
ss_tl() { ss "$1" "" '{"lists":{"l":{"ranges":[[0,9]],"timeline_limit":80}}}' 0; }
V3=".room_list.rooms[] | select(.room_id == \"$r\") | .timeline"
SS=".rooms[\"$r\"].timeline"

out=$(v3_tl "$alice"); assert_eq "$(last_status)" 200 "alice v3"
assert_eq "$(bodies "$V3" "$out")" '["after-alice-joined"]' "alice's v3 timeline: only what was sent after her join"
out=$(ss_tl "$alice"); assert_eq "$(last_status)" 200 "alice ss"
assert_eq "$(bodies "$SS" "$out")" '["after-alice-joined"]' "alice's sliding sync timeline: only what was sent after her join"
out=$(v3_tl "$bob")
b=$(bodies "$V3" "$out")
assert_jq "$b" '[index("SECRET-before-alice-joined") != null, index("filler59") != null, .[-1]]' \
    '[true,true,"after-alice-joined"]' "bob, joined before, sees the late events"

# A genuine later event whose timestamp says before the join (skewed
# clock) is hidden too; the timeline then starts after it and is limited,
# and its prev_batch pages it in through the homeserver's /messages.
msg skewed
msg after-skewed
wait_for "stored after-skewed" 15 || fail "skewed messages not stored"
jts=$(psql_q "SELECT origin_ts FROM syncv3_events WHERE nid = $jn")
psql_q "UPDATE syncv3_events SET origin_ts = $jts - 5000 WHERE json LIKE '%\"skewed\"%'" >/dev/null
# paged TOKEN PREV_BATCH: the message bodies upstream's /messages gives
# paging back from PREV_BATCH (the homeserver applies the visibility)
paged() {
	curl -sS -H "Authorization: Bearer $1" \
	    "$SIMHS_URL/_matrix/client/v3/rooms/$(jq -rn --arg s "$r" '$s|@uri')/messages?dir=b&limit=20&from=$(jq -rn --arg s "$2" '$s|@uri')" |
	    jq -c '[.chunk[] | select(.type == "m.room.message") | .content.body]'
}
alice2=$(sim_login $A A2)
out=$(v3_tl "$alice2")
assert_eq "$(bodies "$V3" "$out")" '["after-skewed"]' "v3: the timeline starts after the skewed event"
pb=$(printf '%s' "$out" | jq -r ".room_list.rooms[] | select(.room_id == \"$r\") | .prev_batch")
assert_jq "$(paged "$alice2" "$pb")" 'index("skewed") != null' true "v3: paging back from prev_batch finds the skewed event"
out=$(ss_tl "$alice2")
assert_eq "$(bodies "$SS" "$out")" '["after-skewed"]' "ss: the timeline starts after the skewed event"
assert_jq "$out" ".rooms[\"$r\"].limited" true "ss: the cut timeline is limited"
pb=$(printf '%s' "$out" | jq -r ".rooms[\"$r\"].prev_batch")
assert_jq "$(paged "$alice2" "$pb")" 'index("skewed") != null' true "ss: paging back from prev_batch finds the skewed event"
s=$(it_sanitizer_logs); [ -z "$s" ] || fail "sanitizer: $s"
it_pass
