#!/usr/bin/env bash
# it: serial
# A session or sliding sync connection evicted while one of its requests
# is under way (the per-device caps, SYNCV3_API_SESSIONS_PER_DEVICE and
# SYNCV3_SS_CONNS_PER_DEVICE, delete the least recently used one; seen as
# a 503 in CI): the request answers as for any unknown session, 400
# M_UNKNOWN_SYNC_SESSION (v3) or M_UNKNOWN_POS (sliding sync), never 5xx.
# The interleaving is forced: a psql transaction locks a table the
# request's next statement writes or reads, waits until that statement
# queues behind the lock, deletes the session or connection as the cap
# would, and commits; the statement then runs against a row that is gone.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_ss_ext.sh"

start_stack
tok=$(sim_login @alice:localhost A1)
room=$(sim rooms '{"creator":"@alice:localhost","name":"Evicted"}' | jq -r .room_id)
v3 "$tok" "" '{}' 10000 >/dev/null
assert_eq "$(last_status)" 200 "initial sync"
ss_register "$tok"

# evict_behind TABLE MODE SQL: a psql session (process "evictor") locks
# TABLE in MODE, waits until a statement queues behind the lock, runs SQL
# (the eviction) and commits; returns once the lock is held.
evict_behind() {
	start_proc evictor "$(pg_bindir)/psql" -h "$IT_PGHOST" -U postgres \
	    -d "${SYNCV3_DB##*dbname=}" -XAtq -v ON_ERROR_STOP=1 -c "BEGIN; LOCK TABLE $1 IN $2 MODE;
DO \$\$ BEGIN FOR i IN 1..300 LOOP EXIT WHEN EXISTS (SELECT 1 FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = '$1' AND NOT l.granted); PERFORM pg_sleep(0.05); END LOOP; END \$\$;
SELECT a.query FROM pg_locks l JOIN pg_class c ON c.oid = l.relation JOIN pg_stat_activity a ON a.pid = l.pid WHERE c.relname = '$1' AND NOT l.granted;
$3 RETURNING 'evicted'; COMMIT"
	wait_for "[ \"\$(psql_q \"SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = '$1' AND l.granted AND l.pid <> pg_backend_pid()\")\" -ge 1 ]" 10 ||
	    fail "no lock on $1"
}
# evicted_ok WHAT ERRCODE: the request came back with 400 ERRCODE, and
# the evictor found it waiting (else nothing was forced)
evicted_ok() {
	wait "${IT_PIDS[evictor]}" || fail "$1: evictor failed"
	unset "IT_PIDS[evictor]"
	assert_error 400 "$2" "$1"
}
# news: a message upstream, stored and heard of by the api (so the next
# sliding sync response has something to send, and saves)
news() {
	local n
	n=$(psql_q "SELECT count(*) FROM syncv3_events")
	sim_msg "$room" @alice:localhost "news"
	wait_for "[ \$(psql_q 'SELECT count(*) FROM syncv3_events') -gt $n ] && [ \$(curl -sf $API_URL/health | jq .pos) -ge \$(psql_q 'SELECT pos FROM syncv3_position') ]" 10 ||
	    fail "message not stored or not heard of"
}
sessions() { psql_q "SELECT count(*) FROM syncv3_sessions WHERE user_id = '@alice:localhost'"; }

# v3, a new session: evicted between its creation and remembering the
# rooms its room_list page sent (the FK on syncv3_session_rooms)
evict_behind syncv3_session_rooms EXCLUSIVE \
    "DELETE FROM syncv3_sessions WHERE user_id = '@alice:localhost'"
v3 "$tok" "" '{"room_list":{"limit":5}}' 0 >/dev/null
evicted_ok "v3 new session" M_UNKNOWN_SYNC_SESSION
assert_eq "$(sessions)" 0 "the session stays gone"

# v3, a loaded session: evicted between the load and remembering a room
# it streams for the first time
since=$(v3 "$tok" "" '{"room_list":{"limit":5}}' 0 | jq -r .next_batch)
assert_eq "$(last_status)" 200 "session for streaming"
room2=$(sim rooms '{"creator":"@alice:localhost","name":"Evicted 2"}' | jq -r .room_id)
wait_for "[ \"\$(psql_q \"SELECT count(*) FROM syncv3_user_rooms WHERE room_id = '$room2'\")\" = 1 ]" 10 ||
    fail "second room not stored"
evict_behind syncv3_session_rooms EXCLUSIVE \
    "DELETE FROM syncv3_sessions WHERE user_id = '@alice:localhost'"
v3 "$tok" "$since" '{}' 5000 >/dev/null
evicted_ok "v3 loaded session" M_UNKNOWN_SYNC_SESSION

# sliding sync with to_device on: evicted between the load and the
# extensions' statement, which records the to-device ack (the FK on
# syncv3_ss_to_device_acks)
body='{"conn_id":"c1","lists":{"l":{"ranges":[[0,9]],"timeline_limit":1}},"extensions":{"to_device":{"enabled":true},"receipts":{"enabled":true}}}'
pos=$(ss_pos "$(ss_ready "$tok" "$body")")
news
conn_gone="DELETE FROM syncv3_ss_conns WHERE user_id = '@alice:localhost' AND conn_id = 'c1'"
evict_behind syncv3_receipts 'ACCESS EXCLUSIVE' "$conn_gone"
ss "$tok" "$pos" "$body" 0 >/dev/null
evicted_ok "sliding sync, to_device on" M_UNKNOWN_POS

# without to_device: evicted before the save (its compare-and-set)
body='{"conn_id":"c1","lists":{"l":{"ranges":[[0,9]],"timeline_limit":1}},"extensions":{"receipts":{"enabled":true}}}'
pos=$(ss_pos "$(ss_ready "$tok" "$body")")
news
evict_behind syncv3_receipts 'ACCESS EXCLUSIVE' "$conn_gone"
ss "$tok" "$pos" "$body" 0 >/dev/null
evicted_ok "sliding sync, saved after eviction" M_UNKNOWN_POS

# the api carries on: a new session and a new connection work
v3 "$tok" "" '{"room_list":{"limit":5}}' 0 >/dev/null
assert_eq "$(last_status)" 200 "new session after the evictions"
ss_ready "$tok" "$body" >/dev/null
grep -q 'violates foreign key' "$T/api.log" && fail "a foreign key violation reached the api"
it_pass
