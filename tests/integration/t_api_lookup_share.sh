#!/usr/bin/env bash
# Unknown tokens are looked up in Postgres before the whoami rate limit can
# refuse them, so a flood of random tokens could fill the api's whole pool
# queue and starve requests with known tokens (found in review of issue
# #9). Their lookups may hold at most a quarter of SYNCV3_API_DB_QUEUE_MAX:
# with the queue at 8 and every lookup stuck behind a lock, 10 random
# tokens get 2 lookups and 8 immediate 429 M_LIMIT_EXCEEDED (before: all
# 10 queued and waited for the database).
source "$(dirname "$0")/lib.sh"

export SYNCV3_API_DB_QUEUE_MAX=8 SYNCV3_API_DB_TIMEOUT_MS=20000
start_stack
hold_table_lock syncv3_devices "ACCESS EXCLUSIVE" AccessExclusiveLock 6
pids=()
for i in $(seq 1 10); do
	curl -s -m 15 -o "$T/r$i" -w '%{http_code}\n' -X POST \
	    -H "Authorization: Bearer random-token-$i" -d '{}' \
	    "$API_URL/_matrix/client/v3/sync?timeout=0" >"$T/s$i" &
	pids+=($!)
	sleep 0.05
done
sleep 2
n429=$(cat "$T"/s* 2>/dev/null | grep -c '^429$')
is_running locker || fail "the lock was released too early for this test"
assert_eq "$n429" 8 "unknown tokens refused at once while 2 lookups wait"
assert_jq "$(cat "$(grep -l '^429$' "$T"/s* | head -1 | sed 's/\/s\([0-9]*\)$/\/r\1/')")" \
    .errcode '"M_LIMIT_EXCEEDED"' "errcode"
wait "${pids[@]}"
it_pass
