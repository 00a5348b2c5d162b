#!/usr/bin/env bash
# [sec] 5: framing evhttp accepts but a front proxy may read otherwise
# (RFC 9112 6.1, 6.3): conflicting Content-Length headers get 400, a
# Transfer-Encoding other than chunked 501, both Matrix errors, and the
# connection is closed instead of the rest being read as the next request
# (smuggling). Equal repeated lengths and plain chunked still pass.
source "$(dirname "$0")/lib.sh"

start_stack
E=/_matrix/client/unstable/org.simhs/echo
# raw REQUEST: sends the bytes (printf escapes) on one connection to the
# api, prints all that comes back until it closes
raw() {
	printf "$1" | python3 -c '
import socket, sys
h, p = sys.argv[1].rsplit(":", 1)
s = socket.create_connection((h, int(p)), timeout=5)
s.sendall(sys.stdin.buffer.read())
out = b""
try:
    while True:
        b = s.recv(65536)
        if not b:
            break
        out += b
except socket.timeout:
    out += b"<no close>"
sys.stdout.buffer.write(out)' "${API_URL#http://}"
}

# [sec] 5: framing evhttp accepts
out=$(raw "POST $E HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 40\r\n\r\nabcGET $E?smuggled=1 HTTP/1.1\r\nHost: x\r\n\r\n")
[[ "$out" == "HTTP/1.1 400"* ]] || fail "conflicting Content-Length: $(printf '%s' "$out" | head -c 300)"
[[ "$out" != *smuggled* && "$out" != *"<no close>"* && "$(grep -o 'HTTP/1.1 ' <<<"$out" | wc -l)" = 1 ]] ||
    fail "conflicting Content-Length: the connection went on: $(printf '%s' "$out" | head -c 600)"
out=$(raw "POST $E HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
[[ "$out" == "HTTP/1.1 501"* && "$out" != *"<no close>"* && "$(grep -o 'HTTP/1.1 ' <<<"$out" | wc -l)" = 1 ]] ||
    fail "unknown Transfer-Encoding: $(printf '%s' "$out" | head -c 600)"
assert_jq "$(printf '%s' "$out" | sed -n '/^\r$/,$p' | tail -n +2)" .errcode '"M_UNKNOWN"' "501 is a Matrix error"
# the review's smuggling forms: a second request as the "body" of the
# second length or of an unknown coding, and a TE field name evhttp does
# not recognise (space before the colon); never more than one answer
for req in "POST $E HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 60\r\n\r\nGET $E?smuggled=2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" \
    "POST $E HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\nGET $E?smuggled=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" \
    "POST $E HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\nContent-Length: 3\r\n\r\nabc"; do
	out=$(raw "$req")
	[[ "$out" =~ ^HTTP/1.1\ (400|501) && "$out" != *smuggled* && "$out" != *"<no close>"* && "$(grep -o 'HTTP/1.1 ' <<<"$out" | wc -l)" = 1 ]] ||
	    fail "$(printf '%s' "$req" | head -c 90): $(printf '%s' "$out" | head -c 600)"
done
# the api's own endpoints are framed the same way (the streams API, sliding sync)
for path in /_matrix/client/v3/sync /_matrix/client/unstable/org.matrix.simplified_msc3575/sync; do
	out=$(raw "POST $path HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 60\r\n\r\n{}GET $E?smuggled=3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	[[ "$out" == "HTTP/1.1 400"* && "$out" != *smuggled* && "$out" != *"<no close>"* && "$(grep -o 'HTTP/1.1 ' <<<"$out" | wc -l)" = 1 ]] ||
	    fail "$path, conflicting Content-Length: $(printf '%s' "$out" | head -c 600)"
done
# the same values twice and plain chunked still pass
out=$(raw "POST $E HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc")
[[ "$out" == "HTTP/1.1 200"* && "$out" == *'"body_len":3'* ]] || fail "repeated equal Content-Length: $(printf '%s' "$out" | head -c 300)"
out=$(raw "POST $E HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
[[ "$out" == "HTTP/1.1 200"* && "$out" == *'"body_len":5'* ]] || fail "chunked: $(printf '%s' "$out" | head -c 300)"

assert_eq "$(it_sanitizer_logs)" "" "sanitizer logs"
it_pass
