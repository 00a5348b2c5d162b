#!/usr/bin/env bash
# The homeserver's answer to the api's /whoami for a token it has not seen
# is passed on: a 429 (upstream rate limiting) is a 429 M_LIMIT_EXCEEDED
# with upstream's retry_after_ms and a Retry-After header, not cached, so
# the retry goes through; a 500 stays a 502.
source "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_ss.sh"

start_stack
list='{"lists":{"a":{"ranges":[[0,9]]}}}'
A=$(sim_login @alice:localhost A1)
sim fail '{"path":"whoami","count":1,"mode":"status","status":429,"retry_after_ms":2500}' >/dev/null
code=$(curl -s -D "$T/h" -o "$T/r" -w '%{http_code}' -X POST -H "Authorization: Bearer $A" \
    -d "$list" "$API_URL/_matrix/client/unstable/org.matrix.simplified_msc3575/sync")
assert_eq "$code" 429 "upstream whoami 429: status"
assert_jq "$(cat "$T/r")" '[.errcode,.retry_after_ms]' '["M_LIMIT_EXCEEDED",2500]' "upstream whoami 429: body"
grep -qi '^retry-after: 3' "$T/h" || fail "upstream whoami 429: no Retry-After: 3"
ss "$A" "" "$list" 0 >/dev/null
assert_eq "$(last_status)" 200 "the retry goes through (429 not cached)"
B=$(sim_login @bob:localhost B1)
sim fail '{"path":"whoami","count":1,"mode":"status","status":500}' >/dev/null
ss "$B" "" "$list" 0 >/dev/null
assert_eq "$(last_status)" 502 "upstream whoami 500: 502"
ss "$B" "" "$list" 0 >/dev/null
assert_eq "$(last_status)" 200 "then 200"
it_pass
