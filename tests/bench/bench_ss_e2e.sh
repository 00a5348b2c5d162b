#!/usr/bin/env bash
# tests/bench/bench_ss_e2e.sh: a message upstream -> a long-polling sliding
# sync connection that has its room in the window (issue #11 benchmark;
# goals: median <= 2.5 ms with 50 other users sending 25 msg/s, p99 <= 50
# ms at 1,000 events/s background). After `cmake --build build`:
#
#     tests/bench/bench_ss_e2e.sh [-n SAMPLES] [-K USERS] [-l RATE] [-h RATE]
#                                 [-s SECS]
#
# (defaults 200, 50, 25, 1000; -s: how long each phase's background runs,
# default SAMPLES / 10 + 20). On a private stack (durable Postgres with
# deploy/postgres settings, tests/bench/pg.sh), the background load is
# syncv3-loadgen's e2e scenario (K users long-polling, messages sent
# upstream at RATE/s); meanwhile a probe client (below, stdlib Python,
# persistent connections) holds one sliding sync long poll (Synapse
# dialect, list [0,19], timeline_limit 1) and, per sample, sends one
# message into its top room through the simulated homeserver's admin API
# and times until the long poll answers with it: from the upstream send
# accepted (as loadgen's e2e figure) and from just before it. Two phases:
# RATE -l, then RATE -h. Per phase also two hops from the daemons'
# histograms (accumulator batch commit, api notice -> answer), and the
# woken sliding sync rounds' steps (mean ms each, api/prom.c ss_hop). Prints
# figures, asserts none. TEST_KEEP=1 keeps
# the temp dir.
here=$(cd "$(dirname "$0")" && pwd)
N=200 K=50 LOW=25 HIGH=1000 SECS=
while getopts n:K:l:h:s: o; do
	case $o in
	n) N=$OPTARG ;; K) K=$OPTARG ;; l) LOW=$OPTARG ;; h) HIGH=$OPTARG ;;
	s) SECS=$OPTARG ;;
	*) sed -n 2,25p "$0" >&2; exit 2 ;;
	esac
done
source "$here/../integration/lib.sh"
source "$here/pg.sh"
IT_NAME=bench_ss_e2e
export SYNCV3_LOG_LEVEL=${SYNCV3_LOG_LEVEL:-warn} SYNCV3_API_SESSION_IDLE_SECS=3600
bench_pg_start "$T/pg" || fail "postgres did not start"
# start_stack, with the accumulator's /metrics (its commit hop)
start_stack_acc_prom
pm=$(head -1 "$(psql_q "SHOW data_directory")/postmaster.pid")
PIDS="accumulator=${IT_PIDS[accumulator]},poller=${IT_PIDS[poller]}"
PIDS="$PIDS,api=${IT_PIDS[api]},simhs=${IT_PIDS[simhs]},postgres=+$pm"

alice=$(sim_login @alice:localhost PROBE)
sim users '{"localpart":"bob"}' >/dev/null
for i in 1 2 3; do
	r=$(sim rooms "{\"creator\":\"@alice:localhost\",\"name\":\"probe $i\"}" | jq -r .room_id)
	sim "rooms/$r/join" '{"user_id":"@bob:localhost"}' >/dev/null
done
# the room the probe talks in is the newest, so in the window
probe_room=$r

probe() { # probe SAMPLES LABEL: the probe client, one JSON line
	API_URL=$API_URL SIMHS_URL=$SIMHS_URL TOKEN=$alice ROOM=$probe_room \
	    SAMPLES=$1 LABEL=$2 python3 - <<'EOF'
import http.client, json, os, statistics, threading, time, urllib.parse
api = urllib.parse.urlparse(os.environ["API_URL"])
sim = urllib.parse.urlparse(os.environ["SIMHS_URL"])
tok, room, n = os.environ["TOKEN"], os.environ["ROOM"], int(os.environ["SAMPLES"])
path = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"
body = json.dumps({"lists": {"all": {"ranges": [[0, 19]], "timeline_limit": 1,
        "required_state": [["m.room.name", ""]]}}})
ac = http.client.HTTPConnection(api.hostname, api.port)
sc = http.client.HTTPConnection(sim.hostname, sim.port)
def sync(pos, timeout):
    q = "?timeout=%d" % timeout + ("&pos=" + urllib.parse.quote(pos) if pos else "")
    ac.request("POST", path + q, body, {"Authorization": "Bearer " + tok, "Content-Type": "application/json"})
    r = ac.getresponse()
    out = json.loads(r.read())
    if r.status != 200:
        raise SystemExit("sync %d %s" % (r.status, out))
    return out
out = None
for _ in range(300):  # first request: wait until the device's first sync is stored
    try:
        out = sync(None, 0)
        break
    except SystemExit:
        time.sleep(0.1)
pos = out["pos"]
if room not in out.get("rooms", {}):
    raise SystemExit("probe room not in the window: %s" % list(out.get("rooms", {})))
acc, before, misses = [], [], 0
for i in range(n):
    res = {}
    def poll():
        t = time.perf_counter()
        res["out"] = sync(pos, 30000)
        res["t"] = time.perf_counter()
    th = threading.Thread(target=poll)
    th.start()
    time.sleep(0.05)  # the long poll is parked
    mark = "probe %d %f" % (i, time.time())
    t0 = time.perf_counter()
    sc.request("POST", "/_simhs/rooms/%s/send" % urllib.parse.quote(room),
               json.dumps({"sender": "@bob:localhost", "type": "m.room.message",
                           "content": {"msgtype": "m.text", "body": mark}}),
               {"Content-Type": "application/json"})
    eid = json.loads(sc.getresponse().read())["event_id"]
    t1 = time.perf_counter()
    th.join(35)
    o = res.get("out", {})
    pos = o.get("pos", pos)
    got = [e["event_id"] for e in o.get("rooms", {}).get(room, {}).get("timeline", [])]
    while eid not in got:  # answered by something else first: keep polling
        misses += 1
        o = sync(pos, 30000)
        pos = o["pos"]
        got = [e["event_id"] for e in o.get("rooms", {}).get(room, {}).get("timeline", [])]
        res["t"] = time.perf_counter()
    acc.append((res["t"] - t1) * 1000)
    before.append((res["t"] - t0) * 1000)
    time.sleep(0.02)
def pct(v, p):
    v = sorted(v)
    return round(v[min(len(v) - 1, int(round((len(v) - 1) * p / 100.0)))], 2)
print(json.dumps({"phase": os.environ["LABEL"], "samples": n,
                  "from_accepted_ms": {"p50": pct(acc, 50), "p99": pct(acc, 99), "mean": round(statistics.mean(acc), 2)},
                  "from_before_send_ms": {"p50": pct(before, 50), "p99": pct(before, 99)},
                  "answered_first_by_other_activity": misses}))
EOF
}

