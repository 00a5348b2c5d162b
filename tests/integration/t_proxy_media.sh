#!/usr/bin/env bash
# Pass-through of large bodies (issue #12): a 100 MB download streams
# through the api while the client reads slowly, so the api's peak RSS
# (VmHWM) grows by no more than its client buffer (SYNCV3_PROXY_BUFFER)
# plus slack, and the first byte arrives at once; the bytes are exact. A
# client hanging up mid-download leaves the api serving; a 100 MB upload
# arrives exact; evhttp (libevent 2.1) holds a request body
# whole, so there the bound is the body once (plus allocator slack),
# never twice.
source "$(dirname "$0")/lib.sh"

MB=$((1024 * 1024))
N=$((100 * MB))
# ASan keeps freed memory in quarantine (256 MB by default), which would
# read as growth here; a small one keeps use-after-free checks honest
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=4
export SYNCV3_PROXY_MAX_UPLOAD=$((120 * MB)) SYNCV3_PROXY_BUFFER=$MB
start_stack
tok=$(sim_login @alice:localhost MDEV)
pid=${IT_PIDS[api]}
kb() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$pid/status"; }

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

# upload: exact, held once at most
head -c "$N" /dev/urandom >"$T/up"
want=$(sha256sum <"$T/up" | cut -d' ' -f1)
out=$(curl -sS -H "Authorization: Bearer $tok" -H 'Content-Type: application/octet-stream' \
    --data-binary @"$T/up" "$API_URL/_matrix/media/v3/upload?filename=up.bin")
rm -f "$T/up"
assert_jq "$out" '[.x_simhs_bytes,.x_simhs_sha256]' "[$N,\"$want\"]" "upload bytes"
hwm2=$(kb VmHWM)
log "upload: VmHWM $hwm1 -> $hwm2 kB (+$((hwm2 - hwm1)) kB)"
[ $((hwm2 - hwm1)) -lt $(( (2 * N) / 1024 )) ] ||
    fail "api held the upload more than once"
# unauthenticated media is refused upstream, and that comes back
code=$(curl -s -o "$T/r" -w '%{http_code}' "$API_URL/_matrix/client/v1/media/download/localhost/gen10")
assert_eq "$code" 401 "media download needs a token"
assert_jq "$(cat "$T/r")" .errcode '"M_MISSING_TOKEN"' "media errcode"
it_pass
