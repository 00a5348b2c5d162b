#!/usr/bin/env bash
# A woken round whose save rode in its detail statement
# (SS_DETAIL_SAVE_CONT) but that then sends nothing: a list with
# timeline_limit 0, so a message makes its room look changed and its
# timeline is empty (ss_rooms.c is_empty_change). That save stays
# unconfirmed and the connection's ver moved with it: the request waits
# on, and a message in a subscribed room then answers it, saved by a
# second fold that drops the first one's rows (no row of a response
# never sent is left to read once a later one is confirmed). Its pos
# continues the connection; at the timeout with nothing sent, the same
# pos comes back and continues too.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_ss.sh"

start_stack
alice=$(sim_login @alice:localhost A1)
a=$(sim rooms '{"creator":"@alice:localhost","name":"listed"}' | jq -r .room_id)
b=$(sim rooms '{"creator":"@alice:localhost","name":"subscribed"}' | jq -r .room_id)
sim_msg "$b" @alice:localhost b1
sim_msg "$a" @alice:localhost a1
body=$(jq -nc --arg b "$b" '{lists: {all: {ranges: [[0, 1]], timeline_limit: 0,
    required_state: []}}, room_subscriptions: {($b): {timeline_limit: 1,
    required_state: []}}}')
for i in $(seq 1 50); do
	out=$(ss "$alice" "" "$body")
	[ "$(printf '%s' "$out" | jq -c --arg a "$a" --arg b "$b" '[.rooms[$b].timeline[-1].content.body, (.rooms[$a] | has("timeline"))]')" = '["b1",true]' ] && break
	sleep 0.2
done
assert_jq "$out" "[.rooms[\"$b\"].timeline[].content.body, (.rooms | keys | length)]" '["b1",2]' "first: the listed room and the subscribed one"
p=$(ss_pos "$out")
out=$(ss "$alice" "$p" "$body")
p=$(ss_pos "$out")
# a message in the listed room (at the top of the window already):
# woken, nothing to send, waits on; then one in the subscribed room
# (also listed: its timeline_limit 1 is the larger)
h0=$(ss_hops)
ss "$alice" "$p" "$body" 20000 >"$T/lp.json" &
pid=$!
sleep 0.5
sim_msg "$a" @alice:localhost a2
wait_for "[ \"\$(ss_hops_grown '$h0' \"\$(ss_hops)\")\" = 'wake+1 list+1 rooms+1 detail+1 ext+1 idle+1 ' ]" 10 ||
    fail "the listed room's message: $(ss_hops_grown "$h0" "$(ss_hops)")"
sim_msg "$b" @alice:localhost b2
wait $pid
assert_eq "$(last_status)" 200 "woken"
lp=$(cat "$T/lp.json")
assert_jq "$lp" "[(.rooms | keys), [.rooms[\"$b\"].timeline[].content.body]]" "[[\"$b\"],[\"b2\"]]" "the subscribed room's message alone"
assert_eq "$(psql_q "SELECT count(*) FROM syncv3_ss_rooms r JOIN syncv3_ss_conns c USING (conn) WHERE r.gen > c.gen AND r.gen IS DISTINCT FROM c.p_gen")" 0 "no rows of a save never sent"
p=$(ss_pos "$lp")
# it continues: a longer timeline sends the listed room in full
longer=${body/\"timeline_limit\":0/\"timeline_limit\":2}
out=$(ss "$alice" "$p" "$longer")
assert_eq "$(last_status)" 200 "continued"
assert_jq "$out" "[.rooms[\"$a\"] | .initial, [.timeline[].content.body]]" '[true,["a1","a2"]]' "the listed room in full"
p=$(ss_pos "$out")
# woken for nothing, then the timeout: the same pos, which continues
ss "$alice" "$p" "$body" 2000 >"$T/lp.json" &
pid=$!
sleep 0.5
sim_msg "$a" @alice:localhost a3
wait $pid
assert_jq "$(cat "$T/lp.json")" "[(.rooms // {} | length), .pos]" "[0,\"$p\"]" "nothing at the timeout: the same pos"
out=$(ss "$alice" "$p" "$longer")
assert_eq "$(last_status)" 200 "the same pos continues"
assert_jq "$out" "[.rooms[\"$a\"] | (.initial // false), [.timeline[].content.body]]" '[false,["a3"]]' "then the message it had not sent"
it_pass
