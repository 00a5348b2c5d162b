#!/usr/bin/env bash
# it: serial
# Pass-through of large bodies (issue #12): a 100 MB download streams
# through the api while the client reads slowly, so the api's peak RSS
# (VmHWM) grows by no more than its client buffer (SYNCV3_PROXY_BUFFER)
# plus slack, and the first byte arrives at once; the bytes are exact. A
# client hanging up mid-download leaves the api serving. Uploads stream
# too: a 100 MB one arrives exact with the api's peak RSS bounded the
# same way (evhttp holding the body whole took 100 MB more); a chunked
# PUT and an Expect: 100-continue upload arrive exact; a client hanging
# up mid-upload cuts the upstream request (counted); an upstream killed
# mid-upload gets the client a 502.
source "$(dirname "$0")/lib.sh"

MB=$((1024 * 1024))
N=$((100 * MB))
# ASan keeps freed memory in quarantine (256 MB by default), which would
# read as growth here; a small one keeps use-after-free checks honest
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=4
# SYNCV3_PROXY_MAX_UPLOAD (50 MiB) bounds only bodies evhttp holds whole
export SYNCV3_PROXY_BUFFER=$MB
start_stack
tok=$(sim_login @alice:localhost MDEV)
pid=${IT_PIDS[api]}
kb() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$pid/status"; }
metric() { curl -sS "$API_URL/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }

# warm up the code paths once, then measure from here
curl -sS -o /dev/null -H "Authorization: Bearer $tok" \
    "$API_URL/_matrix/client/v1/media/download/localhost/gen$((4 * MB))"
hwm0=$(kb VmHWM)
want=$(python3 -c "
import hashlib, sys
n = $N; b = bytes(range(251)) * (n // 251 + 1)
print(hashlib.sha256(b[:n]).hexdigest())")
read -r ttfb size < <(curl -sS --limit-rate 40M -o "$T/dl" \
    -w '%{time_starttransfer} %{size_download}\n' \
    -H "Authorization: Bearer $tok" \
    "$API_URL/_matrix/client/v1/media/download/localhost/gen$N/file.bin")
hwm1=$(kb VmHWM)
assert_eq "$size" "$N" "download size"
assert_eq "$(sha256sum <"$T/dl" | cut -d' ' -f1)" "$want" "download bytes"
rm -f "$T/dl"
grow=$((hwm1 - hwm0))
log "download: VmHWM $hwm0 -> $hwm1 kB (+$grow kB), first byte after ${ttfb}s"
[ "$grow" -lt $(( (MB + 16 * MB) / 1024 )) ] ||
    fail "api RSS grew by $grow kB for a streamed download"
awk -v t="$ttfb" 'BEGIN { exit !(t < 1.0) }' || fail "first byte after ${ttfb}s"

# a client hanging up mid-download: upstream is let go, the api carries on
sim stats/reset >/dev/null
curl -s -m 1 --limit-rate 2M -o /dev/null -H "Authorization: Bearer $tok" \
    "$API_URL/_matrix/client/v1/media/download/localhost/gen$N"
assert_eq "$?" 28 "slow client timed out mid-download"
assert_eq "$(curl -sS -o /dev/null -w '%{size_download}' -H "Authorization: Bearer $tok" \
    "$API_URL/_matrix/client/v1/media/download/localhost/gen$MB")" "$MB" "next download after a hang-up"
curl -sf "$API_URL/health" >/dev/null || fail "api unhealthy after a hang-up"

# a 100 MB upload streams (http.c holds the head back, proxy_body.c
# reads the body as curl sends it upstream): exact, and the api's peak
# RSS grows by less than its buffer plus slack, where evhttp holding the
# body whole took the body once (100 MB)
head -c "$N" /dev/urandom >"$T/up"
want=$(sha256sum <"$T/up" | cut -d' ' -f1)
st0=$(metric syncv3_api_proxy_streamed_total)
rss0=$(kb VmRSS)
out=$(curl -sS -H "Authorization: Bearer $tok" -H 'Content-Type: application/octet-stream' \
    --data-binary @"$T/up" "$API_URL/_matrix/media/v3/upload?filename=up.bin")
assert_jq "$out" '[.x_simhs_bytes,.x_simhs_sha256]' "[$N,\"$want\"]" "upload bytes"
hwm2=$(kb VmHWM) rss1=$(kb VmRSS)
log "upload: VmHWM $hwm1 -> $hwm2 kB (+$((hwm2 - hwm1)) kB), VmRSS $rss0 -> $rss1 kB"
[ $((hwm2 - hwm1)) -lt $(( (MB + 32 * MB) / 1024 )) ] ||
    fail "api RSS grew by $((hwm2 - hwm1)) kB for a streamed upload"
assert_eq "$(metric syncv3_api_proxy_streamed_total)" $((st0 + 1)) "upload streamed"

# PUT to the v1 media path with a chunked body: the same bytes arrive
head -c $((20 * MB)) "$T/up" >"$T/up20"
want20=$(sha256sum <"$T/up20" | cut -d' ' -f1)
out=$(curl -sS -X PUT -H "Authorization: Bearer $tok" -H 'Transfer-Encoding: chunked' \
    --data-binary @"$T/up20" "$API_URL/_matrix/media/v3/upload/localhost/chunky")
assert_jq "$out" '[.x_simhs_bytes,.x_simhs_sha256]' "[$((20 * MB)),\"$want20\"]" "chunked upload"
hwm3=$(kb VmHWM)
[ $((hwm3 - hwm1)) -lt $(( (MB + 32 * MB) / 1024 )) ] ||
    fail "api RSS grew by $((hwm3 - hwm1)) kB for a chunked upload"

# Expect: 100-continue is answered by the api once it streams the body
curl -sS -v -H "Authorization: Bearer $tok" -H 'Expect: 100-continue' \
    --data-binary @"$T/up20" -o "$T/r" "$API_URL/_matrix/media/v3/upload" 2>"$T/v"
grep -q '^< HTTP/1.1 100 Continue' "$T/v" || fail "no 100 Continue"
assert_jq "$(cat "$T/r")" .x_simhs_sha256 "\"$want20\"" "upload after 100 Continue"

# a client hanging up mid-upload: upstream's request is cut (simhs never
# completes it), counted, and the api carries on
ab0=$(metric syncv3_api_proxy_upload_aborted_total)
up0=$(sim_get stats | jq '.paths["/_matrix/media/v3/upload"] // 0')
curl -s -m 1 --limit-rate 4M -o /dev/null -H "Authorization: Bearer $tok" \
    --data-binary @"$T/up20" "$API_URL/_matrix/media/v3/upload"
assert_eq "$?" 28 "slow uploader timed out"
wait_for '[ "$(metric syncv3_api_proxy_upload_aborted_total)" = $((ab0 + 1)) ]' 5 ||
    fail "hang-up mid-upload not counted"
assert_eq "$(metric syncv3_api_proxy_active)" 0 "upstream request let go"
assert_eq "$(sim_get stats | jq '.paths["/_matrix/media/v3/upload"] // 0')" "$up0" \
    "simhs saw no whole upload"
assert_jq "$(curl -sS -H "Authorization: Bearer $tok" --data-binary @"$T/up20" \
    "$API_URL/_matrix/media/v3/upload")" .x_simhs_sha256 "\"$want20\"" "next upload after a hang-up"
curl -sf "$API_URL/health" >/dev/null || fail "api unhealthy after a hang-up"
# unauthenticated media is refused upstream, and that comes back
code=$(curl -s -o "$T/r" -w '%{http_code}' "$API_URL/_matrix/client/v1/media/download/localhost/gen10")
assert_eq "$code" 401 "media download needs a token"
assert_jq "$(cat "$T/r")" .errcode '"M_MISSING_TOKEN"' "media errcode"

# an upstream that goes away mid-upload: the client gets 502, not a hang
curl -s -m 20 --limit-rate 8M -o "$T/r" -w '%{http_code}' -H "Authorization: Bearer $tok" \
    --data-binary @"$T/up20" "$API_URL/_matrix/media/v3/upload" >"$T/code" &
cpid=$!
sleep 1
kill -KILL "${IT_PIDS[simhs]}"
wait "$cpid"
assert_eq "$(cat "$T/code")" 502 "upstream reset mid-upload"
assert_jq "$(cat "$T/r")" .errcode '"M_UNKNOWN"' "502 errcode"
curl -sf "$API_URL/health" >/dev/null || fail "api unhealthy after an upstream reset"
rm -f "$T/up" "$T/up20"
it_pass
