#!/usr/bin/env bash
# Room subscriptions from both SDKs (issue #12, [compat] 1). matrix-rust-sdk
# sends its whole set on every request and closes a room by leaving it out
# (ruma has no unsubscribe_rooms): a set that re-sends a subscribed room is
# the complete set, so the room left out is dropped. matrix-js-sdk 43 sends
# a subscription once (sticky), adds the next one alone, re-sends all to
# change their config and removes with unsubscribe_rooms. The limit: with
# no room_subscriptions at all (rust-sdk's last room closed) they stay.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_ss.sh"

start_stack
alice=$(sim_login @alice:localhost A1)
mk() { sim rooms "{\"creator\":\"@alice:localhost\",\"name\":\"$1\"}" | jq -r .room_id; }
ra=$(mk a); rb=$(mk b); rc=$(mk c)
sub() { jq -cn --arg tl "${TL:-3}" --arg c "$1" '$ARGS.positional | map({(.): {timeline_limit: ($tl | tonumber), required_state: []}}) | add | {conn_id: $c, room_subscriptions: .}' --args "${@:2}"; }
none() { jq -cn --arg c "$1" '{conn_id: $c}'; }
unsub() { jq -cn --arg tl "${TL:-3}" --arg c "$1" --arg r "$2" '{conn_id: $c, unsubscribe_rooms: [$r]}'; }

# poll CONN_BODY MARK: sends a message MARK into each of a, b and c (c last),
# then long-polls with CONN_BODY until c's message is in (events are stored
# in order, so a's and b's are too); prints the rooms sent meanwhile, sorted
# ("a b"), and leaves the pos in $T/pos.
poll() {
	local body=$1 mark=$2 out seen="" i
	sim_msg "$ra" @alice:localhost "$mark"
	sim_msg "$rb" @alice:localhost "$mark"
	sim_msg "$rc" @alice:localhost "$mark"
	for i in 1 2 3 4 5 6 7 8; do
		out=$(ss "$alice" "$(cat "$T/pos")" "$body" 3000)
		[ "$(last_status)" = 200 ] || fail "poll $mark: $(last_status) $out"
		ss_pos "$out" >"$T/pos"
		seen="$seen $(printf '%s' "$out" | jq -r --arg a "$ra" --arg b "$rb" --arg c "$rc" \
		    '.rooms // {} | keys[] | if . == $a then "a" elif . == $b then "b" elif . == $c then "c" else . end')"
		printf '%s' "$out" | jq -e --arg c "$rc" --arg m "$mark" \
		    '[.rooms[$c].timeline[]?.content.body] | index($m)' >/dev/null && break
	done
	printf '%s\n' $seen | grep -v '^c$' | sort -u | tr '\n' ' ' | sed 's/ $//'
}
# c is always subscribed, so every poll ends once c's message is in
start() {
	local out
	out=$(ss "$alice" "" "$1" 10000)
	[ "$(last_status)" = 200 ] || fail "start: $(last_status) $out"
	ss_pos "$out" >"$T/pos"
}

# rust-sdk: the whole set every time
start "$(sub rust "$rc" "$ra" "$rb")"
assert_eq "$(poll "$(sub rust "$rc" "$ra" "$rb")" r1)" "a b" "rust: a and b subscribed"
assert_eq "$(poll "$(sub rust "$rc" "$rb")" r2)" "b" "rust: a left out of the set is dropped"
assert_eq "$(poll "$(sub rust "$rc" "$rb")" r3)" "b" "rust: a stays dropped"
assert_eq "$(poll "$(sub rust "$rc" "$ra" "$rb")" r4)" "a b" "rust: a re-opened"
assert_eq "$(poll "$(none rust)" r5)" "a b" "rust: no room_subscriptions: all stay (the documented limit)"

# js-sdk 43: once, sticky; the next one alone adds; all re-sent with a new
# config (modifyRoomSubscriptionInfo) keeps all; unsubscribe_rooms removes
start "$(sub js "$rc" "$ra")"
assert_eq "$(poll "$(none js)" j1)" "a" "js: a sticky"
assert_eq "$(poll "$(sub js "$rb")" j2)" "a b" "js: a new single subscription adds b"
assert_eq "$(poll "$(none js)" j3)" "a b" "js: both sticky"
assert_eq "$(poll "$(TL=4 sub js "$rc" "$ra" "$rb")" j4)" "a b" "js: all re-sent with a new config: all kept"
assert_eq "$(poll "$(unsub js "$ra")" j5)" "b" "js: unsubscribe_rooms removes a"
assert_eq "$(poll "$(none js)" j6)" "b" "js: a stays removed"
it_pass
