#!/usr/bin/env bash
# MSC4186: a sliding sync pos is a /messages and /relations token "in the
# same way as a next_batch from /v3/sync", refused with M_UNKNOWN_POS when
# it was not issued to the requesting user and device. The api maps it to
# the device's committed v2 since kept with that response
# (docs/INTERNALS.md, "A pos as a /messages token"), which upstream
# (simhs, as Synapse) takes as a /messages from. dir=f from a pos gives the
# events after the response with no gap; the homeserver may repeat events
# the response already carried (the since may be older than the response:
# never newer), so the check is that the events paged forwards are a
# contiguous tail of the room, oldest at most where the response ended;
# here the device's poller stored everything before each pos was issued,
# so the split is exact. dir=b gives the events before it. Tokens of the
# homeserver pass through untouched (t_proxy.sh covers the rest).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_ss_syn.sh"

start_stack
alice=$(sim_login @alice:localhost A1)
r=$(mkroom @alice:localhost "paging")
for i in 1 2 3; do e=$(msg "$r" @alice:localhost "before $i"); done
enc() { jq -rn --arg s "$1" '$s|@uri'; }
# page TOKEN DIR FROM [PATH]: GET /messages (or PATH) through the api;
# body to stdout, status in $T/last_status
page() {
	curl -sS -o "$T/last_body" -w '%{http_code}' -H "Authorization: Bearer $1" \
	    "$API_URL/_matrix/client/v3/rooms/$(enc "$r")/${4:-messages}?dir=$2&limit=100&from=$(enc "$3")" >"$T/last_status"
	cat "$T/last_body"
}
all() { sim_get "rooms/$r/events" | jq -c '[.events[].event_id]'; }
list='{"conn_id":"m","lists":{"all":{"range":[0,9],"timeline_limit":5}}}'
for i in $(seq 1 100); do
	out=$(ss4 "$alice" "$list")
	[ "$(last_status)" = 200 ] && break
	sleep 0.2
done
ss_ok "$out" "first v4 response"
stored "$e"
p0=$(ss_pos "$out")
# check POS BEFORE_ALL WHAT: dir=f from POS is the events after the
# BEFORE_ALL prefix of the room, dir=b the prefix itself (newest first)
check() {
	local pos=$1 before=$2 what=$3 now k fwd back
	now=$(all)
	k=$(printf '%s' "$before" | jq length)
	fwd=$(page "$alice" f "$pos" | jq -c '[.chunk[].event_id]')
	assert_eq "$(last_status)" 200 "$what: dir=f status"
	# no gap: a contiguous tail of the room starting at or before k
	assert_jq "$now" ". as \$a | ($fwd) as \$f | (\$a | length) - (\$f | length) | . >= 0 and . <= $k and (\$a[.:] == \$f)" true \
	    "$what: dir=f is the room's tail from the response on, no gap"
	assert_jq "$now" ".[$k:] - $fwd" '[]' "$what: dir=f holds every event after the response"
	assert_eq "$(printf '%s' "$fwd" | jq length)" "$(printf '%s' "$now" | jq ".[$k:] | length")" \
	    "$what: dir=f repeats nothing here (its device stored all first)"
	back=$(page "$alice" b "$pos" | jq -c '[.chunk[].event_id] | reverse')
	assert_eq "$(last_status)" 200 "$what: dir=b status"
	assert_eq "$back" "$before" "$what: dir=b is the events before the response"
}
# the first response's pos (a new connection)
before0=$(all)
for i in 1 2; do e=$(msg "$r" @alice:localhost "after p0 $i"); done
stored "$e"
check "$p0" "$before0" "first pos"
# a later response's pos (the connection loaded)
out=$(ss4 "$alice" "$(printf '%s' "$list" | jq -c --arg p "$p0" '. + {pos: $p, timeout: 0}')")
ss_ok "$out" "second v4 response"
p1=$(ss_pos "$out")
before1=$(all)
for i in 1 2 3; do e=$(msg "$r" @alice:localhost "after p1 $i"); done
stored "$e"
check "$p1" "$before1" "later pos"
# the pos of a response never confirmed still maps (the client may page
# from it before its next sync)
out=$(ss4 "$alice" "$(printf '%s' "$list" | jq -c --arg p "$p1" '. + {pos: $p, timeout: 0}')")
p2=$(ss_pos "$out")
page "$alice" f "$p2" >/dev/null
assert_eq "$(last_status)" 200 "unconfirmed pos"

