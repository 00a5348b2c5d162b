#!/usr/bin/env bash
# The admin API (issue #14 item 3): off without SYNCV3_ADMIN_TOKEN (404);
# with it, every path refuses a request without the token (401), with
# another token, a prefix of it or the token in the query string (401/403),
# and a refused action changes nothing. Then devices (poller, lease, last
# successful poll, since age, sessions and sliding sync connections;
# pages), one device's sessions and connections, pollers with their
# device counts, and the actions: resync (the device's next poll upstream
# has no since), drop a user's sessions and connections (their since
# tokens and pos stop working), forget a device (gone from Postgres, its
# poller stops polling it, its token registers it again). No answer ever holds
# an access token or a token hash. deploy/syncv3ctl admin drives it too.
source "$(dirname "$0")/lib.sh"

it_setup
start_simhs
start_accumulator
export SYNCV3_LEASE_SECS=3 # heartbeats each second: a forgotten device goes fast
start_poller poller
unset SYNCV3_ADMIN_TOKEN
start_api
ADM="$API_URL/_syncv3/admin/v1"
ADMIN_TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')

# adm METHOD PATH [CURL ARGS...]: body to stdout, status in $T/adm_status
adm() {
	local m=$1 p=$2
	shift 2
	curl -sS -o "$T/adm_body" -w '%{http_code}' -X "$m" "$@" "$ADM/$p" >"$T/adm_status"
	cat "$T/adm_body"
}
adm_ok() { adm "$1" "$2" -H "Authorization: Bearer $ADMIN_TOKEN"; }
st() { cat "$T/adm_status"; }

out=$(adm GET devices -H "Authorization: Bearer $ADMIN_TOKEN")
assert_eq "$(st)" 404 "admin API off without SYNCV3_ADMIN_TOKEN"
assert_jq "$out" .errcode '"M_UNRECOGNIZED"' "off: errcode"

stop_proc api
export SYNCV3_ADMIN_TOKEN=$ADMIN_TOKEN
start_api
ADM="$API_URL/_syncv3/admin/v1"

tok=$(sim_login @alice:localhost A1)
btok=$(sim_login @bob:localhost B1)
sim rooms '{"creator":"@alice:localhost","name":"Admin"}' >/dev/null
first=$(v3 "$tok" "" '{"to_device":{}}' 10000)
assert_eq "$(last_status)" 200 "alice syncs"
asince=$(jq -r .next_batch <<<"$first")
v3 "$btok" "" '{}' 10000 >/dev/null
assert_eq "$(last_status)" 200 "bob syncs"
wait_for "[ \$(psql_q \"SELECT count(*) FROM syncv3_devices WHERE last_ok IS NOT NULL\") = 2 ]" 10 ||
    fail "no successful poll stamped"
# one sliding sync connection each
SS="$API_URL/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"
# ss TOKEN [POS]: a sliding sync request; body to stdout, status in $T/ss_status
ss() {
	curl -sS -o "$T/ss_body" -w '%{http_code}' -X POST -H "Authorization: Bearer $1" \
	    -H 'Content-Type: application/json' \
	    -d '{"lists":{"all":{"ranges":[[0,9]],"timeline_limit":1}}}' \
	    "$SS?timeout=0${2:+&pos=$2}" >"$T/ss_status"
	cat "$T/ss_body"
}
apos=$(ss "$tok" | jq -r .pos)
assert_eq "$(cat "$T/ss_status")" 200 "alice's sliding sync"
ss "$btok" >/dev/null
assert_eq "$(cat "$T/ss_status")" 200 "bob's sliding sync"

# refusals: every path, every way of getting the token wrong
U=%40alice%3Alocalhost
for route in "GET devices" "GET pollers" "GET devices/$U/A1" \
    "POST devices/$U/A1/forget" "POST devices/$U/A1/resync" \
    "POST users/$U/drop_sessions" "GET nothing/here"; do
	read -r m p <<<"$route"
	out=$(adm "$m" "$p")
	assert_eq "$(st)" 401 "$route without a token"
	assert_jq "$out" .errcode '"M_MISSING_TOKEN"' "$route without a token"
	out=$(adm "$m" "$p" -H "Authorization: Bearer wrong$ADMIN_TOKEN")
	assert_eq "$(st)" 403 "$route with a wrong token"
	assert_jq "$out" .errcode '"M_FORBIDDEN"' "$route with a wrong token"
	adm "$m" "$p" -H "Authorization: Bearer ${ADMIN_TOKEN:0:20}" >/dev/null
	assert_eq "$(st)" 403 "$route with a prefix of the token"
	adm "$m" "$p" -H "Authorization: Bearer $tok" >/dev/null
	assert_eq "$(st)" 403 "$route with a user's access token"
	adm "$m" "$p?access_token=$ADMIN_TOKEN" >/dev/null
	assert_eq "$(st)" 401 "$route with the token in the query string"
done
assert_eq "$(psql_q "SELECT count(*) FROM syncv3_devices")" 2 "refused actions changed nothing"
assert_eq "$(psql_q "SELECT count(*) FROM syncv3_sessions WHERE user_id = '@alice:localhost'")" 1 \
    "refused drop kept the sessions"

