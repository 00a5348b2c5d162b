#!/usr/bin/env bash
# tests/bench/bench_cold.sh: first responses of the streams API for logins
# the proxy has not served before (issue #13 items 1 and 4). Per account
# size (rooms of one user, 3 members a room, 10 messages a room):
#   cold      --cold times, a login of a new user no device of which is
#             stored: from the first v3 request to its complete answer
#             (the first window, room_list limit 20, timeline_limit 1),
#             and to the whole initial sync stored; beside it, the
#             upstream's share: simhs answering the same first sync
#             (the poller's light filter) for another device of that
#             user, to its first byte and to its last
#   sibling   a new device of that user once it is stored and polled: the
#             same request, --repeats times, a new device each
# The private Postgres is durable (tests/bench/pg.sh). Never asserts a
# time: the figures are for people to read, as JSON on stdout.
#
# usage: tests/bench/bench_cold.sh [--sizes 1000,10000] [--repeats N] [--cold N]
#   (after cmake --build build; BIN= another build's bin directory).
#   Environment reaches the daemons, e.g. SYNCV3_SIBLING_WAIT_MS=0 for
#   the full initial sync of every new device ("before").
set -u
here=$(cd "$(dirname "$0")" && pwd)
# the poller's default first sync, not lib.sh's 50 (which made this
# body 54 MB where a deployment's is 31 MB at 10,000 rooms)
export SYNCV3_FIRST_TIMELINE_LIMIT=${SYNCV3_FIRST_TIMELINE_LIMIT:-1}
SIZES=1000,10000 REPEATS=5 COLD=3
while [ $# -gt 0 ]; do
	case $1 in
	--sizes) SIZES=$2; shift ;;
	--repeats) REPEATS=$2; shift ;;
	--cold) COLD=$2; shift ;;
	*) sed -n '17,20p' "$0" >&2; exit 2 ;;
	esac
	shift
done
source "$here/../integration/lib.sh"
source "$here/pg.sh"
IT_NAME=bench_cold
export SYNCV3_LOG_LEVEL=${SYNCV3_LOG_LEVEL:-info}
export SYNCV3_API_SESSION_IDLE_SECS=3600
bench_pg_start "$T/pg" || fail "postgres did not start"
start_stack
REQ='{"room_list":{"limit":20,"timeline_limit":1},"to_device":{}}'

# first TOKEN: ms from the first v3 request to its answer, as curl times
# it (its time_total: connect to last byte; lib.sh's v3 wraps curl in
# mktemp, cat and mv, which added 12-25 ms of forks to every figure);
# checks it is a complete window (20 rooms, or every room of a smaller
# account)
first() {
	local w out
	w=$(curl -sS -o "$T/first.body" -w '%{http_code} %{time_total}' -X POST \
	    -H "Authorization: Bearer $1" -H 'Content-Type: application/json' \
	    --data "$REQ" "$API_URL/_matrix/client/v3/sync?timeout=0")
	out=$(cat "$T/first.body")
	[ "${w%% *}" = 200 ] || fail "status ${w%% *}: $out"
	[ "$(printf '%s' "$out" | jq '.room_list.rooms|length')" = 20 ] ||
	    fail "not a complete window: $(printf '%s' "$out" | head -c 300)"
	awk -v s="${w#* }" 'BEGIN { printf "%.1f\n", s * 1000 }'
}
# upstream USER: "ttfb_ms total_ms" of simhs's answer to the poller's
# first sync for a device of USER the proxy does not hold
upstream() {
	local tok f
	tok=$(sim_login "$1" UPSTREAM)
	f="{\"room\":{\"timeline\":{\"limit\":$SYNCV3_FIRST_TIMELINE_LIMIT}}}"
	# --compressed: gzip, as the poller asks (simhs compresses /sync)
	curl -sS --compressed -o /dev/null -H "Authorization: Bearer $tok" --get \
	    --data-urlencode "filter=$f" "$SIMHS_URL/_matrix/client/v3/sync" \
	    -w '%{time_starttransfer} %{time_total}\n' |
	    awk '{printf "%d %d\n", $1 * 1000, $2 * 1000}'
}
stats() { jq -sc '{n: length, p50_ms: (sort|.[length/2|floor]), min_ms: min, max_ms: max, all_ms: .}'; }

