#!/usr/bin/env bash
# it: serial
# t_chaos (issue #15): every daemon is SIGKILLed and restarted under load,
# and Postgres crashes and restarts, while clients watch from outside.
# Two pollers and two apis run against the simulated homeserver; four
# devices of three users long-poll v3 (to_device, and room_list with its
# timelines) as real clients do: a 5xx or a refused connection is retried
# on the other api with the same since, M_UNKNOWN_SYNC_SESSION starts a new
# session. A numbered flow of room messages (two rooms, every user in both)
# and to-device messages (each device in turn) goes upstream while a
# schedule kills each accumulator (the active one and its standby), each
# poller and each api twice, and
# stops Postgres once with pg_ctl -m immediate; after each blow it waits
# until that daemon's function is back (accumulator: a commit; poller: the
# devices it held polled upstream again; api: /health 200 and a v3 answer;
# Postgres: both apis healthy), which nobody restarts by hand but the
# daemon itself. At the end each client holds each message of its streams
# exactly once and in order, counted over every answer it got (so a
# duplicate or a gap shows instead of being merged away; only the first
# answer of a new session may repeat what the client had), storage holds
# each exactly once, no daemon died by itself or reported a sanitizer
# error, and each stops cleanly on SIGTERM.
#
# Knobs (tests/chaos_long.sh sets them): CHAOS_KILLS (0, the default: the
# short schedule above; N: N kills spread at random over the daemons),
# CHAOS_PG_RESTARTS (with CHAOS_KILLS), CHAOS_SECS (the time the blows
# are spread over; kills not done by twice that are dropped and counted),
# CHAOS_SEED, CHAOS_SEND_SLEEP (between two upstream sends),
# CHAOS_RECOVERY_MAX (seconds a daemon has to come back), CHAOS_REPORT (a
# file for the figures, JSON), ACCUMULATORS (2, the default: a standby
# accumulator too, killed like the others; the two bind their own
# endpoints and the pollers and apis name both; 1: one accumulator;
# CHAOS_ACC2_ENV holds VAR=value words for the second).
source "$(dirname "$0")/lib.sh"

KILLS=${CHAOS_KILLS:-0}
PG_RESTARTS=${CHAOS_PG_RESTARTS:-1}
SECS=${CHAOS_SECS:-25}
SEED=${CHAOS_SEED:-15}
SEND_SLEEP=${CHAOS_SEND_SLEEP:-0.1}
RECOVERY_MAX=${CHAOS_RECOVERY_MAX:-60}
REPORT=${CHAOS_REPORT:-}
ACCUMULATORS=${ACCUMULATORS:-2}
RANDOM=$SEED
# Postgres is restarted here, so the scenario has a cluster of its own.
unset IT_PGHOST
export SYNCV3_POLL_TIMEOUT_MS=5000 SYNCV3_LEASE_SECS=5

# rnd LO HI: sets RND to a seeded random number of seconds between LO and
# HI hundredths. Never in $(...): a subshell draws from a new seed.
rnd() {
	local cs=$(($1 + ($2 - $1) * RANDOM / 32767))
	printf -v RND '%d.%02d' $((cs / 100)) $((cs % 100))
}

# post_sync PORT TOKEN SINCE BODY TIMEOUT_MS OUT: one v3 request; the body
# goes to OUT, the status (000: no answer) to stdout.
post_sync() {
	local url="http://127.0.0.1:$1/_matrix/client/v3/sync?timeout=$5"
	if [ -n "$3" ]; then
		[[ $3 =~ ^[A-Za-z0-9_.~-]+$ ]] || fail "since token needs escaping: $3"
		url="$url&since=$3"
	fi
	curl -s -m 20 -o "$6" -w '%{http_code}' -X POST \
	    -H "Authorization: Bearer $2" -H 'Content-Type: application/json' \
	    --data "$4" "$url"
}

