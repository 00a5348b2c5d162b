#!/usr/bin/env bash
# SYNCV3_PROM (issue #14): the poller's and the accumulator's /metrics and
# /health listeners. N room events, one topic and M to-device messages
# sent upstream move the accumulator's events and to-device counters by
# exactly N+1 and M (the rows Postgres gained), its state rows counter by
# the rows syncv3_state gained; the poller's 200 responses grow; the
# process metrics are there and plausible. The api's /metrics (its own
# listener) moves by exactly the requests sent: sync answers by status,
# whoami calls and cache hits, pass-through requests and their body bytes,
# 404s, long polls held and the wake-ups that ended them. All three
# outputs are well formed text exposition format 0.0.4 (every sample's metric has a TYPE,
# no series twice, histogram buckets cumulative up to +Inf = _count).
# deploy/grafana/syncv3.json parses, its panels are well formed, and every
# metric it names is exported by one of the three.
source "$(dirname "$0")/lib.sh"

N=${METRICS_N:-7}
M=${METRICS_M:-5}
it_setup
start_simhs
ACC_PROM=127.0.0.1:$(free_port)
POLLER_PROM=127.0.0.1:$(free_port)
export SYNCV3_PROM=$ACC_PROM
start_accumulator
export SYNCV3_PROM=$POLLER_PROM
start_poller poller
unset SYNCV3_PROM
start_api
wait_for "curl -sf http://$ACC_PROM/health" 10 || fail "accumulator /health"
wait_for "curl -sf http://$POLLER_PROM/health" 10 || fail "poller /health"

# metric ADDR NAME_AND_LABELS: the sample's value (empty when absent)
metric() {
	curl -sS -f "http://$1/metrics" |
	    awk -v k="$2" '$1 == k && !f { print $2; f = 1 }'
}
# check_format ADDR: the exposition parses; prints what is wrong
check_format() {
	curl -sS -f "http://$1/metrics" >"$T/scrape" || return 1
	python3 - "$T/scrape" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
bad = []
if not text.endswith("\n"):
    bad.append("no final newline")
types, seen, hist, counts = {}, set(), {}, {}
sample = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
label = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?')
for line in text.splitlines():
    if line.startswith("# TYPE "):
        _, _, name, t = line.split(" ")
        if name in types:
            bad.append("two TYPE lines for " + name)
        types[name] = t
        continue
    if line.startswith("#") or not line:
        continue
    m = sample.match(line)
    if not m:
        bad.append("unparsable: " + line)
        continue
    name, labels, value = m.group(1), m.group(3) or "", m.group(4)
    pairs = label.findall(labels)
    if "".join('%s="%s",' % p for p in pairs).rstrip(",") != labels.rstrip(","):
        bad.append("bad labels: " + line)
    float(value)
    base = re.sub(r'_(bucket|sum|count)$', '', name)
    if name not in types and not (base in types and types[base] == "histogram"):
        bad.append("no TYPE for " + name)
    key = (name, tuple(sorted(pairs)))
    if key in seen:
        bad.append("series twice: " + line)
    seen.add(key)
    rest = tuple(sorted(p for p in pairs if p[0] != "le"))
    if name.endswith("_bucket") and types.get(base) == "histogram":
        le = dict(pairs)["le"]
        h = hist.setdefault((base, rest), [])
        if h and float(value) < h[-1][1]:
            bad.append("buckets not cumulative: " + line)
        h.append((le, float(value)))
    if name.endswith("_count") and types.get(base) == "histogram":
        counts[(base, rest)] = float(value)
for key, h in hist.items():
    if h[-1][0] != "+Inf" or counts.get(key) != h[-1][1]:
        bad.append("histogram %s: +Inf is not _count" % (key,))
print("\n".join(bad))
sys.exit(1 if bad else 0)
PY
}

