#!/usr/bin/env bash
# t_acc_standby (issue #15, item 2): two accumulators, one poller, one api
# that name both (SYNCV3_INGEST/SYNCV3_NOTICES lists). The standby binds
# nothing while it waits. Under a steady flow of room and to-device
# messages, the active one is SIGKILLed (twice: each in turn) and later
# frozen with SIGSTOP; each time the other must commit again within 2 s
# (the frozen one is fenced: its writer session is ended), the killed one
# comes back as a standby, and the frozen one, once thawed, finds itself
# replaced and stands by without exiting. At the end a long-polling
# client got every message exactly once and in order, and storage holds
# each once.
source "$(dirname "$0")/lib.sh"

TAKEOVER_MAX_MS=${TAKEOVER_MAX_MS:-2000}
it_setup
acc_pair
start_simhs
start_acc accumulator
wait_for '[ "$(acc_active)" = accumulator ]' 20 || fail "accumulator did not become the writer"
start_acc accumulator2
wait_for "grep -q 'standing by for the writer lock' $T/accumulator2.log" 10 ||
    fail "accumulator2 is not standing by"
sleep 0.5
[ -e "$T/ingest2.sock" ] || [ -e "$T/notices2.sock" ] && fail "the standby bound its endpoints"
assert_eq "$(acc_active)" accumulator "the first one stays the writer"
start_poller poller
start_api

sim users '{"localpart":"alice"}' >/dev/null
sim users '{"localpart":"dave"}' >/dev/null
ROOM=$(sim rooms '{"creator":"@dave:localhost","name":"standby"}' | jq -r .room_id)
sim "rooms/$ROOM/join" '{"user_id":"@alice:localhost"}' >/dev/null
TOK=$(sim_login @alice:localhost A1)

# client: long-polls until $T/client.stop; every m.room.message body and
# m.test counter of every answer goes to $T/got, in order.
client() {
	local since="" code body='{"to_device":{"limit":1000},"room_list":{"limit":5,"timeline_limit":50}}'
	local url
	while [ ! -e "$T/client.stop" ]; do
		url="$API_URL/_matrix/client/v3/sync?timeout=2000"
		[ -n "$since" ] && url="$url&since=$since"
		code=$(curl -s -m 10 -o "$T/client.body" -w '%{http_code}' -X POST \
		    -H "Authorization: Bearer $TOK" -H 'Content-Type: application/json' \
		    --data "$body" "$url")
		if [ "$code" != 200 ]; then
			echo "code $code"
			sleep 0.2
			continue
		fi
		jq -r '(.to_device.events[]? | select(.type == "m.test") | "T \(.content.n)"),
		    (.room_list.rooms[]?.timeline[]? | select(.type == "m.room.message") |
		    "R \(.content.body)")' "$T/client.body" >>"$T/got"
		since=$(jq -r .next_batch "$T/client.body")
		body='{}'
	done
}
: >"$T/got"
start_proc client client
wait_for "[ \"\$(psql_q \"SELECT count(*) FROM syncv3_devices WHERE coalesce(since, '') <> ''\")\" = 1 ]" 30 ||
    fail "initial sync not committed"

# sender: one room message and one to-device message per round, each
# logged to $T/sent once simhs took it.
sender() {
	local i=1
	while [ ! -e "$T/send.stop" ]; do
		sim "rooms/$ROOM/send" "{\"sender\":\"@dave:localhost\",\"type\":\"m.room.message\",\"content\":{\"msgtype\":\"m.text\",\"body\":\"$i\"}}" >/dev/null ||
		    exit 1
		echo "R $i" >>"$T/sent"
		sim to_device "{\"sender\":\"@dave:localhost\",\"type\":\"m.test\",\"user_id\":\"@alice:localhost\",\"device_id\":\"A1\",\"content\":{\"n\":$i}}" >/dev/null ||
		    exit 1
		echo "T $i" >>"$T/sent"
		i=$((i + 1))
		sleep 0.05
	done
}
: >"$T/sent"
start_proc sender sender
sleep 2

