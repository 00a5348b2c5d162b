#!/usr/bin/env bash
# [sec] 4: a client's X-Forwarded-For, -Proto and -Host reach the homeserver
# only with SYNCV3_TRUST_FORWARDED (then the peer is appended to the For);
# otherwise the api is the edge and sets them: the peer, http, the Host.
# Synapse behind x_forwarded takes the leftmost For as the client's IP.
source "$(dirname "$0")/lib.sh"

start_stack
E=/_matrix/client/unstable/org.simhs/echo

# [sec] 4: forwarded headers from an untrusted client are replaced
h=$(curl -s -H 'X-Forwarded-For: 6.6.6.6' -H 'X-Forwarded-Proto: https' \
    -H 'X-Forwarded-Host: evil.example' -H 'Host: sync.example.org' "$API_URL$E" | jq -c .headers)
assert_jq "$h" '."x-forwarded-for"' '"127.0.0.1"' "untrusted XFF"
assert_jq "$h" '."x-forwarded-proto"' '"http"' "untrusted XF-Proto"
assert_jq "$h" '."x-forwarded-host"' '"sync.example.org"' "untrusted XF-Host"

# [sec] 4 behind a trusted reverse proxy: its values kept, the peer appended
port=$(free_port)
SYNCV3_TRUST_FORWARDED=true start_api_on api2 "$port"
wait_for "curl -sf http://127.0.0.1:$port/health" 20 || fail "second api"
h=$(curl -s -H 'X-Forwarded-For: 6.6.6.6' -H 'X-Forwarded-Proto: https' \
    -H 'X-Forwarded-Host: sync.example.org' "http://127.0.0.1:$port$E" | jq -c .headers)
assert_jq "$h" '."x-forwarded-for"' '"6.6.6.6, 127.0.0.1"' "trusted XFF"
assert_jq "$h" '."x-forwarded-proto"' '"https"' "trusted XF-Proto"
assert_jq "$h" '."x-forwarded-host"' '"sync.example.org"' "trusted XF-Host"
assert_eq "$(it_sanitizer_logs)" "" "sanitizer logs"
it_pass
