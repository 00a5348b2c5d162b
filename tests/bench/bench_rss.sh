#!/usr/bin/env bash
# tests/bench/bench_rss.sh: what large initial syncs leave in the poller's
# and the accumulator's memory (issue #13, item 6). One command, after
# `cmake --build build`:
#
#     tests/bench/bench_rss.sh [-r ROOMS] [-m MEMBERS] [-e MESSAGES]
#                              [-l LOGINS] [-i IDLE_SECS]
#
# (defaults 10000, 2, 3, 5, 5: a 15 MB initial sync; BIN=dir overrides
# build/bin). Starts a private stack (tests/integration/lib.sh), makes one
# user in ROOMS rooms (simhs /_simhs/scenario: MEMBERS members and MESSAGES
# messages a room), then logs in
# LOGINS devices of that user one after the other, each waiting for its
# initial sync to be stored in full (its first v3 answer comes after the
# first window, so syncv3_devices says when the rest is). Prints one
# JSON object: the size of one initial sync, each daemon's peak RSS
# (VmHWM) after the first login and after all, and its RSS (VmRSS) after
# IDLE_SECS idle once all are done. Goal: idle RSS <= 100 MiB. Asserts
# nothing.
here=$(cd "$(dirname "$0")" && pwd)
ROOMS=10000 MEMBERS=2 MESSAGES=3 LOGINS=5 IDLE=5
while getopts r:m:e:l:i: o; do
	case $o in
	r) ROOMS=$OPTARG ;; m) MEMBERS=$OPTARG ;; e) MESSAGES=$OPTARG ;;
	l) LOGINS=$OPTARG ;; i) IDLE=$OPTARG ;;
	*) sed -n 2,18p "$0" >&2; exit 2 ;;
	esac
done
source "$here/../integration/lib.sh"
IT_NAME=bench_rss
export SYNCV3_LOG_LEVEL=warn SYNCV3_API_MAX_TIMEOUT_MS=900000
export SYNCV3_API_INITIAL_WAIT_MS=900000
start_stack

# kib PROC FIELD: a /proc/PID/status field of a daemon, in KiB
kib() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/${IT_PIDS[$1]}/status"; }
mib() { echo $(( ($1 + 512) / 1024 )); }
snap() { # LABEL: peak and current RSS of both daemons, MiB
	printf '{"label":"%s","poller_hwm_mib":%d,"poller_rss_mib":%d,"accumulator_hwm_mib":%d,"accumulator_rss_mib":%d}\n' \
	    "$1" "$(mib "$(kib poller VmHWM)")" "$(mib "$(kib poller VmRSS)")" \
	    "$(mib "$(kib accumulator VmHWM)")" "$(mib "$(kib accumulator VmRSS)")"
}

log "scenario: 1 user in $ROOMS rooms"
sc=$(sim scenario "{\"users\":1,\"rooms_per_user\":$ROOMS,\"members_per_room\":$MEMBERS,\"messages_per_room\":$MESSAGES,\"prefix\":\"rss\"}")
user=$(printf '%s' "$sc" | jq -r '.users[0].user_id')
tok=$(printf '%s' "$sc" | jq -r '.users[0].access_token')
bytes=$(curl -sS -o /dev/null -w '%{size_download}' -H "Authorization: Bearer $tok" \
    "$SIMHS_URL/_matrix/client/v3/sync?timeout=0")
log "initial sync: $bytes bytes"
snap start >"$T/snaps"
for i in $(seq 1 "$LOGINS"); do
	[ "$i" = 1 ] || tok=$(sim_login "$user" "RSSDEV$i")
	t0=$(date +%s%N)
	v3 "$tok" "" '{"room_list":{"limit":1}}' 900000 >/dev/null
	[ "$(last_status)" = 200 ] || fail "login $i: status $(last_status)"
	# the answer comes after the first window; the rest is stored after
	# it, and the snapshot must see that too
	wait_for "[ \"\$(psql_q \"SELECT count(*) FROM syncv3_devices WHERE user_id = '$user' AND is_initial_done AND poll_state = 'polling'\")\" -ge $i ]" 900 ||
	    fail "login $i: initial sync not stored"
	log "login $i stored and served after $(( ($(date +%s%N) - t0) / 1000000 )) ms"
	snap "login $i" >>"$T/snaps"
done
sleep "$IDLE"
snap idle >>"$T/snaps"
for p in accumulator poller api; do is_running "$p" || fail "$p died"; done
jq -s --argjson bytes "$bytes" --argjson rooms "$ROOMS" \
    --arg commit "$(git -C "$IT_ROOT" rev-parse --short HEAD 2>/dev/null)" '
  {commit: $commit, rooms: $rooms, initial_sync_bytes: $bytes, logins: (length - 2),
   first_login_peak_mib: {poller: .[1].poller_hwm_mib, accumulator: .[1].accumulator_hwm_mib},
   peak_mib: {poller: .[-1].poller_hwm_mib, accumulator: .[-1].accumulator_hwm_mib},
   idle_rss_mib: {poller: .[-1].poller_rss_mib, accumulator: .[-1].accumulator_rss_mib,
                  total: (.[-1].poller_rss_mib + .[-1].accumulator_rss_mib)},
   snapshots: .}' "$T/snaps"
it_pass
