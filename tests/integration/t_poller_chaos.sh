#!/usr/bin/env bash
# t_poller_chaos: nothing is lost (contract 1). While to-device messages
# and room events flow upstream, the poller is killed with SIGKILL at
# random moments and restarted; every message must reach Postgres exactly
# once, in order (syncv3_to_device, syncv3_events). CHAOS_N sets how many
# of each are sent (default 200). Needs the real accumulator.
source "$(dirname "$0")/lib.sh"

# ---- poller test helpers (the same block in every t_poller_*.sh) ----
# pt_start_accumulator: the real one, or the stand-in plus the schema.
pt_start_accumulator() {
	if [ -x "$BIN/syncv3-accumulator" ] && [ -z "${PT_STANDIN:-}" ]; then
		start_accumulator
		return
	fi
	log "no accumulator built: using bench_poller as a stand-in"
	psql_q "CREATE TABLE syncv3_schema_migrations (version int PRIMARY KEY,
	    name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
	for f in "$IT_ROOT"/deploy/sql/[0-9][0-9][0-9]_*.sql; do
		psql_q "$(cat "$f")" >/dev/null || fail "schema $f"
		n=$(basename "$f"); psql_q "INSERT INTO syncv3_schema_migrations
		    VALUES (${n%%_*}, '${n%.sql}')"
	done
	start_proc accumulator "$BIN/bench_poller" -i "$SYNCV3_INGEST" \
	    -d "$SYNCV3_DB" -o "$T/acks.txt"
	PT_STANDIN=1
}
# pt_register USER DEVICE [TOKEN]: stores the device the way the api does
# (token hash + encrypted token, poll_state 'new', NOTIFY). Prints the token.
pt_register() {
	local tok=${3:-} hash enc
	[ -z "$tok" ] && tok=$(sim_login "$1" "$2")
	read -r hash enc < <(printf '%s\n' "$tok" | "$BIN/syncv3-poller" -E -)
	psql_q "INSERT INTO syncv3_devices (user_id, device_id, token_hash,
	    token_enc) VALUES ('$1', '$2', '$hash', '$enc')
	    ON CONFLICT (user_id, device_id) DO UPDATE SET
	    token_hash = excluded.token_hash, token_enc = excluded.token_enc,
	    poll_state = 'new', poll_error = ''; NOTIFY syncv3_devices" >/dev/null
	printf '%s\n' "$tok"
}
pt_col() { psql_q "SELECT $3 FROM syncv3_devices WHERE user_id='$1' AND device_id='$2'"; }
# pt_requests TOKEN: /sync requests the simulated homeserver saw for it
pt_requests() {
	sim_get stats | jq --arg t "$1" '.tokens[$t].requests // 0'
}
pt_todevice() {
	sim to_device "{\"sender\":\"@sender:localhost\",\"type\":\"m.test\",\"user_id\":\"$1\",\"device_id\":\"$2\",\"content\":{\"n\":$3}}" >/dev/null
}
# ---------------------------------------------------------------------

[ -x "$BIN/syncv3-accumulator" ] || { log "SKIP: needs syncv3-accumulator"; exit 0; }
export SYNCV3_POLL_TIMEOUT_MS=5000 SYNCV3_LEASE_SECS=5
it_setup
start_simhs
pt_start_accumulator
U=@alice:localhost D=ADEV
pt_register "$U" "$D" >/dev/null
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
	kill9 poller
	kills=$((kills + 1))
	sleep "$(awk -v r=$RANDOM 'BEGIN { printf "%.2f", (r % 50) / 100 }')"
	start_poller poller
done
wait $sender
log "killed the poller $kills times while sending"
[ $kills -ge 3 ] || fail "only $kills kills"

td() { psql_q "SELECT string_agg(json::json->'content'->>'n', ' ' ORDER BY pos) FROM syncv3_to_device WHERE user_id='$U' AND device_id='$D' AND json::json->>'type' = 'm.test'"; }
ev() { psql_q "SELECT string_agg(substr(json::json->'content'->>'body', 2), ' ' ORDER BY nid) FROM syncv3_events WHERE room_id='$ROOM' AND type='m.room.message'"; }
want=$(seq -s ' ' "$N")
wait_for "[ \"\$(td)\" = '$want' ] && [ \"\$(ev)\" = '$want' ]" 30 || true
assert_eq "$(td)" "$want" "to-device messages: each exactly once, in order"
assert_eq "$(ev)" "$want" "room events: each exactly once, in order"
is_running poller || fail "poller not running at the end"
it_pass
