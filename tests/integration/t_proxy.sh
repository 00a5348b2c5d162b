#!/usr/bin/env bash
# Pass-through (issue #12): every method with and without a body reaches
# the homeserver unchanged (method, path, query, end-to-end headers, body)
# and its answer comes back (status, headers, body); hop-by-hop headers
# stay behind both ways and X-Forwarded-* are added; chunked bodies both
# ways; /versions gains org.matrix.simplified_msc3575 with the rest
# unchanged; GET v3 and r0 /sync pass, POST v3 /sync stays ours; CORS on
# every answer and OPTIONS pre-flights answered; the MSC4186 paths are
# not passed; /_synapse/client/ passes and /_synapse/admin/ does not; login/pushrules/capabilities/send through the api; a
# logout answered 200 upstream expires the device at once (poller stops,
# api answers 401 to its token) and no token or body reaches the log.
source "$(dirname "$0")/lib.sh"

export SYNCV3_LEASE_SECS=3 # heartbeat every second
start_stack
X="$API_URL/_matrix/client/unstable/org.simhs"
D="$SIMHS_URL/_matrix/client/unstable/org.simhs"
body_of() { sed -n '1,/^\r$/d;p' "$1"; }

# every method, with and without a body
printf 'hello body' >"$T/small"
for m in GET POST PUT DELETE PATCH; do
	out=$(curl -sS -X "$m" "$X/echo?a=1&b=%2F")
	assert_jq "$out" '[.method,.uri,.body_len]' "[\"$m\",\"/_matrix/client/unstable/org.simhs/echo?a=1&b=%2F\",0]" "$m without body"
	out=$(curl -sS -X "$m" -H 'Content-Type: text/plain' --data-binary @"$T/small" "$X/echo")
	assert_jq "$out" '[.method,.body_len,.body_sha256]' \
	    "[\"$m\",10,\"$(sha256sum <"$T/small" | cut -d' ' -f1)\"]" "$m with body"
	assert_jq "$out" '.headers["content-type"]' '"text/plain"' "$m content-type passed"
done
code=$(curl -sS -o /dev/null -w '%{http_code}' -I "$X/echo")
assert_eq "$code" 200 "HEAD passes"

# request headers: end-to-end pass, hop-by-hop and Connection-named do not
out=$(curl -sS -H 'Connection: keep-alive, X-Drop-Me' -H 'X-Drop-Me: 1' \
    -H 'Keep-Alive: timeout=5' -H 'TE: trailers' -H 'Proxy-Authorization: Basic eDp5' \
    -H 'Upgrade: h2c' -H 'X-Keep-Me: 2' -H 'Authorization: Bearer abc' \
    -H 'X-Forwarded-For: 192.0.2.7' -H 'Host: example.org' "$X/echo")
assert_jq "$out" '.headers | [has("x-drop-me"),has("keep-alive"),has("te"),has("proxy-authorization"),has("upgrade")]' \
    '[false,false,false,false,false]' "hop-by-hop request headers dropped"
assert_jq "$out" '.headers | [.["x-keep-me"],.authorization,.["x-forwarded-for"],.["x-forwarded-proto"],.["x-forwarded-host"]]' \
    '["2","Bearer abc","127.0.0.1","http","example.org"]' "end-to-end and forwarded headers (the client's XFF replaced: t_sec_forwarded.sh)"
# response headers
curl -sS -D "$T/h" -o /dev/null "$X/hop"
grep -qi '^x-end-to-end: must-pass' "$T/h" || fail "end-to-end response header lost: $(cat "$T/h")"
grep -qi '^cache-control: no-store' "$T/h" || fail "cache-control lost"
grep -qi '^set-cookie: a=1' "$T/h" || fail "set-cookie lost"
for h in x-hop-named keep-alive proxy-authenticate upgrade trailer; do
	grep -qi "^$h:" "$T/h" && fail "hop-by-hop response header $h passed: $(cat "$T/h")"
done

# chunked both ways
out=$(seq 1 20000 | curl -sS -H 'Transfer-Encoding: chunked' --data-binary @- "$X/echo")
assert_jq "$out" '[.body_len,.body_sha256]' "[$(seq 1 20000 | wc -c),\"$(seq 1 20000 | sha256sum | cut -d' ' -f1)\"]" "chunked upload"
assert_eq "$(curl -sS "$X/chunked?n=500" | sha256sum)" "$(curl -sS "$D/chunked?n=500" | sha256sum)" "chunked download"
# a streamed body keeps its framing upstream: a Content-Length body goes
# with that length, a chunked one chunked; headers its Connection names
# still stop here (evhttp is given "Connection: close" instead)
head -c 3000000 /dev/urandom >"$T/mid"
sum=$(sha256sum <"$T/mid" | cut -d' ' -f1)
out=$(curl -sS -H 'Connection: X-Drop-Me' -H 'X-Drop-Me: 1' --data-binary @"$T/mid" "$X/echo")
assert_jq "$out" '[.headers["content-length"],.headers["transfer-encoding"],.headers["x-drop-me"],.body_len,.body_sha256]' \
    "[\"3000000\",null,null,3000000,\"$sum\"]" "Content-Length body streamed"
