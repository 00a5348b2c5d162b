#!/usr/bin/env bash
# Helpers for the late-event order scenarios (t_order_*.sh), sourced after
# lib.sh; brings lib_privacy.sh (the stack, alice and bob) and lib_ss.sh.
# rl is the v3 request of bob's client. The premise (t_order_late.sh's
# header): alice ignores carol, so alice's poller never delivers carol's
# messages; bob's poller lags (its syncs fail) while bob and carol talk, so
# alice's poller stores b2, b3 and bob's poller, once it catches up,
# delivers the chunk b1 c1 c2 b2 c3 b3: c1 c2 precede the stored anchor
# b2, c3 the anchor b3.
source "$(dirname "${BASH_SOURCE[0]}")/lib_privacy.sh"
source "$(dirname "${BASH_SOURCE[0]}")/lib_ss.sh"
C=@carol:localhost
rl='{"room_list":{"timeline_limit":20}}'
stored() { [ "$(psql_q "SELECT count(*) FROM syncv3_events WHERE json LIKE '%\"body\":\"$1\"%'")" -ge 1 ]; }
cs() { sim "rooms/$r/send" "{\"sender\":\"$C\",\"type\":\"m.room.message\",\"content\":{\"body\":\"$1\"}}" >/dev/null; }
# fold VIEW RESPONSE KIND: the view (a JSON array of bodies) after a v3
# or ss response, as a client applies it
fold() {
	local sel
	if [ "$3" = v3 ]; then
		sel="[.room_list.rooms[]?|select(.room_id==\"$r\")]"
	else
		sel="[.rooms[\"$r\"]//empty]"
	fi
	printf '%s' "$2" | jq -c --argjson v "$1" "$sel as \$x | if (\$x|length) == 0 then \$v
	    else \$x[0] as \$o | [\$o.timeline[]?|.content.body // empty] as \$t |
	    if (\$o.limited == true or \$o.initial == true) then \$t else \$v + \$t end end"
}
# msgs VIEW: the view's b*/c* messages, in its order
msgs() { printf '%s' "$1" | jq -c '[.[]|select(test("^[bc][0-9]$"))]'; }

# late_premise NAME: room r named NAME; bob's v3 client (request $rl) and
# sliding sync connection (request $sb, ROOM in it becomes the room) hold
# b0 (s0, vv0), then b0..b3, the anchors (s p vv sv), while bob's poller
# still fails.
late_premise() {
	ignored_room "$1"
	sb=${sb//ROOM/$r}
	say $r b0
	wait_for "stored b0" 15 || fail "b0 not stored"
	out=$(v3 "$bob" "" "$rl" 10000)
	vv=$(fold '[]' "$out" v3)
	s=$(printf '%s' "$out" | jq -r .next_batch)
	out=$(ss "$bob" "" "$sb" 0)
	assert_eq "$(last_status)" 200 "bob's sliding sync"
	sv=$(fold '[]' "$out" ss)
	p=$(ss_pos "$out")
	s0=$s vv0=$vv
	assert_eq "$(msgs "$vv")" '["b0"]' "bob's v3 view before"
	assert_eq "$(msgs "$sv")" '["b0"]' "bob's ss view before"
	# bob's poller lags from b1 on
	sim fail "{\"path\":\"sync\",\"access_token\":\"$bob\",\"mode\":\"status\",\"status\":500,\"count\":100000}" >/dev/null
	say $r b1
	wait_for "[ -n \"\$(psql_q \"SELECT poll_error FROM syncv3_devices WHERE user_id = '$B'\")\" ]" 30 ||
	    fail "bob's poller did not hit the failure"
	cs c1; cs c2; say $r b2; cs c3; say $r b3
	wait_for "stored b3" 15 || fail "alice's poller did not store b3"
	stored c1 && fail "c1 stored before bob's poller caught up (test premise)"
	out=$(v3 "$bob" "$s" "$rl" 0)
	vv=$(fold "$vv" "$out" v3)
	s=$(printf '%s' "$out" | jq -r .next_batch)
	out=$(ss "$bob" "$p" "$sb" 0)
	sv=$(fold "$sv" "$out" ss)
	p=$(ss_pos "$out")
	assert_eq "$(msgs "$vv")" '["b0","b1","b2","b3"]' "bob's v3 view has the anchors"
	assert_eq "$(msgs "$sv")" '["b0","b1","b2","b3"]' "bob's ss view has the anchors"
}