it_setup
start_simhs
ACC_NAMES=(accumulator)
if [ "$ACCUMULATORS" -ge 2 ]; then
	# each binds its own endpoints; pollers and apis name both
	acc_pair
	start_acc accumulator
	wait_for '[ "$(acc_active)" = accumulator ]' 20 || fail "accumulator did not become the writer"
	start_acc accumulator2 ${CHAOS_ACC2_ENV:-}
	ACC_NAMES+=(accumulator2)
else
	start_accumulator
fi
start_poller poller
start_poller poller2
API1_PORT=$(free_port)
API2_PORT=$(free_port)
start_api_on api "$API1_PORT"
start_api_on api2 "$API2_PORT"
export API_URL="http://127.0.0.1:$API1_PORT"
for port in "$API1_PORT" "$API2_PORT"; do
	wait_for "curl -sf http://127.0.0.1:$port/health" 20 || fail "api on $port did not become healthy"
done
DAEMONS=("${ACC_NAMES[@]}" poller poller2 api api2)

# Two rooms, dave sends; every client user is in both.
for u in alice bob carol dave probe; do sim users "{\"localpart\":\"$u\"}" >/dev/null; done
ROOMS=()
for k in 1 2; do
	r=$(sim rooms "{\"creator\":\"@dave:localhost\",\"name\":\"chaos $k\"}" | jq -r .room_id)
	for u in alice bob carol; do
		sim "rooms/$r/join" "{\"user_id\":\"@$u:localhost\"}" >/dev/null
	done
	ROOMS+=("$r")
done
CLIENTS=(A1 A2 B1 C1)
declare -A USER=([A1]=@alice:localhost [A2]=@alice:localhost
    [B1]=@bob:localhost [C1]=@carol:localhost [P1]=@probe:localhost)
declare -A TOK=() PORT=([A1]=$API1_PORT [B1]=$API1_PORT [A2]=$API2_PORT
    [C1]=$API2_PORT)
declare -A TOKBYKEY=()
for c in "${CLIENTS[@]}" P1; do
	TOK[$c]=$(sim_login "${USER[$c]}" "$c")
	TOKBYKEY["${USER[$c]}|$c"]=${TOK[$c]}
	# This first session is never used again: it acknowledges nothing,
	# so every to-device message stays stored for the storage check.
	code=$(post_sync "$API1_PORT" "${TOK[$c]}" "" '{"to_device":{}}' 0 "$T/first.$c")
	assert_eq "$code" 200 "first session of $c"
done
PROBE_SINCE=$(jq -r .next_batch "$T/first.P1")
wait_for "[ \"\$(psql_q \"SELECT count(*) FROM syncv3_devices WHERE coalesce(since, '') <> ''\")\" = 5 ]" 30 ||
    fail "initial syncs not committed"

