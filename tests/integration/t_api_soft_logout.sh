#!/usr/bin/env bash
# A token the homeserver expired rather than revoked. Synapse answers one
# past its valid_until_ms (refreshable tokens, session_lifetime) with 401
# M_UNKNOWN_TOKEN "soft_logout": true, an unknown or revoked one with
# "soft_logout": false, and Element Web keeps the session's data (its
# keys) only on true: it deletes them on false or on no field at all.
# The api answers as upstream did, on each path to a 401: a sliding sync
# and a v3 long poll woken by the poller's expiry, a later request (the
# token looked up in Postgres), a repeated one (cached), a token the api
# never saw (upstream /whoami); and the poller records it (poll_error).
# A new token for the device (what the client gets by refreshing) works
# and keeps the connection's pos. A locked user's token (Synapse: 401
# M_USER_LOCKED, "soft_logout": true, synapse/api/auth/internal.py) is
# answered so on the same paths, not as M_UNKNOWN_TOKEN: the client
# tells the lock apart from an expiry (logging in again will not help).
source "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_ss.sh"

export SYNCV3_POLL_TIMEOUT_MS=1000
start_stack
health() { curl -sf "$API_URL/health"; }
state() { psql_q "SELECT poll_state FROM syncv3_devices WHERE device_id = '$1'"; }
# expect_401 SOFT MESSAGE [ERRCODE]: the last answer was 401 ERRCODE
# (M_UNKNOWN_TOKEN), soft_logout SOFT
expect_401() {
	assert_eq "$(last_status)" 401 "$2: status"
	assert_jq "$(cat "$T/last_body")" '[.errcode, .soft_logout]' \
	    "[\"${3:-M_UNKNOWN_TOKEN}\",$1]" "$2"
}
# woken_by KIND TOKEN FROM REVOKE: a KIND (ss, v3) long poll from pos or
# since FROM is waiting when sim revoke REVOKE; its answer is the last one
woken_by() {
	local body=$list lp
	[ "$1" = v3 ] && body='{}'
	("$1" "$2" "$3" "$body" 30000 >/dev/null
	 cp "$T/last_status" "$T/lp.status"; cp "$T/last_body" "$T/lp.body") &
	lp=$!
	wait_for "[ \"\$(health | jq .waiters)\" = 1 ]" 15 ||
	    fail "$1 long poll not waiting"
	sim revoke "$4" >/dev/null
	wait $lp
	cp "$T/lp.status" "$T/last_status"; cp "$T/lp.body" "$T/last_body"
}
U=@alice:localhost
room=$(sim rooms "{\"creator\":\"$U\",\"name\":\"Soft\"}" | jq -r .room_id)
list='{"lists":{"a":{"ranges":[[0,9]],"timeline_limit":1}}}'

# --- sliding sync: a long poll woken by the expiry ----------------------
A=$(sim_login "$U" A1)
out=$(ss "$A" "" "$list" 10000)
assert_eq "$(last_status)" 200 "A1 first request"
pos=$(ss_pos "$out")
wait_for "[ \"\$(state A1)\" = polling ]" 15 || fail "A1 is not polled"
woken_by ss "$A" "$pos" "{\"access_token\":\"$A\",\"soft_logout\":true}"
wait_for "[ \"\$(state A1)\" = expired ]" 20 || fail "A1 never expired"
assert_eq "$(psql_q "SELECT poll_error FROM syncv3_devices WHERE device_id = 'A1'")" \
    "http 401 M_UNKNOWN_TOKEN soft_logout" "A1 poll_error"
expect_401 true "ss long poll woken by a soft expiry"
# later requests: looked up in Postgres, then from the cache
ss "$A" "$pos" "$list" 0 >/dev/null
expect_401 true "ss after a soft expiry"
ss "$A" "" "$list" 0 >/dev/null
expect_401 true "ss after a soft expiry, again"
v3 "$A" "" '{}' 0 >/dev/null
expect_401 true "v3 after a soft expiry"

