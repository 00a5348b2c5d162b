#!/usr/bin/env bash
# Bounded work at the api (issue #9). Sessions per device are capped
# (SYNCV3_API_SESSIONS_PER_DEVICE): a new one expires the least recently
# used, which stops holding the device's to-device messages back (they go
# once every live session acked them). Postgres stopped: v3 requests get
# 503 M_UNKNOWN with Retry-After at once, /health answers 503, a waiting
# long poll is still answered; Postgres back: /health 200 again and the old
# session works (the pool reconnects by itself). Runs its own Postgres,
# which it stops and starts.
source "$(dirname "$0")/lib.sh"

unset IT_PGHOST	# a private cluster: this scenario stops it
export SYNCV3_API_SESSIONS_PER_DEVICE=3 SYNCV3_API_DB_TIMEOUT_MS=2000
start_stack
sync_url="$API_URL/_matrix/client/v3/sync"
ms() { echo $(( $(date +%s%N) / 1000000 )); }
nb() { printf '%s' "$1" | jq -r .next_batch; }
sid() { printf '%s' "$1" | sed 's/^s//; s/_.*//'; }
health_code() { curl -s -o /dev/null -w '%{http_code}' "$API_URL/health"; }
sessions() { psql_q "SELECT count(*) FROM syncv3_sessions WHERE device_id = 'A1'"; }
pending() { psql_q "SELECT count(*) FROM syncv3_to_device WHERE device_id = 'A1'"; }
tok=$(sim_login @alice:localhost A1)
v3 "$tok" "" '{}' 10000 >/dev/null
assert_eq "$(last_status)" 200 "initial sync"

# --- sessions per device -------------------------------------------------
sim to_device '{"user_id":"@alice:localhost","device_id":"A1","sender":"@bob:localhost","type":"m.x","content":{"n":1}}' >/dev/null
wait_for "[ \"\$(pending)\" = 1 ]" 15 || fail "to-device message not stored"
declare -A S
for k in a b c; do
	out=$(v3 "$tok" "" '{"to_device":{}}' 0)
	assert_jq "$out" '[.to_device.events[].content.n]' '[1]' "session $k gets the message"
	S[$k]=$(nb "$out")
done
assert_eq "$(sessions)" 3 "capped at 3 sessions"
# b and c acknowledge; a does not, so it holds the message
for k in b c; do
	S[$k]=$(nb "$(v3 "$tok" "${S[$k]}" '{}' 0)")
	assert_eq "$(last_status)" 200 "session $k acks"
done
assert_eq "$(pending)" 1 "a has not acked: message kept"
# a fourth session expires a, the least recently used
out=$(v3 "$tok" "" '{"to_device":{}}' 0)
assert_jq "$out" '[.to_device.events[].content.n]' '[1]' "session d gets the message"
S[d]=$(nb "$out")
assert_eq "$(sessions)" 3 "still 3 sessions"
assert_eq "$(psql_q "SELECT count(*) FROM syncv3_sessions WHERE session_id = $(sid "${S[a]}")")" 0 "a expired"
out=$(v3 "$tok" "${S[a]}" '{}' 0)
assert_eq "$(last_status)" 400 "expired session refused"
assert_jq "$out" .errcode '"M_UNKNOWN_SYNC_SESSION"' "expired session errcode"
assert_eq "$(pending)" 1 "d has not acked yet: kept"
S[d]=$(nb "$(v3 "$tok" "${S[d]}" '{}' 0)")
assert_eq "$(pending)" 0 "every live session acked: released"
# many more sessions stay within the cap
for i in $(seq 1 30); do v3 "$tok" "" '{}' 0 >/dev/null; done
assert_eq "$(last_status)" 200 "sessions beyond the cap are created"
[ "$(sessions)" -le 3 ] || fail "$(sessions) sessions for one device"


# --- Postgres away -------------------------------------------------------
s=$(nb "$(v3 "$tok" "" '{"to_device":{}}' 0)")
assert_eq "$(health_code)" 200 "healthy with Postgres"
v3 "$tok" "$s" '{}' 6000 >"$T/lp.out" &
lp=$!
wait_for "[ \"\$(curl -sf $API_URL/health | jq .waiters)\" = 1 ]" 10 || fail "long poll not waiting"
t0=$(ms)
it_pg_stop "$T/pg"
wait_for "[ \"\$(health_code)\" = 503 ]" 5 || fail "/health still $(health_code) with Postgres stopped"
assert_jq "$(curl -s "$API_URL/health")" .status '"db_unavailable"' "/health says why"
for since in "$s" ""; do
	t1=$(ms)
	code=$(curl -s -D "$T/h" -o "$T/b" -w '%{http_code}' --max-time 10 -X POST \
	    -H "Authorization: Bearer $tok" -d '{}' \
	    "$sync_url?timeout=0${since:+&since=$(jq -rn --arg s "$since" '$s|@uri')}")
	t2=$(ms)
	assert_eq "$code" 503 "v3 with Postgres stopped (since [$since])"
	assert_jq "$(cat "$T/b")" .errcode '"M_UNKNOWN"' "errcode with Postgres stopped"
	grep -qi '^retry-after: [0-9]' "$T/h" || fail "no Retry-After: $(cat "$T/h")"
	[ $((t2 - t1)) -lt 1000 ] || fail "503 took $((t2 - t1)) ms"
done
wait $lp
t3=$(ms)
lp_status=$(cat "$T/last_status")
[ "$lp_status" = 200 ] || [ "$lp_status" = 503 ] || fail "long poll answered $lp_status"
[ $((t3 - t0)) -lt 9000 ] || fail "long poll answered after $((t3 - t0)) ms"
log "long poll answered $lp_status after $((t3 - t0)) ms"

# --- Postgres back ----------------------------------------------------------
as_pg_user "$(pg_bindir)/pg_ctl" -D "$T/pg/data" -w -l "$T/pg/pg.log" \
    -o "-c listen_addresses='' -k $T/pg -c fsync=off -c max_connections=300" \
    start >/dev/null || fail "postgres did not restart"
wait_for "[ \"\$(health_code)\" = 200 ]" 10 || fail "/health $(health_code) after Postgres came back"
v3 "$tok" "$s" '{}' 0 >/dev/null
assert_eq "$(last_status)" 200 "the session survives the outage"
v3 "$tok" "" '{}' 0 >/dev/null
assert_eq "$(last_status)" 200 "new sessions again"
it_pass