# chaos_client NAME: long-polls until $T/clients.stop exists. Every item
# of every 200 answer is appended to $T/c_NAME.ev ("td N", "ev ROOM BODY",
# "rm ROOM"; a "p" prefix when the answer opened a session), the next since
# last; other outcomes are logged to stdout.
chaos_client() {
	local tok=${TOK[$1]} port=${PORT[$1]} since="" code pfx
	local params='{"to_device":{"limit":1000},"room_list":{"limit":20,"timeline_limit":50}}'
	local body=$params f=$T/c_$1 alt

	while [ ! -e "$T/clients.stop" ]; do
		code=$(post_sync "$port" "$tok" "$since" "$body" 5000 "$f.body")
		case $code in
		200)
			pfx=""
			[ -z "$since" ] && pfx=p
			if ! jq -r --arg p "$pfx" '
			    (.to_device.events[]? | select(.type == "m.test") |
			        "\($p)td \(.content.n)"),
			    (.room_list.rooms[]? | .room_id as $r | "rm \($r)",
			        (.timeline[]? | select(.type == "m.room.message") |
			        "\($p)ev \($r) \(.content.body)")),
			    (to_entries[] | select((.value | type) == "object" and
			        .value.errcode != null) | "serr \(.key) \(.value.errcode)"),
			    (if .room_list.next_page != null then "next_page" else empty end),
			    "nb \(.next_batch)"' "$f.body" >"$f.tmp" ||
			    [ "$(tail -1 "$f.tmp" | cut -d' ' -f1)" != nb ]; then
				echo "badjson $(head -c 300 "$f.body")"
				sleep 0.5
				continue
			fi
			grep -E '^(serr|next_page)' "$f.tmp"
			grep -vE '^(serr|next_page|nb) ' "$f.tmp" >>"$f.ev"
			since=$(tail -1 "$f.tmp" | cut -d' ' -f2)
			body='{}'
			echo "code 200"
			;;
		400)
			if [ "$(jq -r .errcode "$f.body" 2>/dev/null)" = M_UNKNOWN_SYNC_SESSION ]; then
				echo "newsession after $since"
				since="" body=$params
			else
				echo "code 400 $(head -c 300 "$f.body")"
				sleep 1
			fi
			;;
		000 | 5?? | 429)
			# no answer or a temporary one: the other api, same since
			echo "code $code"
			alt=$API1_PORT
			[ "$port" = "$API1_PORT" ] && alt=$API2_PORT
			port=$alt
			sleep 0.3
			;;
		*)
			echo "code $code $(head -c 300 "$f.body")"
			sleep 1
			;;
		esac
	done
}
for c in "${CLIENTS[@]}"; do
	: >"$T/c_$c.ev"
	start_proc "client_$c" chaos_client "$c"
done
for c in "${CLIENTS[@]}"; do
	for r in "${ROOMS[@]}"; do
		wait_for "grep -q '^p\\?rm $r\$' $T/c_$c.ev" 30 || fail "client $c never saw room $r"
	done
done

