#!/usr/bin/env bash
# Timeline order of events that arrive late (issue: late events are
# stored after what was already stored, so every timeline showed them
# out of order). alice ignores carol, so alice's poller never delivers
# carol's messages (simhs leaves them out of her /sync, as Synapse does);
# bob's poller lags (its syncs fail) while bob and carol talk, so alice's
# poller stores b2, b3 and bob's poller, once it catches up, delivers
# the chunk b1 c1 c2 b2 c3 b3 (b1 before the failure): c1 c2 precede the
# stored anchor b2, c3 the anchor b3. What every client of bob must end
# up with is upstream's order:
#  - his v3 room_list client and his sliding sync connection, both
#    already long-polling since a position past b3 when c1..c3 arrive
#    (a client that has the anchor must be reset: v3 limited, sliding
#    sync initial, with the timeline in order);
#  - a device of bob that logs in afterwards (v3 and sliding sync).
# A client's view is rebuilt as a client does: a limited (v3, ss) or
# initial (ss) room replaces the timeline, anything else is appended.
#
# The store keeps nids in arrival order (contract 2) and the room's
# order key (coalesce(ord, nid), 031_order.sql) in upstream's, with a
# gap row per placement. Fails on 4438f67 (b0 b1 b2 b3 c1 c2 c3).
source "$(dirname "$0")/lib.sh"
# the cleanup runs every second: it must keep the gaps live clients are in
export SYNCV3_ACC_CLEANUP_SECS=1
source "$(dirname "$0")/lib_order.sh"

sb='{"room_subscriptions":{"ROOM":{"timeline_limit":20,"required_state":[]}}}'
late_premise late

# upstream's order, from bob's own /sync
up=$(curl -sS -H "Authorization: Bearer $(sim_login $B B9)" "$SIMHS_URL/_matrix/client/v3/sync")
want=$(printf '%s' "$up" | jq -c "[.rooms.join[\"$r\"].timeline.events[]|.content.body // empty|select(test(\"^[bc][0-9]\$\"))]")
assert_eq "$want" '["b0","b1","c1","c2","b2","c3","b3"]' "upstream order"

# both clients long-poll when the late events arrive
s1=$s p1=$p vv1=$vv sv1=$sv
v3 "$bob" "$s" "$rl" 20000 >"$T/lp_v3" &
lp1=$!
ss "$bob" "$p" "$sb" 20000 >"$T/lp_ss" &
lp2=$!
sleep 1
sim fail/clear >/dev/null
wait_for "stored c1 && stored c2 && stored c3" 30 || fail "bob's poller did not store c1..c3"
wait $lp1 $lp2
# the store: upstream's order by the order key, nids in arrival order
ord=$(psql_q "SELECT string_agg(b, ',' ORDER BY k) FROM (SELECT (json::json)->'content'->>'body' AS b, coalesce(ord, nid) AS k FROM syncv3_events WHERE room_id = '$r' AND type = 'm.room.message') x")
assert_eq "[\"${ord//,/\",\"}\"]" "$want" "the room's order key"
byn=$(psql_q "SELECT string_agg((json::json)->'content'->>'body', ',' ORDER BY nid) FROM syncv3_events WHERE room_id = '$r' AND type = 'm.room.message'")
assert_eq "$byn" "b0,b1,b2,b3,c1,c2,c3" "nids stay arrival order (contract 2)"
c1=$(psql_q "SELECT nid FROM syncv3_events WHERE json LIKE '%\"body\":\"c1\"%'")
c3=$(psql_q "SELECT nid FROM syncv3_events WHERE json LIKE '%\"body\":\"c3\"%'")
b2=$(psql_q "SELECT nid FROM syncv3_events WHERE json LIKE '%\"body\":\"b2\"%'")
b3=$(psql_q "SELECT nid FROM syncv3_events WHERE json LIKE '%\"body\":\"b3\"%'")
assert_eq "$(psql_q "SELECT string_agg(anchor_pos || '-' || late_pos, ',' ORDER BY late_pos) FROM syncv3_order_gaps WHERE room_id = '$r'")" \
    "$b2-$c1,$b3-$c3" "a gap per placement: from the anchor to the first event placed"
