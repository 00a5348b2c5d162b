#!/usr/bin/env bash
# it: serial
# t_api_replica (issue #15, item 3): an api with SYNCV3_DB_READ on a real
# streaming replica of the test's primary (pg_basebackup -R, both on
# loopback unix sockets). Its to_device and room_member reads are served
# by the replica once it has replayed the commit the last notice
# announced (the notice's LSN), so a client sees every message at once;
# while the replica's replay is paused, those reads wait at most
# SYNCV3_DB_READ_WAIT_MS and then run on the primary, so the client still
# sees the new messages; writes (sessions, devices, to-device deletes)
# always go to the primary (the replica refuses them); a replica that
# stops costs nothing but its speed.
source "$(dirname "$0")/lib.sh"

replica_stack
rq() { "$(pg_bindir)/psql" "$IT_REPLICA_DB" -XAtq -v ON_ERROR_STOP=1 -c "$1"; }
wait_for '[ "$(rq "SELECT count(*) FROM syncv3_schema_migrations")" -ge 1 ]' 20 ||
    fail "the replica does not replay"
assert_eq "$(rq 'SELECT pg_is_in_recovery()')" t "the replica is a standby"
start_poller poller
SYNCV3_DB_READ=$IT_REPLICA_DB SYNCV3_DB_READ_WAIT_MS=100 start_api

sim users '{"localpart":"alice"}' >/dev/null
sim users '{"localpart":"bob"}' >/dev/null
ROOM=$(sim rooms '{"creator":"@bob:localhost","name":"replica"}' | jq -r .room_id)
sim "rooms/$ROOM/join" '{"user_id":"@alice:localhost"}' >/dev/null
TOK=$(sim_login @alice:localhost A1)
td() { sim to_device "{\"sender\":\"@bob:localhost\",\"type\":\"m.test\",\"user_id\":\"@alice:localhost\",\"device_id\":\"A1\",\"content\":{\"n\":$1}}" >/dev/null; }
BODY="{\"to_device\":{},\"room_member\":{\"room_id\":\"$ROOM\"}}"
out=$(v3 "$TOK" "" "$BODY" 10000)
assert_eq "$(last_status)" 200 "first sync"
since=$(printf '%s' "$out" | jq -r .next_batch)
# reads KIND: how many replica-eligible reads went to KIND (replica or
# primary) or waited for the replay (waited), from /health
reads() { curl -sf "$API_URL/health" | jq ".reads_$1"; }

# sync_until N: long-polls until to-device message N arrives; prints the ms
sync_until() {
	local t0 got
	t0=$(now_ms)
	for _ in $(seq 20); do
		out=$(v3 "$TOK" "$since" '{}' 5000)
		[ "$(last_status)" = 200 ] || fail "sync answered $(last_status): $out"
		since=$(printf '%s' "$out" | jq -r .next_batch)
		got=$(printf '%s' "$out" | jq -r '[.to_device.events[]?.content.n] | max // 0')
		[ "$got" -ge "$1" ] && { echo $(($(now_ms) - t0)); return 0; }
	done
	return 1
}

# 1. Replaying: the replica serves the reads and the client misses nothing.
r0=$(reads replica) p0=$(reads primary)
for n in 1 2 3 4 5; do
	td "$n"
	sync_until "$n" >/dev/null || fail "message $n never arrived (replica replaying)"
done
r1=$(reads replica) p1=$(reads primary)
log "5 messages, replica replaying: $((r1 - r0)) reads on the replica, $((p1 - p0)) on the primary, $(reads waited) waited in all"
[ $((r1 - r0)) -ge 10 ] || fail "the replica served $((r1 - r0)) reads, expected both streams' of every round"

# 2. Replay paused: new messages still arrive (the reads fall back to the
# primary after the wait), and the member who joins meanwhile is seen.
rq 'SELECT pg_wal_replay_pause()' >/dev/null
wait_for '[ "$(rq "SELECT pg_get_wal_replay_pause_state()")" = paused ]' 10 || fail "replay not paused"
p0=$(reads primary)
for n in 6 7; do
	td "$n"
	ms=$(sync_until "$n") || fail "message $n never arrived with the replica paused"
	log "message $n with the replica paused: $ms ms"
done
[ "$(reads primary)" -gt "$p0" ] || fail "no read fell back to the primary with the replica paused"
sim users '{"localpart":"carol"}' >/dev/null
sim "rooms/$ROOM/join" '{"user_id":"@carol:localhost"}' >/dev/null
found=""
for _ in $(seq 20); do
	out=$(v3 "$TOK" "$since" '{}' 5000)
	since=$(printf '%s' "$out" | jq -r .next_batch)
	printf '%s' "$out" | jq -e '.room_member.events[]? | select(.state_key == "@carol:localhost")' >/dev/null &&
	    { found=1; break; }
done
[ -n "$found" ] || fail "carol's join never arrived with the replica paused"
assert_eq "$(rq "SELECT count(*) FROM syncv3_to_device WHERE json::json->'content'->>'n' = '7'")" 0 \
    "the paused replica has not replayed message 7"
rq 'SELECT pg_wal_replay_resume()' >/dev/null

# 3. Writes went to the primary: a new session, a new device.
tok2=$(sim_login @alice:localhost A2)
out=$(v3 "$tok2" "" '{"to_device":{}}' 0)
assert_eq "$(last_status)" 200 "a new device's first sync (writes on the primary)"
r0=$(reads replica)
td 8
sync_until 8 >/dev/null || fail "message 8 never arrived after the resume"
[ "$(reads replica)" -gt "$r0" ] || fail "the resumed replica serves no reads"

# 4. The replica stops: the api answers from the primary.
as_pg_user "$(pg_bindir)/pg_ctl" -D "$T/replica/data" -m immediate stop >/dev/null 2>&1
td 9
sync_until 9 >/dev/null || fail "message 9 never arrived with the replica down"
stop_proc api
san=$(it_sanitizer_logs)
[ -z "$san" ] || fail "sanitizer reports in: $(echo $san)"
it_pass