# the stack is quiet once alice's device is polled and her room is in
tok=$(sim_login @alice:localhost A1)
room=$(sim rooms '{"creator":"@alice:localhost","name":"Metrics"}' | jq -r .room_id)
v3 "$tok" "" '{}' 10000 >/dev/null
wait_for "[ -n \"\$(metric $ACC_PROM 'syncv3_acc_bodies_total{outcome=\"applied\"}')\" ] && [ \"\$(metric $ACC_PROM 'syncv3_acc_bodies_total{outcome=\"applied\"}')\" -ge 1 ]" 20 ||
    fail "no body applied"
sleep 1
ev0=$(metric "$ACC_PROM" syncv3_acc_events_total)
td0=$(metric "$ACC_PROM" syncv3_acc_to_device_total)
st0=$(metric "$ACC_PROM" syncv3_acc_state_rows_total)
rows_st0=$(psql_q "SELECT count(*) FROM syncv3_state")
ok0=$(metric "$POLLER_PROM" 'syncv3_poller_upstream_responses_total{status="200"}')
rows_ev0=$(psql_q "SELECT count(*) FROM syncv3_events")
rows_td0=$(psql_q "SELECT count(*) FROM syncv3_to_device")
log "before: events $ev0 (rows $rows_ev0), to-device $td0 (rows $rows_td0), 200s $ok0"

events=$(jq -cn --argjson n "$N" \
    '{events: [range($n) | {sender: "@alice:localhost", type: "m.room.message",
                content: {msgtype: "m.text", body: "m\(.)"}}]}')
sim "rooms/$room/send_batch" "$events" >/dev/null
sim "rooms/$room/send" '{"sender":"@alice:localhost","type":"m.room.topic","state_key":"","content":{"topic":"counted"}}' >/dev/null
N=$((N + 1)) # the topic is a room event too
for i in $(seq "$M"); do
	sim to_device "{\"user_id\":\"@alice:localhost\",\"device_id\":\"A1\",\"sender\":\"@bob:localhost\",\"type\":\"m.x\",\"content\":{\"n\":$i}}" >/dev/null
done
wait_for "[ \$(psql_q 'SELECT count(*) FROM syncv3_events') -ge $((rows_ev0 + N)) ] && [ \$(psql_q 'SELECT count(*) FROM syncv3_to_device') -ge $((rows_td0 + M)) ]" 20 ||
    fail "the events did not reach Postgres"
sleep 1 # the answer after the last commit, and anything stray
ev1=$(metric "$ACC_PROM" syncv3_acc_events_total)
td1=$(metric "$ACC_PROM" syncv3_acc_to_device_total)
st1=$(metric "$ACC_PROM" syncv3_acc_state_rows_total)
ok1=$(metric "$POLLER_PROM" 'syncv3_poller_upstream_responses_total{status="200"}')
log "after: events $ev1, to-device $td1, state rows $st0 -> $st1, 200s $ok1"
assert_eq "$((ev1 - ev0))" "$N" "events counter grew by the events sent"
assert_eq "$((td1 - td0))" "$M" "to-device counter grew by the messages sent"
assert_eq "$(psql_q "SELECT count(*) FROM syncv3_events")" "$((rows_ev0 + N))" "event rows"
assert_eq "$((st1 - st0))" "$(($(psql_q "SELECT count(*) FROM syncv3_state") - rows_st0))" \
    "state rows counter grew by the rows syncv3_state gained"
[ "$((st1 - st0))" -ge 1 ] || fail "the topic wrote no state row"
[ "$st0" -ge 1 ] || fail "the room's creation counted no state rows"
[ "$ok1" -gt "$ok0" ] || fail "poller 200 responses did not grow ($ok0 -> $ok1)"
[ "$(metric "$ACC_PROM" syncv3_acc_commit_seconds_count)" -ge 2 ] ||
    fail "no commit latency observed"
