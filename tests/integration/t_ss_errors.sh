#!/usr/bin/env bash
# Sliding sync refusals over HTTP, in the v3 path's order (401 before a
# bad body), with Matrix errors naming the field; unknown fields ignored;
# the per-device connection cap; two requests racing on one pos leave
# the connection usable; a long-polling client that hangs up is no
# longer a waiter.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_ss.sh"

export SYNCV3_SS_CONNS_PER_DEVICE=2
start_stack
alice=$(sim_login @alice:localhost A1)
r1=$(sim rooms '{"creator":"@alice:localhost","name":"one"}' | jq -r .room_id)
SS="$API_URL/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"
code=$(curl -s -o "$T/r" -w '%{http_code}' -X POST --data '{"lists":5}' "$SS")
assert_eq "$code" 401 "no token before a bad body"
assert_jq "$(cat "$T/r")" .errcode '"M_MISSING_TOKEN"' "no token errcode"
code=$(curl -s -o "$T/r" -w '%{http_code}' -X POST -H "Authorization: Bearer $alice" --data '{}' "$SS?access_token=x")
assert_eq "$code" 401 "access_token in the query"
out=$(ss "$alice" "" '{"lists":5}' 0)
assert_eq "$(last_status)" 400 "lists not an object"
assert_jq "$out" '[.errcode, (.error|test("lists"))]' '["M_BAD_JSON",true]' "names the field"
out=$(ss "$alice" "" '{"lists":{"a":{"timeline_limit":"x"}}}' 0)
assert_jq "$out" '[.errcode, (.error|test("timeline_limit"))]' '["M_BAD_JSON",true]' "timeline_limit type"
out=$(ss "$alice" "" 'not json' 0)
assert_jq "$out" .errcode '"M_NOT_JSON"' "not JSON"
lists=$(jq -cn '{lists: ([range(101)|{key: "l\(.)", value: {}}]|from_entries)}')
out=$(ss "$alice" "" "$lists" 0)
assert_eq "$(last_status)" 400 "101 lists"
assert_jq "$out" .errcode '"M_INVALID_PARAM"' "101 lists errcode"
subs=$(jq -cn '{room_subscriptions: ([range(101)|{key: "!r\(.):x", value: {}}]|from_entries)}')
out=$(ss "$alice" "" "$subs" 0)
assert_jq "$out" .errcode '"M_INVALID_PARAM"' "101 subscriptions"
out=$(ss4 "$alice" '{"set_presence":"busy"}')
assert_jq "$out" .errcode '"M_INVALID_PARAM"' "set_presence"
out=$(ss "$alice" "" '{"lists":{"ok":{"ranges":[[0,1]],"sort":["by_recency"],"include_old_rooms":{},"slow_get_all_rooms":true}},"txn_id":"x","future":[1]}' 10000)
assert_eq "$(last_status)" 200 "unknown fields ignored"
assert_jq "$out" '.lists.ok.count' '1' "served"
# the cap: a third conn_id expires the least recently used
a=$(ss_pos "$(ss4 "$alice" '{"conn_id":"a"}')")
sleep 0.05
b=$(ss_pos "$(ss4 "$alice" '{"conn_id":"b"}')")
sleep 0.05
c=$(ss_pos "$(ss4 "$alice" '{"conn_id":"c"}')")
ss4 "$alice" "{\"conn_id\":\"a\",\"pos\":\"$a\"}" >/dev/null
assert_eq "$(last_status)" 400 "over the cap: the oldest connection is gone"
ss4 "$alice" "{\"conn_id\":\"c\",\"pos\":\"$c\"}" >/dev/null
assert_eq "$(last_status)" 200 "the newest is kept"
# a pos of another conn_id is unknown there
ss4 "$alice" "{\"conn_id\":\"b\",\"pos\":\"$c\"}" >/dev/null
assert_eq "$(last_status)" 400 "pos of another conn_id"
# two requests racing on one pos: at most one saves, the connection goes on
p=$(ss_pos "$(ss "$alice" "" '{"lists":{"l":{"ranges":[[0,9]],"timeline_limit":1}}}' 0)")
ss "$alice" "$p" '{"lists":{"l":{"ranges":[[0,9]],"timeline_limit":1}}}' 5000 >"$T/race1" &
r1pid=$!
ss "$alice" "$p" '{"lists":{"l":{"ranges":[[0,9]],"timeline_limit":1}}}' 5000 >"$T/race2" &
r2pid=$!
sleep 0.3
sim_msg "$r1" @alice:localhost race
wait $r1pid $r2pid
ok=0
for f in "$T/race1" "$T/race2"; do
	q=$(jq -r '.pos // empty' "$f")
	[ -n "$q" ] || continue
	out=$(ss "$alice" "$q" '{"lists":{"l":{"ranges":[[0,9]],"timeline_limit":1}}}' 0)
	[ "$(last_status)" = 200 ] && ok=$((ok + 1))
done
[ "$ok" -ge 1 ] || fail "no racing request left a usable pos"
# a client that hangs up mid long-poll is no longer a waiter
p=$(ss_pos "$(ss "$alice" "" '{}' 0)")
w0=$(curl -s "$API_URL/health" | jq .waiters)
curl -s -m 2 -X POST -H "Authorization: Bearer $alice" --data '{}' "$SS?timeout=30000&pos=$p" >/dev/null &
hpid=$!
wait_for "[ \$(curl -s $API_URL/health | jq .waiters) = $((w0 + 1)) ]" 5 || fail "the long poll did not wait"
wait $hpid
wait_for "[ \$(curl -s $API_URL/health | jq .waiters) = $w0 ]" 5 || fail "the waiter outlived its client"
# no room for another waiter: answered at once with the same pos, no spin
stop_proc api
SYNCV3_API_MAX_WAITERS=1 start_api
p1=$(ss_pos "$(ss4 "$alice" '{"conn_id":"w1"}')")
p2=$(ss_pos "$(ss4 "$alice" '{"conn_id":"w2"}')")
ss4 "$alice" "{\"conn_id\":\"w1\",\"pos\":\"$p1\",\"timeout\":10000}" >/dev/null &
wpid=$!
wait_for "[ \$(curl -s $API_URL/health | jq .waiters) = 1 ]" 5 || fail "first long poll not waiting"
t0=$(now_ms)
out=$(ss4 "$alice" "{\"conn_id\":\"w2\",\"pos\":\"$p2\",\"timeout\":3000}")
t1=$(now_ms)
assert_eq "$(last_status)" 200 "over the waiter cap"
assert_jq "$out" .pos "\"$p2\"" "over the waiter cap: the same pos"
[ $((t1 - t0)) -lt 1500 ] || fail "over the waiter cap: answered after $((t1 - t0)) ms"
kill "$wpid" 2>/dev/null
it_pass
