#!/usr/bin/env bash
# [sec] 7: a redacted event is served pruned (client-server spec
# "Redactions", as Synapse serves it: the room version's kept keys and
# unsigned.redacted_because) in v3 and sliding sync, for a fresh device, a
# fresh connection and one that had already been sent it (which gets the
# redaction event, not the target again); a redacted m.room.name takes the
# room's name away; a redaction stored before its target (two pollers)
# still prunes it; a v11 room keeps power_levels' invite, a v1 room not.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_ss.sh"

start_two_pollers
a1=$alice

# ev_json EVENT_ID: the stored json of an event
ev_json() { psql_q "SELECT json FROM syncv3_events WHERE event_id = '$1'"; }
stored() { [ -n "$(ev_json "$1")" ]; }
pruned() { ev_json "$1" | jq -e '.unsigned.redacted_because' >/dev/null; }
send() { sim "rooms/$1/send" "$2" | jq -r .event_id; }
# redact ROOM SENDER TARGET: both forms of the target, v1-10 and v11
redact() {
	send "$1" "{\"sender\":\"$2\",\"type\":\"m.room.redaction\",\"redacts\":\"$3\",\"content\":{\"redacts\":\"$3\",\"reason\":\"oops\"}}"
}
# tl JSON ROOM EVENT_ID: that event of a v3 room_list or ss timeline
v3_ev() { printf '%s' "$1" | jq -c "[.room_list.rooms[]|select(.room_id==\"$2\")|.timeline[]|select(.event_id==\"$3\")]"; }
ss_ev() { printf '%s' "$1" | jq -c "[.rooms[\"$2\"].timeline[]?|select(.event_id==\"$3\")]"; }
LIST='{"lists":{"l":{"ranges":[[0,9]],"timeline_limit":10}}}'

# The reviewer's sequence, and alice's connection that saw the message.
r=$(sim rooms "{\"creator\":\"$B\",\"name\":\"secret-name\"}" | jq -r .room_id)
sim "rooms/$r/join" "{\"user_id\":\"$A\"}" >/dev/null
eid=$(send "$r" "{\"sender\":\"$B\",\"type\":\"m.room.message\",\"content\":{\"body\":\"my password is hunter2\"}}")
wait_for "stored '$eid'" 15 || fail "message not stored"
out=$(ss "$a1" "" "$LIST" 0); pos=$(ss_pos "$out")
assert_jq "$(ss_ev "$out" "$r" "$eid")" '.[0].content.body' '"my password is hunter2"' "before: ss"
rid=$(redact "$r" "$B" "$eid")
wait_for "stored '$rid'" 15 || fail "redaction not stored"
wait_for "pruned '$eid'" 5 || fail "target not pruned: $(ev_json "$eid")"
stored=$(ev_json "$eid")
assert_jq "$stored" '.content' '{}' "stored content"
assert_jq "$stored" '.unsigned.redacted_because.event_id' "\"$rid\"" "redacted_because"
assert_jq "$stored" '[.event_id,.type,.sender]' "[\"$eid\",\"m.room.message\",\"$B\"]" "kept keys"

out=$(ss "$a1" "$pos" "$LIST" 10000)
assert_jq "$(ss_ev "$out" "$r" "$rid")" 'length' '1' "seen connection: redaction event"
assert_jq "$(ss_ev "$out" "$r" "$eid")" 'length' '0' "seen connection: target not sent again"
a2=$(sim_login $A A2); v3 "$a2" "" '{}' 15000 >/dev/null
out=$(v3 "$a2" "" '{"room_list":{"timeline_limit":10}}' 0)
assert_jq "$(v3_ev "$out" "$r" "$eid")" '.[0].content' '{}' "v3 new device"
assert_jq "$(v3_ev "$out" "$r" "$eid")" '.[0].unsigned.redacted_because.event_id' "\"$rid\"" "v3 redacted_because"
out=$(ss "$a2" "" "$LIST" 0)
assert_jq "$(ss_ev "$out" "$r" "$eid")" '.[0].content' '{}' "ss new connection"
assert_jq "$(ss_ev "$out" "$r" "$eid")" '.[0].unsigned.redacted_because.event_id' "\"$rid\"" "ss redacted_because"
printf '%s' "$out" | grep -q hunter2 && fail "ss still carries the content"
# simhs, like Synapse, serves the target pruned to a new device
up=$(curl -sS -H "Authorization: Bearer $a2" "$SIMHS_URL/_matrix/client/v3/sync")
assert_jq "$up" ".rooms.join[\"$r\"].timeline.events|map(select(.event_id==\"$eid\"))|.[0].unsigned.redacted_because.event_id" "\"$rid\"" "upstream /sync"
printf '%s' "$up" | grep -q hunter2 && fail "simhs /sync still carries the content"

