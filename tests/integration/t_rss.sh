#!/usr/bin/env bash
# it: serial
# Memory after a large initial sync (issue #13, item 6): the poller and the
# accumulator give back most of what one large body cost them once it is
# stored (glibc kept it: a freed large buffer raised the mmap threshold,
# a parsed body's objects stayed in the arenas; common/mem.c). For each
# daemon: of what its peak (VmHWM) rose above its RSS before the login, at
# least half is returned (VmRSS) once idle again. The figures for 10,000
# rooms are tests/bench/bench_rss.sh's. Skipped (77) for a sanitizer
# build, whose allocator is not glibc's: run it with BIN=build/bin.
source "$(dirname "$0")/lib.sh"

if nm -D "$BIN/syncv3-poller" 2>/dev/null | grep -q __asan_init; then
	log "SKIP: $BIN is built with AddressSanitizer (its allocator, not glibc's)"
	exit 77
fi

export SYNCV3_API_INITIAL_WAIT_MS=300000 SYNCV3_API_MAX_TIMEOUT_MS=300000
start_stack
kib() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/${IT_PIDS[$1]}/status"; }
sc=$(sim scenario '{"users":1,"rooms_per_user":2000,"members_per_room":2,"messages_per_room":3,"prefix":"rss"}')
tok=$(printf '%s' "$sc" | jq -r '.users[0].access_token')
sleep 1
declare -A before
for p in poller accumulator; do before[$p]=$(kib $p VmRSS); done
v3 "$tok" "" '{"room_list":{"limit":1}}' 300000 >/dev/null
assert_eq "$(last_status)" 200 "the login's initial sync stored"
# the api answers once the first window is stored (issue #13, item 4):
# the accumulator is still storing the rest of the body then
user=$(printf '%s' "$sc" | jq -r '.users[0].user_id')
wait_for "[ \"\$(psql_q \"SELECT count(*) FROM syncv3_user_rooms WHERE user_id = '$user'\")\" = 2000 ]" 120 ||
    fail "the initial sync's 2000 rooms were not all stored"
# idle again: the stored rows are visible before the accumulator's loop
# has freed the body (the writer thread commits, then hands it back), so
# each daemon gets up to 20 s to return at least half of its peak
returned() {
	local hwm rss b=${before[$1]}
	hwm=$(kib "$1" VmHWM) rss=$(kib "$1" VmRSS)
	[ $((rss - b)) -le $(( (hwm - b) / 2 )) ]
}
for p in poller accumulator; do
	wait_for "returned $p" 20
	hwm=$(kib $p VmHWM) rss=$(kib $p VmRSS) b=${before[$p]}
	log "$p: RSS $b kB before, peak $hwm kB, $rss kB idle again"
	[ $((hwm - b)) -gt 10240 ] || fail "$p: the body cost only $((hwm - b)) kB (test premise)"
	[ $((rss - b)) -le $(( (hwm - b) / 2 )) ] ||
	    fail "$p: kept $((rss - b)) of the $((hwm - b)) kB its peak took"
done
it_pass
