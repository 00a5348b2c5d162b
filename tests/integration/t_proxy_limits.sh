#!/usr/bin/env bash
# it: serial
# Pass-through failures and limits (issue #12): an upstream that resets
# gives 502 M_UNKNOWN, one that stalls before answering 504 M_UNKNOWN
# after SYNCV3_PROXY_HEADER_TIMEOUT_MS, one that stops mid-body a cut
# answer after SYNCV3_PROXY_IDLE_TIMEOUT_MS, 5xx come back as sent, an
# upstream that is down 502 at once; never a hang. Concurrency: at most
# SYNCV3_PROXY_MAX_CONCURRENT requests run upstream, the next
# SYNCV3_PROXY_MAX_QUEUE wait, more get 503; bodies above
# SYNCV3_PROXY_MAX_STREAM get 413 (Content-Length or chunked), malformed
# chunked framing 400; a client hanging up frees its slot.
source "$(dirname "$0")/lib.sh"

export SYNCV3_PROXY_HEADER_TIMEOUT_MS=1500 SYNCV3_PROXY_IDLE_TIMEOUT_MS=1000
export SYNCV3_PROXY_MAX_CONCURRENT=4 SYNCV3_PROXY_MAX_QUEUE=8
export SYNCV3_PROXY_MAX_UPLOAD=$((1024 * 1024)) SYNCV3_PROXY_MAX_STREAM=$((1024 * 1024))
start_stack
X="$API_URL/_matrix/client/unstable/org.simhs"
ms() { echo $(( $(date +%s%N) / 1000000 )); }
req() { # STATUS ERRCODE URL [CURL-ARGS...]
	local st=$1 ec=$2 url=$3 code
	shift 3
	code=$(curl -s -m 10 -o "$T/r" -w '%{http_code}' "$@" "$url")
	assert_eq "$code" "$st" "status for $url"
	assert_jq "$(cat "$T/r")" .errcode "\"$ec\"" "errcode for $url"
	grep -qi '^access-control-allow-origin' <(curl -s -m 10 -D - -o /dev/null "$@" "$url") ||
	    fail "no CORS on the error for $url"
}

req 502 M_UNKNOWN "$X/reset"
t0=$(ms)
req 504 M_UNKNOWN "$X/stall"
t1=$(ms)
[ $((t1 - t0)) -lt 8000 ] || fail "stall answered after $((t1 - t0)) ms"
# mid-body stall: headers and 10 of 1000 bytes, then the api cuts it
t0=$(ms)
curl -s -m 10 -o "$T/cut" "$X/stall_body"
rc=$?
t1=$(ms)
[ "$rc" = 18 ] || [ "$rc" = 56 ] || fail "cut body: curl exit $rc, want 18/56"
assert_eq "$(wc -c <"$T/cut")" 10 "bytes before the cut"
[ $((t1 - t0)) -lt 5000 ] || fail "cut after $((t1 - t0)) ms"
for c in 500 502 503 504; do req "$c" M_UNKNOWN "$X/status/$c"; done

# bounded concurrency: 12 requests of 400 ms each, 4 at a time, 8 queued
# (the header timeout counts time in the queue too)
t0=$(ms)
pids=()
for i in $(seq 1 12); do
	curl -s -m 20 -o "$T/c$i" -w '%{http_code}' "$X/stall?ms=400" >"$T/s$i" &
	pids+=($!)
done
sleep 0.3
# the 13th and 14th find the queue full
req 503 M_UNKNOWN "$X/echo"
wait "${pids[@]}"
t1=$(ms)
for i in $(seq 1 12); do assert_eq "$(cat "$T/s$i")" 200 "queued request $i"; done
[ $((t1 - t0)) -ge 1150 ] || fail "12 x 400 ms at 4 at a time took only $((t1 - t0)) ms"
assert_eq "$(curl -s -o /dev/null -w '%{http_code}' "$X/echo")" 200 "slots free again"

# a client hanging up frees its slot at once
pids=()
for i in 1 2 3 4; do curl -s -m 1 -o /dev/null "$X/stall?ms=30000" & pids+=($!); done
wait "${pids[@]}"
t0=$(ms)
assert_eq "$(curl -s -m 5 -o /dev/null -w '%{http_code}' "$X/echo")" 200 "slots freed by hang-ups"
[ $(( $(ms) - t0 )) -lt 1000 ] || fail "hung-up requests kept their slots"

# body limits: a streamed body past SYNCV3_PROXY_MAX_STREAM is refused
# from its Content-Length before any of it goes upstream, a chunked one
# once past the limit; malformed chunked framing is a 400
head -c $((1536 * 1024)) /dev/zero >"$T/big"
n0=$(sim_get stats | jq '.paths["/_matrix/client/unstable/org.simhs/echo"] // 0')
req 413 M_TOO_LARGE "$X/echo" --data-binary @"$T/big"
req 413 M_TOO_LARGE "$X/echo" -H 'Expect:' --data-binary @"$T/big"
req 413 M_TOO_LARGE "$X/echo" -H 'Transfer-Encoding: chunked' --data-binary @"$T/big"
assert_eq "$(sim_get stats | jq '.paths["/_matrix/client/unstable/org.simhs/echo"] // 0')" "$n0" \
    "no body past the limit reached upstream"
raw=$(python3 - "${API_URL#http://}" <<'PY'
import socket, sys
host, port = sys.argv[1].rsplit(":", 1)
s = socket.create_connection((host, int(port)), timeout=10)
s.sendall(b"POST /_matrix/client/unstable/org.simhs/echo HTTP/1.1\r\nHost: x\r\n"
          b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n\r\n")
got = b""
while True:
    b = s.recv(65536)
    if not b:
        break
    got += b
print(got.split(b"\r\n", 1)[0].decode(), got.rsplit(b"\r\n\r\n", 1)[-1].decode())
PY
)
assert_eq "${raw%% \{*}" "HTTP/1.1 400 Bad Request" "malformed chunked body"
assert_jq "{${raw#*\{}" .errcode '"M_UNKNOWN"' "malformed chunked errcode"
assert_eq "$(sim_get stats | jq '.paths["/_matrix/client/unstable/org.simhs/echo"]')" \
    "$(sim_get stats | jq '.paths["/_matrix/client/unstable/org.simhs/echo"]')" "stats readable"
head -c $((1024 * 1024)) /dev/zero >"$T/ok"
assert_jq "$(curl -sS --data-binary @"$T/ok" "$X/echo")" .body_len $((1024 * 1024)) "body at the limit passes"

# upstream down: 502 at once
stop_proc simhs
t0=$(ms)
req 502 M_UNKNOWN "$X/echo"
[ $(( $(ms) - t0 )) -lt 3000 ] || fail "down upstream took $(( $(ms) - t0 )) ms"
curl -sf "$API_URL/health" >/dev/null || fail "api unhealthy after all that"
it_pass
