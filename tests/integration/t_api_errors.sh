#!/usr/bin/env bash
# Every bad input gets a 4xx Matrix error and the daemon keeps serving;
# authorisation: no members or typing of rooms the user is not in.
source "$(dirname "$0")/lib.sh"

export SYNCV3_API_MAX_BODY=2048
start_stack
alice=$(sim_login @alice:localhost A1)
eve=$(sim_login @eve:localhost E1)
room=$(sim rooms '{"creator":"@alice:localhost","name":"Secret"}' | jq -r .room_id)
v3 "$alice" "" '{}' 10000 >/dev/null
v3 "$eve" "" '{}' 10000 >/dev/null
err() { # STATUS ERRCODE BODY [QUERY]
	local code
	code=$(curl -s -o "$T/err" -w '%{http_code}' -X POST -H "Authorization: Bearer $alice" \
	    --data-binary "$3" "$API_URL/_matrix/client/v3/sync?${4:-timeout=0}")
	assert_eq "$code" "$1" "status for $3 ${4:-}"
	assert_jq "$(cat "$T/err")" .errcode "\"$2\"" "errcode for $3 ${4:-}"
}
err 400 M_NOT_JSON '{"typing":'
err 400 M_NOT_JSON 'hello'
err 400 M_BAD_JSON '[1,2]'
err 400 M_BAD_JSON '"str"'
err 400 M_BAD_JSON '{"typing":{"room_id":7}}'
err 400 M_BAD_JSON '{"typing":"x"}'
err 400 M_INVALID_PARAM '{"room_member":{"room_id":"!a:x","sort":"by_size"}}'
err 400 M_INVALID_PARAM '{"room_list":{"sort":["by_tag"]}}'
err 400 M_INVALID_PARAM '{"to_device":{"limit":-1}}'
err 400 M_INVALID_PARAM '{"to_device":{"limit":"5"}}'
err 400 M_INVALID_PARAM '{"room_member":{"room_id":"!a:x","next_page":"-2"}}'
err 400 M_INVALID_PARAM '{}' 'timeout=-5'
err 400 M_INVALID_PARAM '{}' 'timeout=1s'
err 400 M_INVALID_PARAM '{}' 'since=garbage'
err 400 M_UNKNOWN_SYNC_SESSION '{}' 'since=s99_0_0_0_0_0123456789abcdef'
err 413 M_TOO_LARGE "{\"x\":\"$(head -c 3000 /dev/zero | tr '\0' a)\"}"
err 401 M_MISSING_TOKEN '{}' 'access_token=abc'
code=$(curl -s -o "$T/e" -w '%{http_code}' -X POST -H "Authorization: Bearer nope" -d '{}' "$API_URL/_matrix/client/v3/sync")
assert_eq "$code" 401 "bad token"
assert_jq "$(cat "$T/e")" .errcode '"M_UNKNOWN_TOKEN"' "bad token errcode"
# a flood of the same bad token costs one whoami (negative cache)
w0=$(sim_get stats | jq .whoami_requests)
for i in $(seq 1 20); do curl -s -o /dev/null -X POST -H "Authorization: Bearer nope" -d '{}' "$API_URL/_matrix/client/v3/sync"; done
w1=$(sim_get stats | jq .whoami_requests)
assert_eq "$w1" "$w0" "negative cache"
# another device's since token
s=$(v3 "$alice" "" '{}' 0 | jq -r .next_batch)
out=$(v3 "$eve" "$s" '{}' 0)
assert_eq "$(last_status)" 400 "other device's since"
assert_jq "$out" .errcode '"M_UNKNOWN_SYNC_SESSION"' "other device's since errcode"
# authorisation
out=$(v3 "$eve" "" "{\"room_member\":{\"room_id\":\"$room\"}}" 0)
assert_eq "$(last_status)" 403 "members of a room eve is not in"
assert_jq "$out" .errcode '"M_FORBIDDEN"' "members forbidden errcode"
out=$(v3 "$eve" "" "{\"typing\":{\"room_id\":\"$room\"}}" 0)
assert_eq "$(last_status)" 403 "typing of a room eve is not in"
out=$(v3 "$alice" "" "{\"room_member\":{\"room_id\":\"$room\"}}" 0)
assert_eq "$(last_status)" 200 "alice may"
assert_jq "$out" '[.room_member.events[].state_key]' '["@alice:localhost"]' "members"
# upstream unreachable: 502 for a token never seen
kill9 simhs
code=$(curl -s -o "$T/e" -w '%{http_code}' -X POST -H "Authorization: Bearer fresh" -d '{}' "$API_URL/_matrix/client/v3/sync")
assert_eq "$code" 502 "upstream down"
assert_jq "$(cat "$T/e")" 'has("errcode")' 'true' "502 is a Matrix error"
is_running api || fail "api died"
v3 "$alice" "" '{}' 0 >/dev/null
assert_eq "$(last_status)" 200 "still serving known tokens"
it_pass
