#!/usr/bin/env bash
# tests/bench/bench_proxy.sh: cost of the api's pass-through (issue #12),
# on loopback, bounded. One command, after `cmake --build build`:
#
#     tests/bench/bench_proxy.sh [-n REQUESTS] [-c CONCURRENCY] [-m MB] [-q REPEATS]
#
# (defaults 4000, 8, 100, 3; BIN=dir overrides build/bin). Starts a private
# stack (tests/integration/lib.sh), then measures the same load against the
# simulated homeserver directly and through the api:
#  1. small requests: N GETs of simhs's echo endpoint over C kept-alive
#     connections (python3 http.client, one thread each): requests/s,
#     p50/p99 latency, and the added p50/p99;
#  2. an MB-megabyte download and upload with curl, Q times each: MB/s
#     and total time (median), the time the api adds, and the api's VmHWM
#     growth (uploads stream since issue #12: it stays near
#     SYNCV3_PROXY_BUFFER where evhttp held the body whole before).
# Prints figures, asserts none.
here=$(cd "$(dirname "$0")" && pwd)
N=4000 C=8 MBS=100 Q=3
while getopts n:c:m:q: o; do
	case $o in
	n) N=$OPTARG ;; c) C=$OPTARG ;; m) MBS=$OPTARG ;; q) Q=$OPTARG ;;
	*) sed -n 2,15p "$0" >&2; exit 2 ;;
	esac
done
source "$here/../integration/lib.sh"
# MAX_UPLOAD: for a build before issue #12 streamed uploads (BIN=old)
export SYNCV3_LOG_LEVEL=warn SYNCV3_PROXY_MAX_UPLOAD=$(( (MBS + 8) * 1024 * 1024 ))
start_stack
tok=$(sim_login @bench:localhost BENCHDEV)
pid=${IT_PIDS[api]}

load() { # BASE_URL LABEL: prints "label rps p50 p99" (ms)
	python3 - "$1" "$2" "$N" "$C" <<'PY'
import http.client, sys, threading, time, urllib.parse
base, label, n, c = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
u = urllib.parse.urlsplit(base)
path = "/_matrix/client/unstable/org.simhs/echo?bench=1"
lat, lock, left = [], threading.Lock(), [n]
def worker():
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    mine = []
    while True:
        with lock:
            if left[0] == 0:
                break
            left[0] -= 1
        t = time.perf_counter()
        conn.request("GET", path)
        r = conn.getresponse(); r.read()
        if r.status != 200:
            raise SystemExit("status %d" % r.status)
        mine.append(time.perf_counter() - t)
    with lock:
        lat.extend(mine)
ts = [threading.Thread(target=worker) for _ in range(c)]
t0 = time.perf_counter()
for t in ts: t.start()
for t in ts: t.join()
el = time.perf_counter() - t0
lat.sort()
pct = lambda p: lat[min(len(lat) - 1, int(p / 100 * (len(lat) - 1) + 0.5))] * 1000
print("%s %.0f %.3f %.3f" % (label, len(lat) / el, pct(50), pct(99)))
PY
}

load "$SIMHS_URL" warm >/dev/null
load "$API_URL" warm >/dev/null
read -r _ d_rps d50 d99 < <(load "$SIMHS_URL" direct)
read -r _ a_rps a50 a99 < <(load "$API_URL" api)
printf 'small GETs (%d over %d connections):\n' "$N" "$C"
printf '  direct   %6.0f req/s  p50 %.3f ms  p99 %.3f ms\n' "$d_rps" "$d50" "$d99"
printf '  via api  %6.0f req/s  p50 %.3f ms  p99 %.3f ms\n' "$a_rps" "$a50" "$a99"
awk -v a="$a50" -v b="$d50" -v c="$a99" -v d="$d99" \
    'BEGIN { printf "  added    p50 %.3f ms  p99 %.3f ms\n", a - b, c - d }'

B=$((MBS * 1024 * 1024))
head -c "$B" /dev/urandom >"$T/up"
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
big() { # BASE_URL KIND: prints "MB/s seconds", medians of Q
	for i in $(seq 1 "$Q"); do
		if [ "$2" = down ]; then
			curl -sS -o /dev/null -w '%{speed_download} %{time_total}\n' -H "Authorization: Bearer $tok" \
			    "$1/_matrix/client/v1/media/download/localhost/gen$B"
		else
			curl -sS -o /dev/null -w '%{speed_upload} %{time_total}\n' -H "Authorization: Bearer $tok" \
			    --data-binary @"$T/up" "$1/_matrix/media/v3/upload"
		fi
	done >"$T/big"
	printf '%s %s\n' "$(awk '{ printf "%.1f\n", $1 / 1048576 }' "$T/big" | median)" \
	    "$(awk '{ print $2 }' "$T/big" | median)"
}
hwm0=$(awk '$1 == "VmHWM:" { print $2 }' "/proc/$pid/status")
read -r dd dts < <(big "$SIMHS_URL" down); read -r ad ats < <(big "$API_URL" down)
hwm1=$(awk '$1 == "VmHWM:" { print $2 }' "/proc/$pid/status")
read -r du dus < <(big "$SIMHS_URL" up); read -r au aus < <(big "$API_URL" up)
hwm2=$(awk '$1 == "VmHWM:" { print $2 }' "/proc/$pid/status")
rm -f "$T/up" "$T/big"
printf '%d MB body (median of %d):\n' "$MBS" "$Q"
awk -v d="$dd" -v a="$ad" -v x="$dts" -v y="$ats" -v h=$((hwm1 - hwm0)) 'BEGIN {
    printf "  download  direct %s MB/s  via api %s MB/s  added %.0f ms  (api VmHWM +%d kB)\n", d, a, (y - x) * 1000, h }'
awk -v d="$du" -v a="$au" -v x="$dus" -v y="$aus" -v h=$((hwm2 - hwm1)) 'BEGIN {
    printf "  upload    direct %s MB/s  via api %s MB/s  added %.0f ms  (api VmHWM +%d kB)\n", d, a, (y - x) * 1000, h }'

