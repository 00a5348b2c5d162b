#!/usr/bin/env bash
# Sliding sync connections live in Postgres: a client that retries its
# previous pos (the response was lost) gets the same data again, neither
# a gap nor duplicates; a pos older than the one confirmed, a garbage pos,
# another device's pos and an expired connection's pos are 400
# M_UNKNOWN_POS (and an expired connection's rows are freed); an api
# restart and a second api instance continue the connection unchanged.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_ss.sh"

start_stack
alice=$(sim_login @alice:localhost A1)
bob=$(sim_login @bob:localhost B1)
r1=$(sim rooms '{"creator":"@alice:localhost","name":"one"}' | jq -r .room_id)
list='{"lists":{"l":{"ranges":[[0,9]],"timeline_limit":5,"required_state":[]}},"room_subscriptions":{"'"$r1"'":{"timeline_limit":5}}}'
out=$(ss "$alice" "" "$list" 10000)
assert_jq "$out" ".rooms[\"$r1\"].initial" 'true' "first"
p1=$(ss_pos "$out")
ss "$bob" "" '{}' 10000 >/dev/null	# bob's device, synced

# the response to p1 is lost: the retry gets the same event again
sim_msg "$r1" @alice:localhost m1
out=$(ss "$alice" "$p1" "$list" 5000)
assert_jq "$out" "[.rooms[\"$r1\"].timeline[].content.body]" '["m1"]' "m1 after p1"
lost=$(ss_pos "$out")
out=$(ss "$alice" "$p1" "$list" 5000)
assert_eq "$(last_status)" 200 "retry of p1"
assert_jq "$out" "[.rooms[\"$r1\"].timeline[].content.body]" '["m1"]' "retry: m1 again, no gap"
p2=$(ss_pos "$out")
# the lost response's pos died with the retry
ss "$alice" "$lost" "$list" 0 >/dev/null
assert_error 400 M_UNKNOWN_POS "lost response's pos"
# p2 confirms the retry: nothing sent twice
out=$(ss "$alice" "$p2" "$list" 0)
assert_eq "$(last_status)" 200 "p2"
assert_jq "$out" '.rooms' '{}' "no duplicates after the retry"
p3=$(ss_pos "$out")
# a pos older than the confirmed one
ss "$alice" "$p1" "$list" 0 >/dev/null
assert_error 400 M_UNKNOWN_POS "older pos"
# garbage, another device's
ss "$alice" "c1_1_0123456789abcdef" "$list" 0 >/dev/null
assert_error 400 M_UNKNOWN_POS "forged pos"
ss "$alice" "not-a-pos" "$list" 0 >/dev/null
assert_error 400 M_UNKNOWN_POS "garbage pos"
# review R4: a pos present but empty is no pos to start afresh from (that
# would drop the connection's sticky settings unseen): refused
for q in "pos=" "pos=%00"; do
	ss_post "$alice" "$API_URL/_matrix/client/unstable/org.matrix.simplified_msc3575/sync?timeout=0&$q" "$list" >/dev/null
	assert_error 400 M_UNKNOWN_POS "empty $q"
done
ss4 "$alice" '{"pos":"","lists":{}}' >/dev/null
assert_error 400 M_UNKNOWN_POS "v4 empty pos"
# review R5: sticky subscriptions are bounded per connection; the least
# recently given go first
pc=""
for i in 1 2 3 4 5 6 7; do
	subs=$(jq -nc --arg i $i '[range(100) | {key: "!s\($i)-\(.):localhost", value: {timeline_limit: 1}}] | from_entries')
	out=$(ss "$alice" "$pc" "{\"conn_id\":\"subcap\",\"room_subscriptions\":$subs}" 0)
	assert_eq "$(last_status)" 200 "subscriptions batch $i"
	pc=$(ss_pos "$out")
done
ss "$alice" "$pc" '{"conn_id":"subcap"}' 0 >/dev/null
kept() { psql_q "SELECT count(*) FROM syncv3_ss_conns c, json_object_keys(c.subs::json) k WHERE c.conn_id = 'subcap' AND k LIKE '$1'"; }
assert_eq "$(kept '!s%')" 500 "at most 500 sticky subscriptions"
assert_eq "$(kept '!s1-%') $(kept '!s2-%') $(kept '!s7-%')" "0 0 100" "the least recently given went"
ss "$bob" "$p3" "$list" 0 >/dev/null
assert_error 400 M_UNKNOWN_POS "another device's pos"
# a subscription is sticky across requests that do not repeat it
out=$(ss "$alice" "$p3" '{}' 0)
assert_eq "$(last_status)" 200 "no lists"
p3=$(ss_pos "$out")

# api restart mid-connection: the next message only, not initial
stop_proc api
start_api
sim_msg "$r1" @alice:localhost m2
out=$(ss "$alice" "$p3" '{}' 5000)
assert_eq "$(last_status)" 200 "after restart"
assert_jq "$out" ".rooms[\"$r1\"].initial" 'null' "restart: not initial"
assert_jq "$out" "[.rooms[\"$r1\"].timeline[].content.body]" '["m2"]' "restart: only m2 (subscription kept)"
p4=$(ss_pos "$out")
# a second api instance continues it too
first=$API_URL
port2=$(free_port)
start_proc api2 env SYNCV3_BINDADDR="127.0.0.1:$port2" "$BIN/syncv3-api"
API_URL=http://127.0.0.1:$port2
wait_for "curl -sf $API_URL/health" 20 || fail "api2 not healthy"
sim_msg "$r1" @alice:localhost m3
out=$(ss "$alice" "$p4" '{}' 5000)
assert_jq "$out" "[.rooms[\"$r1\"].timeline[].content.body]" '["m3"]' "second instance: only m3"
p5=$(ss_pos "$out")
API_URL=$first
out=$(ss "$alice" "$p5" '{}' 0)
assert_eq "$(last_status)" 200 "back on the first instance"
assert_jq "$out" '.rooms' '{}' "back on the first instance: nothing twice"
stop_proc api2

# a device's new token retires the old one here too (contract 5)
alice2=$(sim login '{"user_id":"@alice:localhost","device_id":"A1","replace":true}' | jq -r .access_token)
out=$(ss "$alice2" "$p5" '{}' 0)
assert_eq "$(last_status)" 200 "the new token continues the connection"
p6=$(ss_pos "$out")
ss "$alice" "$p6" '{}' 0 >/dev/null
assert_error 401 M_UNKNOWN_TOKEN "the old token, with a pos"
out=$(ss "$alice" "" '{}' 0)
assert_eq "$(last_status)" 401 "the old token, new connection"
alice=$alice2

# idle connections expire and their rows go
stop_proc api
export SYNCV3_SS_CONN_IDLE_S=1
start_api
out=$(ss "$alice" "" "$list" 5000)
pe=$(ss_pos "$out")
conn=${pe#c}; conn=${conn%%_*}
sleep 2.5
ss "$alice" "$pe" "$list" 0 >/dev/null
assert_error 400 M_UNKNOWN_POS "expired"
wait_for "[ \$(psql_q \"SELECT count(*) FROM syncv3_ss_rooms WHERE conn = $conn\") = 0 ]" 10 ||
    fail "an expired connection's rooms were not freed"
assert_eq "$(psql_q "SELECT count(*) FROM syncv3_ss_conns WHERE conn = $conn")" 0 "expired row freed"
it_pass