# The upstream flow: one room message (rooms in turn) and one to-device
# message (devices in turn) per round, each logged once simhs took it
# ("R k BODY", "T DEVICE N").
sender() {
	local i=0 k body dev
	declare -A nr=() nt=()
	while [ ! -e "$T/send.stop" ]; do
		k=$((i % 2))
		nr[$k]=$((${nr[$k]:-0} + 1))
		body="R$k-${nr[$k]}"
		sim "rooms/${ROOMS[$k]}/send" "{\"sender\":\"@dave:localhost\",\"type\":\"m.room.message\",\"content\":{\"msgtype\":\"m.text\",\"body\":\"$body\"}}" >/dev/null ||
		    { echo "FAIL room send $body"; exit 1; }
		echo "R $k $body" >>"$T/sent"
		dev=${CLIENTS[$((i % ${#CLIENTS[@]}))]}
		nt[$dev]=$((${nt[$dev]:-0} + 1))
		sim to_device "{\"sender\":\"@dave:localhost\",\"type\":\"m.test\",\"user_id\":\"${USER[$dev]}\",\"device_id\":\"$dev\",\"content\":{\"n\":${nt[$dev]}}}" >/dev/null ||
		    { echo "FAIL to-device send $dev ${nt[$dev]}"; exit 1; }
		echo "T $dev ${nt[$dev]}" >>"$T/sent"
		i=$((i + 1))
		sleep "$SEND_SLEEP"
	done
}
: >"$T/sent"
start_proc sender sender

# The schedule: the short one kills each daemon twice (Postgres once, in
# the middle); with CHAOS_KILLS, kills fall on daemons at random and the
# Postgres restarts are spread evenly between them.
SCHED=()
if [ "$KILLS" = 0 ]; then
	SCHED=("${DAEMONS[@]}" postgres "${DAEMONS[@]}")
else
	every=$((KILLS / (PG_RESTARTS + 1)))
	[ $every -ge 1 ] || every=1
	for i in $(seq "$KILLS"); do
		SCHED+=("${DAEMONS[$((RANDOM % ${#DAEMONS[@]}))]}")
		[ "$PG_RESTARTS" -gt 0 ] && [ $((i % every)) = 0 ] &&
		    [ $((i / every)) -le "$PG_RESTARTS" ] && SCHED+=(postgres)
	done
fi

declare -A ROT=()
# restart NAME: starts the daemon again; the dead one's log is kept aside
# (NAME.log.N) for the sanitizer check.
restart() {
	ROT[$1]=$((${ROT[$1]:-0} + 1))
	mv -f "$T/$1.log" "$T/$1.log.${ROT[$1]}"
	case $1 in
	accumulator)
		if [ "$ACCUMULATORS" -ge 2 ]; then start_acc accumulator
		else start_proc accumulator "$BIN/syncv3-accumulator"; fi ;;
	accumulator2) start_acc accumulator2 ${CHAOS_ACC2_ENV:-} ;;
	poller*) start_poller "$1" ;;
	api) start_api_on api "$API1_PORT" ;;
	api2) start_api_on api2 "$API2_PORT" ;;
	esac
}
api_ok() {
	[ "$(curl -s -o /dev/null -m 5 -w '%{http_code}' "http://127.0.0.1:$1/health")" = 200 ] &&
	    [ "$(post_sync "$1" "${TOK[P1]}" "$PROBE_SINCE" '{}' 0 /dev/null)" = 200 ]
}
db_pos() { psql_q 'SELECT pos FROM syncv3_position' 2>/dev/null; }
# tok_requests TOKEN...: upstream /sync requests simhs counted for each
tok_requests() {
	sim_get stats | jq -r '[$ARGS.positional[] as $t | .tokens[$t].requests // 0 |
	    tostring] | join(" ")' --args "$@"
}
# polled_again "COUNTS" TOKEN...: each token has more requests than COUNTS
# says (a new upstream /sync for every device a dead poller held)
polled_again() {
	local before=$1
	shift
	tok_requests "$@" | awk -v b="$before" '{ n = split(b, x, " ")
	    for (i = 1; i <= n; i++) if ($i + 0 <= x[i] + 0) exit 1 }'
}
# recovered_since T0 CMD: waits for CMD to succeed; REC = ms since T0, or
# -1 after CHAOS_RECOVERY_MAX seconds.
recovered_since() {
	local t0=$1 cmd=$2 end=$(($1 + RECOVERY_MAX * 1000))
	while ! eval "$cmd" >/dev/null 2>&1; do
		[ "$(now_ms)" -gt $end ] && { REC=-1; return 1; }
		sleep 0.1
	done
	REC=$(($(now_ms) - t0))
}

# blow VICTIM: kills it (SIGKILL; Postgres: immediate stop), restarts it
# after a short while and measures its recovery into REC ("idle": a
# poller that held no device, so there was nothing to recover).
blow() {
	local v=$1 t0 pos0 keys toks=() before
	if [ "$v" = postgres ]; then
		t0=$(now_ms)
		it_pg_crash "$IT_PGDIR"
		rnd 30 150
		sleep "$RND"
		it_pg_restart "$IT_PGDIR" || fail "postgres did not start again"
		recovered_since "$t0" "api_ok $API1_PORT && api_ok $API2_PORT"
		return
	fi
	if ! is_running "$v"; then
		REC=died
		return
	fi
	case $v in poller*)
		keys=$(psql_q "SELECT user_id || '|' || device_id FROM syncv3_leases WHERE owner = '$v'")
		for k in $keys; do toks+=("${TOKBYKEY[$k]}"); done ;;
	esac
	t0=$(now_ms)
	kill9 "$v"
	pos0=$(db_pos)
	[ ${#toks[@]} -gt 0 ] && before=$(tok_requests "${toks[@]}")
	rnd 0 50
	sleep "$RND"
	restart "$v"
	case $v in
	accumulator*)
		recovered_since "$t0" "[ \"\$(db_pos)\" -gt $pos0 ]" ;;
	poller*)
		if [ ${#toks[@]} = 0 ]; then
			REC=idle
			return
		fi
		recovered_since "$t0" "polled_again '$before' ${toks[*]}" ;;
	api) recovered_since "$t0" "api_ok $API1_PORT" ;;
	api2) recovered_since "$t0" "api_ok $API2_PORT" ;;
	esac
}

