#!/usr/bin/env bash
# Issue #13: v3 room_list streaming rounds that start in the same loop
# pass (the clients one notice woke) are read in one statement
# (s_room_list.c, Q_LIST_STREAM). Each client still gets exactly its own
# rooms and messages: alice and bob share one room and each has one of
# their own; a message in the shared room wakes both at once (one read
# for both, seen in the api's log), messages in all three rooms at once
# reach each only through their rooms, each once, and so do changes
# committed while the api was down (its notices lost: both clients'
# next rounds read from their since).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_privacy.sh"

# as USER ROOM BODY: a message from USER
as() { sim "rooms/$2/send" "{\"sender\":\"$1\",\"type\":\"m.room.message\",\"content\":{\"body\":\"$3\"}}" >/dev/null; }
rs=$(mk "shared")
rb=$(mk "bob alone")
ra=$(mk "alice alone")
sim "rooms/$rs/join" "{\"user_id\":\"$A\"}" >/dev/null
sim "rooms/$ra/join" "{\"user_id\":\"$A\"}" >/dev/null
sim "rooms/$ra/leave" "{\"user_id\":\"$B\"}" >/dev/null
body='{"room_list":{"timeline_limit":10}}'
count() { v3 "$1" "" "$body" 10000 | jq .room_list.count; }
wait_for "[ \"\$(count \"\$alice\")\" = 2 ]" 20 || fail "alice's two rooms"
wait_for "[ \"\$(count \"\$bob\")\" = 2 ]" 20 || fail "bob's two rooms"
sa=$(v3 "$alice" "" "$body" 0 | jq -r .next_batch)
sb=$(v3 "$bob" "" "$body" 0 | jq -r .next_batch)

# seen WHO: the room ids and bodies in WHO's answers so far
seen_rooms() { cat "$T/$1".ans 2>/dev/null | jq -r '.room_list.rooms[]?.room_id' | sort -u | tr '\n' ' '; }
seen_bodies() { cat "$T/$1".ans 2>/dev/null | jq -r '.room_list.rooms[]?.timeline[]?.content.body' | sort | tr '\n' ' '; }
# both: both long-poll until each has its expected bodies (or 15 s)
both() {
	local want_a=$1 want_b=$2 i
	for i in $(seq 30); do
		[ "$(seen_bodies alice)" = "$want_a" ] && [ "$(seen_bodies bob)" = "$want_b" ] && return 0
		v3 "$alice" "$sa" '{}' 2000 >"$T/a.out" &
		local pa=$!
		v3 "$bob" "$sb" '{}' 2000 >"$T/b.out" &
		local pb=$!
		wait $pa $pb
		jq -c . "$T/a.out" >>"$T/alice.ans"
		jq -c . "$T/b.out" >>"$T/bob.ans"
		sa=$(jq -r .next_batch "$T/a.out")
		sb=$(jq -r .next_batch "$T/b.out")
	done
	fail "expected alice [$want_a] bob [$want_b], got alice [$(seen_bodies alice)] bob [$(seen_bodies bob)]"
}
check_rooms() {
	for r in $(seen_rooms alice); do
		[ "$r" = "$rs" ] || [ "$r" = "$ra" ] || fail "alice was sent room $r"
	done
	for r in $(seen_rooms bob); do
		[ "$r" = "$rs" ] || [ "$r" = "$rb" ] || fail "bob was sent room $r"
	done
}

# one message in the shared room while both wait: one read for both
n0=$(grep -c 'streaming rounds in one read' "$T/api.log")
v3 "$alice" "$sa" '{}' 10000 >"$T/a.out" &
pa=$!
v3 "$bob" "$sb" '{}' 10000 >"$T/b.out" &
pb=$!
wait_for "[ \"\$(health | jq .waiters)\" = 2 ]" 15 || fail "both long-polls waiting"
say "$rs" "s1"
wait $pa $pb
jq -c . "$T/a.out" >>"$T/alice.ans"
jq -c . "$T/b.out" >>"$T/bob.ans"
sa=$(jq -r .next_batch "$T/a.out")
sb=$(jq -r .next_batch "$T/b.out")
assert_eq "$(seen_bodies alice)" "s1 " "alice: the shared room's message"
assert_eq "$(seen_bodies bob)" "s1 " "bob: the shared room's message"
check_rooms
tail -n +1 "$T/api.log" | grep 'streaming rounds in one read' | tail -n +"$((n0 + 1))" |
    grep -q 'room_list: 2 streaming rounds in one read' ||
    fail "the two woken rounds were not read together"

# messages in all three rooms at once
as "$A" "$ra" "a1"
say "$rb" "b1"
say "$rs" "s2"
both "a1 s1 s2 " "b1 s1 s2 "
check_rooms

# committed while the api was down: no notice of them ever arrives
stop_proc api
as "$A" "$ra" "a2"
say "$rb" "b2"
say "$rs" "s3"
stored() {
	wait_for "[ \"\$(psql_q \"SELECT count(*) FROM syncv3_events WHERE (json::json)->'content'->>'body' = '$1'\")\" = 1 ]" 15 ||
	    fail "message $1 not stored"
}
stored a2; stored b2; stored s3
start_api
both "a1 a2 s1 s2 s3 " "b1 b2 s1 s2 s3 "
check_rooms
it_pass