# stored USER: ms until the device's initial sync is stored in full
stored() {
	local t0=$1 u=$2
	wait_for "[ \"\$(psql_q \"SELECT count(*) FROM syncv3_devices d JOIN syncv3_leases l USING (user_id, device_id) WHERE d.user_id = '$u' AND d.is_initial_done AND d.poll_state = 'polling'\")\" -ge 1 ]" 300 ||
	    fail "$u: initial sync not stored"
	echo $(($(now_ms) - t0))
}

res='{}'
for n in ${SIZES//,/ }; do
	log "accounts of $n rooms"
	cold='' full='' up1='' upn='' u1= stages=''
	for i in $(seq "$COLD"); do
		u=$(sim scenario "{\"users\":1,\"rooms_per_user\":$n,\"members_per_room\":3,\"messages_per_room\":10,\"prefix\":\"c$n-$i-\"}" |
		    jq -r '.users[0].user_id')
		[ -n "$u1" ] || u1=$u
		read -r a b < <(upstream "$u")
		up1="$up1 $a" upn="$upn $b"
		tok=$(sim_login "$u" COLD)
		t0=$(now_ms)
		ms=$(first "$tok")
		cold="$cold $ms"
		full="$full $(stored "$t0" "$u")"
		[ "$SYNCV3_LOG_LEVEL" != debug ] ||
			stages="$stages$(python3 "$here/cold_stages.py" "$T" "$u" "$t0" $((t0 + ${ms%.*})))"$'\n'
		sleep 1
	done
	cold=$(printf '%s\n' $cold | stats)
	full=$(printf '%s\n' $full | stats)
	up1=$(printf '%s\n' $up1 | stats)
	upn=$(printf '%s\n' $upn | stats)
	log "  cold login, first window: $cold"
	log "  upstream first sync, first byte: $up1, last byte: $upn"
	log "  cold login, all stored: $full"
	[ -z "$stages" ] || log "  stages (ms): $stages"
	stages=$(printf '%s' "$stages" | jq -sc .)
	if [ -z "$u1" ]; then # --cold 0: a stored account to add devices to
		u1=$(sim scenario "{\"users\":1,\"rooms_per_user\":$n,\"members_per_room\":3,\"messages_per_room\":10,\"prefix\":\"s$n-\"}" |
		    jq -r '.users[0].user_id')
		t0=$(now_ms)
		first "$(sim_login "$u1" COLD)" >/dev/null
		stored "$t0" "$u1" >/dev/null
		sleep 1
	fi
	# each request's start in the log, to line up with the daemons'
	# debug lines (SYNCV3_LOG_LEVEL=debug TEST_KEEP=1) hop by hop
	sib=$(for i in $(seq "$REPEATS"); do
		t=$(sim_login "$u1" "SIB$i")
		log "  SIB$i: request at $(date -u +%H:%M:%S.%3N)"
		first "$t"
		sleep 0.5
	done | stats)
	log "  new device of a stored account: $sib"
	res=$(jq -c --arg n "$n" --argjson c "$cold" --argjson f "$full" \
	    --argjson s "$sib" --argjson u1 "$up1" --argjson un "$upn" \
	    --argjson st "${stages:-[]}" \
	    '. + {($n): ({cold_first: $c, cold_upstream_first_byte: $u1,
	    cold_upstream_last_byte: $un, cold_stored: $f,
	    sibling_first: $s} + (if $st == [] then {} else {cold_stages: $st} end))}' <<<"$res")
done
for p in accumulator poller api; do is_running "$p" || fail "$p died"; done
jq -n --argjson r "$res" --arg commit "$(git -C "$IT_ROOT" rev-parse --short HEAD 2>/dev/null)" \
    --arg wait "${SYNCV3_SIBLING_WAIT_MS:-default}" --arg nproc "$(nproc)" \
    --arg load "$(cut -d' ' -f1-3 /proc/loadavg)" --arg bin "$BIN" \
    --arg ftl "$SYNCV3_FIRST_TIMELINE_LIMIT" \
    '{commit: $commit, bin: $bin, nproc: ($nproc|tonumber), loadavg_end: $load,
      sibling_wait_ms: $wait, first_timeline_limit: ($ftl|tonumber),
      sizes: $r}'
