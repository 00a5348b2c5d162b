#!/usr/bin/env bash
# tests/bench/bench_ss_login.sh: sliding sync for a login the proxy has
# never seen, and what an idle sliding connection costs the api (issue
# #11 benchmarks; goals: <= 200 ms for 1,000 rooms and <= 500 ms for
# 10,000 rooms to the first complete window). After `cmake --build build`:
#
#     tests/bench/bench_ss_login.sh [-z SIZES] [-q REPEATS] [-n IDLE] [-c CONNS]
#         [-m MESSAGES]
#
# (defaults 1000,10000; 3; 1000; 10; 1). On a private stack (durable
# Postgres with deploy/postgres settings, tests/bench/pg.sh):
#  1. per size, REPEATS accounts made by simhs's bulk scenario (rooms of
#     2 members, 1 message each), each a token the proxy has never seen:
#     the time from the first sliding sync request (Synapse dialect, list
#     [0,19], timeline_limit 1, name/avatar/encryption state) to the first
#     200 whose window is complete (20 rooms, each with a timeline), with
#     the answers it took; p50 and the worst;
#  2. api RSS (VmRSS, /proc) before and after IDLE sliding connections
#     long-poll at once (IDLE / CONNS devices of one user, CONNS conn_ids
#     each, merged dialect so each has its own conn_id), and the delta per
#     connection.
# Prints figures, asserts none. TEST_KEEP=1 keeps the temp dir.
here=$(cd "$(dirname "$0")" && pwd)
SIZES=1000,10000 REPEATS=3 IDLE=1000 CONNS=10 MSGS=1
while getopts z:q:n:c:m: o; do
	case $o in
	z) SIZES=$OPTARG ;; q) REPEATS=$OPTARG ;; n) IDLE=$OPTARG ;; c) CONNS=$OPTARG ;;
	m) MSGS=$OPTARG ;;
	*) sed -n 2,22p "$0" >&2; exit 2 ;;
	esac
done
# the poller's default, not lib.sh's (SYNCV3_FIRST_TIMELINE_LIMIT=50 compares)
export SYNCV3_FIRST_TIMELINE_LIMIT=${SYNCV3_FIRST_TIMELINE_LIMIT:-1}
source "$here/../integration/lib.sh"
source "$here/pg.sh"
IT_NAME=bench_ss_login
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
export SYNCV3_LOG_LEVEL=${SYNCV3_LOG_LEVEL:-warn} SYNCV3_API_SESSION_IDLE_SECS=3600
export SYNCV3_API_MAX_TIMEOUT_MS=600000 SYNCV3_API_INITIAL_WAIT_MS=600000
export SYNCV3_API_MAX_WAITERS=$((IDLE + 1000)) SYNCV3_SS_CONN_IDLE_S=3600
bench_pg_start "$T/pg" || fail "postgres did not start"
start_stack

# first_window TOKEN LABEL: one JSON line
first_window() {
	API_URL=$API_URL TOKEN=$1 LABEL=$2 python3 - <<'EOF'
import http.client, json, os, time, urllib.parse
api = urllib.parse.urlparse(os.environ["API_URL"])
path = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync?timeout=0"
body = json.dumps({"lists": {"all": {"ranges": [[0, 19]], "timeline_limit": 1,
        "required_state": [["m.room.name", ""], ["m.room.avatar", ""], ["m.room.encryption", ""]]}}})
c = http.client.HTTPConnection(api.hostname, api.port, timeout=600)
t0, wall0 = time.perf_counter(), time.time()
answers, statuses = 0, []
while True:
    c.request("POST", path, body, {"Authorization": "Bearer " + os.environ["TOKEN"], "Content-Type": "application/json"})
    r = c.getresponse()
    out = json.loads(r.read() or b"{}")
    answers += 1
    statuses.append(r.status)
    rooms = out.get("rooms", {})
    if r.status == 200 and len(rooms) == 20 and all(x.get("timeline") for x in rooms.values()):
        break
    if time.perf_counter() - t0 > 600:
        raise SystemExit("no complete window after 600 s: %s" % statuses[-5:])
    time.sleep(0.005)
ms = (time.perf_counter() - t0) * 1000
print(json.dumps({"label": os.environ["LABEL"], "ms": round(ms, 1), "answers": answers,
                  "start_ms": int(wall0 * 1000),
                  "statuses": sorted(set(statuses)), "count": out.get("lists", {}).get("all", {}).get("count")}))
EOF
}