# --- refreshing: a new token for the device keeps the connection --------
# (the old token's expiry notice still wakes its long poll: once)
A2=$(sim_login "$U" A1)
v3 "$A2" "" '{}' 0 >/dev/null
assert_eq "$(last_status)" 200 "new token"
w0=$(health | jq .wakeups)
out=$(ss "$A2" "$pos" "$list" 2000)
assert_eq "$(last_status)" 200 "new token, old pos, nothing new"
w=$(( $(health | jq .wakeups) - w0 ))
[ "$w" -le 3 ] || fail "new token, old pos: woken $w times"
pos=$(ss_pos "$out")
sim_msg "$room" "$U" after-refresh
out=$(ss "$A2" "$pos" "$list" 10000)
assert_eq "$(last_status)" 200 "new token, a message"
assert_jq "$out" "[.rooms[\"$room\"].timeline[-1].content.body]" '["after-refresh"]' \
    "new token: the room goes on"

# --- v3: a long poll woken by the expiry ---------------------------------
B=$(sim_login "$U" B1)
out=$(v3 "$B" "" '{}' 10000)
assert_eq "$(last_status)" 200 "B1 first request"
s=$(printf '%s' "$out" | jq -r .next_batch)
wait_for "[ \"\$(state B1)\" = polling ]" 15 || fail "B1 is not polled"
woken_by v3 "$B" "$s" "{\"user_id\":\"$U\",\"device_id\":\"B1\",\"soft_logout\":true}"
expect_401 true "v3 long poll woken by a soft expiry"
B2=$(sim_login "$U" B1)
sim_msg "$room" "$U" v3-after-refresh
out=$(v3 "$B2" "$s" '{}' 10000)
assert_eq "$(last_status)" 200 "v3: new token, old since"

# --- a hard revoke stays hard, and says so --------------------------------
C=$(sim_login "$U" C1)
ss "$C" "" "$list" 10000 >/dev/null
assert_eq "$(last_status)" 200 "C1 first request"
wait_for "[ \"\$(state C1)\" = polling ]" 15 || fail "C1 is not polled"
sim revoke "{\"access_token\":\"$C\"}" >/dev/null
wait_for "[ \"\$(state C1)\" = expired ]" 20 || fail "C1 never expired"
assert_eq "$(psql_q "SELECT poll_error FROM syncv3_devices WHERE device_id = 'C1'")" \
    "http 401 M_UNKNOWN_TOKEN" "C1 poll_error"
ss "$C" "" "$list" 0 >/dev/null
expect_401 false "ss after a revoke"

# --- tokens the api never saw: upstream /whoami says -----------------------
E=$(sim_login "$U" E1)
sim revoke "{\"access_token\":\"$E\",\"soft_logout\":true}" >/dev/null
ss "$E" "" "$list" 0 >/dev/null
expect_401 true "an expired token never seen (whoami)"
ss "$E" "" "$list" 0 >/dev/null
expect_401 true "the same, cached"
v3 syt_nobody_knows "" '{}' 0 >/dev/null
expect_401 false "an unknown token"

# --- a locked user: M_USER_LOCKED on every path ---------------------------
for kind in ss v3; do
	L=$(sim_login "$U" "L$kind")
	out=$("$kind" "$L" "" "$([ $kind = ss ] && echo "$list" || echo '{}')" 10000)
	assert_eq "$(last_status)" 200 "L$kind first request"
	from=$(printf '%s' "$out" | jq -r '.pos // .next_batch')
	wait_for "[ \"\$(state L$kind)\" = polling ]" 15 || fail "L$kind is not polled"
	woken_by "$kind" "$L" "$from" "{\"access_token\":\"$L\",\"locked\":true}"
	expect_401 true "$kind long poll woken by a lock" M_USER_LOCKED
done
assert_eq "$(psql_q "SELECT poll_error FROM syncv3_devices WHERE device_id = 'Lss'")" \
    "http 401 M_USER_LOCKED soft_logout" "Lss poll_error"
wait_for "[ \"\$(state Lss)\" = expired ]" 20 || fail "Lss never expired"
ss "$L" "" "$list" 0 >/dev/null
expect_401 true "ss after a lock" M_USER_LOCKED
ss "$L" "" "$list" 0 >/dev/null
expect_401 true "ss after a lock, again" M_USER_LOCKED
E=$(sim_login "$U" E2)
sim revoke "{\"access_token\":\"$E\",\"locked\":true}" >/dev/null
v3 "$E" "" '{}' 0 >/dev/null
expect_401 true "a locked token never seen (whoami)" M_USER_LOCKED
v3 "$E" "" '{}' 0 >/dev/null
expect_401 true "the same, cached" M_USER_LOCKED
it_pass
