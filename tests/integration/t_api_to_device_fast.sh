#!/usr/bin/env bash
# it: serial
# The to-device fast path (issue #13, item 2): a v3 long-poll woken by a
# to-device notice is answered from the messages the notice carries
# (proto.h, version 8) with no Postgres statement on its path (/health
# "queries" counts every statement the api sends), byte-equal, in order,
# within the limit; the messages stay in Postgres until acked (an old
# token gets them again, from Postgres); messages committed while the api
# was down are read from Postgres by the restarted api, then fast again.
source "$(dirname "$0")/lib.sh"

start_stack
tok=$(sim_login @alice:localhost A1)
v3 "$tok" "" '{}' 10000 >/dev/null   # registers the device, initial sync
health() { curl -sf "$API_URL/health"; }
m() { printf '{"user_id":"@alice:localhost","device_id":"A1","sender":"@bob:localhost","type":"m.x","content":{"n":%s,"s":"a/b \u00e9"}}' "$1"; }
send() {	# send N...: one upstream call (one /sync body) with each message
	local ms=() n
	for n in "$@"; do ms+=("$(m "$n")"); done
	sim to_device "{\"messages\":[$(IFS=,; echo "${ms[*]}")]}" >/dev/null
}
s=$(v3 "$tok" "" '{"to_device":{}}' 0 | jq -r .next_batch)
[ "$s" != null ] || fail "no session"

# wake LABEL BODY WANT N...: a long-poll (BODY), then the messages N in one
# body; the answer holds WANT (content.n) and no statement was sent
# between the request waiting and its answer.
wake() {
	local label=$1 body=$2 want=$3 q0 q1 out
	shift 3
	v3 "$tok" "$s" "$body" 10000 >"$T/w.out" &
	local poll=$!
	wait_for "[ \"\$(health | jq .waiters)\" = 1 ]" 15 || fail "$label: not waiting"
	q0=$(health | jq .queries)
	send "$@"
	wait $poll
	q1=$(health | jq .queries)
	out=$(cat "$T/w.out")
	assert_jq "$out" '[.to_device.events[].content.n]' "$want" "$label: woken with the messages"
	assert_eq "$((q1 - q0))" 0 "$label: statements on the to-device wake"
	prev=$s
	s=$(printf '%s' "$out" | jq -r .next_batch)
}
h0=$(health | jq .to_device_notice_hits)
wake "one" '{}' '[1]' 1
# as stored, byte for byte
raw=$(cat "$T/w.out")
stored=$(psql_q "SELECT json FROM syncv3_to_device WHERE user_id = '@alice:localhost'")
[ -n "$stored" ] && case $raw in *"[$stored]"*) true ;; *) false ;; esac ||
    fail "not as stored ($stored): $raw"
wake "three in one body" '{}' '[2,3,4]' 2 3 4
[ "$(health | jq .to_device_notice_hits)" -ge $((h0 + 2)) ] || fail "notice messages not used"
log "2 to-device wakes, 0 statements"

# The messages stay in Postgres until acked: the previous token gets them
# again (Postgres); the current one has nothing new (and acks them).
out=$(v3 "$tok" "$prev" '{}' 0)
assert_jq "$out" '[.to_device.events[].content.n]' '[2,3,4]' "redelivered from Postgres until acked"
out=$(v3 "$tok" "$s" '{}' 0)
assert_jq "$out" '.to_device.events' '[]' "nothing new after the fast answer"
s=$(printf '%s' "$out" | jq -r .next_batch)

# Over the limit: the first page from the notice, the rest next time.
wake "limit 2 of 3" '{"to_device":{"limit":2}}' '[5,6]' 5 6 7
out=$(v3 "$tok" "$s" '{}' 0)
assert_jq "$out" '[.to_device.events[].content.n]' '[7]' "the rest of the page"
s=$(printf '%s' "$out" | jq -r .next_batch)
out=$(v3 "$tok" "$s" '{}' 0)
assert_jq "$out" '.to_device.events' '[]' "exactly once"
s=$(printf '%s' "$out" | jq -r .next_batch)
wake "limit 2 of 1" '{}' '[8]' 8

# An api restarted: what was committed while it was down comes from
# Postgres, then the notices answer again.
stop_proc api
send 9
wait_for "[ \"\$(psql_q \"SELECT count(*) FROM syncv3_to_device WHERE json LIKE '%\\\"n\\\":9,%'\")\" = 1 ]" 15 ||
    fail "message 9 not stored"
start_api
out=$(v3 "$tok" "$s" '{}' 10000)
# its first notice (a new epoch to it) re-reads the position: wait for it
wait_for "[ \"\$(health | jq .gaps)\" -ge 1 ]" 15 || fail "restarted api heard no notice"
assert_jq "$out" '[.to_device.events[].content.n]' '[9]' "restarted api: from Postgres"
s=$(printf '%s' "$out" | jq -r .next_batch)
wake "after the restart" '{}' '[10]' 10
it_pass
