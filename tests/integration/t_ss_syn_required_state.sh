#!/usr/bin/env bash
# Synapse-equivalent behaviours (SYNAPSE-EQUIVALENTS.md): required_state
# as test_rooms_required_state.py asserts it: exact pairs, wildcards,
# $LAZY (each member once per connection, per room, across a reused pos),
# $ME, leave/ban cut-off, combining lists and subscriptions, expanding and
# retracting, and a changed required_state answering at once. Expected
# state is read from simhs's current state, never written down.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_ss_syn.sh"

start_stack
A=@alice:localhost B=@bob:localhost C=@carol:localhost
alice=$(sim_login $A A1)
bob=$(sim_login $B B1) # polled too: the proxy stores what happens after alice leaves
sim users '{"localpart":"carol"}' >/dev/null
ss_first "$bob" '{}'
ss_first "$alice" '{}'

# sub ROOM RS_JSON TL: a body subscribing to ROOM alone
sub() { printf '{"room_subscriptions":{"%s":{"required_state":%s,"timeline_limit":%s}}}' "$1" "$2" "${3:-1}"; }
# lst RS_JSON TL: a body with one list over every room
lst() { printf '{"lists":{"foo-list":{"ranges":[[0,99]],"required_state":%s,"timeline_limit":%s}}}' "$1" "${2:-1}"; }
pairs() { jq -nc "$1 | sort"; } # a literal set of pairs, sorted

r=$(mkroom $A "Foo" '{"topic":"a topic"}')
member join "$r" "{\"user_id\":\"$B\",\"displayname\":\"Bob\"}" >/dev/null
state "$r" $A org.matrix.foo_state "" '{"foo":1}' >/dev/null
state "$r" $A org.matrix.foo_state "other" '{"foo":2}' >/dev/null
stored "$(state "$r" $A org.matrix.bar_state "$B" '{"bar":1}')"

# test_rooms_no_required_state
out=$(ss "$alice" "" "$(sub "$r" '[]')")
assert_jq "$out" ".rooms[\"$r\"].required_state // [] | length" 0 "test_rooms_no_required_state"
# test_rooms_required_state_initial_sync
out=$(ss "$alice" "" "$(sub "$r" '[["m.room.create",""],["m.room.history_visibility",""],["m.room.name","not-a-key"],["org.none",""]]')")
assert_eq "$(state_keys "$out" "$r")" "$(pairs '[["m.room.create",""],["m.room.history_visibility",""]]')" \
    "test_rooms_required_state_initial_sync: exact pairs, absent ones skipped"
assert_jq "$out" "[.rooms[\"$r\"].required_state[] | .event_id] | sort" \
    "$(sim_get "rooms/$r/state" | jq -c '[.events[] | select(.type == "m.room.create" or .type == "m.room.history_visibility") | .event_id] | sort')" \
    "the homeserver's events"