# the reads
out=$(adm_ok GET devices)
assert_eq "$(st)" 200 "devices"
assert_jq "$out" '[.devices[] | [.user_id, .device_id]]' \
    '[["@alice:localhost","A1"],["@bob:localhost","B1"]]' "both devices, in order"
assert_jq "$out" '[.devices[] | .poller]' '["poller","poller"]' "held by the poller"
assert_jq "$out" '[.devices[] | .poller_alive and .lease_expires_in_ms > 0 and
    .lease_expires_in_ms <= 3000 and .has_since and .is_initial_done and
    .since_age_ms >= 0 and .last_ok_poll_ts > 0 and .last_error == ""]' \
    '[true,true]' "lease, last successful poll, since age"
assert_jq "$out" '[.devices[0].sessions, .devices[0].connections]' '[1,1]' \
    "alice has one session and one connection"
assert_jq "$out" '.devices[0] | keys' \
    '["connections","created_ts","device_id","has_since","is_initial_done","last_error","last_ok_poll_ts","last_seen_ts","lease_expires_in_ms","poll_state","poll_state_ts","poller","poller_alive","sessions","since_age_ms","user_id"]' \
    "the documented fields, nothing else"
out=$(adm_ok GET "devices?limit=1")
assert_jq "$out" '[.devices[].device_id, .next_after_user, .next_after_device]' \
    '["A1","@alice:localhost","A1"]' "page 1"
out=$(adm_ok GET "devices?limit=1&after_user=$U&after_device=A1")
assert_jq "$out" '[.devices[].device_id]' '["B1"]' "page 2"
out=$(adm_ok GET "devices?user_id=%40bob%3Alocalhost")
assert_jq "$out" '[.devices[].user_id]' '["@bob:localhost"]' "one user's devices"
out=$(adm_ok GET "devices/$U/A1")
assert_eq "$(st)" 200 "one device"
assert_jq "$out" '[.device_id, (.session_list | length), (.session_list[0].session_id > 0)]' \
    '["A1",1,true]' "its sessions"
assert_jq "$out" '[.connection_list[] | [.conn > 0, .dialect, .rooms, .last_used_ts > 0]]' \
    '[[true,"synapse",1,true]]' "its sliding sync connection"
out=$(adm_ok GET pollers)
assert_jq "$out" '[.pollers[] | [.id, .alive, .devices, .expires_in_ms > 0]]' \
    '[["poller",true,2,true]]' "the poller alive with its two devices"
# never a token or its hash, in any answer
hash=$(printf '%s' "$tok" | sha256sum | cut -d' ' -f1)
bhash=$(printf '%s' "$btok" | sha256sum | cut -d' ' -f1)
for p in devices "devices/$U/A1" "devices/%40bob%3Alocalhost/B1" pollers; do
	adm_ok GET "$p" >/dev/null
	for s in "$tok" "$btok" "$hash" "$bhash" "${hash:0:16}" "${bhash:0:16}"; do
		grep -qF "$s" "$T/adm_body" && fail "$p shows a token or its hash"
	done
done

# bad requests: Matrix errors (method, path, status, errcode)
while read -r m p code err; do
	adm_ok "$m" "$p" >/dev/null
	assert_eq "$(st)" "$code" "$m $p"
	assert_jq "$(cat "$T/adm_body")" .errcode "\"$err\"" "$m $p errcode"
done <<EOF
GET devices?limit=0 400 M_INVALID_PARAM
GET devices?limit=x 400 M_INVALID_PARAM
GET devices?limit=1001 400 M_INVALID_PARAM
POST devices 405 M_UNRECOGNIZED
POST pollers 405 M_UNRECOGNIZED
GET devices/$U/A1/forget 405 M_UNRECOGNIZED
GET users/$U/drop_sessions 405 M_UNRECOGNIZED
GET devices/$U 404 M_UNRECOGNIZED
GET devices/$U/A1/nope 404 M_UNRECOGNIZED
GET devices/$U/A1/forget/x 404 M_UNRECOGNIZED
GET devices/$U/A1/ 404 M_UNRECOGNIZED
GET devices//A1 404 M_UNRECOGNIZED
GET devices/%00/A1 404 M_UNRECOGNIZED
GET devices/%0a%40x/A1 404 M_UNRECOGNIZED
GET devices/$U/A%1b1 404 M_UNRECOGNIZED
GET users/$U 404 M_UNRECOGNIZED
GET nothing 404 M_UNRECOGNIZED
GET devices/$U/NOPE 404 M_NOT_FOUND
POST devices/$U/NOPE/forget 404 M_NOT_FOUND
POST devices/$U/NOPE/resync 404 M_NOT_FOUND
EOF

