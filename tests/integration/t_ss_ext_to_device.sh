#!/usr/bin/env bash
# Sliding sync to_device extension (MSC3885): next_batch an integer
# string, a since that is not one refused (400 M_INVALID_PARAM, as
# Synapse), limit paging, redelivery until a later since acknowledges
# (a retried pos comes with the old since), and the delete rule shared
# with the v3 streams API: a message is deleted only once every live v3
# session and every live sliding connection of the device acknowledged
# it; an expired connection stops holding it. A long-poll is woken by a
# message for its device and not by one for another device.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_ss_ext.sh"

export SYNCV3_SS_CONN_IDLE_S=6
start_stack
tok=$(sim_login @alice:localhost A1)
sim_login @alice:localhost A2 >/dev/null
msg() { # N [DEVICE]
	sim to_device "{\"user_id\":\"@alice:localhost\",\"device_id\":\"${2:-A1}\",\"sender\":\"@bob:localhost\",\"type\":\"m.x\",\"content\":{\"n\":$1}}" >/dev/null
}
left() { psql_q "SELECT count(*) FROM syncv3_to_device WHERE user_id = '@alice:localhost' AND device_id = 'A1'"; }
td() { # CONN [SINCE [LIMIT]]: a request body
	local since=""
	[ -n "${2:-}" ] && since=",\"since\":\"$2\""
	echo "{\"conn_id\":\"$1\",\"lists\":{},\"extensions\":{\"to_device\":{\"enabled\":true,\"limit\":${3:-100}$since}}}"
}
ids() { printf '%s' "$1" | jq -c '[.extensions.to_device.events[].content.n]'; }
nb() { printf '%s' "$1" | jq -r .extensions.to_device.next_batch; }

# a v3 session that has seen nothing yet holds every message too
v3s=$(v3 "$tok" "" '{"to_device":{}}' 10000 | jq -r .next_batch)
msg 1
msg 2
wait_for "[ \$(psql_q \"SELECT count(*) FROM syncv3_to_device WHERE device_id = 'A1'\") = 2 ]" 10 ||
    fail "messages not stored"

# connection c1: both, in order, next_batch an integer string
out=$(ss_ready "$tok" "$(td c1)")
assert_jq "$out" '[.extensions.to_device.events[].content.n]' '[1,2]' "c1 delivered in order"
assert_jq "$out" '.extensions.to_device.events[0].sender' '"@bob:localhost"' "event as sent"
assert_jq "$out" '.extensions.to_device.next_batch|test("^[0-9]+$")' 'true' "next_batch an integer string"
p1=$(ss_pos "$out"); s1=$(nb "$out")

# a since that is not an integer: 400 M_INVALID_PARAM, connection unchanged
out=$(ss "$tok" "$p1" "$(td c1 abc)" 0)
assert_eq "$(last_status)" 400 "since not an integer"
assert_jq "$out" .errcode '"M_INVALID_PARAM"' "since errcode"
out=$(ss "$tok" "$p1" "$(td c1 1.5)" 0)
assert_eq "$(last_status)" 400 "since 1.5"

# the response with pos p2 is "lost": the client retries p1 with its old
# (absent) since and gets both again; nothing is acknowledged yet
msg 3
out=$(ss "$tok" "$p1" "$(td c1)" 0)
assert_eq "$(ids "$out")" '[1,2,3]' "retried pos: redelivered"
out=$(ss "$tok" "$p1" "$(td c1)" 0)
assert_eq "$(ids "$out")" '[1,2,3]' "retried again: still redelivered"
p2=$(ss_pos "$out"); s2=$(nb "$out")
# acknowledged by a later since: not sent again
out=$(ss "$tok" "$p2" "$(td c1 "$s1")" 0)
assert_eq "$(ids "$out")" '[3]' "since acks up to it"

