#!/usr/bin/env bash
# issue #9: HTTP limits. Every limit answers a Matrix error (JSON, never
# evhttp's HTML pages): body, headers and request line too large, a
# request line and headers or a body that do not arrive in time
# (slowloris: trickled a byte at a time), too many connections. Every
# non-200 answer is logged on one line without secrets, rate-limited.
source "$(dirname "$0")/lib.sh"

export SYNCV3_API_MAX_BODY=2048 SYNCV3_API_MAX_HEADERS=4096
export SYNCV3_API_HEADER_TIMEOUT_MS=1000 SYNCV3_API_BODY_TIMEOUT_MS=1000
export SYNCV3_API_MAX_CONNS=40
start_stack
alice=$(sim_login @alice:localhost A1)
v3 "$alice" "" '{}' 10000 >/dev/null
assert_eq "$(last_status)" 200 "first sync"
sync_url="$API_URL/_matrix/client/v3/sync"
a() { head -c "$1" /dev/zero | tr '\0' a; }

# lim LABEL STATUS ERRCODE CURL-ARGS...
lim() {
	local label=$1 want=$2 code=$3 got
	shift 3
	got=$(curl -s -o "$T/lim" -w '%{http_code} %{content_type}' "$@")
	assert_eq "$got" "$want application/json" "$label"
	assert_jq "$(cat "$T/lim")" .errcode "\"$code\"" "$label errcode"
}
a 10000 >"$T/body10k"
a 1000000 >"$T/body1m"
lim "body 5x the limit" 413 M_TOO_LARGE -X POST -H "Authorization: Bearer $alice" \
    --data-binary @"$T/body10k" "$sync_url"
lim "body of 1 MB" 413 M_TOO_LARGE -X POST -H "Authorization: Bearer $alice" \
    --data-binary @"$T/body1m" "$sync_url"
lim "100 KB header" 431 M_TOO_LARGE -H "X-Big: $(a 100000)" "$API_URL/health"
lim "100 KB query string" 414 M_TOO_LARGE -X POST -H "Authorization: Bearer $alice" \
    "$sync_url?timeout=0&x=$(a 100000)"
lim "8 KB of headers" 431 M_TOO_LARGE $(for i in $(seq 1 8); do printf -- '-H X-%d:%s ' "$i" "$(a 1000)"; done) "$API_URL/health"
out=$(v3 "$alice" "" '{}' 0)
assert_eq "$(last_status)" 200 "still serving"

# slow.py MODE N: N raw connections to the api (bounded, loopback only).
# trickle: the request line and headers a byte every 100 ms; body: the
# headers at once and 10 of 100 body bytes; idle: nothing. Prints, per
# connection, the seconds until it was answered and closed, and the status
# and errcode of its answer.
cat >"$T/slow.py" <<'PY'
import json, socket, sys, time
host, port = sys.argv[3].split("//")[1].split(":")
mode, n = sys.argv[1], int(sys.argv[2])
head = b"POST /_matrix/client/v3/sync HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * 60 + b"\r\n"
socks = []
for i in range(n):
    s = socket.create_connection((host, int(port)))
    s.setblocking(False)
    if mode == "body":
        s.send(head + b"Content-Length: 100\r\n\r\n" + b"{" * 10)
    socks.append([s, b"", None, 0])
t0 = time.time()
while time.time() - t0 < 30 and any(x[2] is None for x in socks):
    for x in socks:
        if x[2] is not None:
            continue
        if mode == "trickle" and x[3] < len(head):
            try:
                x[0].send(head[x[3]:x[3] + 1]); x[3] += 1
            except OSError:
                pass
        try:
            d = x[0].recv(65536)
            if d == b"":
                x[2] = time.time() - t0
            x[1] += d
        except BlockingIOError:
            pass
        except OSError:
            x[2] = time.time() - t0
    time.sleep(0.1)
for s, data, t, _ in socks:
    status, code = "-", "-"
    if data:
        status = data.split(b" ")[1].decode()
        try:
            code = json.loads(data.split(b"\r\n\r\n", 1)[1])["errcode"]
        except Exception:
            code = "not-json"
    print("%.1f %s %s" % (t if t is not None else 99, status, code))