log "schedule: ${#SCHED[@]} blows over about ${SECS}s: ${SCHED[*]}"
sleep 2
: >"$T/kills"
START=$(now_ms)
# Blows are spread over SECS; past twice that the rest are dropped.
DEADLINE=$((START + SECS * 1000))
done_n=0 nonrec="" spent=0
for v in "${SCHED[@]}"; do
	now=$(now_ms)
	left=$((${#SCHED[@]} - done_n))
	if [ "$KILLS" != 0 ] && [ "$now" -gt $((DEADLINE + SECS * 1000)) ]; then
		log "time is up: $left blows not done"
		break
	fi
	# what is left over the time left, less the time a blow took so far
	# (its downtime and recovery), at random, 0.2 s at least
	r=$RANDOM
	gap=$(awk -v r=$r -v ms=$((DEADLINE - now)) -v n="$left" -v d="$done_n" \
	    -v spent="$spent" 'BEGIN { g = ms / n - (d > 0 ? spent / d : 1000)
	    g = g / 1000 * (0.5 + r / 32767); printf "%.2f", g < 0.2 ? 0.2 : g }')
	sleep "$gap"
	t=$(now_ms)
	blow "$v"
	spent=$((spent + $(now_ms) - t))
	echo "$v $REC" >>"$T/kills"
	log "blow $((done_n + 1))/${#SCHED[@]}: $v, recovered in ${REC} ms"
	done_n=$((done_n + 1))
	if [ "$REC" = -1 ] || [ "$REC" = died ]; then
		nonrec="$v did not recover within ${RECOVERY_MAX}s (blow $done_n)"
		[ "$REC" = died ] && nonrec="$v died by itself before blow $done_n (see $T/$v.log)"
		log "$nonrec"
		break
	fi
done
CHAOS_MS=$(($(now_ms) - START))
sleep 1
touch "$T/send.stop"
wait "${IT_PIDS[sender]}"
src=$?
unset "IT_PIDS[sender]"
[ $src = 0 ] || fail "sender: $(tail -1 "$T/sender.log")"

# expected SPEC: the items the sender logged for one stream, in order
# ("R k" or "T DEVICE")
expected() { awk -v a="${1% *}" -v b="${1#* }" '$1 == a && $2 == b { print $3 }' "$T/sent"; }
# received CLIENT SPEC: "s ITEM" / "p ITEM" in the order the client got them
received() {
	local f=$T/c_$1.ev
	case $2 in
	"T "*) awk '$1 == "td" || $1 == "ptd" { print ($1 == "td" ? "s" : "p"), $2 }' "$f" ;;
	"R "*) awk -v r="${ROOMS[${2#R }]}" '($1 == "ev" || $1 == "pev") && $2 == r {
	    print ($1 == "ev" ? "s" : "p"), $3 }' "$f" ;;
	esac
}
# check EXPECTED_FILE GOT_FILE: "n lost dup extra resent ok" where GOT's
# items flagged p (an answer opening a session) are dropped if the client
# had them already (resent); everything else counts as received.
check() {
	awk 'FNR == NR { want[++ne] = $1; w[$1] = 1; next }
	    { if ($1 == "p" && ($2 in seen)) { resent++; next }
	      got[++ng] = $2; seen[$2]++ }
	    END { for (x in seen) { d++; if (!(x in w)) extra++ }
	      for (i = 1; i <= ne; i++) if (!(want[i] in seen)) lost++
	      ok = ng == ne
	      for (i = 1; ok && i <= ne; i++) if (got[i] != want[i]) ok = 0
	      printf "%d %d %d %d %d %d\n", ng, lost, ng - d, extra, resent, ok }' "$1" "$2"
}
# The checker itself must see a gap, a duplicate and disorder, and let a
# new session's repeat pass.
printf '1\n2\n3\n' >"$T/want.self"
printf 's 1\ns 3\ns 3\np 1\n' >"$T/got.self"
assert_eq "$(check "$T/want.self" "$T/got.self")" "3 1 1 0 1 0" "checker on a gap and a duplicate"
printf 's 2\ns 1\np 1\ns 3\n' >"$T/got.self"
assert_eq "$(check "$T/want.self" "$T/got.self")" "3 0 0 0 1 0" "checker on disorder"
printf 's 1\ns 2\np 2\np 3\n' >"$T/got.self"
assert_eq "$(check "$T/want.self" "$T/got.self")" "3 0 0 0 1 1" "checker on a new session's repeat"
SPECS=("R 0" "R 1")
for c in "${CLIENTS[@]}"; do SPECS+=("T $c"); done
for s in "${SPECS[@]}"; do expected "$s" >"$T/want.${s// /_}"; done
# client_done C: every stream of the client has everything (drain)
client_done() {
	local s n lost rest
	for s in "R 0" "R 1" "T $1"; do
		received "$1" "$s" >"$T/got.tmp"
		read -r n lost rest < <(check "$T/want.${s// /_}" "$T/got.tmp")
		[ "$lost" = 0 ] || return 1
	done
}
all_done() { for c in "${CLIENTS[@]}"; do client_done "$c" || return 1; done; }
for i in $(seq 60); do
	all_done && break
	[ "$i" = 60 ] && log "clients still missing messages after 30 s"
	sleep 0.5
