#!/usr/bin/env bash
# Sliding sync typing extension (MSC3961): {rooms: {id: {type: m.typing,
# content: {user_ids}}}} for rooms in scope the user is joined to (never
# an invite or a room they were kicked from, even in the window); the
# current typing on a connection's first response, then changes (an
# empty list clears); scoped by lists/rooms; sticky; a long-poll is woken
# by typing in a room in scope, and not answered by typing elsewhere.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_ss_ext.sh"

start_stack
tok=$(sim_login @alice:localhost A1)
ss_register "$tok"
join() { sim "rooms/$1/join" "{\"user_id\":\"$2\"}" >/dev/null; }
typing() { # ROOM USER...
	local r=$1 ids=""
	shift
	[ $# -gt 0 ] && ids=$(printf '"%s",' "$@")
	sim "rooms/$r/typing" "{\"user_ids\":[${ids%,}]}" >/dev/null
}
out_room=$(ss_mk Outside)
rk=$(ss_mk Kicked @eve:localhost)
join "$rk" @alice:localhost
sim "rooms/$rk/kick" '{"sender":"@eve:localhost","user_id":"@alice:localhost"}' >/dev/null
ri=$(ss_mk Invite @eve:localhost)
sim "rooms/$ri/invite" '{"sender":"@eve:localhost","user_id":"@alice:localhost"}' >/dev/null
r1=$(ss_mk One)
join "$r1" @bob:localhost
ss_say "$r1" @bob:localhost >/dev/null
typing "$r1" @bob:localhost
typing "$rk" @eve:localhost
typing "$ri" @eve:localhost
typing "$out_room" @alice:localhost
wait_for "[ \$(psql_q \"SELECT count(*) FROM syncv3_typing WHERE user_ids <> '[]'\") -ge 2 ]" 15 ||
    fail "typing not stored"

body() { # [EXTENSIONS_MEMBERS]
	local ext='"typing":{"enabled":true}'
	[ $# -ge 1 ] && ext=$1
	echo "{\"lists\":{\"w\":{\"ranges\":[[0,2]],\"timeline_limit\":1}},\"extensions\":{$ext}}"
}
rooms_of() { printf '%s' "$1" | jq -c '.extensions.typing.rooms|keys'; }
out=$(ss_ready "$tok" "$(body)")
# the window holds r1, the invite and the kick (newest first)
assert_jq "$out" "[.rooms|keys[]|select(. == \"$r1\" or . == \"$ri\" or . == \"$rk\")]|length" 3 "window"
assert_eq "$(rooms_of "$out")" "[\"$r1\"]" "joined rooms in scope only"
assert_jq "$out" ".extensions.typing.rooms[\"$r1\"]" '{"type":"m.typing","content":{"user_ids":["@bob:localhost"]}}' "m.typing event"
p=$(ss_pos "$out")
# nothing changed: no rooms, and a long-poll is not answered by typing in
# a joined room outside the window
ss_bg idle "$tok" "$p" "$(body '')" 1500
sleep 0.3
typing "$out_room" @alice:localhost @bob:localhost
ss_wait idle
assert_eq "$(rooms_of "$out")" '[]' "no change, nothing"
[ "$(cat "$T/idle.ms")" -ge 1400 ] || fail "answered by typing outside the scope ($(cat "$T/idle.ms") ms)"
p=$(ss_pos "$out")
# woken by typing in scope; the cleared list comes as []
ss_woken_by lp "$tok" "$p" "$(body '')" 'typing "$r1"'
assert_jq "$out" ".extensions.typing.rooms[\"$r1\"].content.user_ids" '[]' "cleared"
p=$(ss_pos "$out")
# lists ["other"]: the window's rooms are out of scope
typing "$r1" @bob:localhost
sleep 1
out=$(ss "$tok" "$p" "$(body '"typing":{"lists":["other"]}')" 0)
assert_eq "$(rooms_of "$out")" '[]' "lists names no list of the window"
p=$(ss_pos "$out")
# back to all lists: r1 re-enters the scope with its current typing
out=$(ss "$tok" "$p" "$(body '"typing":{"lists":["*"]}')" 0)
assert_jq "$out" ".extensions.typing.rooms[\"$r1\"].content.user_ids" '["@bob:localhost"]' "re-entered the scope"
it_pass
