#!/usr/bin/env bash
# typing: the seed's TestHandler steps in our semantics, plus authorisation
# and selective waking.
# (a) a new session with a typing filter for a room where nobody ever typed
#     (upstream delivered only the room's state) blocks and times out with
#     no typing key;
# (b) the next request, with an empty body (sticky parameters), returns
#     typing after the v2 typing EDU;
# (c) a request blocked in the long poll wakes when another user's typing
#     arrives ~200 ms later;
# typing of a room the user is not in is refused (403); a long poll is
# woken only by changes to the streams it asked for (a to_device-only or
# another room's typing long poll stays blocked until its timeout).
source "$(dirname "$0")/lib.sh"

start_stack
alice=$(sim_login @alice:localhost A1)
room=$(sim rooms '{"creator":"@alice:localhost","name":"Typing"}' | jq -r .room_id)
other=$(sim rooms '{"creator":"@alice:localhost","name":"Other"}' | jq -r .room_id)
secret=$(sim rooms '{"creator":"@eve:localhost","name":"Secret"}' | jq -r .room_id)
for u in bob charlie; do
	sim "rooms/$room/join" "{\"user_id\":\"@$u:localhost\"}" >/dev/null
done
sim "rooms/$other/join" '{"user_id":"@bob:localhost"}' >/dev/null

ms() { echo $(( $(date +%s%N) / 1000000 )); }
# v3_raw TOKEN SINCE BODY TIMEOUT: like v3, but BODY may be empty.
v3_raw() {
	curl -sS -o "$T/last_body" -w '%{http_code}' -X POST \
	    -H "Authorization: Bearer $1" --data-binary "$3" \
	    "$API_URL/_matrix/client/v3/sync?timeout=$4&since=$(jq -rn --arg s "$2" '$s|@uri')" \
	    >"$T/last_status"
	cat "$T/last_body"
}
typing() { sim_typing "$@"; }
health() { curl -sf "$API_URL/health"; }

# (a) first request of the device: held for the initial sync, then nothing
# to say about typing, so it blocks until its timeout and says nothing.
t0=$(ms)
out=$(v3 "$alice" "" "{\"typing\":{\"room_id\":\"$room\"}}" 1500)
t1=$(ms)
assert_eq "$(last_status)" 200 "(a) status"
assert_jq "$out" 'has("typing")' 'false' "(a) no typing key on timeout"
[ $((t1 - t0)) -ge 1400 ] || fail "(a) returned after $((t1 - t0)) ms, before its timeout"
s=$(printf '%s' "$out" | jq -r .next_batch)

# (b) bob types; the next request carries an empty body (sticky typing).
typing "$room" @bob:localhost
out=$(v3_raw "$alice" "$s" "" 10000)
assert_eq "$(last_status)" 200 "(b) status"
assert_jq "$out" '.typing.user_ids' '["@bob:localhost"]' "(b) typing after the EDU, sticky filter"
assert_jq "$out" '.typing.room_id' "\"$room\"" "(b) room echoed"
s=$(printf '%s' "$out" | jq -r .next_batch)

# nothing changed: an immediate request has no typing key
out=$(v3 "$alice" "$s" '{}' 0)
assert_jq "$out" 'has("typing")' 'false' "unchanged typing is not repeated"

# (c) blocked, then charlie's typing arrives ~200 ms later
v3 "$alice" "$s" '{}' 10000 >"$T/c.out" &
poll=$!
wait_for "[ \"\$(health | jq .waiters)\" = 1 ]" 15 || fail "(c) request not waiting"
sleep 0.2
tc=$(ms)
typing "$room" @charlie:localhost
wait $poll
td=$(ms)
out=$(cat "$T/c.out")
assert_jq "$out" '.typing.user_ids' '["@charlie:localhost"]' "(c) woken with charlie"
log "(c) woken $((td - tc)) ms after the typing change (timeout 10000)"
[ $((td - tc)) -le 1000 ] || fail "(c) woken only after $((td - tc)) ms"
s=$(printf '%s' "$out" | jq -r .next_batch)

# nobody typing any more: [] (not absent)
v3 "$alice" "$s" '{}' 10000 >"$T/e.out" &
poll=$!
wait_for "[ \"\$(health | jq .waiters)\" = 1 ]" 15 || fail "stop: request not waiting"
typing "$room"
wait $poll
assert_jq "$(cat "$T/e.out")" '.typing.user_ids' '[]' "typing stopped"

# authorisation: not a member of eve's room
out=$(v3 "$alice" "" "{\"typing\":{\"room_id\":\"$secret\"}}" 0)
assert_eq "$(last_status)" 403 "typing of a room alice is not in"
assert_jq "$out" .errcode '"M_FORBIDDEN"' "forbidden errcode"

# Selective waking. A to_device-only long poll and a long poll on the
# typing of another room must not be woken by typing in $room.
out=$(v3 "$alice" "" '{"to_device":{}}' 0)
sd=$(printf '%s' "$out" | jq -r .next_batch)
out=$(v3 "$alice" "" "{\"typing\":{\"room_id\":\"$other\"}}" 0)
so=$(printf '%s' "$out" | jq -r .next_batch)
t0=$(ms)
v3 "$alice" "$sd" '{}' 3000 >"$T/d.out" &
p1=$!
v3 "$alice" "$so" '{}' 3000 >"$T/o.out" &
p2=$!
wait_for "[ \"\$(health | jq .waiters)\" = 2 ]" 15 || fail "selective: requests not waiting"
typing "$room" @bob:localhost
typing "$room" @bob:localhost @charlie:localhost
sleep 1
assert_eq "$(health | jq .waiters)" 2 "typing elsewhere woke a request"
wait $p1 $p2
t1=$(ms)
[ $((t1 - t0)) -ge 2900 ] || fail "selective: returned after $((t1 - t0)) ms, before the timeout"
assert_jq "$(cat "$T/d.out")" 'has("typing")' 'false' "to_device-only has no typing"
assert_jq "$(cat "$T/d.out")" '.to_device.events // []' '[]' "to_device-only: nothing"
assert_jq "$(cat "$T/o.out")" 'has("typing")' 'false' "other room's typing unchanged"
# and the typing long poll of $room itself is woken
out=$(v3 "$alice" "$s" '{}' 10000)
assert_jq "$out" '.typing.user_ids' '["@bob:localhost","@charlie:localhost"]' "own room's typing"
it_pass
