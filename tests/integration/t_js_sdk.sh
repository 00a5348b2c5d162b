#!/usr/bin/env bash
# matrix-js-sdk 43 (tests/js, pinned in package-lock.json) configured with
# syncv3's base URL only (issue #12): logs in through the passed-through
# /login, calls /versions (our flag seen), pushrules and capabilities
# through the api, sends a message into a room; syncv3 stores it (seen
# through the v3 streams API's room_list, fed by the poller). Skips (exit
# 77, counted as skipped) when npm or the packages are unavailable; it never
# runs apt itself (tests/js/setup.sh does, when run by hand or by CI setup).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_js.sh"

js_setup
start_stack
sim password '{"user_id":"@alice:localhost","password":"js-secret"}' >/dev/null
room=$(sim rooms '{"creator":"@alice:localhost","name":"JS room"}' | jq -r .room_id)
js_run js.err 60 sdk_test.mjs API_URL="$API_URL" ROOM_ID="$room" \
    LOGIN_USER=alice LOGIN_PASSWORD=js-secret
out=$js_out
assert_jq "$out" '[.user_id,.device_id,.flag,.has_pushrules,.has_room_versions]' \
    '["@alice:localhost","JSDEV",true,true,true]' "js-sdk through the api"
tok=$(printf '%s' "$out" | jq -r .access_token)
ev=$(printf '%s' "$out" | jq -r .event_id)
# every call went through the api: upstream saw them, the SDK knew only API_URL
for p in /_matrix/client/v3/login /_matrix/client/versions /_matrix/client/v3/pushrules/ /_matrix/client/v3/capabilities; do
	[ "$(sim_get stats | jq --arg p "$p" '.paths[$p] // 0')" -ge 1 ] || fail "$p never reached upstream"
done
# syncv3 stored the message (poller -> accumulator -> room_list)
found=
for i in $(seq 1 40); do
	got=$(v3 "$tok" "" '{"room_list":{"timeline_limit":5}}' 0)
	if [ "$(printf '%s' "$got" | jq -r --arg r "$room" --arg e "$ev" \
	    '[.room_list.rooms[]? | select(.room_id == $r) | .timeline[]? | select(.event_id == $e)] | length')" = 1 ]; then
		found=1; break
	fi
	sleep 0.5
done
[ -n "$found" ] || fail "syncv3 never stored the SDK's message: $got"
assert_jq "$got" "[.room_list.rooms[] | select(.room_id == \"$room\") | .timeline[] | select(.event_id == \"$ev\") | .content.body]" \
    '["hello from matrix-js-sdk"]' "stored body"
it_pass
