#!/usr/bin/env bash
# A kick stored by bob's poller while alice's own poller is failing must
# hide the room from alice's typing stream as it does from room_list and
# room_member (one rule, api/visible.h); typing once read only her own
# syncv3_user_rooms row and kept showing who types there.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_privacy.sh"

rk=$(mk "to kick"); other=$(mk "other")
for r in $rk $other; do sim "rooms/$r/join" "{\"user_id\":\"$A\"}" >/dev/null; done
v3 "$bob" "" '{}' 10000 >/dev/null
out=$(v3 "$alice" "" "{\"typing\":{\"room_id\":\"$rk\"}}" 10000)
assert_eq "$(last_status)" 200 "alice's typing before the kick"
s=$(printf '%s' "$out" | jq -r .next_batch)
wait_for "ur_is $A $rk join" 15 || fail "alice's join not stored"
# alice's own upstream sync fails from now on (a lagging poller)
sim fail "{\"path\":\"sync\",\"access_token\":\"$alice\",\"mode\":\"status\",\"status\":500,\"count\":100000}" >/dev/null
say $other "flush alice's in-flight poll"
wait_for "[ -n \"\$(psql_q \"SELECT poll_error FROM syncv3_devices WHERE user_id = '$A'\")\" ]" 30 ||
    fail "alice's poller did not hit the failure"
sim "rooms/$rk/kick" "{\"sender\":\"$B\",\"user_id\":\"$A\"}" >/dev/null
wait_for "[ \"\$(psql_q \"SELECT membership FROM syncv3_state WHERE room_id = '$rk' AND state_key = '$A' AND to_pos IS NULL\")\" = leave ]" 15 ||
    fail "bob's poller did not store the kick"
ur_is $A $rk join || fail "alice's own row already says leave (test premise)"
out=$(v3 "$alice" "" '{"room_list":{}}' 0)
assert_jq "$out" '[.room_list.rooms[].room_id]|index("'"$rk"'")' 'null' "room_list hides the room (visible.h)"
sim "rooms/$rk/typing" "{\"user_id\":\"$B\",\"user_ids\":[\"$B\"]}" >/dev/null
sleep 1
out=$(v3 "$alice" "$s" "{\"typing\":{\"room_id\":\"$rk\"}}" 0)
echo "typing answer: $(last_status) $out" >&2
assert_eq "$(last_status)" 403 "typing of a room alice was kicked from"
it_pass