assert_eq "$(psql_q "SELECT last_nid = $b3 FROM syncv3_rooms WHERE room_id = '$r'")" t "late events are not the room's last event"
out=$(cat "$T/lp_v3")
vv=$(fold "$vv" "$out" v3)
s=$(printf '%s' "$out" | jq -r .next_batch)
out=$(cat "$T/lp_ss")
assert_jq "$out" ".rooms[\"$r\"].initial" true "the long-poll's answer is a reset"
assert_eq "$(msgs "$(fold "$sv" "$out" ss)")" "$want" "bob's long-polling sliding sync"
# the long-poll's answer is lost: the client retries the confirmed pos
out=$(ss "$bob" "$p1" "$sb" 0)
assert_eq "$(last_status)" 200 "the confirmed pos may be retried"
assert_jq "$out" ".rooms[\"$r\"].initial" true "a retried pos is a reset"
sv=$(fold "$sv1" "$out" ss)
assert_eq "$(msgs "$sv")" "$want" "bob's ss client retrying its pos"
p=$(ss_pos "$out")
# whatever the long-poll did not carry, the next response does
out=$(v3 "$bob" "$s" "$rl" 0)
vv=$(fold "$vv" "$out" v3)
out=$(ss "$bob" "$p" "$sb" 0)
sv=$(fold "$sv" "$out" ss)
assert_eq "$(msgs "$vv")" "$want" "bob's long-polling v3 client"
assert_eq "$(msgs "$sv")" "$want" "bob's long-polling sliding sync (then retrying)"

# a client that lost the answer retries its since or pos: reset again
out=$(v3 "$bob" "$s1" "$rl" 0)
assert_jq "$out" "[.room_list.rooms[]|select(.room_id==\"$r\")|.limited]" '[true]' "a retried since is a reset"
assert_eq "$(msgs "$(fold "$vv1" "$out" v3)")" "$want" "bob's v3 client retrying its since"
# a client from before the anchors gets the new events, in order, appended
out=$(v3 "$bob" "$s0" "$rl" 0)
assert_jq "$out" "[.room_list.rooms[]|select(.room_id==\"$r\")|.limited]" '[null]' "since before every anchor: no reset"
assert_eq "$(msgs "$(fold "$vv0" "$out" v3)")" "$want" "bob's v3 client from before the anchors"

# a device of bob that logs in afterwards
bob2=$(sim_login $B B2)
out=$(v3 "$bob2" "" "$rl" 10000)
assert_eq "$(msgs "$(fold '[]' "$out" v3)")" "$want" "bob's new device, v3"
out=$(ss "$bob2" "" "$sb" 0)
assert_eq "$(msgs "$(fold '[]' "$out" ss)")" "$want" "bob's new device, sliding sync"
# bob's sessions and connections from before the placements are alive:
# the cleanup (many passes by now) kept both gaps
[ "$(psql_q "SELECT count(*) FROM syncv3_pos_marks")" -ge 3 ] || fail "the cleanup did not run"
assert_eq "$(psql_q "SELECT count(*) FROM syncv3_order_gaps WHERE room_id = '$r'")" 2 "gaps kept for live clients"
out=$(v3 "$bob" "$s1" "$rl" 0)
assert_jq "$out" "[.room_list.rooms[]|select(.room_id==\"$r\")|.limited]" '[true]' "a retried since is a reset, after the cleanup"
# alice never sees carol's messages, and b0..b3 in order
out=$(v3 "$alice" "" "$rl" 0)
assert_eq "$(msgs "$(fold '[]' "$out" v3)")" '["b0","b1","b2","b3"]' "alice's view"
it_pass