# connection c2 of the same device has acked nothing: it gets all three,
# and with c1, c2 and the v3 session holding them nothing is deleted
out=$(ss_ready "$tok" "$(td c2)")
assert_eq "$(ids "$out")" '[1,2,3]' "second connection gets all"
c2p=$(ss_pos "$out"); c2s=$(nb "$out")
out=$(ss "$tok" "$p2" "$(td c1 "$s2")" 0)
assert_eq "$(ids "$out")" '[]' "c1 acked all: nothing"
p3=$(ss_pos "$out")
out=$(ss "$tok" "$c2p" "$(td c2 "$c2s")" 0)
c2p=$(ss_pos "$out")
assert_eq "$(left)" 3 "v3 session has not acked: nothing deleted"
# the v3 session acks: now every holder has, and they are deleted
v3 "$tok" "$v3s" '{}' 0 >/dev/null
v3s=$(jq -r .next_batch "$T/last_body")
v3 "$tok" "$v3s" '{}' 0 >/dev/null
v3s=$(jq -r .next_batch "$T/last_body")
assert_eq "$(left)" 0 "deleted once every session and connection acked"

# limit paging: 5 at a time, next_batch the last delivered
for i in $(seq 10 21); do msg $i; done
wait_for "[ \$(psql_q \"SELECT count(*) FROM syncv3_to_device WHERE device_id = 'A1'\") = 12 ]" 10 ||
    fail "paging messages not stored"
out=$(ss "$tok" "$p3" "$(td c1 "$s2" 5)" 0)
assert_eq "$(ids "$out")" '[10,11,12,13,14]' "limit 5"
p4=$(ss_pos "$out"); s4=$(nb "$out")
out=$(ss "$tok" "$p4" "$(td c1 "$s4" 100)" 0)
assert_eq "$(ids "$out")" "$(seq 15 21 | jq -sc .)" "next page"
p5=$(ss_pos "$out"); s5=$(nb "$out")

# long-poll: woken by a message for this device, not for another one
ss_bg lp "$tok" "$p5" "$(td c1 "$s5")" 3000
sleep 0.5
msg 99 A2
sleep 0.5
msg 30
ss_wait lp
assert_eq "$(ids "$out")" '[30]' "long-poll got the message"
assert_woken lp 2500
p6=$(ss_pos "$out"); s6=$(nb "$out")
ss_bg lp2 "$tok" "$p6" "$(td c1 "$s6")" 1500
sleep 0.3
msg 98 A2
ss_wait lp2
assert_eq "$(ids "$out")" '[]' "another device's message does not answer"
[ "$(cat "$T/lp2.ms")" -ge 1400 ] || fail "woken by another device's message ($(cat "$T/lp2.ms") ms)"

# expiry: c2 stays idle past SYNCV3_SS_CONN_IDLE_S while c1 and the v3
# session acknowledge everything; once c2 is gone, nothing is held
p7=$(ss_pos "$out"); s7=$(nb "$out")
for i in 1 2 3 4 5 6 7 8; do
	out=$(ss "$tok" "$p7" "$(td c1 "$s7")" 0)
	p7=$(ss_pos "$out"); s7=$(nb "$out")
	v3 "$tok" "$v3s" '{}' 0 >/dev/null
	v3s=$(jq -r .next_batch "$T/last_body")
	sleep 1
done
out=$(ss "$tok" "$p7" "$(td c1 "$s7")" 0)
v3 "$tok" "$v3s" '{}' 0 >/dev/null
wait_for "[ \$(psql_q \"SELECT count(*) FROM syncv3_to_device WHERE device_id = 'A1'\") = 0 ]" 5 ||
    fail "an expired connection still holds messages: $(left) left"
out=$(ss "$tok" "$c2p" "$(td c2 "$c2s")" 0)
assert_eq "$(last_status)" 400 "expired connection"

# review R3: c1 restarted without pos and with to_device off holds nothing
# (its old acknowledgement would keep every later message undeleted)
acks() { psql_q "SELECT count(*) FROM syncv3_ss_to_device_acks a JOIN syncv3_ss_conns c ON c.conn = a.conn WHERE c.conn_id = 'c1'"; }
[ "$(acks)" = 1 ] || fail "c1 has no ack row to start with"
out=$(ss "$tok" "" '{"conn_id":"c1","lists":{}}' 0)
out=$(ss "$tok" "$(ss_pos "$out")" '{"conn_id":"c1","lists":{}}' 0)
assert_eq "$(acks)" 0 "a connection restarted without to_device keeps no acknowledgement"
it_pass