done
touch "$T/clients.stop"
for c in "${CLIENTS[@]}"; do
	for _ in $(seq 100); do is_running "client_$c" || break; sleep 0.1; done
	stop_proc "client_$c"
done

# Figures: per client stream, then storage.
problems=()
[ -n "$nonrec" ] && problems+=("$nonrec")
declare -A SUM=()
add() { SUM[$1]=$((${SUM[$1]:-0} + $2)); }
for c in "${CLIENTS[@]}"; do
	for s in "R 0" "R 1" "T $c"; do
		kind=room
		[ "${s% *}" = T ] && kind=to_device
		received "$c" "$s" >"$T/got.tmp"
		read -r n lost dup extra resent ok < <(check "$T/want.${s// /_}" "$T/got.tmp")
		want=$(wc -l <"$T/want.${s// /_}")
		add "$kind.expected" "$want"
		add "$kind.received" "$n"
		add "$kind.lost" "$lost"
		add "$kind.duplicated" "$dup"
		add "$kind.extra" "$extra"
		add "$kind.resent" "$resent"
		[ "$ok" = 1 ] || problems+=("client $c, $s: $n received of $want, $lost lost, $dup duplicated, $extra unknown, out of order: $((1 - ok))")
	done
done
for s in "${SPECS[@]}"; do
	case $s in
	"R "*) psql_q "SELECT 's', json::json->'content'->>'body' FROM syncv3_events WHERE room_id = '${ROOMS[${s#R }]}' AND type = 'm.room.message' ORDER BY nid" ;;
	"T "*) psql_q "SELECT 's', json::json->'content'->>'n' FROM syncv3_to_device WHERE user_id = '${USER[${s#T }]}' AND device_id = '${s#T }' AND json::json->>'type' = 'm.test' ORDER BY pos" ;;
	esac | tr '|' ' ' >"$T/got.tmp"
	read -r n lost dup extra resent ok < <(check "$T/want.${s// /_}" "$T/got.tmp")
	add "stored.lost" "$lost"
	add "stored.duplicated" "$dup"
	[ "$ok" = 1 ] || problems+=("storage, $s: $n rows, $lost lost, $dup duplicated, $extra unknown, in order: $ok")
done
twice=$(psql_q "SELECT count(*) - count(DISTINCT event_id) FROM syncv3_events")
[ "$twice" = 0 ] || problems+=("$twice events stored twice")
inflight=$(sim_get stats | jq '[.sync_inflight_max[]] | max // 0')