# upstream's own token is not ours: passed through untouched
end=$(page "$alice" b "$p1" | jq -r .end)
[ -n "$end" ] && [ "$end" != null ] || fail "no end token from dir=b"
got=$(page "$alice" b "$end")
assert_eq "$(last_status)" 200 "an upstream token"
assert_jq "$got" '.start' "$(jq -cn --arg e "$end" '$e')" "an upstream token reaches the homeserver as given"
# a pos-shaped token that is not one of ours is refused here, not upstream
page "$alice" f "c1_1_0123456789abcdef" >/dev/null
assert_error 400 M_UNKNOWN_POS "a forged pos"

# another device's, another user's: M_UNKNOWN_POS (the MAC names the
# device), on /messages and on /relations
alice2=$(sim_login @alice:localhost A2)
page "$alice2" f "$p1" >/dev/null
assert_error 400 M_UNKNOWN_POS "another device's pos"
bob=$(sim_login @bob:localhost B1)
page "$bob" f "$p1" >/dev/null
assert_error 400 M_UNKNOWN_POS "another user's pos"
page "$alice2" b "$p1" "relations/$(enc "$e")" >/dev/null
assert_error 400 M_UNKNOWN_POS "another device's pos on /relations"
# no access token: not ours to judge, upstream answers
curl -sS -o "$T/last_body" -w '%{http_code}' \
    "$API_URL/_matrix/client/v3/rooms/$(enc "$r")/messages?dir=f&from=$(enc "$p1")" >"$T/last_status"
assert_eq "$(last_status)" 401 "no token: upstream's 401"

# under traffic: messages arrive while responses are built. After each
# response, what the responses so far carried plus dir=f from its pos is
# every event sent upstream since the first (no gap); count what dir=f
# repeats
sub=$(jq -cn --arg r "$r" '{conn_id: "t", room_subscriptions: {($r): {timeline_limit: 100}}}')
base=$(all) # before the first response: history, not asked about
out=$(ss4 "$alice" "$sub")
ss_ok "$out" "traffic: first"
got='[]' repeats=0
(for i in $(seq 1 30); do msg "$r" @alice:localhost "live $i" >/dev/null; sleep 0.05; done) &
sender=$!
for i in $(seq 1 12); do
	got=$(jq -cn --argjson a "$got" --argjson b "$(printf '%s' "$out" | jq -c --arg r "$r" '[.rooms[$r].timeline[]?.event_id]')" '$a + $b')
	now=$(all)
	fwd=$(page "$alice" f "$(ss_pos "$out")" | jq -c '[.chunk[].event_id]')
	assert_eq "$(last_status)" 200 "traffic: pos $i: dir=f"
	assert_jq "$now" ". - $base - $got - $fwd" '[]' "traffic: pos $i: carried + dir=f is the whole room"
	repeats=$((repeats + $(jq -n --argjson f "$fwd" --argjson s "$got" '[$f[] | select(. as $e | $s | index([$e]))] | length')))
	out=$(ss4 "$alice" "$(printf '%s' "$sub" | jq -c --arg p "$(ss_pos "$out")" '. + {pos: $p, timeout: 300}')")
	ss_ok "$out" "traffic: response $i"
done
wait "$sender"
log "traffic: dir=f from 12 pos repeated $repeats events already carried"

# a connection started afresh: its old pos no longer maps
out=$(ss4 "$alice" "$list")
ss_ok "$out" "connection restarted"
page "$alice" f "$p1" >/dev/null
assert_error 400 M_UNKNOWN_POS "a pos of a connection started afresh"
it_pass
