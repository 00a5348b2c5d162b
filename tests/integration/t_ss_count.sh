#!/usr/bin/env bash
# Sliding sync list counts as memberships move. A list without filters
# takes its count from the user's count row (017_ssperf.sql) plus the
# bans and leaves it shows; a list with a filter that excludes nothing
# counts its rooms one by one. In every response both agree, and on a
# new connection they equal the rooms in a window wider than the list:
# through joins, an invite, its rejection, an invite accepted, a leave
# (still shown to the connection that had the room), a kick and a ban.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_ss.sh"

start_stack
alice=$(sim_login @alice:localhost A1)
sim users '{"localpart":"carol"}' >/dev/null
mk() { sim rooms "{\"creator\":\"$1\",\"name\":\"$2\"}" | jq -r .room_id; }
j1=$(mk @alice:localhost j1)
j2=$(mk @alice:localhost j2)
left=$(mk @alice:localhost left)
kick=$(mk @carol:localhost kick)
ban=$(mk @carol:localhost ban)
for r in "$kick" "$ban"; do
	sim "rooms/$r/join" '{"user_id":"@alice:localhost"}' >/dev/null
done
inv=$(mk @carol:localhost inv)
rej=$(mk @carol:localhost rej)
for r in "$inv" "$rej"; do
	sim "rooms/$r/invite" '{"sender":"@carol:localhost","user_id":"@alice:localhost"}' >/dev/null
done

body='{"lists":{"all":{"ranges":[[0,99]],"timeline_limit":0},"none":{"ranges":[[0,99]],"timeline_limit":0,"filters":{"not_tags":["x.none"]}}}}'
# the long-polling connection has its own conn_id: a request without pos
# would start it afresh
pbody=$(jq -c '.conn_id = "poll"' <<<"$body")
# counts LABEL: a new connection's counts and window agree; sets N
counts() {
	local out
	out=$(ss "$alice" "" "$body" 10000)
	assert_eq "$(last_status)" 200 "$1: status"
	assert_jq "$out" '[.lists.all.count, .lists.none.count]' \
	    "$(jq -c '[(.rooms|length), (.rooms|length)]' <<<"$out")" \
	    "$1: the count row, the counted rooms and the window agree"
	N=$(jq '.lists.all.count' <<<"$out")
}
# poll LABEL: the connection's next response after $POS (something
# changed); both counts agree in it. Sets OUT and POS.
poll() {
	OUT=$(ss "$alice" "$POS" "$pbody" 10000)
	assert_eq "$(last_status)" 200 "$1: status"
	assert_jq "$OUT" '.lists.all.count == .lists.none.count' true \
	    "$1: the count row and the counted rooms agree"
	POS=$(ss_pos "$OUT")
}

counts "joined and invited"
n0=$N
assert_eq "$n0" 7 "five joined, two invited"
POS=$(ss_pos "$(ss "$alice" "" "$pbody" 10000)")

sim "rooms/$left/leave" '{"user_id":"@alice:localhost"}' >/dev/null
poll "a leave"
assert_jq "$OUT" '.lists.all.count' "$n0" "a leave the connection had sent stays counted"
counts "after a leave"
assert_eq "$N" $((n0 - 1)) "a new connection does not count a leave"

sim "rooms/$rej/leave" '{"user_id":"@alice:localhost"}' >/dev/null
poll "an invite rejected"
counts "after a rejection"
n1=$N
assert_eq "$n1" $((n0 - 2)) "a rejected invite is not counted"

sim "rooms/$inv/join" '{"user_id":"@alice:localhost"}' >/dev/null
poll "an invite accepted"
counts "after an accept"
assert_eq "$N" "$n1" "an accepted invite counts once"

sim "rooms/$kick/kick" '{"sender":"@carol:localhost","user_id":"@alice:localhost"}' >/dev/null
poll "a kick"
counts "after a kick"
assert_eq "$N" "$n1" "a kick stays counted"

sim "rooms/$ban/ban" '{"sender":"@carol:localhost","user_id":"@alice:localhost"}' >/dev/null
poll "a ban"
counts "after a ban"
assert_eq "$N" "$n1" "a ban after a join stays counted"

mk @alice:localhost j3 >/dev/null
wait_for "[ \"\$(ss \"$alice\" '' '$body' 0 | jq .lists.all.count)\" = $((n1 + 1)) ]" 20 ||
    fail "a new room was never counted"
counts "after a join"
: "$j1" "$j2"
it_pass