# Every daemon alive, stopping cleanly; no sanitizer report in any log.
for d in "${DAEMONS[@]}"; do
	if ! is_running "$d"; then
		problems+=("$d died by itself (see $T/$d.log)")
		continue
	fi
	kill -TERM "${IT_PIDS[$d]}"
	wait "${IT_PIDS[$d]}"
	rc=$?
	unset "IT_PIDS[$d]"
	[ $rc = 0 ] || problems+=("$d exited $rc on SIGTERM")
done
san=$(it_sanitizer_logs)
[ -n "$san" ] && problems+=("sanitizer reports in: $(echo $san)")

# counts by kind for the report
krec() { awk -v k="$1" 'index($1, k) == 1 && $2 ~ /^[0-9]+$/ { print $2 }' "$T/kills" | sort -n; }
stat_json() {
	krec "$1" | jq -s --arg k "$1" --argjson idle "$(awk -v k="$1" 'index($1, k) == 1 && $2 == "idle"' "$T/kills" | wc -l)" \
	    --argjson failed "$(awk -v k="$1" 'index($1, k) == 1 && $2 == -1' "$T/kills" | wc -l)" \
	    '{($k): {recovered: length, idle: $idle, failed: $failed,
	      p50_ms: (if length > 0 then .[((length + 1) / 2 | floor) - 1] else null end),
	      max_ms: (if length > 0 then .[-1] else null end)}}'
}
clog() { cat "$T"/client_*.log 2>/dev/null | grep -c "$1"; }
json=$(jq -n \
    --argjson kills "$(awk '{ print $1 }' "$T/kills" | sort | uniq -c | awk '{ printf "{\"%s\":%d}\n", $2, $1 }' | jq -s 'add // {}')" \
    --argjson rec "$(for k in accumulator poller api postgres; do stat_json "$k"; done | jq -s add)" \
    --argjson planned "${#SCHED[@]}" --argjson ndone "$done_n" --argjson ms "$CHAOS_MS" \
    --argjson rs "$(grep -c '^R ' "$T/sent")" --argjson ts "$(grep -c '^T ' "$T/sent")" \
    --argjson clients "${#CLIENTS[@]}" \
    --argjson sums "$(for k in "${!SUM[@]}"; do echo "{\"$k\":${SUM[$k]}}"; done | jq -s add)" \
    --argjson ok200 "$(clog '^code 200')" --argjson c000 "$(clog '^code 000')" \
    --argjson c5xx "$(clog '^code 5')" --argjson news "$(clog '^newsession')" \
    --argjson serr "$(clog '^serr')" --argjson inflight "$inflight" \
    --arg seed "$SEED" --argjson problems "$(printf '%s\n' "${problems[@]}" | jq -R . | jq -s 'map(select(. != ""))')" \
    '{seed: $seed, blows_planned: $planned, blows_done: $ndone, chaos_ms: $ms,
      kills: $kills, recovery: $rec,
      messages: {room: {sent: $rs, deliveries: $sums["room.expected"],
          received: $sums["room.received"], lost: $sums["room.lost"],
          duplicated: $sums["room.duplicated"], unknown: $sums["room.extra"],
          resent_on_new_session: $sums["room.resent"]},
        to_device: {sent: $ts, deliveries: $sums["to_device.expected"],
          received: $sums["to_device.received"], lost: $sums["to_device.lost"],
          duplicated: $sums["to_device.duplicated"], unknown: $sums["to_device.extra"],
          resent_on_new_session: $sums["to_device.resent"]},
        stored: {lost: $sums["stored.lost"], duplicated: $sums["stored.duplicated"]}},
      clients: {count: $clients, answers_200: $ok200, no_answer: $c000,
          answers_5xx: $c5xx, new_sessions: $news, stream_errors: $serr},
      upstream_sync_inflight_max: $inflight, problems: $problems}')
[ -n "$REPORT" ] && printf '%s\n' "$json" >"$REPORT"
log "figures: $(printf '%s' "$json" | jq -c 'del(.problems)')"
for p in "${problems[@]}"; do log "problem: $p"; done
[ ${#problems[@]} = 0 ] || fail "${#problems[@]} problems (above)"
it_pass