db_pos() { psql_q 'SELECT pos FROM syncv3_position'; }
# takeover_from VICTIM SIGNAL: sends it, then waits for the other
# accumulator to hold the lock and commit; TOOK = ms from the signal.
takeover_from() {
	local v=$1 sig=$2 other=accumulator t0 pos0 end
	[ "$v" = accumulator ] && other=accumulator2
	pos0=$(db_pos)
	t0=$(now_ms)
	if [ "$sig" = KILL ]; then kill9 "$v"; else kill -STOP "${IT_PIDS[$v]}"; fi
	end=$((t0 + 20000))
	until [ "$(acc_active)" = "$other" ] && [ "$(db_pos)" -gt "$pos0" ]; do
		[ "$(now_ms)" -lt $end ] || fail "$other did not take over from $v ($sig)"
		sleep 0.02
	done
	TOOK=$(($(now_ms) - t0))
	log "SIG$sig $v: $other committed after $TOOK ms"
	[ "$TOOK" -le "$TAKEOVER_MAX_MS" ] || fail "takeover from $v took $TOOK ms (at most $TAKEOVER_MAX_MS)"
}

takeover_from accumulator KILL
mv "$T/accumulator.log" "$T/accumulator.log.1"
start_acc accumulator
wait_for "grep -q 'standing by for the writer lock' $T/accumulator.log" 10 ||
    fail "the restarted accumulator is not standing by"
sleep 1
takeover_from accumulator2 KILL
mv "$T/accumulator2.log" "$T/accumulator2.log.1"
start_acc accumulator2
sleep 1
takeover_from accumulator STOP
kill -CONT "${IT_PIDS[accumulator]}"
wait_for "grep -q 'another accumulator is the writer; standing by' $T/accumulator.log" 10 ||
    fail "the thawed accumulator did not stand by"
sleep 1
is_running accumulator || fail "the thawed accumulator exited"
assert_eq "$(acc_active)" accumulator2 "the thawed one stays a standby"
sleep 1

touch "$T/send.stop"
wait "${IT_PIDS[sender]}" || fail "sender failed"
unset "IT_PIDS[sender]"
nsent=$(wc -l <"$T/sent")
wait_for "[ \$(sort -u $T/got | wc -l) -ge $nsent ]" 30 || log "client still missing messages"
touch "$T/client.stop"
for _ in $(seq 50); do is_running client || break; sleep 0.1; done
stop_proc client

for k in R T; do
	grep "^$k " "$T/sent" >"$T/want.$k"
	grep "^$k " "$T/got" >"$T/got.$k" || true
	lost=$(comm -23 <(sort "$T/want.$k") <(sort -u "$T/got.$k") | wc -l)
	dup=$(($(wc -l <"$T/got.$k") - $(sort -u "$T/got.$k" | wc -l)))
	log "$k: sent $(wc -l <"$T/want.$k"), received $(wc -l <"$T/got.$k"), lost $lost, duplicated $dup"
	assert_eq "$lost" 0 "$k messages lost at the client"
	assert_eq "$dup" 0 "$k messages duplicated at the client"
	cmp -s "$T/want.$k" "$T/got.$k" || fail "$k messages out of order at the client"
done
assert_eq "$(psql_q "SELECT count(*) - count(DISTINCT event_id) FROM syncv3_events")" 0 "no event stored twice"
assert_eq "$(psql_q "SELECT count(*) - count(DISTINCT json) FROM syncv3_to_device WHERE json::json->>'type' = 'm.test'")" 0 \
    "no to-device message stored twice"
for d in accumulator accumulator2 poller api; do
	is_running "$d" || fail "$d died"
	stop_proc "$d"
done
grep -q exiting "$T/accumulator.log" || fail "the standby did not exit cleanly"
it_pass
