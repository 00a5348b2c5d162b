#!/usr/bin/env bash
# Token lifecycle and whoami bounds at the api (issue #9). A new token for
# a device ends the old one at once, on this api and on another one behind
# the same database (no 300 s whoami cache grace); upstream /whoami calls
# for unknown tokens are rate limited per client address (429
# M_LIMIT_EXCEEDED with retry_after_ms and Retry-After); a rejected token
# is remembered (one /whoami for many tries); the token memory is capped
# (SYNCV3_API_TOKENS_MAX) and swept of expired entries; many concurrent
# first requests (devices of one user registering at once) all get 200.
source "$(dirname "$0")/lib.sh"

export SYNCV3_API_WHOAMI_PEER_BURST=20 SYNCV3_API_WHOAMI_PEER_RATE=5
export SYNCV3_API_WHOAMI_NEG_SECS=3
start_stack
sync_url="$API_URL/_matrix/client/v3/sync"
ms() { echo $(( $(date +%s%N) / 1000000 )); }
nb() { printf '%s' "$1" | jq -r .next_batch; }
whoamis() { sim_get stats | jq .whoami_requests; }
# a second api on the same database, with generous whoami limits and a
# small token memory
port=$(free_port)
start_proc api2 env SYNCV3_BINDADDR="127.0.0.1:$port" SYNCV3_API_TOKENS_MAX=100 \
    SYNCV3_API_WHOAMI_PEER_BURST=1000 SYNCV3_API_WHOAMI_PEER_RATE=1000 \
    SYNCV3_API_WHOAMI_NEG_SECS=600 "$BIN/syncv3-api"
API2_URL="http://127.0.0.1:$port"
wait_for "curl -sf $API2_URL/health" 20 || fail "api2 did not become healthy"
v3_2() { API_URL=$API2_URL v3 "$@"; }

# --- a new token for a device ends the old one everywhere ----------------
alice=$(sim_login @alice:localhost A1)
s=$(nb "$(v3 "$alice" "" '{}' 10000)")
assert_eq "$(last_status)" 200 "alice on api1"
v3_2 "$alice" "$s" '{}' 0 >/dev/null
assert_eq "$(last_status)" 200 "alice on api2 (cached there now)"
alice2=$(sim login '{"user_id":"@alice:localhost","device_id":"A1","replace":true}' | jq -r .access_token)
t0=$(ms)
v3 "$alice2" "" '{}' 0 >/dev/null
assert_eq "$(last_status)" 200 "the new token on api1"
out=$(v3 "$alice" "$s" '{}' 0)
assert_eq "$(last_status)" 401 "old token on api1, old session"
assert_jq "$out" .errcode '"M_UNKNOWN_TOKEN"' "old token errcode"
out=$(v3_2 "$alice" "$s" '{}' 0)
t1=$(ms)
assert_eq "$(last_status)" 401 "old token on api2, old session"
assert_jq "$out" .errcode '"M_UNKNOWN_TOKEN"' "old token errcode on api2"
v3_2 "$alice" "" '{}' 0 >/dev/null
assert_eq "$(last_status)" 401 "old token on api2, new session"
log "old token refused $((t1 - t0)) ms after the new one was registered"
v3_2 "$alice2" "$s" '{}' 0 >/dev/null
assert_eq "$(last_status)" 200 "the new token keeps the device's session"

# --- whoami rate limit per client address ---------------------------------
sim stats/reset >/dev/null
t0=$(ms)
mkdir -p "$T/bad"
seq 1 200 | xargs -P 20 -I@ curl -s -D "$T/bad/h.@" -o "$T/bad/b.@" -w '%{http_code}\n' \
    -X POST -H "Authorization: Bearer syt_random_@_$RANDOM" -d '{}' "$sync_url?timeout=0" >"$T/codes"
t1=$(ms)
n401=$(grep -c '^401$' "$T/codes"); n429=$(grep -c '^429$' "$T/codes")
assert_eq "$((n401 + n429))" 200 "every bad token answered 401 or 429 ($(sort "$T/codes" | uniq -c | tr '\n' ' '))"
[ "$n429" -gt 0 ] || fail "no 429 for 200 unknown tokens"
calls=$(whoamis)
max=$((20 + 5 * (t1 - t0) / 1000 + 5))
[ "$calls" -le "$max" ] || fail "$calls upstream whoami calls for 200 tokens in $((t1 - t0)) ms (at most $max)"
log "200 unknown tokens: $n401 x 401, $n429 x 429, $calls upstream /whoami"
h=$(grep -l '^HTTP/1.1 429' "$T"/bad/h.* | head -1)
b=$(cat "${h/h./b.}")
assert_jq "$b" .errcode '"M_LIMIT_EXCEEDED"' "429 errcode"
assert_jq "$b" '.retry_after_ms > 0' 'true' "429 retry_after_ms"
grep -qi '^retry-after: [0-9]' "$h" || fail "no Retry-After on 429"
# known tokens are not limited
v3 "$alice2" "" '{}' 0 >/dev/null
assert_eq "$(last_status)" 200 "a known token while unknown ones are limited"

