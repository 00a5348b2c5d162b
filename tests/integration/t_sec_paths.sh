#!/usr/bin/env bash
# [sec] 3: a pass-through path with a "." or ".." segment (raw, %2e/%2E, or
# after %2f or a backslash) is refused with 404 M_UNRECOGNIZED and never
# sent upstream: the api sends paths verbatim, and a normalising hop behind
# it would take such a path out of SYNCV3_PROXY_PREFIXES (/_matrix/../x).
# Dots inside a segment and empty segments still pass.
source "$(dirname "$0")/lib.sh"

it_setup
start_simhs -v
start_accumulator
start_poller poller
start_api
E=/_matrix/client/unstable/org.simhs/echo

# [sec] 3: dot segments, however spelled
for u in '/_matrix/../_simhs/stats' '/_matrix/%2e%2e/_simhs/stats' \
    '/_matrix/%2E%2E/_simhs/pos' '/_matrix/..%2f_simhs/pos' \
    '/.well-known/matrix/../../_simhs/pos' '/_matrix/client/../../_simhs/pos' \
    '/_matrix/client/v3/./logout' '/_matrix/client/v3/%2e/x' \
    '/_matrix/client/v3/x/.%2E' '/_matrix/client\..\..\_simhs/pos'; do
	c=$(curl -s --path-as-is -o "$T/o" -w '%{http_code}' "$API_URL$u")
	assert_eq "$c" 404 "GET $u"
	assert_jq "$(cat "$T/o")" .errcode '"M_UNRECOGNIZED"' "GET $u"
done
sleep 0.5
n=$(grep -cE 'GET [^ ]*(\.\.|%2[eE]|/\./|\\)' "$T/simhs.log")
assert_eq "$n" 0 "dot-segment paths that reached simhs ($(grep -E 'GET [^ ]*(\.\.|%2[eE])' "$T/simhs.log" | head -3))"
# dots inside a segment and empty segments are fine
curl -s -o /dev/null "$API_URL$E/a..b/.c//d"
wait_for "grep -qF 'GET $E/a..b/.c//d' $T/simhs.log" 5 || fail "dots inside a segment were not passed through"
assert_eq "$(curl -s -o /dev/null -w '%{http_code}' "$API_URL/_matrix/client/versions")" 200 "versions"

assert_eq "$(it_sanitizer_logs)" "" "sanitizer logs"
it_pass
