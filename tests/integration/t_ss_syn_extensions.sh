#!/usr/bin/env bash
# Synapse-equivalent behaviours (SYNAPSE-EQUIVALENTS.md): the extensions
# as test_extension_*.py and test_extensions.py assert them: to_device,
# account_data, receipts, typing and e2ee; each with no data, initial,
# incremental, a long poll woken by it and one its default data does not
# wake; per-room data only for rooms in scope; unknown extensions ignored.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_ss_syn.sh"

start_stack
A=@alice:localhost B=@bob:localhost
alice=$(sim_login $A A1)
sim users '{"localpart":"bob"}' >/dev/null
r1=$(mkroom $A "one")
j1=$(member join "$r1" "{\"user_id\":\"$B\"}")
r2=$(mkroom $A "two")
j2=$(member join "$r2" "{\"user_id\":\"$B\"}")
ss_first "$alice" '{}'
stored "$j1" "$j2"

# ext EXTS_JSON [RANGE_END]: a body with one list over the top rooms
# (EXT_RANGE sets the default end, for the helpers below)
ext() { printf '{"lists":{"foo-list":{"ranges":[[0,%s]],"required_state":[],"timeline_limit":1}},"extensions":%s}' "${2:-${EXT_RANGE:-99}}" "$1"; }
# quiet POS EXTS MESSAGE: long-polls POS for 1.5 s, which nothing may
# answer early (the extensions' default data must not); sets $out
quiet() {
	local t0 dt
	t0=$(now_ms)
	out=$(ss "$alice" "$1" "$(ext "$2")" 1500)
	dt=$(($(now_ms) - t0))
	ss_ok "$out" "$3"
	[ "$dt" -ge 1400 ] || fail "$3: the default data woke the long poll after $dt ms: $out"
}
# woken POS EXTS MESSAGE CMD...: long-polls POS; CMD runs after 1 s; the
# poll must answer before its 10 s timeout; sets $out
woken() {
	local t0 dt pos=$1 exts=$2 what=$3
	shift 3
	bg_then 1 "$@"
	t0=$(now_ms)
	out=$(ss "$alice" "$pos" "$(ext "$exts")" 10000)
	dt=$(($(now_ms) - t0))
	bg_wait
	ss_ok "$out" "$what"
	[ "$dt" -lt 9000 ] || fail "$what: not woken ($dt ms)"
}
TD='{"to_device":{"enabled":true}}'
td() { sim to_device "{\"sender\":\"$B\",\"type\":\"m.test\",\"content\":{\"n\":$1},\"user_id\":\"$A\",\"device_id\":\"A1\"}"; }