out=$(curl -sS -X PUT -H 'Transfer-Encoding: chunked' --data-binary @"$T/mid" "$X/echo")
assert_jq "$out" '[.headers["content-length"],.headers["transfer-encoding"],.body_len,.body_sha256]' \
    "[null,\"chunked\",3000000,\"$sum\"]" "chunked body streamed"

# statuses and errors come back as they are
for c in 400 404 500 503; do
	code=$(curl -s -o "$T/r" -w '%{http_code}' "$X/status/$c")
	assert_eq "$code" "$c" "status $c passed"
	assert_jq "$(cat "$T/r")" .errcode '"M_UNKNOWN"' "status $c body"
done
code=$(curl -s -o "$T/r" -w '%{http_code}' "$API_URL/_matrix/client/v3/nothing")
assert_eq "$code" 404 "upstream 404 for an unknown path"
code=$(curl -s -o "$T/r" -w '%{http_code}' "$API_URL/elsewhere")
assert_eq "$code" 404 "outside the prefixes: not passed"
assert_eq "$(sim_get stats | jq '.paths["/elsewhere"] // 0')" 0 "never reached upstream"
# Synapse's pages under its public_baseurl (ours): SSO, MSC4108's
# rendezvous for QR code login; not its admin API
curl -s -o /dev/null -X PUT -H 'If-Match: "e1"' -d x "$API_URL/_synapse/client/rendezvous/abc"
assert_eq "$(sim_get stats | jq '.paths["/_synapse/client/rendezvous/abc"] // 0')" 1 "/_synapse/client/ passed"
code=$(curl -s -o "$T/r" -w '%{http_code}' "$API_URL/_synapse/admin/v1/server_version")
assert_eq "$code" 404 "/_synapse/admin/ not passed"
assert_eq "$(sim_get stats | jq '.paths["/_synapse/admin/v1/server_version"] // 0')" 0 "/_synapse/admin/ never upstream"

# /versions: our flag added, the rest as upstream sent it
up=$(curl -sS "$SIMHS_URL/_matrix/client/versions")
out=$(curl -sS "$API_URL/_matrix/client/versions")
assert_jq "$out" '.unstable_features["org.matrix.simplified_msc3575"]' true "flag added"
assert_eq "$(printf '%s' "$out" | jq -cS 'del(.unstable_features["org.matrix.simplified_msc3575"])')" \
    "$(printf '%s' "$up" | jq -cS .)" "rest of /versions unchanged"
out=$(curl -sS -H 'Accept-Encoding: gzip' --compressed "$API_URL/_matrix/client/versions")
assert_jq "$out" '.unstable_features["org.matrix.simplified_msc3575"]' true "flag added with gzip asked"

# /.well-known/matrix/client goes upstream too (simhs has none: its 404)
code=$(curl -s -o "$T/r" -w '%{http_code}' "$API_URL/.well-known/matrix/client")
assert_eq "$code" "$(curl -s -o /dev/null -w '%{http_code}' "$SIMHS_URL/.well-known/matrix/client")" "well-known as upstream answers"
assert_eq "$(sim_get stats | jq '.paths["/.well-known/matrix/client"]')" 2 "well-known reached upstream"

# MSC4186 paths are the api's own (sliding sync): never passed
for p in unstable/org.matrix.simplified_msc3575/sync v4/sync; do
	code=$(curl -s -o "$T/r" -w '%{http_code}' -X POST -d '{}' "$API_URL/_matrix/client/$p")
	assert_eq "$code" 401 "POST $p served, not passed"
	assert_jq "$(cat "$T/r")" .errcode '"M_MISSING_TOKEN"' "POST $p errcode"
	assert_eq "$(sim_get stats | jq --arg p "/_matrix/client/$p" '.paths[$p] // 0')" 0 "$p never upstream"
done

# CORS: on ours, on passed-through answers and on errors; pre-flight
for u in "$API_URL/health" "$X/echo" "$X/status/500" "$API_URL/elsewhere"; do
	curl -s -D "$T/h" -o /dev/null "$u"
	grep -qi '^access-control-allow-origin: \*' "$T/h" || fail "no CORS on $u"
	grep -qi '^access-control-allow-headers: X-Requested-With, Content-Type, Authorization' "$T/h" ||
	    fail "no allow-headers on $u"
	grep -ci '^access-control-allow-origin' "$T/h" | grep -qx 1 || fail "CORS header twice on $u"
	grep -qi '^access-control-expose-headers: ETag' "$T/h" || fail "ETag not exposed on $u"
done
code=$(curl -s -D "$T/h" -o /dev/null -w '%{http_code}' -X OPTIONS \
    -H 'Origin: http://elsewhere.example' -H 'Access-Control-Request-Method: PUT' \
    -H 'Access-Control-Request-Headers: authorization, content-type' \
    "$API_URL/_matrix/client/v3/rooms/x/send/m.room.message/1")