PY
slow() { python3 "$T/slow.py" "$1" "$2" "$API_URL"; }

wait_for "[ \"\$(curl -s '$API_URL/health' | jq .connections)\" = 1 ]" 5 ||
    fail "refused connections not released"
# slowloris: 30 connections trickling headers are all answered 408 and
# closed after the header timeout (1 s), while others are served
slow trickle 30 >"$T/trickle" &
sp=$!
sleep 0.5
out=$(v3 "$alice" "" '{}' 0)
assert_eq "$(last_status)" 200 "served during the trickle"
wait $sp
assert_eq "$(awk '{print $2, $3}' "$T/trickle" | sort -u)" "408 M_UNKNOWN" "trickled headers: 408"
worst=$(sort -n "$T/trickle" | tail -1 | cut -d' ' -f1)
log "slowloris: 30 trickling connections closed after at most $worst s (header timeout 1 s)"
awk -v w="$worst" 'BEGIN { exit !(w < 3) }' || fail "trickled connections held $worst s"
# a body that stops coming
slow body 3 >"$T/body"
assert_eq "$(awk '{print $2, $3}' "$T/body" | sort -u)" "408 M_UNKNOWN" "stalled body: 408"
worst=$(sort -n "$T/body" | tail -1 | cut -d' ' -f1)
awk -v w="$worst" 'BEGIN { exit !(w < 3) }' || fail "stalled bodies held $worst s"
# refused connections linger a moment after their answer: let them go
wait_for "[ \"\$(curl -s '$API_URL/health' | jq .connections)\" = 1 ]" 10 ||
    fail "connections not released: $(curl -s "$API_URL/health" | jq .connections)"
# the connection cap: 50 idle connections, 40 allowed
slow idle 50 >"$T/idle"
n503=$(grep -c ' 503 M_LIMIT_EXCEEDED$' "$T/idle")
n408=$(grep -c ' 408 M_UNKNOWN$' "$T/idle")
assert_eq "$n503 $n408" "10 40" "connections past the cap: 503, the others time out"
out=$(v3 "$alice" "" '{}' 0)
assert_eq "$(last_status)" 200 "serving after the floods"
assert_jq "$(curl -s "$API_URL/health")" .status '"ok"' "health"

# every non-200 answer is logged: method, path, status, errcode, reason,
# never the query string or a token
sleep 1.1	# past the floods' rate limit
v3 "$alice" "garbage-since-value" '{}' 0 >/dev/null
assert_eq "$(last_status)" 400 "bad since"
wait_for "grep -q 'http: POST /_matrix/client/v3/sync: 400 M_UNKNOWN_SYNC_SESSION: ' '$T/api.log'" 5 ||
    fail "no log line for the 400"
grep -q 'http: - (request being read): 408 M_UNKNOWN: request headers not received in time' "$T/api.log" ||
    fail "no log line for a 408"
grep -q 'http: GET /health: 431\|http: - (request being read): 431 M_TOO_LARGE' "$T/api.log" ||
    fail "no log line for a 431"
grep -q "garbage-since-value\|$alice\|Authorization" "$T/api.log" && fail "a secret in the log"
# a flood of bad requests: at most 10 lines a second, and a count of the rest
before=$(grep -c 'api info: http: \|api warn: http: ' "$T/api.log")
t0=$(date +%s%N)
python3 - "$API_URL" <<'PY'
import http.client, sys
host, port = sys.argv[1].split("//")[1].split(":")
c = http.client.HTTPConnection(host, int(port))
for i in range(500):
    c.request("POST", "/_matrix/client/v3/sync?since=x", body="{}")
    c.getresponse().read()
PY
secs=$(( ($(date +%s%N) - t0) / 1000000000 + 1 ))
sleep 1.1
v3 "" "" '{}' 0 >/dev/null
after=$(grep -c 'api info: http: \|api warn: http: ' "$T/api.log")
log "flood: 500 bad requests in < $secs s gave $((after - before)) log lines"
[ $((after - before)) -le $((11 * (secs + 2))) ] || fail "flood logged $((after - before)) lines in $secs s"
grep -q 'more error answers not logged' "$T/api.log" || fail "no count of the lines left out"
is_running api || fail "api died"
it_pass