# --- negative cache (and its expiry) ------------------------------------------
sleep 4	# the address's bucket refills
sim stats/reset >/dev/null
for i in $(seq 1 10); do
	v3 "syt_rejected_once" "" '{}' 0 >/dev/null
	assert_eq "$(last_status)" 401 "rejected token, try $i"
done
assert_eq "$(whoamis)" 1 "10 tries of one rejected token, 1 upstream whoami"
sleep 3.5
v3 "syt_rejected_once" "" '{}' 0 >/dev/null
assert_eq "$(whoamis)" 2 "remembered for SYNCV3_API_WHOAMI_NEG_SECS only"
# the sweep drops expired entries nobody asks for again
wait_for "grep -q 'auth: sweep dropped [1-9]' '$T/api.log'" 12 ||
    fail "the sweep never dropped expired tokens"

# --- the token memory is capped ----------------------------------------------
sim stats/reset >/dev/null
v3_2 "syt_evict_me" "" '{}' 0 >/dev/null
v3_2 "syt_evict_me" "" '{}' 0 >/dev/null
assert_eq "$(whoamis)" 1 "api2 remembers a rejected token"
seq 1 150 | xargs -P 10 -I@ curl -s -o /dev/null -X POST \
    -H "Authorization: Bearer syt_filler_@" -d '{}' "$API2_URL/_matrix/client/v3/sync?timeout=0"
sim stats/reset >/dev/null
v3_2 "syt_evict_me" "" '{}' 0 >/dev/null
assert_eq "$(last_status)" 401 "evicted token still refused"
assert_eq "$(whoamis)" 1 "past SYNCV3_API_TOKENS_MAX the oldest entry went"

# --- many concurrent first requests -------------------------------------------
# Devices of one user register at once, each device's first request sent
# to api2 and api3 at the same moment (two apis behind one load balancer):
# both find the token unknown, both verify it and both upsert the device.
port=$(free_port)
start_proc api3 env SYNCV3_BINDADDR="127.0.0.1:$port" \
    SYNCV3_API_WHOAMI_PEER_BURST=1000 SYNCV3_API_WHOAMI_PEER_RATE=1000 "$BIN/syncv3-api"
API3_URL="http://127.0.0.1:$port"
wait_for "curl -sf $API3_URL/health" 20 || fail "api3 did not become healthy"
room=$(sim rooms '{"creator":"@owner:localhost","name":"Race"}' | jq -r .room_id)
ROUNDS=${ROUNDS:-15}
for r in $(seq 1 "$ROUNDS"); do
	u="@u$r:localhost"
	sim "rooms/$room/join" "{\"user_id\":\"$u\"}" >/dev/null
	toks=()
	for d in 1 2 3 4 5 6 7 8; do toks+=("$(sim_login "$u" "D$d")"); done
	pids=()
	for d in 0 1 2 3 4 5 6 7; do
		for a in "$API2_URL" "$API3_URL"; do
			curl -s -o "$T/first.$r.$d.${a##*:}" -w '%{http_code} %{time_total}\n' \
			    --max-time 20 -X POST -H "Authorization: Bearer ${toks[$d]}" \
			    -d '{"room_list":{"limit":5}}' \
			    "$a/_matrix/client/v3/sync?timeout=0" >"$T/code.$r.$d.${a##*:}" &
			pids+=($!)
		done
	done
	wait "${pids[@]}"
done
n=$(cat "$T"/code.* | wc -l)
bad=$(cat "$T"/code.* | awk '$1 != 200' | wc -l)
slow=$(cat "$T"/code.* | sort -k2 -n | tail -1)
if [ "$bad" != 0 ]; then
	for f in "$T"/code.*; do
		read -r c _ <"$f"
		[ "$c" = 200 ] || log "${f##*/}: $c $(cat "${f/code./first.}")"
	done
	fail "$bad of $n first requests not 200"
fi
log "$n concurrent first requests all 200 (slowest: $slow)"
it_pass