# hops PHASE: where the time of the phase went, from the histograms'
# growth since the last call: the accumulator's BEGIN..COMMIT of a batch,
# the api's notice -> long poll answered (v3 and sliding sync requests
# alike); p50/p99 are the upper bounds of the buckets they fall in
scrape() {
	curl -s "http://$ACC_PROM/metrics" | grep '^syncv3_acc_commit_seconds_bucket'
	curl -s "$API_URL/metrics" |
	    grep -E '^syncv3_api_(wake_seconds_bucket|ss_hop_seconds_(sum|count))'
}
hops() {
	scrape >"$T/hops.now"
	touch "$T/hops.before"
	LABEL=$1 python3 - "$T/hops.before" "$T/hops.now" <<'EOF'
import json, os, re, sys
def read(f):
    h = {}
    for line in open(f):
        m = re.match(r'(\w+)_bucket\{le="([^"]+)"\} (\S+)', line)
        if m:
            h.setdefault(m.group(1), []).append((float(m.group(2)), float(m.group(3))))
    return h
a, b = read(sys.argv[1]), read(sys.argv[2])
out = {"hops": os.environ["LABEL"]}
for name, buckets in b.items():
    old = dict(a.get(name, []))
    d = [(le, n - old.get(le, 0)) for le, n in buckets]
    total = d[-1][1] if d else 0
    q = {}
    for p in (50, 99):
        q["p%d_le_ms" % p] = next((le * 1000 for le, n in d if n >= total * p / 100.0), None) if total else None
    out[name.replace("syncv3_", "")] = dict(q, n=int(total))
# the woken sliding sync rounds step by step (api/prom.c ss_hop): the
# mean of each step's time since the previous one ended, and how often
def sums(f):
    h = {}
    for line in open(f):
        m = re.match(r'syncv3_api_ss_hop_seconds_(sum|count)\{step="(\w+)"\} (\S+)', line)
        if m:
            h[(m.group(2), m.group(1))] = float(m.group(3))
    return h
sa, sb = sums(sys.argv[1]), sums(sys.argv[2])
steps = {}
for (step, kind) in sb:
    if kind != "count":
        continue
    n = sb[(step, "count")] - sa.get((step, "count"), 0)
    if n > 0:
        t = sb[(step, "sum")] - sa.get((step, "sum"), 0)
        steps[step] = {"mean_ms": round(t * 1000 / n, 3), "n": int(n)}
if steps:
    out["ss_round_steps"] = steps
print(json.dumps(out))
EOF
	mv "$T/hops.now" "$T/hops.before"
}

phase() { # phase RATE: background loadgen at RATE/s, the probe meanwhile
	local rate=$1 secs
	# long enough for setup plus the probe's samples (~15 per second)
	secs=${SECS:-$((N / 10 + 20))}
	log "phase: $K users, $rate msg/s background for up to $secs s; $N samples"
	start_proc "loadgen_$rate" bash -c 'exec "$@" >"'"$T/lg_$rate.json"'"' loadgen \
	    "$BIN/syncv3-loadgen" e2e -s "$SIMHS_URL" -a "$API_URL" \
	    -d "$SYNCV3_DB" -P "$PIDS" -K "$K" -R 5 -r "$rate" -t "$secs" -y 0 -x 0
	# wait for the background to be sending: simhs's position moving
	local p0 p1 i
	for i in $(seq 1 120); do
		p0=$(sim_get pos | jq .pos)
		sleep 0.5
		p1=$(sim_get pos | jq .pos)
		[ $((p1 - p0)) -ge $(( rate / 4 > 1 ? rate / 4 : 1 )) ] && break
	done
	log "background sending (pos +$((p1 - p0)) in 0.5 s); load $(cut -d' ' -f1-3 /proc/loadavg)"
	hops before >/dev/null
	probe "$N" "$K users, $rate msg/s" || fail "probe failed"
	hops "$K users, $rate msg/s"
	log "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
	wait "${IT_PIDS[loadgen_$rate]}" 2>/dev/null
	unset "IT_PIDS[loadgen_$rate]"
	jq -c '{background: "loadgen e2e", p50_ms, p99_ms, events_sent, responses, errors}' "$T/lg_$rate.json" 2>/dev/null ||
	    tail -1 "$T/loadgen_$rate.log"
}
phase "$LOW"
phase "$HIGH"
it_pass
