#!/usr/bin/env bash
# The long chaos run of issue #15 (not in the default run): the scenario of
# tests/integration/t_chaos.sh with N SIGKILLs spread at random over the
# daemons (both accumulators, the active one and its standby; both
# pollers, both apis; ACCUMULATORS=1 runs one accumulator) and Postgres crash-restarts
# between them, then a table of the figures: kills per daemon, messages
# sent, lost and duplicated (in each client's view and in storage), and
# recovery per daemon kind, p50 and max (accumulator: the next commit;
# poller: every device it held polled upstream again; api: /health 200
# and a v3 answer; Postgres: both apis healthy again). The figures are
# also written as JSON (--out). Exits non-zero if anything was lost,
# duplicated or did not recover.
#
#   tests/chaos_long.sh [--kills 100] [--pg-restarts 3] [--secs 400]
#                       [--seed 15] [--out chaos.json] [--bin DIR]
#
# --secs: the time the kills are spread over; those not done by twice that
# are dropped (the table says how many were done). BIN or --bin: the
# binaries (default build-test/bin, the sanitizer build, if it exists, else
# build/bin).
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
kills=100 pg=3 secs=400 seed=15 out=$PWD/chaos.json
BIN=${BIN:-}
usage() {
	sed -n '/^#   tests/,/^#  /p' "$0" | sed 's/^# //' >&2
	exit 2
}
while [ $# -gt 0 ]; do
	case $1 in
	--kills) kills=$2 ;;
	--pg-restarts) pg=$2 ;;
	--secs) secs=$2 ;;
	--seed) seed=$2 ;;
	--out) out=$2 ;;
	--bin) BIN=$2 ;;
	*) usage ;;
	esac
	[ $# -ge 2 ] || usage
	shift 2
done
for n in "$kills" "$pg" "$secs" "$seed"; do
	[[ $n =~ ^[0-9]+$ ]] || usage
done
[ "$kills" -ge 1 ] || usage
if [ -z "$BIN" ]; then
	BIN=$ROOT/build/bin
	[ -x "$ROOT/build-test/bin/syncv3-api" ] && BIN=$ROOT/build-test/bin
fi
export BIN
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
rm -f "$out"
start=$(date +%s)
CHAOS_KILLS=$kills CHAOS_PG_RESTARTS=$pg CHAOS_SECS=$secs CHAOS_SEED=$seed \
    CHAOS_REPORT=$out bash "$ROOT/tests/integration/t_chaos.sh"
rc=$?
[ -s "$out" ] || { echo "chaos_long: no figures (the scenario failed early, rc $rc)" >&2; exit 1; }
jq -r --arg wall "$(($(date +%s) - start))" '
	"seed \(.seed): \(.blows_done) of \(.blows_planned) blows in \(.chaos_ms / 1000 | floor) s of chaos (\($wall) s in all)",
	"",
	"kills per daemon",
	(.kills | to_entries[] | "  \(.key | . + " " * (14 - length))\(.value)"),
	"",
	"messages          sent  deliveries  received  lost  duplicated  resent(new session)",
	(.messages | (["room", .room], ["to_device", .to_device]) as [$n, $m] |
	    "  \($n | . + " " * (14 - length))\($m.sent | tostring | " " * (6 - length) + .)" +
	    "  \($m.deliveries | tostring | " " * (10 - length) + .)" +
	    "  \($m.received | tostring | " " * (8 - length) + .)" +
	    "  \($m.lost | tostring | " " * (4 - length) + .)" +
	    "  \($m.duplicated | tostring | " " * (10 - length) + .)" +
	    "  \($m.resent_on_new_session)"),
	"  in storage: \(.messages.stored.lost) lost, \(.messages.stored.duplicated) duplicated",
	"",
	"recovery        n   p50 ms   max ms  (idle: poller held no device; failed: never)",
	(.recovery | to_entries[] | .value as $r |
	    "  \(.key | . + " " * (12 - length))\($r.recovered | tostring | " " * (3 - length) + .)" +
	    "  \($r.p50_ms // "-" | tostring | " " * (7 - length) + .)" +
	    "  \($r.max_ms // "-" | tostring | " " * (7 - length) + .)" +
	    (if $r.idle > 0 then "  idle \($r.idle)" else "" end) +
	    (if $r.failed > 0 then "  FAILED \($r.failed)" else "" end)),
	"",
	"clients: \(.clients.answers_200) answers, \(.clients.no_answer) without answer, \(.clients.answers_5xx) 5xx, \(.clients.new_sessions) new sessions, \(.clients.stream_errors) stream errors",
	"upstream /sync in flight per device, max: \(.upstream_sync_inflight_max)",
	(if (.problems | length) > 0 then "", "PROBLEMS", (.problems[] | "  " + .) else "", "no problem found" end)
' "$out"
echo "figures: $out"
exit $rc