assert_eq "$code" 204 "pre-flight answered"
grep -qi '^access-control-allow-methods: GET, POST, PUT, DELETE, OPTIONS' "$T/h" || fail "pre-flight methods"
assert_eq "$(sim_get stats | jq '[.paths | to_entries[] | select(.key | test("/rooms/x/"))] | length')" 0 "pre-flight not passed"

# the client API through the api: login, pushrules, capabilities, send
sim password '{"user_id":"@alice:localhost","password":"secret-pw"}' >/dev/null
code=$(curl -s -o "$T/r" -w '%{http_code}' -d '{"type":"m.login.password","identifier":{"type":"m.id.user","user":"alice"},"password":"wrong"}' \
    "$API_URL/_matrix/client/v3/login")
assert_eq "$code" 403 "bad password refused"
assert_jq "$(cat "$T/r")" .errcode '"M_FORBIDDEN"' "bad password errcode"
out=$(curl -sS -d '{"type":"m.login.password","identifier":{"type":"m.id.user","user":"alice"},"password":"secret-pw","device_id":"PXDEV"}' \
    "$API_URL/_matrix/client/v3/login")
assert_jq "$out" '[.user_id,.device_id]' '["@alice:localhost","PXDEV"]' "login through the api"
tok=$(printf '%s' "$out" | jq -r .access_token)
auth=(-H "Authorization: Bearer $tok")
code=$(curl -s -o "$T/r" -w '%{http_code}' "$API_URL/_matrix/client/v3/pushrules/")
assert_eq "$code" 401 "pushrules needs a token"
assert_jq "$(curl -sS "${auth[@]}" "$API_URL/_matrix/client/v3/pushrules/")" '.global | has("override")' true "pushrules"
assert_jq "$(curl -sS "${auth[@]}" "$API_URL/_matrix/client/v3/capabilities")" '.capabilities | has("m.room_versions")' true "capabilities"
room=$(sim rooms '{"creator":"@alice:localhost","name":"Proxy"}' | jq -r .room_id)
enc=$(jq -rn --arg r "$room" '$r|@uri')
out=$(curl -sS -X PUT "${auth[@]}" -H 'Content-Type: application/json' -d '{"msgtype":"m.text","body":"via the api"}' \
    "$API_URL/_matrix/client/v3/rooms/$enc/send/m.room.message/txn1")
ev=$(printf '%s' "$out" | jq -r .event_id)
[ -n "$ev" ] && [ "$ev" != null ] || fail "send: $out"
assert_jq "$(sim_get "rooms/$room/events")" "[.events[] | select(.event_id == \"$ev\") | .content.body]" '["via the api"]' "sent event stored upstream"

# GET v3 and r0 /sync pass through; POST v3 /sync stays ours
sim stats/reset >/dev/null
assert_jq "$(curl -sS "${auth[@]}" "$API_URL/_matrix/client/v3/sync?timeout=0")" 'has("next_batch")' true "GET v3/sync passed"
assert_jq "$(curl -sS "${auth[@]}" "$API_URL/_matrix/client/r0/sync?timeout=0")" 'has("next_batch")' true "GET r0/sync passed"
assert_eq "$(sim_get stats | jq '.paths["/_matrix/client/v3/sync"]')" 1 "v2 sync reached upstream once"
v3 "$tok" "" '{"room_list":{}}' 0 >/dev/null
assert_eq "$(last_status)" 200 "POST v3/sync is the streams API"

# logout upstream: the device expires at once
wait_for "[ \"\$(psql_q \"SELECT poll_state FROM syncv3_devices WHERE device_id = 'PXDEV'\")\" = polling ]" 20 ||
    fail "PXDEV never polled"
sim stats/reset >/dev/null
code=$(curl -s -o "$T/r" -w '%{http_code}' -X POST "${auth[@]}" -d '{}' "$API_URL/_matrix/client/v3/logout")
assert_eq "$code" 200 "logout passed"
wait_for "[ \"\$(psql_q \"SELECT poll_state FROM syncv3_devices WHERE device_id = 'PXDEV'\")\" = expired ]" 5 ||
    fail "device not expired after logout"
v3 "$tok" "" '{}' 0 >/dev/null
assert_eq "$(last_status)" 401 "logged-out token refused at once"
# its poller lets go at the next heartbeat, not when its held /sync ends
wait_for "grep -q 'PXDEV: lease lost' '$T/poller.log'" 5 ||
    fail "poller still holds the logged-out device"
n1=$(sim_get stats | jq '.sync_requests["@alice:localhost|PXDEV"] // 0')
sleep 2
n2=$(sim_get stats | jq '.sync_requests["@alice:localhost|PXDEV"] // 0')
assert_eq "$n2" "$n1" "poller stopped polling the device"

# nothing secret in the api's log
grep -q "$tok" "$T/api.log" && fail "token in the api log"
grep -q "secret-pw" "$T/api.log" && fail "password in the api log"
grep -q "via the api" "$T/api.log" && fail "request body in the api log"
it_pass
