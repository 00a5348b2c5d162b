# Shared by t_acc_standby.sh and tests/bench/bench_acc_takeover.sh (issue
# #15): two accumulators under a steady flow watched by one long-polling
# client. Source after lib.sh.

# standby_stack: simhs, accumulator (the writer) and accumulator2 (its
# standby), a poller and an api naming both; alice (device A1, token TOK)
# and dave in room ROOM.
standby_stack() {
	it_setup
	acc_pair
	start_simhs
	start_acc accumulator
	wait_for '[ "$(acc_active)" = accumulator ]' 20 || fail "accumulator did not become the writer"
	start_acc accumulator2
	wait_for "grep -q 'standing by for the writer lock' $T/accumulator2.log" 10 ||
	    fail "accumulator2 is not standing by"
	start_poller poller
	start_api
	sim users '{"localpart":"alice"}' >/dev/null
	sim users '{"localpart":"dave"}' >/dev/null
	ROOM=$(sim rooms '{"creator":"@dave:localhost","name":"standby"}' | jq -r .room_id)
	sim "rooms/$ROOM/join" '{"user_id":"@alice:localhost"}' >/dev/null
	TOK=$(sim_login @alice:localhost A1)
}

# standby_client: long-polls until $T/client.stop; every m.room.message
# body ("R N") and m.test counter ("T N") of every answer goes to $T/got,
# in the order received.
standby_client() {
	local since="" code url
	local body='{"to_device":{"limit":1000},"room_list":{"limit":5,"timeline_limit":50}}'
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

# standby_sender: until $T/send.stop, one room message and one to-device
# message per round, each logged to $T/sent once simhs took it.
standby_sender() {
	local i=1
	while [ ! -e "$T/send.stop" ]; do
		sim "rooms/$ROOM/send" "{\"sender\":\"@dave:localhost\",\"type\":\"m.room.message\",\"content\":{\"msgtype\":\"m.text\",\"body\":\"$i\"}}" >/dev/null ||
		    exit 1
		echo "R $i" >>"$T/sent"
		sim to_device "{\"sender\":\"@dave:localhost\",\"type\":\"m.test\",\"user_id\":\"@alice:localhost\",\"device_id\":\"A1\",\"content\":{\"n\":$i}}" >/dev/null ||
		    exit 1
		echo "T $i" >>"$T/sent"
		i=$((i + 1))
		sleep "${SEND_SLEEP:-0.05}"
	done
}

# standby_flow: the client and the sender, once the initial sync is in.
standby_flow() {
	: >"$T/got"
	: >"$T/sent"
	start_proc client standby_client
	wait_for "[ \"\$(psql_q \"SELECT count(*) FROM syncv3_devices WHERE coalesce(since, '') <> ''\")\" = 1 ]" 30 ||
	    fail "initial sync not committed"
	start_proc sender standby_sender
}

db_pos() { psql_q 'SELECT pos FROM syncv3_position'; }

# takeover_from VICTIM SIGNAL: sends it (KILL or STOP), then waits for the
# other accumulator to hold the lock and commit; TOOK = ms from the signal.
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
}

# standby_restart NAME: starts a killed accumulator again (the dead one's
# log kept as NAME.log.N) and waits for it to stand by.
standby_restart() {
	local n=1
	while [ -e "$T/$1.log.$n" ]; do n=$((n + 1)); done
	mv "$T/$1.log" "$T/$1.log.$n"
	start_acc "$1"
	wait_for "grep -q 'standing by for the writer lock' $T/$1.log" 10 ||
	    fail "the restarted $1 is not standing by"
}

# standby_count: stops the flow, lets the client drain, and sets LOST and
# DUP (over both kinds) and ORDERED (1: each kind in the order sent), as
# the client saw them; STORED_DUP: rows stored twice.
standby_count() {
	local k lost dup
	touch "$T/send.stop"
	wait "${IT_PIDS[sender]}" || fail "sender failed"
	unset "IT_PIDS[sender]"
	wait_for "[ \$(sort -u $T/got | wc -l) -ge $(wc -l <"$T/sent") ]" 30 ||
	    log "client still missing messages"
	touch "$T/client.stop"
	for _ in $(seq 50); do is_running client || break; sleep 0.1; done
	stop_proc client
	LOST=0 DUP=0 ORDERED=1
	for k in R T; do
		grep "^$k " "$T/sent" >"$T/want.$k"
		grep "^$k " "$T/got" >"$T/got.$k" || true
		lost=$(comm -23 <(sort "$T/want.$k") <(sort -u "$T/got.$k") | wc -l)
		dup=$(($(wc -l <"$T/got.$k") - $(sort -u "$T/got.$k" | wc -l)))
		log "$k: sent $(wc -l <"$T/want.$k"), received $(wc -l <"$T/got.$k"), lost $lost, duplicated $dup"
		LOST=$((LOST + lost)) DUP=$((DUP + dup))
		cmp -s "$T/want.$k" "$T/got.$k" || ORDERED=0
	done
	STORED_DUP=$(psql_q "SELECT (SELECT count(*) - count(DISTINCT event_id) FROM syncv3_events) +
	    (SELECT count(*) - count(DISTINCT json) FROM syncv3_to_device WHERE json::json->>'type' = 'm.test')")
}