# A redacted room name: no name from then on.
nid=$(psql_q "SELECT e.event_id FROM syncv3_state s JOIN syncv3_events e ON e.nid = s.nid WHERE s.room_id = '$r' AND s.type = 'm.room.name' AND s.to_pos IS NULL")
[ -n "$nid" ] || fail "no m.room.name stored"
out=$(v3 "$a2" "" '{"room_list":{"timeline_limit":1}}' 0)
assert_jq "$out" ".room_list.rooms[]|select(.room_id==\"$r\")|.name" '"secret-name"' "name before"
nrid=$(redact "$r" "$B" "$nid")
wait_for "pruned '$nid'" 15 || fail "m.room.name not pruned"
out=$(v3 "$a2" "" '{"room_list":{"timeline_limit":1}}' 0)
printf '%s' "$out" | grep -q secret-name && fail "v3 room_list still names the room: $(printf '%s' "$out" | head -c 400)"
out=$(ss "$a2" "" '{"lists":{"l":{"ranges":[[0,9]],"timeline_limit":1,"required_state":[["m.room.name",""]]}}}' 0)
printf '%s' "$out" | grep -q secret-name && fail "ss still names the room: $(printf '%s' "$out" | head -c 400)"
assert_eq "$(psql_q "SELECT coalesce(name, '-') FROM syncv3_rooms WHERE room_id = '$r'")" "-" "syncv3_rooms.name"

# A redaction stored before its target: bob's poller holds the target (its
# parked poll answered with it, then stopped) while alice's poller, with
# the target outside her limited join timeline, stores the redaction.
r2=$(sim rooms "{\"creator\":\"$B\",\"name\":\"race\"}" | jq -r .room_id)
sim "rooms/$r2/join" "{\"user_id\":\"$C\"}" >/dev/null
w=$(send "$r2" "{\"sender\":\"$C\",\"type\":\"m.room.message\",\"content\":{\"body\":\"warmup\"}}")
wait_for "stored '$w'" 15 || fail "warmup"
wait_for "[ \"\$(sim_get stats | jq '.sync_inflight[\"$B|B1\"] // 0')\" = 1 ]" 15 || fail "bob's poll not parked"
sleep 1
kill -STOP "${IT_PIDS[poller]}"
t2=$(send "$r2" "{\"sender\":\"$B\",\"type\":\"m.room.message\",\"content\":{\"body\":\"late-secret\"}}")
sleep 0.5
sim "rooms/$r2/send_batch" "$(jq -cn '{events:[range(60)|{sender:"@carol:localhost",type:"m.room.message",content:{body:"filler\(.)"}}]}')" >/dev/null
sim "rooms/$r2/join" "{\"user_id\":\"$A\"}" >/dev/null
rid2=$(redact "$r2" "$B" "$t2")
wait_for "stored '$rid2'" 15 || { kill -CONT "${IT_PIDS[poller]}"; fail "redaction not stored via alice"; }
stored "$t2" && { kill -CONT "${IT_PIDS[poller]}"; fail "target stored first: the race did not happen"; }
assert_eq "$(psql_q "SELECT count(*) FROM syncv3_redactions WHERE target = '$t2'")" 1 "redaction waits"
kill -CONT "${IT_PIDS[poller]}"
wait_for "stored '$t2'" 20 || fail "bob's poller did not deliver the target"
wait_for "pruned '$t2'" 5 || fail "late target not pruned: $(ev_json "$t2")"
assert_jq "$(ev_json "$t2")" '.unsigned.redacted_because.event_id' "\"$rid2\"" "late redacted_because"
assert_eq "$(psql_q "SELECT count(*) FROM syncv3_redactions WHERE target = '$t2'")" 0 "waiting row gone"
out=$(v3 "$a2" "" '{"room_list":{"timeline_limit":80}}' 0)
printf '%s' "$out" | grep -q late-secret && fail "v3 serves the late target's content"

# Room versions: power_levels keeps invite under v11 only.
for v in 1 11; do
	rv=$(sim rooms "{\"creator\":\"$B\",\"name\":\"v$v\",\"room_version\":\"$v\"}" | jq -r .room_id)
	pl=$(send "$rv" "{\"sender\":\"$B\",\"type\":\"m.room.power_levels\",\"state_key\":\"\",\"content\":{\"users\":{\"$B\":100},\"invite\":0,\"kick\":50,\"notifications\":{\"room\":50}}}")
	wait_for "stored '$pl'" 15 || fail "v$v power_levels not stored"
	redact "$rv" "$B" "$pl" >/dev/null
	wait_for "pruned '$pl'" 15 || fail "v$v power_levels not pruned"
	keys=$(ev_json "$pl" | jq -c '.content|keys')
	case $v in
	1) assert_eq "$keys" '["kick","users"]' "v1 power_levels keys" ;;
	11) assert_eq "$keys" '["invite","kick","users"]' "v11 power_levels keys" ;;
	esac
done

s=$(it_sanitizer_logs); [ -z "$s" ] || fail "sanitizer: $s"
it_pass
