#!/usr/bin/env bash
# it: serial
# t_poller_chaos: nothing is lost (contract 1). While to-device messages
# and room events flow upstream, the poller is killed with SIGKILL at
# random moments and restarted; every message must reach Postgres exactly
# once, in order (syncv3_to_device, syncv3_events), and a v3 client reads
# every to-device message exactly once, in order. CHAOS_N sets how many
# of each are sent (default 200). Needs the real accumulator.
source "$(dirname "$0")/lib.sh"

. "$(dirname "$0")/lib_poller.sh"

# CHAOS_TARGET: the daemon to SIGKILL (poller, accumulator, or both in turn).
TARGET=${CHAOS_TARGET:-poller}
export SYNCV3_POLL_TIMEOUT_MS=5000 SYNCV3_LEASE_SECS=5
it_setup
start_simhs
start_accumulator
U=@alice:localhost D=ADEV
TOK=$(pt_register "$U" "$D")
sim users '{"localpart":"bob"}' >/dev/null
ROOM=$(sim rooms "{\"creator\":\"$U\",\"name\":\"chaos\"}" | jq -r .room_id)
sim "rooms/$ROOM/join" '{"user_id":"@bob:localhost"}' >/dev/null
start_poller poller
wait_for "[ -n \"\$(pt_col $U $D since)\" ]" 15 || fail "initial sync not committed"

N=${CHAOS_N:-200}
# upstream traffic: N to-device messages and N room messages, interleaved
(
	for i in $(seq "$N"); do
		pt_todevice "$U" "$D" "$i"
		sim "rooms/$ROOM/send" "{\"sender\":\"@bob:localhost\",\"type\":\"m.room.message\",\"content\":{\"msgtype\":\"m.text\",\"body\":\"m$i\"}}" >/dev/null
		sleep 0.03
	done
) &
sender=$!
kills=0
while kill -0 $sender 2>/dev/null; do
	sleep "$(awk -v r=$RANDOM 'BEGIN { printf "%.2f", 0.5 + (r % 200) / 100 }')"
	victim=$TARGET
	[ "$TARGET" = both ] && { [ $((kills % 2)) = 0 ] && victim=poller || victim=accumulator; }
	kill9 "$victim"
	kills=$((kills + 1))
	sleep "$(awk -v r=$RANDOM 'BEGIN { printf "%.2f", (r % 50) / 100 }')"
	if [ "$victim" = poller ]; then
		start_poller poller
	else
		start_proc accumulator "$BIN/syncv3-accumulator"
	fi
done
wait $sender
log "killed the $TARGET $kills times while sending"
[ $kills -ge 3 ] || fail "only $kills kills"

td() { psql_q "SELECT string_agg(json::json->'content'->>'n', ' ' ORDER BY pos) FROM syncv3_to_device WHERE user_id='$U' AND device_id='$D' AND json::json->>'type' = 'm.test'"; }
ev() { psql_q "SELECT string_agg(substr(json::json->'content'->>'body', 2), ' ' ORDER BY nid) FROM syncv3_events WHERE room_id='$ROOM' AND type='m.room.message'"; }
want=$(seq -s ' ' "$N")
wait_for "[ \"\$(td)\" = '$want' ] && [ \"\$(ev)\" = '$want' ]" 30 || true
assert_eq "$(td)" "$want" "to-device messages: each exactly once, in order"
assert_eq "$(ev)" "$want" "room events: each exactly once, in order"
is_running poller || fail "poller not running at the end"

# The client side: a v3 session reads every to-device message exactly
# once, in order, acknowledging as it goes.
start_api
since="" got=""
for i in $(seq 60); do
	r=$(v3 "$TOK" "$since" '{"to_device":{"limit":1000}}' 2000)
	assert_eq "$(last_status)" 200 "client sync"
	got="$got $(printf '%s' "$r" | jq -r '[.to_device.events[]? | select(.type=="m.test") | .content.n] | join(" ")')"
	since=$(printf '%s' "$r" | jq -r .next_batch)
	[ "$(echo $got)" = "$want" ] && break
done
assert_eq "$(echo $got)" "$want" "client received each to-device message exactly once, in order"
it_pass
