#!/usr/bin/env bash
# Access tokens at the api: missing (401 M_MISSING_TOKEN), unknown (401
# M_UNKNOWN_TOKEN), ?access_token= refused; whoami is cached (N requests,
# sequential and concurrent, cost one upstream /whoami); a token revoked
# upstream: the poller gets 401, the device's poll_state becomes 'expired'
# and the api answers 401 M_UNKNOWN_TOKEN, also to a request that was
# already waiting in a long poll; a new token for the same device works
# again and keeps the device's sessions (an old since stays valid).
source "$(dirname "$0")/lib.sh"

start_stack
alice=$(sim_login @alice:localhost A1)
room=$(sim rooms '{"creator":"@alice:localhost","name":"Auth"}' | jq -r .room_id)
sim "rooms/$room/join" '{"user_id":"@bob:localhost"}' >/dev/null
sync_url="$API_URL/_matrix/client/v3/sync"
ms() { echo $(( $(date +%s%N) / 1000000 )); }
health() { curl -sf "$API_URL/health"; }
req() { # STATUS ERRCODE CURL-ARGS...: one request, status and errcode checked
	local st=$1 ec=$2 code
	shift 2
	code=$(curl -s -o "$T/r" -w '%{http_code}' -X POST -d '{}' "$@")
	assert_eq "$code" "$st" "status for $*"
	assert_jq "$(cat "$T/r")" .errcode "\"$ec\"" "errcode for $*"
}

# boundary
req 401 M_MISSING_TOKEN "$sync_url"
req 401 M_MISSING_TOKEN -H "Authorization: Basic eDp5" "$sync_url"
req 401 M_MISSING_TOKEN -H "Authorization: Bearer " "$sync_url"
req 401 M_UNKNOWN_TOKEN -H "Authorization: Bearer syt_nobody_knows" "$sync_url"
req 401 M_MISSING_TOKEN "$sync_url?access_token=$alice"
req 401 M_MISSING_TOKEN -H "Authorization: Bearer $alice" "$sync_url?access_token=$alice"

# whoami cache: one upstream /whoami for many requests with one token
sim stats/reset >/dev/null
bob=$(sim_login @bob:localhost B1)
pids=()
for i in 1 2 3 4 5 6 7 8 9 10; do
	curl -s -o /dev/null -X POST -H "Authorization: Bearer $bob" -d '{}' "$sync_url?timeout=0" &
	pids+=($!)
done
wait "${pids[@]}"
for i in 1 2 3 4 5 6 7 8 9 10; do
	v3 "$bob" "" '{}' 0 >/dev/null
	assert_eq "$(last_status)" 200 "bob request $i"
done
assert_eq "$(sim_get stats | jq .whoami_requests)" 1 "20 requests, 1 upstream whoami"

# alice: a session, then a long poll on typing
out=$(v3 "$alice" "" "{\"typing\":{\"room_id\":\"$room\"}}" 10000)
assert_eq "$(last_status)" 200 "alice first request"
s=$(printf '%s' "$out" | jq -r .next_batch)
wait_for "[ \"\$(psql_q \"SELECT poll_state FROM syncv3_devices WHERE device_id = 'A1'\")\" = polling ]" 15 ||
    fail "alice's device is not polling"
t0=$(ms)
v3 "$alice" "$s" '{}' 30000 >"$T/lp.out" &
lp=$!
wait_for "[ \"\$(health | jq .waiters)\" = 1 ]" 15 || fail "long poll not waiting"

# revoke upstream; a to-device message makes the poller's held request
# return, so its next poll meets the 401 (nothing here wakes a typing poll)
sim revoke "{\"access_token\":\"$alice\"}" >/dev/null
sim to_device '{"user_id":"@alice:localhost","device_id":"A1","sender":"@bob:localhost","type":"m.x","content":{}}' >/dev/null
wait_for "[ \"\$(psql_q \"SELECT poll_state FROM syncv3_devices WHERE device_id = 'A1'\")\" = expired ]" 20 ||
    fail "poll_state never became expired"
wait $lp
t1=$(ms)
assert_eq "$(cat "$T/last_status")" 401 "waiting long poll answered 401"
assert_jq "$(cat "$T/lp.out")" .errcode '"M_UNKNOWN_TOKEN"' "waiting long poll errcode"
[ $((t1 - t0)) -lt 25000 ] || fail "long poll ran to its timeout ($((t1 - t0)) ms)"
assert_eq "$(health | jq .waiters)" 0 "no waiter left"
# later requests with the revoked token, with or without since
out=$(v3 "$alice" "$s" '{}' 0)
assert_eq "$(last_status)" 401 "revoked token, old since"
assert_jq "$out" .errcode '"M_UNKNOWN_TOKEN"' "revoked token errcode"
out=$(v3 "$alice" "" '{}' 0)
assert_eq "$(last_status)" 401 "revoked token, new session"

# a new token for the same device: works, and the old session survives
alice2=$(sim_login @alice:localhost A1)
out=$(v3 "$alice2" "$s" '{}' 10000)
assert_eq "$(last_status)" 200 "new token, old since"
s=$(printf '%s' "$out" | jq -r .next_batch)
wait_for "[ \"\$(psql_q \"SELECT poll_state FROM syncv3_devices WHERE device_id = 'A1'\")\" = polling ]" 20 ||
    fail "the device is not polled again"
v3 "$alice2" "$s" '{}' 20000 >"$T/lp2.out" &
lp=$!
wait_for "[ \"\$(health | jq .waiters)\" = 1 ]" 15 || fail "new token: long poll not waiting"
sim "rooms/$room/typing" '{"user_id":"@bob:localhost","user_ids":["@bob:localhost"]}' >/dev/null
wait $lp
assert_jq "$(cat "$T/lp2.out")" '.typing.user_ids' '["@bob:localhost"]' "new token: sticky typing flows again"
assert_eq "$(psql_q "SELECT count(*) FROM syncv3_devices WHERE user_id = '@alice:localhost'")" 1 "one device row"
out=$(v3 "$alice" "" '{}' 0)
assert_eq "$(last_status)" 401 "the revoked token stays refused"
it_pass
