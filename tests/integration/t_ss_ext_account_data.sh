#!/usr/bin/env bash
# Sliding sync account_data extension (MSC3963): global account data in
# full on a connection's first response, then only changes; room account
# data only for rooms in scope (the lists' windows and the subscriptions,
# narrowed by the extension's lists/rooms), in full when a room enters
# the scope, never for an invite; sticky (a request without the
# extension keeps it on); a retried pos gets the changes again; a
# long-poll is woken by account data.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_ss_ext.sh"

start_stack
tok=$(sim_login @alice:localhost A1)
ss_register "$tok"
ri=$(ss_mk Invite @eve:localhost)
sim "rooms/$ri/invite" "{\"sender\":\"@eve:localhost\",\"user_id\":\"@alice:localhost\"}" >/dev/null
r3=$(ss_mk Three)
r1=$(ss_mk One)
r2=$(ss_mk Two)
ss_say "$r1" >/dev/null
ss_say "$r2" >/dev/null
ad() { # ROOM TYPE CONTENT (ROOM "" = global)
	local room=""
	[ -n "$1" ] && room="\"room_id\":\"$1\","
	sim account_data "{\"user_id\":\"@alice:localhost\",$room\"type\":\"$2\",\"content\":$3}" >/dev/null
}
ad "" org.x.global '{"a":1}'
for r in "$r1" "$r2" "$r3" "$ri"; do ad "$r" m.tag '{"tags":{"u.x":{}}}'; done
wait_for "[ \$(psql_q \"SELECT count(*) FROM syncv3_account_data WHERE type = 'm.tag'\") = 3 ]" 15 ||
    fail "account data not stored: $(psql_q 'SELECT room_id, type FROM syncv3_account_data')"

body() { # RANGE_HI [EXTENSIONS_MEMBERS]
	local ext='"account_data":{"enabled":true}'
	[ $# -ge 2 ] && ext=$2
	echo "{\"lists\":{\"w\":{\"ranges\":[[0,$1]],\"timeline_limit\":1}},\"extensions\":{$ext}}"
}
rooms_of() { printf '%s' "$1" | jq -c '.extensions.account_data.rooms|keys'; }
# window [0,0]: the newest room (r2) only
out=$(ss_ready "$tok" "$(body 0)")
assert_jq "$out" '[.extensions.account_data.global[]|select(.type=="org.x.global")|.content]' '[{"a":1}]' "global in full"
assert_eq "$(rooms_of "$out")" "[\"$r2\"]" "room data for the window only"
assert_jq "$out" ".extensions.account_data.rooms[\"$r2\"]" '[{"type":"m.tag","content":{"tags":{"u.x":{}}}}]' "the room's m.tag"
p=$(ss_pos "$out")
# the window grows: r1 and r3 enter (in full), the invite gets nothing,
# r2 is not repeated, global is not repeated
out=$(ss "$tok" "$p" "$(body 3)" 0)
assert_eq "$(rooms_of "$out")" "$(jq -cn --arg a "$r1" --arg b "$r3" '[$a,$b]|sort')" "rooms new to the scope"
assert_jq "$out" '.extensions.account_data.global' '[]' "global: only changes"
p=$(ss_pos "$out")
# a change: only that room, only that event; sticky (no extensions sent)
ad "$r3" m.tag '{"tags":{"u.y":{}}}'
ad "$ri" m.tag '{"tags":{"u.y":{}}}'
wait_for "[ \$(psql_q \"SELECT count(*) FROM syncv3_account_data WHERE json LIKE '%u.y%'\") = 1 ]" 10 || fail "change not stored"
out=$(ss "$tok" "$p" "$(body 3 '')" 0)
assert_eq "$(rooms_of "$out")" "[\"$r3\"]" "sticky: only the changed room"
assert_jq "$out" ".extensions.account_data.rooms[\"$r3\"][0].content.tags|keys" '["u.y"]' "the new value"
# that response is lost: the client retries its pos and gets it again
out=$(ss "$tok" "$p" "$(body 3 '')" 0)
assert_eq "$(rooms_of "$out")" "[\"$r3\"]" "retried pos: the change again"
p=$(ss_pos "$out")
# scope narrowed to the subscriptions: lists [] and a subscription to r1
out=$(ss "$tok" "$p" "{\"lists\":{\"w\":{\"ranges\":[[0,0]],\"timeline_limit\":1}},\"room_subscriptions\":{\"$r1\":{\"timeline_limit\":1}},\"extensions\":{\"account_data\":{\"lists\":[],\"rooms\":[\"*\"]}}}" 0)
p=$(ss_pos "$out")
ad "$r1" m.tag '{"tags":{"u.z":{}}}'
ad "$r2" m.tag '{"tags":{"u.z":{}}}'
wait_for "[ \$(psql_q \"SELECT count(*) FROM syncv3_account_data WHERE json LIKE '%u.z%'\") = 2 ]" 10 || fail "change not stored"
out=$(ss "$tok" "$p" "$(body 0 '')" 0)
assert_eq "$(rooms_of "$out")" "[\"$r1\"]" "rooms [*]: the subscription, not the list's r2"
p=$(ss_pos "$out")
# long-poll woken by global account data
ss_woken_by lp "$tok" "$p" "$(body 0 '')" "ad '' org.x.global '{\"a\":2}'"
assert_jq "$out" '[.extensions.account_data.global[]|select(.type=="org.x.global")|.content]' '[{"a":2}]' "woken with the change"
p=$(ss_pos "$out")
# switched off: no member at all
out=$(ss "$tok" "$p" "$(body 0 '"account_data":{"enabled":false}')" 0)
assert_jq "$out" '.extensions.account_data' 'null' "off"
it_pass