# test_rooms_required_state_wildcard
out=$(ss "$alice" "" "$(sub "$r" '[["*","*"]]')")
assert_eq "$(state_keys "$out" "$r")" "$(sim_state_keys "$r" true)" "test_rooms_required_state_wildcard: all state"
# test_rooms_required_state_wildcard_event_type: ["*", key]
out=$(ss "$alice" "" "$(sub "$r" "[[\"*\",\"$B\"]]")")
assert_eq "$(state_keys "$out" "$r")" "$(sim_state_keys "$r" ".state_key == \"$B\"")" "test_rooms_required_state_wildcard_event_type"
# test_rooms_required_state_wildcard_state_key: [type, "*"]
out=$(ss "$alice" "" "$(sub "$r" '[["org.matrix.foo_state","*"]]')")
assert_eq "$(state_keys "$out" "$r")" "$(sim_state_keys "$r" '.type == "org.matrix.foo_state"')" "test_rooms_required_state_wildcard_state_key"
# test_rooms_required_state_me: $ME is the user's own key
out=$(ss "$alice" "" "$(sub "$r" '[["m.room.member","$ME"],["org.matrix.bar_state","$ME"]]')")
assert_eq "$(state_keys "$out" "$r")" "$(pairs "[[\"m.room.member\",\"$A\"]]")" "test_rooms_required_state_me"

# test_rooms_required_state_incremental_sync (+ _LIVE): an incremental
# response carries only state that changed, and only what was asked
RS='[["m.room.create",""],["m.room.topic",""],["m.room.member","*"]]'
out=$(ss "$alice" "" "$(sub "$r" "$RS")")
pos=$(ss_pos "$out")
stored "$(state "$r" $A m.room.topic "" '{"topic":"new topic"}')"
stored "$(state "$r" $A org.matrix.foo_state "" '{"foo":3}')"
out=$(ss "$alice" "$pos" "$(sub "$r" "$RS")" 5000)
assert_eq "$(state_keys "$out" "$r")" "$(pairs '[["m.room.topic",""]]')" \
    "test_rooms_required_state_incremental_sync_LIVE: only the changed, requested state"
assert_jq "$out" ".rooms[\"$r\"].required_state[0].content.topic" '"new topic"' "the new topic"
pos=$(ss_pos "$out")

# test_rooms_required_state_expand (+ test_changing_required_state_returns_immediately):
# adding a pair sends that state at once, not only the changes
t0=$(now_ms)
out=$(ss "$alice" "$pos" "$(sub "$r" '[["m.room.create",""],["m.room.topic",""],["m.room.member","*"],["org.matrix.foo_state","*"]]')" 10000)
dt=$(($(now_ms) - t0))
assert_eq "$(state_keys "$out" "$r")" "$(sim_state_keys "$r" '.type == "org.matrix.foo_state"')" "test_rooms_required_state_expand"
[ "$dt" -lt 5000 ] || fail "test_changing_required_state_returns_immediately: held $dt ms"
pos=$(ss_pos "$out")

# test_rooms_required_state_expand_retract_expand / _expand_deduplicate
r2=$(mkroom $A "Foo")
stored "$(msg "$r2" $A "x")"
out=$(ss "$alice" "" "$(sub "$r2" '[["m.room.create",""]]')")
assert_eq "$(state_keys "$out" "$r2")" "$(pairs '[["m.room.create",""]]')" "expand_retract_expand: start"
pos=$(ss_pos "$out")
stored "$(msg "$r2" $A "msg")"
out=$(ss "$alice" "$pos" "$(sub "$r2" '[["m.room.create",""],["m.room.name",""]]')" 5000)
assert_eq "$(state_keys "$out" "$r2")" "$(pairs '[["m.room.name",""]]')" "expand_retract_expand: expanded"
pos=$(ss_pos "$out")
stored "$(state "$r2" $A m.room.name "" '{"name":"Bar"}')"
out=$(ss "$alice" "$pos" "$(sub "$r2" '[["m.room.create",""]]')" 3000)
assert_jq "$out" ".rooms[\"$r2\"].required_state // [] | length" 0 "expand_retract_expand: retracted, the new name not sent"
pos=$(ss_pos "$out")
pos_dedup=$pos
stored "$(msg "$r2" $A "msg2")"
out=$(ss "$alice" "$pos" "$(sub "$r2" '[["m.room.create",""],["m.room.name",""]]')" 5000)
assert_jq "$out" "[.rooms[\"$r2\"].required_state[]? | [.type, .content.name]]" '[["m.room.name","Bar"]]' \
    "test_rooms_required_state_expand_retract_expand: the name that changed meanwhile"
pos=$(ss_pos "$out")
# deduplicate: retract and expand again with no change: not re-sent
out=$(ss "$alice" "$pos" "$(sub "$r2" '[["m.room.create",""]]')" 0)
pos=$(ss_pos "$out")
stored "$(msg "$r2" $A "msg3")"
out=$(ss "$alice" "$pos" "$(sub "$r2" '[["m.room.create",""],["m.room.name",""]]')" 5000)
assert_jq "$out" ".rooms[\"$r2\"].required_state // [] | length" 0 \
    "test_rooms_required_state_expand_deduplicate: unchanged state is not sent again"

# --- $LAZY
L=$(mkroom $B "lazy")
member join "$L" "{\"user_id\":\"$A\"}" >/dev/null
member join "$L" "{\"user_id\":\"$C\"}" >/dev/null
msg "$L" $B "1" >/dev/null
stored "$(msg "$L" $C "2")"
LZ='[["m.room.create",""],["m.room.member","$LAZY"]]'
# test_rooms_required_state_lazy_loading_room_members_initial_sync
out=$(ss "$alice" "" "$(sub "$L" "$LZ" 1)")
assert_eq "$(state_keys "$out" "$L")" "$(pairs "[[\"m.room.create\",\"\"],[\"m.room.member\",\"$C\"]]")" \
    "lazy initial: only the timeline's sender"
out=$(ss "$alice" "" "$(sub "$L" "$LZ" 2)")
assert_eq "$(state_keys "$out" "$L")" "$(pairs "[[\"m.room.create\",\"\"],[\"m.room.member\",\"$B\"],[\"m.room.member\",\"$C\"]]")" \
    "test_rooms_required_state_lazy_loading_room_members_initial_sync"
pos=$(ss_pos "$out")
# test_rooms_required_state_lazy_loading_room_members_incremental_sync:
# members already sent are not sent again; a new sender is
msg "$L" $B "3" >/dev/null
stored "$(msg "$L" $A "4")"
out=$(ss "$alice" "$pos" "$(sub "$L" "$LZ" 2)" 5000)
assert_eq "$(state_keys "$out" "$L")" "$(pairs "[[\"m.room.member\",\"$A\"]]")" \
    "test_rooms_required_state_lazy_loading_room_members_incremental_sync: each member once"
# test_lazy_loading_room_members_forked_position: the same pos again (its
# response was lost) gives alice's member again, not "already sent"
out=$(ss "$alice" "$pos" "$(sub "$L" "$LZ" 2)" 0)
assert_eq "$(state_keys "$out" "$L")" "$(pairs "[[\"m.room.member\",\"$A\"]]")" \
    "test_lazy_loading_room_members_forked_position: a retried pos re-sends"
pos=$(ss_pos "$out")
# test_rooms_required_state_changed_membership_in_timeline_lazy_loading_room_members_incremental_sync
# (+ test_lazy_loading_room_members_state_reset_non_limited_timeline): a
# changed member event of a timeline sender is sent again
state "$L" $B m.room.member "$B" '{"membership":"join","displayname":"Bob 2"}' >/dev/null
stored "$(msg "$L" $B "5")"
out=$(ss "$alice" "$pos" "$(sub "$L" "$LZ" 2)" 5000)
assert_jq "$out" "[.rooms[\"$L\"].required_state[]? | select(.type == \"m.room.member\") | [.state_key, .content.displayname]]" \
    "[[\"$B\",\"Bob 2\"]]" "lazy: a changed membership in the timeline is sent again"
pos=$(ss_pos "$out")
# test_lazy_loading_room_members_limited_sync: a membership change pushed
# out of the timeline is sent when that member next speaks
state "$L" $C m.room.member "$C" '{"membership":"join","displayname":"Carol 2"}' >/dev/null
msg "$L" $A "6" >/dev/null
stored "$(msg "$L" $A "7")"
out=$(ss "$alice" "$pos" "$(sub "$L" "$LZ" 2)" 5000)
assert_jq "$out" "[.rooms[\"$L\"].required_state[]? | select(.type == \"m.room.member\") | .state_key]" '[]' \
    "test_lazy_loading_room_members_limited_sync: not yet (carol not in the timeline)"
pos=$(ss_pos "$out")
stored "$(msg "$L" $C "8")"
out=$(ss "$alice" "$pos" "$(sub "$L" "$LZ" 2)" 5000)
assert_jq "$out" "[.rooms[\"$L\"].required_state[]? | select(.type == \"m.room.member\") | [.state_key, .content.displayname]]" \
    "[[\"$C\",\"Carol 2\"]]" "test_lazy_loading_room_members_limited_sync: sent when she speaks"
# test_lazy_loading_room_members_across_multiple_connections: another
# connection (another device) has sent nothing yet
alice2=$(sim_login $A A2)
ss_first "$alice2" "$(sub "$L" "$LZ" 2)"
assert_jq "$out" "[.rooms[\"$L\"].required_state[]? | select(.type == \"m.room.member\") | .state_key] | sort" \
    "$(sim_get "rooms/$L/events" | jq -c '[.events[-2:][].sender] | unique | sort')" \
    "test_lazy_loading_room_members_across_multiple_connections"
# test_lazy_loading_room_members_across_multiple_rooms: what was sent for
# L says nothing about L2
L2=$(mkroom $B "lazy 2")
member join "$L2" "{\"user_id\":\"$A\"}" >/dev/null
member join "$L2" "{\"user_id\":\"$C\"}" >/dev/null
stored "$(msg "$L2" $B "hi")"
out=$(ss "$alice" "" "{\"room_subscriptions\":{\"$L\":{\"required_state\":$LZ,\"timeline_limit\":1},\"$L2\":{\"required_state\":$LZ,\"timeline_limit\":1}}}")
pos=$(ss_pos "$out")
stored "$(msg "$L" $B "in L")" "$(msg "$L2" $C "in L2")"
out=$(ss "$alice" "$pos" "{\"room_subscriptions\":{}}" 5000)
if [ "$(printf '%s' "$out" | jq ".rooms | has(\"$L2\")")" != true ]; then
	out2=$(ss "$alice" "$(ss_pos "$out")" '{}' 5000)
	out=$(jq -nc --argjson a "$out" --argjson b "$out2" '$a * $b')
fi
assert_jq "$out" "[.rooms[\"$L2\"].required_state[]? | select(.type == \"m.room.member\") | .state_key]" "[\"$C\"]" \
    "test_lazy_loading_room_members_across_multiple_rooms: carol in L2 although sent for L"
# test_rooms_required_state_expand_lazy_loading_room_members_incremental_sync
E=$(mkroom $B "expand lazy")
member join "$E" "{\"user_id\":\"$A\"}" >/dev/null
stored "$(msg "$E" $B "from bob")"
out=$(ss "$alice" "" "$(sub "$E" '[["m.room.create",""]]' 3)")
pos=$(ss_pos "$out")
stored "$(msg "$E" $B "again")"
out=$(ss "$alice" "$pos" "$(sub "$E" "$LZ" 3)" 5000)
assert_jq "$out" "[.rooms[\"$E\"].required_state[]? | select(.type == \"m.room.member\") | .state_key]" "[\"$B\"]" \
    "test_rooms_required_state_expand_lazy_loading_room_members_incremental_sync"
# test_lazy_loading_room_members_explicit_membership_removed: $ME then
# $LAZY: alice's member was sent, bob's comes with his message
X=$(mkroom $B "explicit")
member join "$X" "{\"user_id\":\"$A\"}" >/dev/null
stored "$(msg "$X" $B "1")"
out=$(ss "$alice" "" "$(sub "$X" '[["m.room.member","$ME"]]' 1)")
assert_eq "$(state_keys "$out" "$X")" "$(pairs "[[\"m.room.member\",\"$A\"]]")" "explicit: \$ME"
pos=$(ss_pos "$out")
stored "$(msg "$X" $B "2")"
out=$(ss "$alice" "$pos" "$(sub "$X" '[["m.room.member","$LAZY"]]' 1)" 5000)
assert_eq "$(state_keys "$out" "$X")" "$(pairs "[[\"m.room.member\",\"$B\"]]")" "explicit -> lazy: bob's member"
pos=$(ss_pos "$out")
stored "$(msg "$X" $A "3")"
out=$(ss "$alice" "$pos" "$(sub "$X" '[["m.room.member","$LAZY"]]' 1)" 5000)
assert_jq "$out" ".rooms[\"$X\"].required_state // [] | length" 0 \
    "test_lazy_loading_room_members_explicit_membership_removed: alice's member already sent"

# test_rooms_required_state_combine_superset: a list and a subscription
# on one room give the union
S=$(mkroom $A "superset" '{"topic":"t"}')
member join "$S" "{\"user_id\":\"$B\"}" >/dev/null
stored "$(state "$S" $A org.matrix.foo_state "" '{"a":1}')"
out=$(ss "$alice" "" "{\"lists\":{\"foo-list\":{\"ranges\":[[0,99]],\"required_state\":[[\"m.room.create\",\"\"],[\"m.room.member\",\"$A\"]],\"timeline_limit\":0},
 \"bar-list\":{\"ranges\":[[0,99]],\"required_state\":[[\"m.room.member\",\"*\"],[\"org.matrix.foo_state\",\"\"]],\"timeline_limit\":0}},
 \"room_subscriptions\":{\"$S\":{\"required_state\":[[\"m.room.topic\",\"\"]],\"timeline_limit\":0}}}")
assert_eq "$(state_keys "$out" "$S")" "$(sim_state_keys "$S" '.type == "m.room.create" or .type == "m.room.member" or .type == "org.matrix.foo_state" or .type == "m.room.topic"')" \
    "test_rooms_required_state_combine_superset"

# test_rooms_required_state_leave_ban_initial / _incremental: nothing
# past the leave or ban, although bob's poller stored it
for how in leave ban; do
	R=$(mkroom $B "cut $how")
	member join "$R" "{\"user_id\":\"$A\"}" >/dev/null
	member join "$R" "{\"user_id\":\"$C\"}" >/dev/null
	stored "$(state "$R" $B org.matrix.foo_state "" '{"foo":"before"}')"
	out=$(ss "$alice" "" "$(sub "$R" '[["m.room.create",""],["m.room.member","*"],["org.matrix.foo_state",""]]' 3)")
	pos=$(ss_pos "$out")
	if [ $how = leave ]; then
		cut=$(member leave "$R" "{\"user_id\":\"$A\"}")
	else
		cut=$(member ban "$R" "{\"sender\":\"$B\",\"user_id\":\"$A\"}")
	fi
	state "$R" $B org.matrix.foo_state "" '{"foo":"after"}' >/dev/null
	state "$R" $B org.matrix.bar_state "" '{"bar":"after"}' >/dev/null
	stored "$(member leave "$R" "{\"user_id\":\"$C\"}")"
	out=$(ss "$alice" "$pos" "$(sub "$R" '[["m.room.create",""],["m.room.member","*"],["org.matrix.foo_state",""],["org.matrix.bar_state",""]]' 3)" 5000)
	assert_jq "$out" "[.rooms[\"$R\"].required_state[]? | .event_id]" "[\"$cut\"]" \
		"test_rooms_required_state_leave_ban_incremental ($how): only the $how itself"
	assert_jq "$out" ".rooms[\"$R\"] | has(\"invite_state\")" 'false' "no invite_state after a $how"
	out=$(ss "$alice" "" "$(sub "$R" '[["m.room.create",""],["m.room.member","*"],["org.matrix.foo_state",""],["org.matrix.bar_state",""]]' 3)")
	assert_jq "$out" "[.rooms[\"$R\"].required_state[]? | select(.type == \"org.matrix.foo_state\") | .content.foo]" '["before"]' \
		"test_rooms_required_state_leave_ban_initial ($how): state as of the $how"
	assert_jq "$out" "[.rooms[\"$R\"].required_state[]? | select(.type == \"org.matrix.bar_state\" or (.type == \"m.room.member\" and .state_key == \"$C\" and .content.membership == \"leave\"))] | length" 0 \
		"test_rooms_required_state_leave_ban_initial ($how): nothing after it"
done
it_pass
