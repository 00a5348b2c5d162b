#!/usr/bin/env bash
# Sliding sync receipts extension (MSC3960): when a room is sent with
# initial, the receipts on the timeline events sent with it plus the
# user's own (Synapse's rule: not every receipt of a big room), then the
# receipts that changed; m.read.private only the user's own; never for
# an invite; a long-poll is woken by a receipt.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_ss_ext.sh"

start_stack
tok=$(sim_login @alice:localhost A1)
ss_register "$tok"
r1=$(ss_mk One)
for u in bob carol dave; do sim "rooms/$r1/join" "{\"user_id\":\"@$u:localhost\"}" >/dev/null; done
ri=$(ss_mk Invite @eve:localhost)
sim "rooms/$ri/invite" '{"sender":"@eve:localhost","user_id":"@alice:localhost"}' >/dev/null
rcpt() { # ROOM USER EVENT [TYPE]
	sim "rooms/$1/receipt" "{\"user_id\":\"$2\",\"event_id\":\"$3\",\"receipt_type\":\"${4:-m.read}\"}" >/dev/null
}
e0=$(ss_say "$r1" @bob:localhost)
rcpt "$r1" @dave:localhost "$e0"
e1=$(ss_say "$r1" @bob:localhost)
e2=$(ss_say "$r1" @carol:localhost)
rcpt "$r1" @bob:localhost "$e1"
rcpt "$r1" @alice:localhost "$e0" m.read.private
rcpt "$r1" @carol:localhost "$e2" m.read.private
ei=$(sim_get "rooms/$ri/events" | jq -r '.events[-1].event_id')
rcpt "$ri" @eve:localhost "$ei"
wait_for "[ \$(psql_q \"SELECT count(*) FROM syncv3_receipts\") -ge 3 ]" 15 ||
    fail "receipts not stored: $(psql_q 'SELECT user_id, event_id FROM syncv3_receipts')"

body='{"lists":{"w":{"ranges":[[0,5]],"timeline_limit":2}},"extensions":{"receipts":{"enabled":true}}}'
out=$(ss_ready "$tok" "$body")
assert_jq "$out" ".rooms[\"$r1\"].timeline|map(.event_id)" "[\"$e1\",\"$e2\"]" "timeline sent"
assert_jq "$out" '.extensions.receipts.rooms|keys' "[\"$r1\"]" "joined room only, not the invite"
c=".extensions.receipts.rooms[\"$r1\"]"
assert_jq "$out" "$c.type" '"m.receipt"' "m.receipt"
# on the timeline: bob's on e1; the user's own (private, on e0 outside
# the timeline); not dave's on e0, not carol's private one
assert_jq "$out" "$c.content|keys|sort" "$(jq -cn --arg a "$e0" --arg b "$e1" '[$a,$b]|sort')" "events with receipts"
assert_jq "$out" "$c.content[\"$e1\"][\"m.read\"]|keys" '["@bob:localhost"]' "bob's receipt"
assert_jq "$out" "$c.content[\"$e1\"][\"m.read\"][\"@bob:localhost\"].ts|type" '"number"' "ts"
assert_jq "$out" "$c.content[\"$e0\"]|keys" '["m.read.private"]' "own private receipt"
assert_jq "$out" "$c.content[\"$e0\"][\"m.read.private\"]|keys" '["@alice:localhost"]' "own only"
p=$(ss_pos "$out")
# long-poll woken by a receipt; only the change comes
ss_woken_by lp "$tok" "$p" "$body" 'rcpt "$r1" @dave:localhost "$e2"'
assert_jq "$out" "$c.content" "{\"$e2\":{\"m.read\":{\"@dave:localhost\":$(printf '%s' "$out" | jq -c "$c.content[\"$e2\"][\"m.read\"][\"@dave:localhost\"]")}}}" "only the new receipt"
p=$(ss_pos "$out")
# another user's private receipt neither shows nor answers
ss_bg lp2 "$tok" "$p" "$body" 1500
sleep 0.3
rcpt "$r1" @carol:localhost "$e1" m.read.private
ss_wait lp2
assert_jq "$out" '.extensions.receipts.rooms' '{}' "others' private receipts never"
it_pass
