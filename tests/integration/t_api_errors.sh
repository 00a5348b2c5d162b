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
# issue #9: a since that does not parse is an unknown session (start again)
err 400 M_UNKNOWN_SYNC_SESSION '{}' 'since=garbage'
err 400 M_UNKNOWN_SYNC_SESSION '{}' 'since=s1_0_0_0_0_0123456789abcdef_1'
err 400 M_UNKNOWN_SYNC_SESSION '{"typing":'  'since=garbage'
err 400 M_UNKNOWN_SYNC_SESSION '{}' 'since=s99_0_0_0_0_0123456789abcdef'
# issue #9: strings Postgres or C cannot take are refused, naming the field
err 400 M_BAD_JSON $'{"typing":{"room_id":"!\xc0\xaf:localhost"}}'
assert_jq "$(cat "$T/err")" '.error|test("typing.room_id")' true "overlong names the field"
err 400 M_BAD_JSON $'{"room_member":{"room_id":"!\xed\xa0\x80:localhost"}}'
err 400 M_BAD_JSON '{"typing":{"room_id":"!a\u0000:localhost"}}'
err 400 M_BAD_JSON '{"room_list":{"state_events":[["m.room.name\u0000x","*"]]}}'
err 400 M_INVALID_PARAM "{\"typing\":{\"room_id\":\"!$(head -c 300 /dev/zero | tr '\0' a):localhost\"}}"
assert_jq "$(cat "$T/err")" '.error|test("typing.room_id")' true "too long names the field"
err 413 M_TOO_LARGE "{\"x\":\"$(head -c 3000 /dev/zero | tr '\0' a)\"}"
err 401 M_MISSING_TOKEN '{}' 'access_token=abc'
code=$(curl -s -o "$T/e" -w '%{http_code}' -X POST -H "Authorization: Bearer nope" -d '{}' "$API_URL/_matrix/client/v3/sync")
assert_eq "$code" 401 "bad token"
assert_jq "$(cat "$T/e")" .errcode '"M_UNKNOWN_TOKEN"' "bad token errcode"
# issue #9: authentication first, then since, then body
anon() { # STATUS ERRCODE AUTHHEADER BODY QUERY
	local code
	code=$(curl -s -o "$T/err" -w '%{http_code}' -X POST ${3:+-H "$3"} \
	    --data-binary "$4" "$API_URL/_matrix/client/v3/sync?$5")
	assert_eq "$code" "$1" "status for [$3] $4 $5"
	assert_jq "$(cat "$T/err")" .errcode "\"$2\"" "errcode for [$3] $4 $5"
}
anon 401 M_MISSING_TOKEN "" '{}' 'since=garbage'
anon 401 M_MISSING_TOKEN "" '{"typing":' 'timeout=0'
anon 401 M_MISSING_TOKEN "" '{"typing":' 'since=garbage&timeout=x'
anon 401 M_UNKNOWN_TOKEN "Authorization: Bearer nope" '{}' 'since=garbage'
anon 401 M_UNKNOWN_TOKEN "Authorization: Bearer nope" 'hello' 'timeout=0'
anon 401 M_UNKNOWN_TOKEN "Authorization: Bearer nope" '{"typing":{"room_id":7}}' 'timeout=-5'
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
# issue #9: a sticky stream that can no longer be served is answered alone
# with a Matrix error and its position kept; the other streams go on.
bobs=$(sim rooms '{"creator":"@bob:localhost","name":"Bob'"'"'s"}' | jq -r .room_id)
sim "rooms/$bobs/join" '{"user_id":"@alice:localhost"}' >/dev/null
both="{\"typing\":{\"room_id\":\"$bobs\"},\"room_member\":{\"room_id\":\"$bobs\"},\"to_device\":{}}"
wait_for "v3 '$alice' '' '$both' 0 >/dev/null; [ \"\$(last_status)\" = 200 ]" 15 ||
    fail "alice's join did not arrive"
s=$(v3 "$alice" "" "$both" 0 | jq -r .next_batch)
# she leaves: typing is not hers any more (members stay readable up to
# her leave)
sim "rooms/$bobs/leave" '{"user_id":"@alice:localhost"}' >/dev/null
wait_for "v3 '$alice' '' '{\"typing\":{\"room_id\":\"$bobs\"}}' 0 >/dev/null; [ \"\$(last_status)\" = 403 ]" 15 ||
    fail "alice's leave did not arrive"
sim to_device '{"user_id":"@alice:localhost","device_id":"A1","sender":"@bob:localhost","type":"m.x","content":{"n":9}}' >/dev/null
# a token's fields: s<session>_<member>_<list>_<typing>_<to_device>_<mac>
field() { printf '%s' "$1" | cut -d_ -f"$2"; }
want=([9] [])
for round in 0 1; do
	out=$(v3 "$alice" "$s" '{}' $(( (1 - round) * 5000 )))
	assert_eq "$(last_status)" 200 "inherited refusals ($round): status"
	assert_jq "$out" .typing.errcode '"M_FORBIDDEN"' "typing refused alone ($round)"
	assert_jq "$out" '.typing.error|type' '"string"' "typing error text ($round)"
	assert_jq "$out" .room_member.room_id "\"$bobs\"" "room_member served ($round)"
	assert_jq "$out" '[.to_device.events[].content.n]' "${want[$round]}" "to-device still delivered ($round)"
	n=$(printf '%s' "$out" | jq -r .next_batch)
	assert_eq "$(field "$n" 4)" "$(field "$s" 4)" "typing position kept ($round)"
	[ $round = 1 ] || [ "$(field "$n" 5)" -gt "$(field "$s" 5)" ] ||
	    fail "to-device position did not advance"
	s=$n
done
# named in this very body: the whole request is refused, as before
out=$(v3 "$alice" "$s" "{\"typing\":{\"room_id\":\"$bobs\"}}" 0)
assert_eq "$(last_status)" 403 "typing given in the body"
assert_jq "$out" .errcode '"M_FORBIDDEN"' "typing given in the body errcode"
# a refused body's parameters were stored already: later requests that
# inherit them are answered with the other streams
se=$(v3 "$eve" "" '{"to_device":{}}' 0 | jq -r .next_batch)
out=$(v3 "$eve" "$se" "{\"room_member\":{\"room_id\":\"$room\"}}" 0)
assert_eq "$(last_status)" 403 "room_member given in the body"
sim to_device '{"user_id":"@eve:localhost","device_id":"E1","sender":"@bob:localhost","type":"m.x","content":{"n":7}}' >/dev/null
out=$(v3 "$eve" "$se" '{}' 5000)
assert_eq "$(last_status)" 200 "inherited room_member refusal: status"
assert_jq "$out" .room_member.errcode '"M_FORBIDDEN"' "room_member refused alone"
assert_jq "$out" '[.to_device.events[].content.n]' '[7]' "eve's to-device delivered"
n=$(printf '%s' "$out" | jq -r .next_batch)
assert_eq "$(field "$n" 2)" "$(field "$se" 2)" "member position kept"
# upstream unreachable: 502 for a token never seen
kill9 simhs
code=$(curl -s -o "$T/e" -w '%{http_code}' -X POST -H "Authorization: Bearer fresh" -d '{}' "$API_URL/_matrix/client/v3/sync")
assert_eq "$code" 502 "upstream down"
assert_jq "$(cat "$T/e")" 'has("errcode")' 'true' "502 is a Matrix error"
is_running api || fail "api died"
v3 "$alice" "" '{}' 0 >/dev/null
assert_eq "$(last_status)" 200 "still serving known tokens"
it_pass
