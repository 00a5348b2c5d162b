#!/usr/bin/env bash
# tests/bench/probe_api_bounds.sh: the issue #9 figures, on loopback and
# bounded (about a minute). After `cmake --build build`:
#
#     tests/bench/probe_api_bounds.sh [-s SESSIONS] [-t BAD_TOKENS]
#
# (defaults 1000 and 30000; BIN=dir overrides build/bin). Starts a private
# stack (its own Postgres) with the default limits and prints one JSON
# object: sessions a device reaches when a client creates SESSIONS; the
# upstream /whoami calls (simhs counts them) that BAD_TOKENS random tokens
# cost, sent over 50 keep-alive connections, with the answers' status
# counts; the latency of v3 requests while Postgres is stopped; and how
# long an old token keeps working after the device got a new one.
here=$(cd "$(dirname "$0")" && pwd)
SESSIONS=1000 BAD=30000
while getopts s:t: o; do
	case $o in
	s) SESSIONS=$OPTARG ;; t) BAD=$OPTARG ;;
	*) sed -n 2,13p "$0" >&2; exit 2 ;;
	esac
done
source "$here/../integration/lib.sh"
unset IT_PGHOST
export SYNCV3_LOG_LEVEL=warn
start_stack
sync_url="$API_URL/_matrix/client/v3/sync"
nb() { printf '%s' "$1" | jq -r .next_batch; }

# Sends requests over keep-alive connections: tokens from argv[3:] or
# N random ones; prints {"status": count} and the elapsed seconds.
cat >"$T/load.py" <<'EOF'
import http.client, json, os, sys, threading, time, urllib.parse
url = urllib.parse.urlparse(sys.argv[1]); n = int(sys.argv[2])
conns, counts, lock = 50, {}, threading.Lock()
def worker(k):
    c = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    for i in range(k, n, conns):
        tok = "syt_probe_%d_%s" % (i, os.urandom(8).hex())
        try:
            c.request("POST", url.path + "?timeout=0", body="{}",
                      headers={"Authorization": "Bearer " + tok})
            r = c.getresponse(); r.read(); st = str(r.status)
        except Exception:
            c.close(); c = http.client.HTTPConnection(url.hostname, url.port, timeout=30); st = "error"
        with lock: counts[st] = counts.get(st, 0) + 1
t0 = time.time()
ts = [threading.Thread(target=worker, args=(k,)) for k in range(conns)]
[t.start() for t in ts]; [t.join() for t in ts]
print(json.dumps({"statuses": counts, "secs": round(time.time() - t0, 1)}))
EOF

# 1. sessions per device
tok=$(sim_login @alice:localhost A1)
v3 "$tok" "" '{}' 10000 >/dev/null
for i in $(seq 1 "$SESSIONS"); do
	curl -s -o /dev/null -X POST -H "Authorization: Bearer $tok" -d '{}' "$sync_url?timeout=0"
done
sessions=$(psql_q "SELECT count(*) FROM syncv3_sessions WHERE device_id = 'A1'")

# 2. upstream whoami calls for random tokens
sim stats/reset >/dev/null
bad=$(python3 "$T/load.py" "$sync_url" "$BAD")
whoami=$(sim_get stats | jq .whoami_requests)

# 3. revocation delay: a new token for A1, then the old one until refused
s=$(nb "$(v3 "$tok" "" '{}' 0)")
tok2=$(sim login '{"user_id":"@alice:localhost","device_id":"A1","replace":true}' | jq -r .access_token)
sleep 6	# past the address's whoami bucket refill
t0=$(date +%s%N)
v3 "$tok2" "" '{}' 0 >/dev/null
new_status=$(last_status)
while v3 "$tok" "$s" '{}' 0 >/dev/null; [ "$(last_status)" = 200 ]; do
	[ $(( ($(date +%s%N) - t0) / 1000000 )) -gt 400000 ] && break
	sleep 0.05
done
revoke_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
old_status=$(last_status)

# 4. latency with Postgres stopped
s=$(nb "$(v3 "$tok2" "" '{}' 0)")
it_pg_stop "$T/pg"
sleep 1
: >"$T/lat"
for i in $(seq 1 20); do
	curl -s -o /dev/null -w '%{http_code} %{time_total}\n' --max-time 70 -X POST \
	    -H "Authorization: Bearer $tok2" -d '{}' \
	    "$sync_url?timeout=0&since=$(jq -rn --arg s "$s" '$s|@uri')" >>"$T/lat"
done
down_codes=$(awk '{print $1}' "$T/lat" | sort | uniq -c | awk '{printf "%s\"%s\":%s", n++ ? "," : "", $2, $1}')
down_max=$(awk '{if ($2 > m) m = $2} END {printf "%.1f", m * 1000}' "$T/lat")
down_p50=$(awk '{print $2 * 1000}' "$T/lat" | sort -n | awk '{v[NR]=$1} END {printf "%.1f", v[int((NR+1)/2)]}')
health=$(curl -s -o /dev/null -w '%{http_code}' "$API_URL/health")

printf '{"sessions_created":%d,"sessions_kept":%d,"bad_tokens":%d,"bad_token_answers":%s,"upstream_whoami_calls":%d,"revocation_delay_ms":%d,"new_token_status":%s,"old_token_status":%s,"db_down_statuses":{%s},"db_down_p50_ms":%s,"db_down_max_ms":%s,"db_down_health":%s}\n' \
    "$((SESSIONS + 1))" "$sessions" "$BAD" "$bad" "$whoami" "$revoke_ms" "$new_status" "$old_status" \
    "$down_codes" "$down_p50" "$down_max" "$health"
