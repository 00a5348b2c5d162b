#!/usr/bin/env bash
# Walking skeleton (#2): Postgres + simulated homeserver + accumulator +
# poller + api as separate processes. Typing data flows poller ->
# accumulator -> Postgres -> api; a blocked long poll is answered within a
# fraction of a second of a typing change upstream; bad input at the api
# boundary gets Matrix errors and the daemon keeps serving.
source "$(dirname "$0")/lib.sh"

it_setup
start_simhs
start_accumulator
start_poller poller
start_api

alice=$(sim_login @alice:localhost ALICEDEV)
bob=$(sim_login @bob:localhost BOBDEV)
room=$(sim rooms '{"creator":"@alice:localhost","name":"Skeleton"}' | jq -r .room_id)
sim "rooms/$room/join" '{"user_id":"@bob:localhost"}' >/dev/null
sim "rooms/$room/typing" '{"user_id":"@bob:localhost","user_ids":["@bob:localhost"]}' >/dev/null

# First request of a new device: held until the initial sync is stored.
out=$(v3 "$alice" "" "{\"typing\":{\"room_id\":\"$room\"}}" 10000)
assert_eq "$(last_status)" 200 "first request"
assert_jq "$out" '.typing.user_ids' '["@bob:localhost"]' "typing via the pipeline"
since=$(printf '%s' "$out" | jq -r .next_batch)

# A long poll blocked on typing wakes on a change upstream.
t0=$(date +%s%N)
v3 "$alice" "$since" '{}' 10000 >"$T/poll.out" &
poll=$!
sleep 0.5
t1=$(date +%s%N)
sim "rooms/$room/typing" '{"user_id":"@alice:localhost","user_ids":["@alice:localhost","@bob:localhost"]}' >/dev/null
wait $poll
t2=$(date +%s%N)
out=$(cat "$T/poll.out")
assert_jq "$out" '.typing.user_ids|sort' '["@alice:localhost","@bob:localhost"]' "woken typing"
ms=$(( (t2 - t1) / 1000000 ))
log "long poll answered ${ms} ms after the typing change (timeout 10000)"
[ "$ms" -lt 1000 ] || fail "long poll took ${ms} ms"
[ $(( (t1 - t0) / 1000000 )) -ge 400 ] || fail "long poll did not block"

# Bad input at the boundary: Matrix errors, daemon keeps serving.
code=$(curl -s -o "$T/e1" -w '%{http_code}' -X POST "$API_URL/_matrix/client/v3/sync" -d '{}')
assert_eq "$code" 401 "no token"
assert_jq "$(cat "$T/e1")" .errcode '"M_MISSING_TOKEN"' "no token errcode"
out=$(v3 "$alice" "" '{"typing":' 0)
assert_eq "$(last_status)" 400 "bad json"
assert_jq "$out" .errcode '"M_NOT_JSON"' "bad json errcode"
code=$(curl -s -o "$T/e2" -w '%{http_code}' "$API_URL/nope")
assert_eq "$code" 404 "unknown path"
assert_jq "$(cat "$T/e2")" .errcode '"M_UNRECOGNIZED"' "404 errcode"
# GET v3 /sync is v2 sync, passed through to the homeserver (issue #12)
code=$(curl -s -o "$T/e3" -w '%{http_code}' -X POST "$API_URL/health")
assert_eq "$code" 405 "wrong method"
assert_jq "$(cat "$T/e3")" .errcode '"M_UNRECOGNIZED"' "405 errcode"
is_running api || fail "api died"
curl -sf "$API_URL/health" >/dev/null || fail "api not healthy"
out=$(v3 "$bob" "" "{\"typing\":{\"room_id\":\"$room\"}}" 10000)
assert_eq "$(last_status)" 200 "still serving"
it_pass