# --- to_device (test_extension_to_device.py)
out=$(ss "$alice" "" "$(ext "$TD")")
assert_jq "$out" '.extensions.to_device | [(.next_batch | type), (.events // [] | length)]' '["string",0]' "to_device test_no_data"
nb=$(printf '%s' "$out" | jq -r .extensions.to_device.next_batch)
[[ $nb =~ ^[0-9]+$ ]] || fail "to_device next_batch is not an integer string: $nb"
td 1 >/dev/null
td 2 >/dev/null
stored_sql "SELECT count(*) FROM syncv3_to_device WHERE user_id = '$A' AND device_id = 'A1' AND json LIKE '%\"n\":2%'"
out=$(ss "$alice" "" "$(ext "$TD")")
assert_jq "$out" '[.extensions.to_device.events[] | .content.n]' '[1,2]' "to_device test_data_initial_sync"
nb=$(printf '%s' "$out" | jq -r .extensions.to_device.next_batch)
pos=$(ss_pos "$out")
td 3 >/dev/null
stored_sql "SELECT count(*) FROM syncv3_to_device WHERE user_id = '$A' AND device_id = 'A1' AND json LIKE '%\"n\":3%'"
out=$(ss "$alice" "$pos" "$(ext "{\"to_device\":{\"enabled\":true,\"since\":\"$nb\"}}")" 5000)
assert_jq "$out" '[.extensions.to_device.events[] | .content.n]' '[3]' "to_device test_data_incremental_sync: only the new one"
nb=$(printf '%s' "$out" | jq -r .extensions.to_device.next_batch)
pos=$(ss_pos "$out")
quiet "$pos" "{\"to_device\":{\"enabled\":true,\"since\":\"$nb\"}}" "to_device test_wait_for_new_data_timeout"
assert_jq "$out" '.extensions.to_device.events // [] | length' 0 "to_device timeout: nothing"
pos=$(ss_pos "$out")
woken "$pos" "{\"to_device\":{\"enabled\":true,\"since\":\"$nb\"}}" "to_device test_wait_for_new_data" td 4
assert_jq "$out" '[.extensions.to_device.events[] | .content.n]' '[4]' "to_device test_wait_for_new_data: the message"
out=$(ss "$alice" "" "$(ext '{"to_device":{"enabled":true,"since":"x1"}}')")
assert_jq "$out" '.errcode' '"M_INVALID_PARAM"' "to_device: a since that is not an integer is refused as on Synapse"

# --- account_data (test_extension_account_data.py)
AD='{"account_data":{"enabled":true}}'
out=$(ss "$alice" "" "$(ext "$AD")")
assert_jq "$out" '.extensions.account_data | [(.global | type), (.rooms // {} | type)]' '["array","object"]' "account_data test_no_data_initial_sync"
sim account_data "{\"user_id\":\"$A\",\"type\":\"org.test.global\",\"content\":{\"v\":1}}" >/dev/null
sim account_data "{\"user_id\":\"$A\",\"room_id\":\"$r1\",\"type\":\"org.test.room\",\"content\":{\"v\":1}}" >/dev/null
sim account_data "{\"user_id\":\"$A\",\"room_id\":\"$r2\",\"type\":\"org.test.room\",\"content\":{\"v\":2}}" >/dev/null
stored_sql "SELECT count(*) FROM syncv3_account_data WHERE user_id = '$A' AND room_id = '$r2' AND type = 'org.test.room'"
out=$(ss "$alice" "" "$(ext "$AD")")
assert_jq "$out" '[.extensions.account_data.global[] | select(.type == "org.test.global") | .content.v]' '[1]' \
    "account_data test_global_account_data_initial_sync"
assert_jq "$out" "[.extensions.account_data.rooms[\"$r1\"][]? | select(.type == \"org.test.room\") | .content.v]" '[1]' \
    "account_data test_room_account_data_initial_sync"
pos=$(ss_pos "$out")
out=$(ss "$alice" "$pos" "$(ext "$AD")" 0)
assert_jq "$out" '[.extensions.account_data.global[]?] | length' 0 "account_data test_no_data_incremental_sync"
pos=$(ss_pos "$out")
sim account_data "{\"user_id\":\"$A\",\"type\":\"org.test.global2\",\"content\":{\"v\":2}}" >/dev/null
sim account_data "{\"user_id\":\"$A\",\"room_id\":\"$r1\",\"type\":\"org.test.room\",\"content\":{\"v\":3}}" >/dev/null
stored_sql "SELECT count(*) FROM syncv3_account_data WHERE user_id = '$A' AND room_id = '$r1' AND json LIKE '%\"v\":3%'"
stored_sql "SELECT count(*) FROM syncv3_account_data WHERE user_id = '$A' AND type = 'org.test.global2'"
out=$(ss "$alice" "$pos" "$(ext "$AD")" 5000)
assert_jq "$out" '[.extensions.account_data.global[]? | .type]' '["org.test.global2"]' "account_data test_global_account_data_incremental_sync: only the change"
assert_jq "$out" "[.extensions.account_data.rooms | keys[]]" "[\"$r1\"]" "account_data test_room_account_data_incremental_sync: only the changed room"
pos=$(ss_pos "$out")
quiet "$pos" "$AD" "account_data test_wait_for_new_data_timeout"
pos=$(ss_pos "$out")
woken "$pos" "$AD" "account_data test_wait_for_new_data" sim account_data "{\"user_id\":\"$A\",\"type\":\"org.test.wake\",\"content\":{}}"
assert_jq "$out" '[.extensions.account_data.global[]? | .type]' '["org.test.wake"]' "account_data test_wait_for_new_data: the change"
# scope: a room out of the window has no room account data until it is in range
stored "$(msg "$r1" $B "r1 on top")"
out=$(ss "$alice" "" "$(ext "$AD" 0)")
assert_jq "$out" "[.extensions.account_data.rooms // {} | keys[]]" "[\"$r1\"]" \
    "account_data test_room_account_data_incremental_sync_out_of_range_never: only rooms in the response"
pos=$(ss_pos "$out")
stored "$(msg "$r2" $B "r2 on top")"
out=$(ss "$alice" "$pos" "$(ext "$AD" 0)" 5000)
assert_jq "$out" "[.extensions.account_data.rooms[\"$r2\"][]? | .content.v]" '[2]' \
    "account_data out_of_range_never: all of it once the room is in range"
pos=$(ss_pos "$out")
sim account_data "{\"user_id\":\"$A\",\"room_id\":\"$r1\",\"type\":\"org.test.room\",\"content\":{\"v\":4}}" >/dev/null
stored_sql "SELECT count(*) FROM syncv3_account_data WHERE user_id = '$A' AND room_id = '$r1' AND json LIKE '%\"v\":4%'"
out=$(ss "$alice" "$pos" "$(ext "$AD" 0)" 1500)
assert_jq "$out" "[.extensions.account_data.rooms // {} | keys[]] | index(\"$r1\")" 'null' "account_data: out of range, not sent"
pos=$(ss_pos "$out")
stored "$(msg "$r1" $B "r1 back on top")"
out=$(ss "$alice" "$pos" "$(ext "$AD" 0)" 5000)
assert_jq "$out" "[.extensions.account_data.rooms[\"$r1\"][]? | .content.v]" '[4]' \
    "account_data test_room_account_data_incremental_sync_out_of_range_previously: the change once back in range"

# --- typing (test_extension_typing.py)
TY='{"typing":{"enabled":true}}'
out=$(ss "$alice" "" "$(ext "$TY")")
assert_jq "$out" '.extensions.typing.rooms // {} | length' 0 "typing test_no_data_initial_sync"
sim "rooms/$r1/typing" "{\"user_ids\":[\"$B\"]}" >/dev/null
stored_sql "SELECT count(*) FROM syncv3_typing WHERE room_id = '$r1' AND user_ids LIKE '%bob%'"
out=$(ss "$alice" "" "$(ext "$TY")")
assert_jq "$out" ".extensions.typing.rooms[\"$r1\"] | [.type, .content.user_ids]" "[\"m.typing\",[\"$B\"]]" "typing test_typing_initial_sync"
pos=$(ss_pos "$out")
out=$(ss "$alice" "$pos" "$(ext "$TY")" 0)
assert_jq "$out" '.extensions.typing.rooms // {} | length' 0 "typing test_no_data_incremental_sync"
pos=$(ss_pos "$out")
quiet "$pos" "$TY" "typing test_wait_for_new_data_timeout"
pos=$(ss_pos "$out")
woken "$pos" "$TY" "typing test_wait_for_new_data" sim "rooms/$r2/typing" "{\"user_ids\":[\"$B\"]}"
assert_jq "$out" "[.extensions.typing.rooms | keys[]]" "[\"$r2\"]" "typing test_typing_incremental_sync: only the room that changed"
# scope: a room the user is not in never gets typing
o=$(mkroom $B "not hers")
sim "rooms/$o/typing" "{\"user_ids\":[\"$B\"]}" >/dev/null
out=$(ss "$alice" "" "$(ext "$TY")")
assert_jq "$out" ".extensions.typing.rooms // {} | has(\"$o\")" 'false' "typing: never a room she is not in"

# --- receipts (test_extension_receipts.py), in a window of one room
RC='{"receipts":{"enabled":true}}'
EXT_RANGE=0
x=$(mkroom $A "receipts")
member join "$x" "{\"user_id\":\"$B\"}" >/dev/null
old=$(msg "$x" $A "old")
new=$(msg "$x" $A "new")
stored "$new"
out=$(ss "$alice" "" "$(ext "$RC" 0)")
assert_jq "$out" ".extensions.receipts.rooms // {} | length" 0 "receipts test_no_data_initial_sync"
sim "rooms/$x/receipt" "{\"user_id\":\"$B\",\"event_id\":\"$old\"}" >/dev/null
sim "rooms/$x/receipt" "{\"user_id\":\"$A\",\"event_id\":\"$old\"}" >/dev/null
stored_sql "SELECT count(*) FROM syncv3_receipts WHERE room_id = '$x' AND user_id = '$A'"
stored_sql "SELECT count(*) FROM syncv3_receipts WHERE room_id = '$x' AND user_id = '$B'"
out=$(ss "$alice" "" "$(ext "$RC" 0)")
# timeline_limit 1: the timeline is "new"; bob's receipt on "old" is not
# for it, alice's own always comes
assert_jq "$out" ".extensions.receipts.rooms[\"$x\"].content[\"$old\"][\"m.read\"] | keys" "[\"$A\"]" \
    "receipts test_receipts_initial_sync_with_timeline + test_return_own_read_receipts"
assert_jq "$out" ".extensions.receipts.rooms[\"$x\"].type" '"m.receipt"' "receipts: an m.receipt event"
pos=$(ss_pos "$out")
out=$(ss "$alice" "$pos" "$(ext "$RC" 0)" 0)
assert_jq "$out" ".extensions.receipts.rooms // {} | length" 0 "receipts test_no_data_incremental_sync"
pos=$(ss_pos "$out")
quiet "$pos" "$RC" "receipts test_wait_for_new_data_timeout"
pos=$(ss_pos "$out")
sim users '{"localpart":"carol"}' >/dev/null
sim "rooms/$x/join" '{"user_id":"@carol:localhost"}' >/dev/null
stored "$(sim_get "rooms/$x/events" | jq -r '.events[-1].event_id')"
out=$(ss "$alice" "$pos" "$(ext "$RC" 0)" 0)
pos=$(ss_pos "$out")
woken "$pos" "$RC" "receipts test_wait_for_new_data" sim "rooms/$x/receipt" "{\"user_id\":\"@carol:localhost\",\"event_id\":\"$old\"}"
assert_jq "$out" ".extensions.receipts.rooms[\"$x\"].content[\"$old\"][\"m.read\"] | keys" '["@carol:localhost"]' \
    "receipts test_receipts_incremental_sync_all_live_receipts: a live receipt, not on a timeline event"
# test_read_receipts_expanded_timeline: bob's receipt on "old" (not in a
# timeline of 1) comes once a subscription expands the timeline to it
out=$(ss "$alice" "" "$(ext "$RC" 0)")
assert_jq "$out" ".extensions.receipts.rooms[\"$x\"].content[\"$old\"][\"m.read\"] | keys" "[\"$A\"]" "receipts: only her own on an old event"
pos=$(ss_pos "$out")
out=$(ss "$alice" "$pos" "$(ext "$RC" 0 | jq -c --arg r "$x" '. + {room_subscriptions: {($r): {required_state: [], timeline_limit: 10}}}')" 5000)
assert_jq "$out" ".rooms[\"$x\"].unstable_expanded_timeline" 'true' "receipts: the timeline expanded"
assert_jq "$out" ".extensions.receipts.rooms[\"$x\"].content[\"$old\"][\"m.read\"] | keys | sort" "[\"$A\",\"$B\",\"@carol:localhost\"]" \
    "receipts test_read_receipts_expanded_timeline: receipts of the events the expansion sent"
# test_receipts_incremental_sync_out_of_range: a receipt made while the
# room is out of a window of one comes once the room is back in range
out=$(ss "$alice" "" "$(ext "$RC" 0)")
assert_eq "$(rooms_of "$out")" "$(ids "$x")" "receipts: window of one, x sent"
pos=$(ss_pos "$out")
stored "$(msg "$r1" $B "r1 to the top")"
out=$(ss "$alice" "$pos" "$(ext "$RC" 0)" 5000)
assert_eq "$(rooms_of "$out")" "$(ids "$r1")" "receipts: x out of the window"
pos=$(ss_pos "$out")
sim "rooms/$x/receipt" "{\"user_id\":\"$B\",\"event_id\":\"$new\"}" >/dev/null
stored_sql "SELECT count(*) FROM syncv3_receipts WHERE room_id = '$x' AND user_id = '$B' AND event_id = '$new'"
out=$(ss "$alice" "$pos" "$(ext "$RC" 0)" 1500)
assert_jq "$out" ".extensions.receipts.rooms // {} | has(\"$x\")" 'false' "receipts out of range: not sent"
pos=$(ss_pos "$out")
last=$(msg "$x" $A "x back on top")
stored "$last"
out=$(ss "$alice" "$pos" "$(ext "$RC" 0)" 5000)
assert_jq "$out" ".extensions.receipts.rooms[\"$x\"].content[\"$new\"][\"m.read\"] | has(\"$B\")" 'true' \
    "receipts test_receipts_incremental_sync_out_of_range: sent once back in range"

EXT_RANGE=99

# --- e2ee (test_extension_e2ee.py)
E2='{"e2ee":{"enabled":true}}'
out=$(ss "$alice" "" "$(ext "$E2")")
assert_jq "$out" '.extensions.e2ee | [(.device_one_time_keys_count | type), (.device_unused_fallback_key_types | type)]' '["object","array"]' \
    "e2ee test_no_data_initial_sync: the key counts always"
pos=$(ss_pos "$out")
quiet "$pos" "$E2" "e2ee test_wait_for_new_data_timeout"
assert_jq "$out" '.extensions.e2ee.device_lists.changed // [] | length' 0 "e2ee test_no_data_incremental_sync"
pos=$(ss_pos "$out")
woken "$pos" "$E2" "e2ee test_wait_for_new_data" sim device_change "{\"user_id\":\"$B\"}"
assert_jq "$out" '.extensions.e2ee.device_lists.changed' "[\"$B\"]" "e2ee test_device_lists: changed"
pos=$(ss_pos "$out")
sim keys "{\"user_id\":\"$A\",\"device_id\":\"A1\",\"one_time_keys_count\":{\"signed_curve25519\":50},\"unused_fallback_key_types\":[\"signed_curve25519\"]}" >/dev/null
# key counts do not wake /sync upstream (nor on Synapse): a message does
stored "$(msg "$r1" $B "after the keys")"
stored_sql "SELECT count(*) FROM syncv3_device_keys WHERE user_id = '$A' AND device_id = 'A1' AND otk_counts LIKE '%50%'"
out=$(ss "$alice" "$pos" "$(ext "$E2")" 0)
assert_jq "$out" '.extensions.e2ee.device_one_time_keys_count.signed_curve25519' 50 "e2ee test_device_one_time_keys_count"
assert_jq "$out" '.extensions.e2ee.device_unused_fallback_key_types' '["signed_curve25519"]' "e2ee test_device_unused_fallback_key_types"
pos=$(ss_pos "$out")
quiet "$pos" "$E2" "e2ee test_wait_for_new_data_timeout_with_otks and _with_fallback_keys"
# a user who left every shared room is in device_lists.left
out=$(ss "$alice" "" "$(ext "$E2")")
pos=$(ss_pos "$out")
sim "rooms/$r1/leave" "{\"user_id\":\"$B\"}" >/dev/null
sim "rooms/$r2/leave" "{\"user_id\":\"$B\"}" >/dev/null
sim "rooms/$x/leave" "{\"user_id\":\"$B\"}" >/dev/null
stored_sql "SELECT count(*) FROM syncv3_device_lists WHERE user_id = '$A' AND target_user = '$B' AND change = 'left'"
out=$(ss "$alice" "$pos" "$(ext "$E2")" 5000)
assert_jq "$out" '.extensions.e2ee.device_lists.left' "[\"$B\"]" "e2ee test_device_lists: left"

# --- test_extensions_lists_rooms_relevant_rooms: lists/rooms scope
sim "rooms/$r1/typing" "{\"user_ids\":[\"$A\"]}" >/dev/null
sim "rooms/$x/typing" "{\"user_ids\":[\"$A\"]}" >/dev/null
stored_sql "SELECT count(*) FROM syncv3_typing WHERE room_id = '$x' AND user_ids LIKE '%alice%'"
two="{\"lists\":{\"a\":{\"ranges\":[[0,99]],\"required_state\":[],\"timeline_limit\":0,\"filters\":{\"is_encrypted\":true}},
 \"b\":{\"ranges\":[[0,99]],\"required_state\":[],\"timeline_limit\":0}},
 \"room_subscriptions\":{\"$x\":{\"required_state\":[],\"timeline_limit\":0}}"
typing_rooms() { ss "$alice" "" "$two,\"extensions\":{\"typing\":$1}}" | jq -c '[.extensions.typing.rooms // {} | keys[]] | sort'; }
assert_eq "$(typing_rooms '{"enabled":true}')" "$(ids "$r1" "$r2" "$x")" "extension scope: default every list and subscription"
assert_eq "$(typing_rooms '{"enabled":true,"lists":["a"],"rooms":[]}')" '[]' "extension scope: list a (no rooms)"
assert_eq "$(typing_rooms "{\"enabled\":true,\"lists\":[],\"rooms\":[\"$x\"]}")" "$(ids "$x")" "extension scope: one subscription"
assert_eq "$(typing_rooms "{\"enabled\":true,\"lists\":[\"b\"],\"rooms\":[]}")" "$(ids "$r1" "$r2" "$x")" "extension scope: list b"
assert_eq "$(typing_rooms "{\"enabled\":true,\"lists\":[\"*\"],\"rooms\":[\"$r1\"]}")" "$(ids "$r1" "$r2" "$x")" "extension scope: * lists"
assert_eq "$(typing_rooms "{\"enabled\":true,\"lists\":[\"nosuch\"],\"rooms\":[\"!nosuch:localhost\"]}")" '[]' "extension scope: unknown list and room"

# --- extensions we do not serve are ignored (sticky_events, thread_subscriptions)
out=$(ss "$alice" "" "$(ext '{"org.matrix.msc4354.sticky_events":{"enabled":true,"limit":100},"io.element.msc4308.thread_subscriptions":{"enabled":true,"limit":10}}')")
ss_ok "$out" "unserved extensions"
assert_jq "$out" '.extensions // {} | keys' '[]' "unserved extensions are ignored"
it_pass
