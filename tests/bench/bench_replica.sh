#!/usr/bin/env bash
# bench_replica.sh (issue #15, item 3): api requests/s served with one
# primary versus a primary and a streaming replica (SYNCV3_DB_READ), both
# clusters on this machine (loopback unix sockets; pg_basebackup -R of the
# bench's primary). One user in a room of BENCH_MEMBERS (300) members;
# each request opens a session and asks for the first room_member page
# (limit 50) and to_device: a session insert on the primary and the
# member page, the heavy read, on the replica when there is one.
# BENCH_REQUESTS (2000) requests, BENCH_CONCURRENCY (16) at a time (curl
# --parallel), for each setup in turn, BENCH_ROUNDS (2) times. Prints
# requests/s per run and where the replica-eligible reads went.
# usage: BIN=build/bin tests/bench/bench_replica.sh
set -u
source "$(dirname "$0")/../integration/lib.sh"
M=${BENCH_MEMBERS:-300}
N=${BENCH_REQUESTS:-2000}
C=${BENCH_CONCURRENCY:-16}
ROUNDS=${BENCH_ROUNDS:-2}
export SYNCV3_LOG_LEVEL=warn

replica_stack
start_poller poller
out=$(sim scenario "{\"users\":1,\"rooms_per_user\":1,\"members_per_room\":$M,\"messages_per_room\":1,\"prefix\":\"rb\"}")
TOK=$(printf '%s' "$out" | jq -r '.users[0].access_token')
ROOM=$(printf '%s' "$out" | jq -r '.rooms[0] | if type == "object" then .room_id else . end')
BODY="{\"room_member\":{\"room_id\":\"$ROOM\",\"limit\":50},\"to_device\":{}}"

# run LABEL: N requests against the api running now; prints one line
run() {
	local cfg=$T/curl.cfg t0 t1 ok one
	one=$(printf 'url = "%s/_matrix/client/v3/sync?timeout=0"\nrequest = "POST"\nheader = "Authorization: Bearer %s"\nheader = "Content-Type: application/json"\ndata = %s\noutput = "/dev/null"\nwrite-out = "%%{http_code}\\n"\nnext' \
	    "$API_URL" "$TOK" "$(jq -Rn --arg b "$BODY" '$b')")
	for _ in $(seq "$N"); do printf '%s\n' "$one"; done >"$cfg"
	t0=$(now_ms)
	curl -s --no-progress-meter --parallel --parallel-max "$C" -K "$cfg" >"$T/codes"
	t1=$(now_ms)
	ok=$(grep -c '^200$' "$T/codes")
	h=$(curl -sf "$API_URL/health")
	log "$1: $ok of $N answered 200 in $((t1 - t0)) ms: $(awk -v n="$ok" -v ms=$((t1 - t0)) 'BEGIN { printf "%.0f", n * 1000 / ms }') requests/s (reads on the replica $(printf '%s' "$h" | jq .reads_replica), fell back to the primary $(printf '%s' "$h" | jq .reads_primary))"
}
# api_with primary|replica: (re)starts the api, reads on the replica or
# not, and warms it up
api_with() {
	[ -n "${IT_PIDS[api]:-}" ] && stop_proc api
	if [ "$1" = replica ]; then
		SYNCV3_DB_READ=$IT_REPLICA_DB start_api
	else
		start_api
	fi
	v3 "$TOK" "" "$BODY" 60000 >/dev/null
	[ "$(last_status)" = 200 ] || fail "first sync: $(last_status)"
}
export SYNCV3_API_SESSIONS_PER_DEVICE=4
api_with primary
rq() { "$(pg_bindir)/psql" "$IT_REPLICA_DB" -XAtq -c "$1"; }
lsn=$(psql_q "SELECT pg_current_wal_insert_lsn() - '0/0'")
wait_for "[ \"\$(rq \"SELECT pg_last_wal_replay_lsn() - '0/0' >= $lsn\")\" = t ]" 60 ||
    fail "the replica did not catch up"
log "$M members, $N requests, $C at a time"
for r in $(seq "$ROUNDS"); do
	api_with primary
	run "primary only ($r)"
	api_with replica
	run "primary + replica ($r)"
done
stop_proc api
it_pass