IFS=, read -ra sizes <<<"$SIZES"
for n in "${sizes[@]}"; do
	: >"$T/first_$n.jsonl"
	for i in $(seq 1 "$REPEATS"); do
		sc=$(sim scenario "{\"users\":1,\"rooms_per_user\":$n,\"members_per_room\":2,\"messages_per_room\":$MSGS,\"prefix\":\"u${n}x$i\"}" |
		    jq -c '.users[0]')
		tok=$(jq -r .access_token <<<"$sc")
		first_window "$tok" "$n rooms #$i" | tee -a "$T/first_$n.jsonl" || fail "first window ($n rooms)"
		# with SYNCV3_LOG_LEVEL=debug, where its time went (cold_stages.py)
		if [ "$SYNCV3_LOG_LEVEL" = debug ]; then
			python3 "$here/cold_stages.py" "$T" "$(jq -r .user_id <<<"$sc")" \
			    $(tail -n 1 "$T/first_$n.jsonl" | jq -r '"\(.start_ms) \(.start_ms + .ms|floor)"') |
			    tee -a "$T/stages_$n.jsonl" >&2
		fi
		# the rest of its initial sync is stored before the next login
		# (the accumulator is one writer: it would hold the next window)
		wait_for '[ "$(psql_q "SELECT bool_and(is_initial_done) FROM syncv3_devices")" = t ]' 600 ||
			fail "initial sync of $n rooms never stored"
	done
	jq -sc --argjson n "$n" '{rooms: $n, login_to_first_window_ms: {p50: (map(.ms) | sort | .[(length - 1) / 2 | floor]), worst: (map(.ms) | max)}, samples: length}' "$T/first_$n.jsonl"
done

# 2. api memory per idle sliding connection
rss() { awk '/^VmRSS/ {print $2}' "/proc/${IT_PIDS[api]}/status"; }
devs=$(( (IDLE + CONNS - 1) / CONNS ))
toks=()
for d in $(seq 1 "$devs"); do toks+=("$(sim_login @idle:localhost "IDLE$d")"); done
sim rooms '{"creator":"@idle:localhost","name":"idle room"}' >/dev/null
API_URL=$API_URL TOKENS="${toks[*]}" CONNS=$CONNS IDLE=$IDLE RSS_PID=${IT_PIDS[api]} python3 - <<'EOF'
import http.client, json, os, threading, time, urllib.parse
api = urllib.parse.urlparse(os.environ["API_URL"])
toks, conns, total = os.environ["TOKENS"].split(), int(os.environ["CONNS"]), int(os.environ["IDLE"])
def rss():
    for l in open("/proc/%s/status" % os.environ["RSS_PID"]):
        if l.startswith("VmRSS"):
            return int(l.split()[1])
def v4(c, tok, body):
    c.request("POST", "/_matrix/client/v4/sync", json.dumps(body), {"Authorization": "Bearer " + tok, "Content-Type": "application/json"})
    r = c.getresponse()
    return r.status, json.loads(r.read() or b"{}")
lists = {"all": {"range": [0, 19], "timeline_limit": 1, "required_state": {"include": [{"type": "m.room.name", "state_key": ""}]}}}
# one first request per connection (its pos), on a few shared sockets
positions = []
c = http.client.HTTPConnection(api.hostname, api.port, timeout=600)
for d, tok in enumerate(toks):
    for k in range(conns):
        if len(positions) == total:
            break
        for _ in range(600):
            st, out = v4(c, tok, {"conn_id": "idle%d" % k, "lists": lists})
            if st == 200:
                break
            time.sleep(0.1)
        if st != 200:
            raise SystemExit("connection %d/%d: %s %s" % (d, k, st, out))
        positions.append((tok, "idle%d" % k, out["pos"]))
time.sleep(1)
r0 = rss()
held, errs = [], []
def hold(tok, cid, pos):
    try:
        cc = http.client.HTTPConnection(api.hostname, api.port, timeout=900)
        held.append(cc)
        v4(cc, tok, {"conn_id": cid, "pos": pos, "timeout": 300000, "lists": lists})
    except Exception as e:
        errs.append(str(e))
ths = [threading.Thread(target=hold, args=p, daemon=True) for p in positions]
for t in ths:
    t.start()
time.sleep(5 + total / 500)
r1 = rss()
# the api's own count of parked long polls, to be sure they all wait
h = http.client.HTTPConnection(api.hostname, api.port, timeout=10)
h.request("GET", "/health")
waiters = json.loads(h.getresponse().read()).get("waiters")
print(json.dumps({"idle_sliding_connections": len(positions), "parked_per_api_health": waiters,
                  "api_rss_kb_before": r0, "api_rss_kb_with_them": r1,
                  "kb_per_connection": round((r1 - r0) / max(1, len(positions)), 2), "errors": len(errs)}))
os._exit(0)
EOF
curl -s "$API_URL/health"; echo
it_pass
