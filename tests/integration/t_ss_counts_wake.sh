#!/usr/bin/env bash
# Issue #11: unread counts that change alone (a read receipt from another
# device: upstream sends new unread_notifications and no event) wake a
# long-polling sliding sync connection that shows the room, in a list or
# a subscription, at once; not one that shows other rooms only. Before,
# the counts came only with the connection's next response.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_ss_syn.sh"

start_stack
A=@alice:localhost C=@carol:localhost
alice=$(sim_login $A A1)
carol=$(sim_login $C C1) # polled too: stores carol's message once
ss_first "$alice" '{}'
ss_first "$carol" '{}'
r=$(mkroom $C counts)
o=$(mkroom $C other)
member join "$r" "{\"user_id\":\"$A\"}" >/dev/null
stored "$(member join "$o" "{\"user_id\":\"$A\"}")"
ev=$(msg "$r" $C "unread")
stored "$ev"
nc() { psql_q "SELECT notification_count FROM syncv3_user_rooms WHERE user_id = '$A' AND room_id = '$r'"; }
wait_for '[ "$(nc)" = 1 ]' 20 || fail "the unread count never stored"

# wait_read POS BODY: a 10 s long poll, her read receipt upstream after
# 1 s; prints the ms it took, the response in $T/wake.json
wait_read() {
	local t0 t1
	bg_then 1 sim "rooms/$r/receipt" "{\"user_id\":\"$A\",\"event_id\":\"$ev\"}"
	t0=$(now_ms)
	ss "$alice" "$1" "$2" 10000 >"$T/wake.json"
	t1=$(now_ms)
	bg_wait
	echo $((t1 - t0))
}
unread() { sim "rooms/$r/send" "{\"sender\":\"$C\",\"type\":\"m.room.message\",\"content\":{\"body\":\"more\"}}" | jq -r .event_id; }

# a list showing the room
list='{"lists":{"all":{"ranges":[[0,9]],"timeline_limit":1,"required_state":[]}}}'
out=$(ss "$alice" "" "$list")
assert_jq "$out" ".rooms[\"$r\"].notification_count" 1 "list: one unread"
ms=$(wait_read "$(ss_pos "$out")" "$list")
out=$(cat "$T/wake.json")
assert_jq "$out" ".rooms[\"$r\"] | [.notification_count, .highlight_count, .timeline]" '[0,0,null]' \
    "list: the counts changed alone"
[ "$ms" -lt 5000 ] || fail "list: the counts waited ${ms} ms for the long poll's end"

# a subscription showing it, no list
ev=$(unread); stored "$ev"; wait_for '[ "$(nc)" = 1 ]' 20 || fail "unread again never stored"
sub="{\"room_subscriptions\":{\"$r\":{\"timeline_limit\":1,\"required_state\":[]}}}"
out=$(ss "$alice" "" "$sub")
assert_jq "$out" ".rooms[\"$r\"].notification_count" 1 "subscription: one unread"
ms=$(wait_read "$(ss_pos "$out")" "$sub")
assert_jq "$(cat "$T/wake.json")" ".rooms[\"$r\"].notification_count" 0 "subscription: the count changed alone"
[ "$ms" -lt 5000 ] || fail "subscription: the counts waited ${ms} ms"

# a connection showing only the other room is not even woken for it
wakeups() { curl -sS "$API_URL/metrics" | awk '$1 == "syncv3_api_wakeups_total" {print $2}'; }
ev=$(unread); stored "$ev"; wait_for '[ "$(nc)" = 1 ]' 20 || fail "unread again never stored"
sub="{\"room_subscriptions\":{\"$o\":{\"timeline_limit\":1,\"required_state\":[]}}}"
out=$(ss "$alice" "" "$sub")
p=$(ss_pos "$out")
w0=$(wakeups)
bg_then 1 sim "rooms/$r/receipt" "{\"user_id\":\"$A\",\"event_id\":\"$ev\"}"
out=$(ss "$alice" "$p" "$sub" 3000)
bg_wait
assert_jq "$out" ".rooms // {} | has(\"$r\")" false "another room's counts: not sent"
assert_jq "$out" ".pos" "\"$p\"" "another room's counts: nothing new, the same pos at the timeout"
wait_for '[ "$(nc)" = 0 ]' 20 || fail "the read never stored"
assert_eq "$(wakeups)" "$w0" "another room's counts: the connection was not woken"
it_pass