# resync: alice's next poll upstream is an initial sync
n0=$(sim_get "sync_log?access_token=$tok" | jq .total)
out=$(adm_ok POST "devices/$U/A1/resync")
assert_eq "$(st)" 200 "resync"
# the poller's long poll ends with this message; its body is refused and
# the poller re-reads the since, now empty
sim to_device '{"user_id":"@alice:localhost","device_id":"A1","sender":"@bob:localhost","type":"m.x","content":{"n":1}}' >/dev/null
wait_for "[ \"\$(sim_get 'sync_log?access_token=$tok' | jq --argjson n $n0 '[.requests[-(.total - \$n):][] | select(.query | test(\"since=\") | not)] | length')\" -ge 1 ]" 20 ||
    fail "no initial sync upstream after resync"
wait_for "[ \"\$(psql_q \"SELECT since <> '' FROM syncv3_devices WHERE device_id = 'A1'\")\" = t ]" 20 ||
    fail "the initial sync was not stored"
out=$(v3 "$tok" "$asince" '{"to_device":{}}' 5000)
assert_eq "$(last_status)" 200 "alice still syncs after the resync"
assert_jq "$out" '[.to_device.events[].content.n]' '[1]' "and gets her message"
asince=$(jq -r .next_batch <<<"$out")

# drop alice's sessions: her since token no longer works
out=$(adm_ok POST "users/$U/drop_sessions")
assert_eq "$(st)" 200 "drop sessions"
assert_jq "$out" '[.sessions, .connections]' '[1,1]' "one session and one connection dropped"
assert_eq "$(psql_q "SELECT count(*) FROM syncv3_sessions WHERE user_id = '@alice:localhost'")" 0 \
    "no session left"
assert_eq "$(psql_q "SELECT count(*) FROM syncv3_ss_conns WHERE user_id = '@alice:localhost'")" 0 \
    "no connection left"
out=$(ss "$tok" "$apos")
assert_eq "$(cat "$T/ss_status")" 400 "a dropped connection's pos"
assert_jq "$out" .errcode '"M_UNKNOWN_POS"' "a dropped connection's pos errcode"
out=$(v3 "$tok" "$asince" '{}' 0)
[ "$(last_status)" != 200 ] || fail "a dropped session's since still works"
jq -e '.errcode | strings' <<<"$out" >/dev/null || fail "no Matrix error: $out"

# forget bob: gone, no longer polled, his token registers him again
out=$(adm_ok POST "devices/%40bob%3Alocalhost/B1/forget")
assert_eq "$(st)" 200 "forget"
assert_jq "$out" '[.devices, .sessions, .connections]' '[1,1,1]' "the device, its session and connection"
assert_eq "$(psql_q "SELECT count(*) FROM syncv3_ss_conns WHERE user_id = '@bob:localhost'")" 0 "connection gone"
assert_eq "$(psql_q "SELECT count(*) FROM syncv3_devices WHERE user_id = '@bob:localhost'")" 0 "device row gone"
assert_eq "$(psql_q "SELECT count(*) FROM syncv3_leases WHERE user_id = '@bob:localhost'")" 0 "lease gone"
sleep 2 # the poller's next heartbeat (every second here) drops it
c1=$(sim_get stats | jq '.sync_requests["@bob:localhost|B1"] // 0')
[ "$c1" -gt 0 ] || fail "no count of bob's polls in simhs's stats"
sim "rooms" '{"creator":"@bob:localhost","name":"Wake bob"}' >/dev/null
sleep 2
c2=$(sim_get stats | jq '.sync_requests["@bob:localhost|B1"] // 0')
assert_eq "$c2" "$c1" "the forgotten device is not polled"
out=$(adm_ok GET pollers)
assert_jq "$out" '[.pollers[] | .devices]' '[1]' "the poller holds one device now"
v3 "$btok" "" '{}' 10000 >/dev/null
assert_eq "$(last_status)" 200 "bob's token brings him back"
assert_eq "$(psql_q "SELECT count(*) FROM syncv3_devices WHERE user_id = '@bob:localhost'")" 1 "registered again"

# deploy/syncv3ctl admin
export SYNCV3_ADMIN_URL=$API_URL
out=$("$IT_ROOT/deploy/syncv3ctl" admin devices @alice:localhost) || fail "syncv3ctl admin devices"
assert_jq "$out" '[.devices[].device_id]' '["A1"]' "syncv3ctl admin devices USER"
out=$("$IT_ROOT/deploy/syncv3ctl" admin pollers) || fail "syncv3ctl admin pollers"
assert_jq "$out" '[.pollers[].id]' '["poller"]' "syncv3ctl admin pollers"
out=$("$IT_ROOT/deploy/syncv3ctl" admin device @alice:localhost A1) || fail "syncv3ctl admin device"
assert_jq "$out" .device_id '"A1"' "syncv3ctl admin device"
out=$("$IT_ROOT/deploy/syncv3ctl" admin resync @alice:localhost A1) || fail "syncv3ctl admin resync"
assert_jq "$out" .resync true "syncv3ctl admin resync"
SYNCV3_ADMIN_TOKEN=wrong "$IT_ROOT/deploy/syncv3ctl" admin pollers >/dev/null 2>&1 &&
    fail "syncv3ctl admin with a wrong token succeeded"
it_pass