[ "$(metric "$POLLER_PROM" syncv3_poller_devices)" = 1 ] || fail "poller holds one device"
[ "$(metric "$POLLER_PROM" syncv3_poller_upstream_latency_seconds_count)" -ge "$ok1" ] ||
    fail "latency histogram counts every response"
[ "$(metric "$ACC_PROM" syncv3_acc_notices_total)" -ge 1 ] || fail "no notices counted"
# no late placement here: exported, and nothing renumbered
assert_eq "$(metric "$ACC_PROM" syncv3_acc_order_renumbered_total)" 0 "order renumberings"

# --- the api: GET /metrics on SYNCV3_BINDADDR ------------------------------
API=${API_URL#http://}
# snap FILE: one scrape of the api; val FILE KEY: a sample of it (0 if absent)
snap() { curl -sS -f "$API_URL/metrics" >"$1" || fail "api /metrics"; }
val() { awk -v k="$2" '$1 == k { print $2; f = 1 } END { if (!f) print 0 }' "$1"; }
req() { echo "syncv3_api_requests_total{endpoint=\"$1\",status=\"$2\"}"; }
K=4 P=3 UP=777 DOWN=1000
snap "$T/a0"
for i in $(seq "$K"); do v3 "$tok" "" '{}' 0 >/dev/null; done
v3 "$tok" "" 'not json' 0 >/dev/null
assert_eq "$(last_status)" 400 "a bad body is a 400"
tok2=$(sim_login @alice:localhost A2) # a token the api never saw
v3 "$tok2" "" '{}' 10000 >/dev/null
for i in $(seq "$P"); do
	curl -sS -f -o /dev/null -H "Authorization: Bearer $tok" \
	    "$API_URL/_matrix/client/v1/media/download/localhost/gen$DOWN" ||
	    fail "download through the api"
done
head -c "$UP" /dev/zero | curl -sS -f -o "$T/up_answer" -H "Authorization: Bearer $tok" \
    -H 'Content-Type: application/octet-stream' --data-binary @- \
    "$API_URL/_matrix/media/v3/upload" || fail "upload through the api"
curl -sS -o /dev/null "$API_URL/nope"
snap "$T/a1"
d() { echo $(($(val "$T/a1" "$1") - $(val "$T/a0" "$1"))); }
assert_eq "$(d "$(req sync 200)")" "$((K + 1))" "sync 200s grew by the requests sent"
assert_eq "$(d "$(req sync 400)")" 1 "sync 400s grew by one"
assert_eq "$(d "$(req proxy 200)")" "$((P + 1))" "proxy 200s grew by the pass-through requests"
assert_eq "$(d "$(req other 404)")" 1 "404s grew by one"
assert_eq "$(d "$(req metrics 200)")" 1 "the first scrape is counted once"
assert_eq "$(d syncv3_api_whoami_calls_total)" 1 "one whoami call for the new token"
assert_eq "$(d syncv3_api_token_lookups_total)" 1 "one Postgres lookup for the new token"
# auth comes before the body is read: the 400 was a cache hit too
assert_eq "$(d syncv3_api_whoami_cache_hits_total)" "$((K + 1))" "whoami cache hits"
assert_eq "$(d syncv3_api_proxy_received_bytes_total)" "$((P * DOWN + $(wc -c <"$T/up_answer")))" \
    "pass-through bytes down"
assert_eq "$(d syncv3_api_proxy_sent_bytes_total)" "$UP" "pass-through bytes up"
assert_eq "$(d 'syncv3_api_request_seconds_count{endpoint="sync"}')" "$((K + 2))" \
    "sync latency observed once per request"
assert_eq "$(val "$T/a1" syncv3_api_long_polls)" 0 "no long poll held"

# long polls: L held, then woken by one to-device message each
L=3
out=$(v3 "$tok" "" '{"to_device":{}}' 0)
since=$(jq -r .next_batch <<<"$out")
lps=()
for i in $(seq "$L"); do
	( v3 "$tok" "$since" '{"to_device":{}}' 20000 >"$T/lp$i" ) &
	lps+=($!)
done
wait_for "[ \"\$(curl -s $API_URL/metrics | awk '\$1 == \"syncv3_api_long_polls\" { print \$2 }')\" = $L ]" 10 ||
    fail "the api does not show $L long polls held"
snap "$T/a2"
sim to_device '{"user_id":"@alice:localhost","device_id":"A1","sender":"@bob:localhost","type":"m.x","content":{"n":99}}' >/dev/null
wait "${lps[@]}"
for i in $(seq "$L"); do
	assert_jq "$(cat "$T/lp$i")" '[.to_device.events[].content.n]' '[99]' "long poll $i woken"
done
snap "$T/a3"
assert_eq "$(val "$T/a3" syncv3_api_long_polls)" 0 "long polls released"
assert_eq "$(($(val "$T/a3" syncv3_api_wake_seconds_count) - $(val "$T/a2" syncv3_api_wake_seconds_count)))" \
    "$L" "one wake-up latency per woken long poll"
assert_eq "$(($(val "$T/a3" "$(req sync 200)") - $(val "$T/a2" "$(req sync 200)")))" "$L" \
    "the woken long polls counted as 200s"

# a sliding sync long poll woken by a message: one more wake-up, one
# more sliding_sync 200
SS="$API_URL/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"
ssb='{"lists":{"all":{"ranges":[[0,9]],"timeline_limit":1}}}'
pos=$(curl -sS -f -X POST -H "Authorization: Bearer $tok" -d "$ssb" "$SS?timeout=0" | jq -r .pos)
[ -n "$pos" ] && [ "$pos" != null ] || fail "no sliding sync pos"
snap "$T/a4"
( curl -sS -f -o "$T/ss_lp" -X POST -H "Authorization: Bearer $tok" -d "$ssb" \
    "$SS?timeout=20000&pos=$pos" ) &
sspid=$!
wait_for "[ \"\$(curl -s $API_URL/metrics | awk '\$1 == \"syncv3_api_long_polls\" { print \$2 }')\" = 1 ]" 10 ||
    fail "the sliding sync long poll is not held"
sim "rooms/$room/send" '{"sender":"@alice:localhost","type":"m.room.message","content":{"msgtype":"m.text","body":"wake"}}' >/dev/null
wait "$sspid" || fail "the sliding sync long poll failed"
assert_jq "$(cat "$T/ss_lp")" "[.rooms[\"$room\"].timeline[].content.body]" '["wake"]' "woken by the message"
snap "$T/a5"
assert_eq "$(($(val "$T/a5" syncv3_api_wake_seconds_count) - $(val "$T/a4" syncv3_api_wake_seconds_count)))" \
    1 "the sliding sync wake-up's latency observed"
assert_eq "$(($(val "$T/a5" "$(req sliding_sync 200)") - $(val "$T/a4" "$(req sliding_sync 200)")))" 1 \
    "the sliding sync answer counted"

out=$(check_format "$API") || fail "api: bad exposition: $out"
hdr=$(curl -sS -D - -o /dev/null "$API_URL/metrics" | tr -d '\r')
grep -qi '^content-type: text/plain; version=0.0.4' <<<"$hdr" || fail "api: content type: $hdr"
grep -qi '^access-control-allow-origin' <<<"$hdr" || fail "api: /metrics without CORS"

for a in "$ACC_PROM" "$POLLER_PROM" "$API"; do
	out=$(check_format "$a") || fail "$a: bad exposition: $out"
	hdr=$(curl -sS -D - -o /dev/null "http://$a/metrics" | tr -d '\r')
	grep -qi '^content-type: text/plain; version=0.0.4' <<<"$hdr" ||
	    fail "$a: content type: $hdr"
	assert_eq "$(curl -s -o /dev/null -w '%{http_code}' "http://$a/health")" 200 "$a /health"
	assert_jq "$(curl -s "http://$a/health")" .status '"ok"' "$a /health body"
	if [ "$a" != "$API" ]; then # the api's 404s: t_api_errors.sh
		assert_eq "$(curl -s -o /dev/null -w '%{http_code}' "http://$a/nope")" 404 "$a 404"
		assert_jq "$(curl -s "http://$a/nope")" .errcode '"M_NOT_FOUND"' "$a 404 body"
	fi
	now=$(date +%s)
	python3 - "$(metric "$a" process_start_time_seconds)" "$now" \
	    "$(metric "$a" process_resident_memory_bytes)" \
	    "$(metric "$a" process_open_fds)" \
	    "$(metric "$a" process_cpu_seconds_total)" <<'PY' || fail "$a: process metrics implausible"
import sys
start, now, rss, fds, cpu = map(float, sys.argv[1:])
assert now - 600 < start <= now + 1, (start, now)
assert 1 << 20 < rss < 1 << 34, rss
assert 3 <= fds < 100000, fds
assert 0 <= cpu < 600, cpu
PY
done
# deploy/grafana/syncv3.json: it parses, its panels are well formed, and
# every metric its queries name is exported by one of the three daemons
# (as scraped now, after the traffic above)
for a in "$ACC_PROM" "$POLLER_PROM" "$API"; do
	curl -sS -f "http://$a/metrics"
done >"$T/all_metrics" || fail "scrape for the dashboard"
python3 - "$IT_ROOT/deploy/grafana/syncv3.json" "$T/all_metrics" <<'PY' || fail "dashboard"
import json, re, sys
d = json.load(open(sys.argv[1]))
names = set()
for line in open(sys.argv[2]):
    if line.startswith("# TYPE "):
        names.add(line.split()[2])
    elif line.strip() and not line.startswith("#"):
        names.add(re.match(r'[a-zA-Z_:][a-zA-Z0-9_:]*', line).group(0))
bad, ids, cells, used = [], set(), set(), set()
assert d["title"] and d["uid"], "title and uid"
assert any(v["type"] == "datasource" and v["name"] == "datasource"
           for v in d["templating"]["list"]), "no datasource variable"
for p in d["panels"]:
    if p["id"] in ids:
        bad.append("panel id %d twice" % p["id"])
    ids.add(p["id"])
    g = p["gridPos"]
    if g["x"] < 0 or g["x"] + g["w"] > 24:
        bad.append("%s: outside the grid" % p["title"])
    for cx in range(g["x"], g["x"] + g["w"]):
        for cy in range(g["y"], g["y"] + g["h"]):
            if (cx, cy) in cells:
                bad.append("%s overlaps another panel" % p["title"])
            cells.add((cx, cy))
    if p["type"] == "row":
        continue
    if p["datasource"]["uid"] != "${datasource}":
        bad.append("%s: datasource" % p["title"])
    if not p.get("targets"):
        bad.append("%s: no queries" % p["title"])
    for t in p.get("targets", []):
        e = t["expr"]
        if e.count("(") != e.count(")") or e.count("{") != e.count("}"):
            bad.append("%s: unbalanced %s" % (p["title"], e))
        for m in re.finditer(r'\b(rate|increase)\(([^\[]*?)\)', e):
            bad.append("%s: %s without a range" % (p["title"], m.group(0)))
        for n in re.findall(r'\b((?:syncv3|process)_[a-zA-Z0-9_]*)', e):
            used.add(n)
            if n not in names:
                bad.append("%s: %s is exported by no daemon" % (p["title"], n))
if len(used) < 30:
    bad.append("only %d metrics on the dashboard" % len(used))
print("\n".join(sorted(set(bad))))
print("dashboard: %d panels, %d metrics, all exported" % (len(d["panels"]), len(used)), file=sys.stderr)
sys.exit(1 if bad else 0)
PY
it_pass
