#!/usr/bin/env bash
# Integration test harness, sourced by every t_*.sh. It starts real
# processes: a private Postgres (unless run.sh already started one and
# exported IT_PGHOST), the simulated homeserver and the three daemons, on
# unix sockets / ipc endpoints under a temporary directory and free
# loopback ports. A trap kills exactly the PIDs it started.
#
# Environment knobs: BIN (binaries, default build/bin), TEST_KEEP=1 keeps
# the temp dir, IT_VERBOSE=1 echoes daemon logs on failure (default on).
set -u

IT_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${BIN:-$IT_ROOT/build/bin}
T=$(mktemp -d "${TMPDIR:-/tmp}/syncv3-it.XXXXXX")
chmod 755 "$T"
declare -A IT_PIDS=()
IT_FAILED=0
IT_NAME=$(basename "${0%.sh}")
# Scenarios build history upstream and log in after it: the poller's light
# first sync (docs/DESIGN.md, "The first window first") would store one
# event per room of it. They get 50 unless they ask (t_ss_cold_light.sh).
export SYNCV3_FIRST_TIMELINE_LIMIT=${SYNCV3_FIRST_TIMELINE_LIMIT:-50}

pg_bindir() {
	if command -v pg_config >/dev/null 2>&1 &&
	    [ -x "$(pg_config --bindir)/initdb" ]; then
		pg_config --bindir
	else
		ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1
	fi
}

# Runs a command as the postgres superuser's OS account when we are root
# (initdb refuses to run as root).
as_pg_user() {
	if [ "$(id -u)" = 0 ]; then
		runuser -u "${IT_PG_OSUSER:-postgres}" -- "$@"
	else
		"$@"
	fi
}

# Starts a private cluster in $1 (a directory); prints nothing, sets
# IT_PGHOST (the socket dir) and IT_PGPORT.
it_pg_start() {
	local dir=$1 bindir
	bindir=$(pg_bindir)
	mkdir -p "$dir"
	[ "$(id -u)" = 0 ] && chown "${IT_PG_OSUSER:-postgres}" "$dir"
	as_pg_user "$bindir/initdb" -D "$dir/data" -E UTF8 --no-locale \
	    -A trust -U postgres >"$dir/initdb.log" 2>&1 || {
		cat "$dir/initdb.log"; return 1; }
	# IT_PG_CONF: a command run on the data directory before the start
	# (the benchmarks' settings); IT_PG_OPTS replaces "-c fsync=off".
	if [ -n "${IT_PG_CONF:-}" ]; then $IT_PG_CONF "$dir/data" || return 1; fi
	as_pg_user "$bindir/pg_ctl" -D "$dir/data" -w -l "$dir/pg.log" \
	    -o "-c listen_addresses='' -k $dir ${IT_PG_OPTS--c fsync=off} -c max_connections=300" \
	    start >/dev/null || { cat "$dir/pg.log"; return 1; }
	export IT_PGHOST=$dir IT_PGPORT=5432 IT_PGDIR=$dir
}

it_pg_stop() {
	as_pg_user "$(pg_bindir)/pg_ctl" -D "$1/data" -m fast stop >/dev/null 2>&1
}

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

log() { printf '[%s] %s\n' "$IT_NAME" "$*" >&2; }

fail() {
	log "FAIL: $*"
	IT_FAILED=1
	exit 1
}

it_cleanup() {
	local rc=$?
	# A scenario may define it_on_exit for its own teardown.
	declare -F it_on_exit >/dev/null && it_on_exit
	for name in "${!IT_PIDS[@]}"; do
		kill -TERM "${IT_PIDS[$name]}" 2>/dev/null
	done
	sleep 0.2
	for name in "${!IT_PIDS[@]}"; do
		kill -KILL "${IT_PIDS[$name]}" 2>/dev/null
	done
	wait 2>/dev/null
	if [ "$rc" != 0 ] || [ "$IT_FAILED" != 0 ]; then
		for f in "$T"/*.log; do
			[ -f "$f" ] || continue
			echo "----- $f (last 40 lines)" >&2
			tail -40 "$f" >&2
		done
	fi
	[ -n "${IT_OWN_PG:-}" ] && it_pg_stop "$T/pg"
	if [ "${TEST_KEEP:-0}" = 1 ]; then
		log "kept $T"
	else
		rm -rf "$T"
	fi
	exit "$rc"
}
trap it_cleanup EXIT

# Sets up the environment every daemon shares and a fresh database.
it_setup() {
	if [ -z "${IT_PGHOST:-}" ]; then
		it_pg_start "$T/pg" || fail "postgres did not start"
		IT_OWN_PG=1
	fi
	local db="it_$(basename "$T" | tr -c 'a-zA-Z0-9\n' '_' | tr 'A-Z' 'a-z')"
	"$(pg_bindir)/createdb" -h "$IT_PGHOST" -U postgres "$db" ||
	    fail "createdb"
	export SYNCV3_DB="host=$IT_PGHOST user=postgres dbname=$db"
	export SYNCV3_SECRET=integration-test-secret
	export SYNCV3_INGEST="ipc://$T/ingest.sock"
	export SYNCV3_NOTICES="ipc://$T/notices.sock"
	export SYNCV3_LOG_LEVEL=${SYNCV3_LOG_LEVEL:-debug}
}

psql_q() {
	"$(pg_bindir)/psql" -h "$IT_PGHOST" -U postgres -d "${SYNCV3_DB##*dbname=}" \
	    -XAtq -v ON_ERROR_STOP=1 -c "$1"
}

# start_proc NAME CMD...: runs CMD in the background, logging to $T/NAME.log
start_proc() {
	local name=$1; shift
	"$@" >"$T/$name.log" 2>&1 &
	IT_PIDS[$name]=$!
}

# Waits (up to $2 seconds, default 10) until "$1" (a shell command) succeeds.
wait_for() {
	local cmd=$1 secs=${2:-10} i=0
	while ! eval "$cmd" >/dev/null 2>&1; do
		i=$((i + 1))
		[ $i -ge $((secs * 10)) ] && return 1
		sleep 0.1
	done
	return 0
}

start_simhs() {
	local port
	port=$(free_port)
	start_proc simhs "$BIN/syncv3-simhs" -l "127.0.0.1:$port" "$@"
	export SIMHS_URL="http://127.0.0.1:$port"
	export SYNCV3_SERVER=$SIMHS_URL
	wait_for "curl -sf $SIMHS_URL/_simhs/stats" 10 || fail "simhs did not start"
}

start_accumulator() {
	start_proc accumulator "$BIN/syncv3-accumulator" "$@"
	wait_for "[ \"\$(psql_q 'SELECT count(*) FROM syncv3_schema_migrations' 2>/dev/null)\" -ge 1 ]" 20 ||
	    fail "accumulator did not migrate the schema"
	# an accumulator starts as a standby (issue #15): wait until one is the
	# writer, so a scenario that then locks a table does not lock it out
	wait_for "[ \"\$(psql_q 'SELECT count(*) FROM syncv3_accumulator a JOIN pg_locks l ON l.pid = a.backend_pid AND l.locktype = '\'advisory\'' AND l.granted' 2>/dev/null)\" -ge 1 ]" 20 ||
	    fail "no accumulator became the writer"
}

# start_poller [NAME [ARGS...]]: several pollers may run (poller, poller2...).
start_poller() {
	local name=${1:-poller}
	[ $# -gt 0 ] && shift
	start_proc "$name" env SYNCV3_POLLER_ID="$name" "$BIN/syncv3-poller" "$@"
}

start_api() {
	local port
	port=$(free_port)
	start_proc api env SYNCV3_BINDADDR="127.0.0.1:$port" "$BIN/syncv3-api" "$@"
	export API_URL="http://127.0.0.1:$port"
	wait_for "curl -sf $API_URL/health" 20 || fail "api did not become healthy"
}

# Starts the whole stack against the simulated homeserver.
start_stack() {
	it_setup
	start_simhs
	start_accumulator
	start_poller poller
	start_api
}

kill9() { kill -KILL "${IT_PIDS[$1]}" 2>/dev/null; wait "${IT_PIDS[$1]}" 2>/dev/null; unset "IT_PIDS[$1]"; }
stop_proc() { kill -TERM "${IT_PIDS[$1]}" 2>/dev/null; wait "${IT_PIDS[$1]}" 2>/dev/null; unset "IT_PIDS[$1]"; }
is_running() { kill -0 "${IT_PIDS[$1]}" 2>/dev/null; }

# sim PATH JSON: POST to the simulated homeserver's admin API, prints body.
sim() {
	curl -sS -f -X POST -H 'Content-Type: application/json' \
	    --data "${2:-{\}}" "$SIMHS_URL/_simhs/$1"
}
sim_get() { curl -sS -f "$SIMHS_URL/_simhs/$1"; }

# sim_login USER DEVICE: prints the access token.
sim_login() {
	sim login "{\"user_id\":\"$1\",\"device_id\":\"$2\"}" | jq -r .access_token
}

# v3 TOKEN SINCE BODY [TIMEOUT_MS]: POST /sync; body to stdout, status in
# $T/last_status. SINCE may be "". Each call writes its own files first, so
# calls running in the background at the same time do not mix their bodies.
v3() {
	local token=$1 since=$2 body=${3:-{\}} timeout=${4:-0} url out
	url="$API_URL/_matrix/client/v3/sync?timeout=$timeout"
	[ -n "$since" ] && url="$url&since=$(jq -rn --arg s "$since" '$s|@uri')"
	out=$(mktemp "$T/v3.XXXXXX")
	curl -sS -o "$out.body" -w '%{http_code}' -X POST \
	    -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
	    --data "$body" "$url" >"$out.status"
	cat "$out.body"
	mv -f "$out.body" "$T/last_body"
	mv -f "$out.status" "$T/last_status"
	rm -f "$out"
}
last_status() { cat "$T/last_status"; }

# assert_eq ACTUAL EXPECTED MESSAGE
assert_eq() {
	[ "$1" = "$2" ] || fail "$3: expected [$2], got [$1]"
}
# assert_jq JSON FILTER EXPECTED MESSAGE: jq -c FILTER of JSON equals EXPECTED
assert_jq() {
	local got
	got=$(printf '%s' "$1" | jq -c "$2" 2>&1)
	[ "$got" = "$3" ] || fail "$4: $2 expected [$3], got [$got] in $(printf '%s' "$1" | head -c 600)"
}

it_pass() { log "PASS"; }

# Chaos helpers (t_chaos.sh, tests/chaos_long.sh).
# start_api_on NAME PORT [ARGS...]: an api on a fixed port, so one that is
# restarted comes back where its clients are; does not wait for it.
start_api_on() {
	local name=$1 port=$2
	shift 2
	start_proc "$name" env SYNCV3_BINDADDR="127.0.0.1:$port" "$BIN/syncv3-api" "$@"
}
# it_pg_crash DIR: stops the cluster of it_pg_start DIR the way a crash
# would (no checkpoint, every client cut off, recovery from the WAL at the
# next start); it_pg_restart DIR starts it again with the options of its
# last start (pg_ctl keeps them in postmaster.opts).
it_pg_crash() {
	as_pg_user "$(pg_bindir)/pg_ctl" -D "$1/data" -m immediate stop >/dev/null 2>&1
}
it_pg_restart() {
	as_pg_user "$(pg_bindir)/pg_ctl" -D "$1/data" -w -l "$1/pg.log" restart >/dev/null 2>&1
}
now_ms() { date +%s%3N; }

# hold_table_lock TABLE MODE PGLOCKMODE SECS: a psql session (process
# "locker") holds LOCK TABLE TABLE IN MODE for SECS seconds; returns once
# Postgres shows the lock granted (PGLOCKMODE as pg_locks spells it).
hold_table_lock() {
	start_proc locker "$(pg_bindir)/psql" -h "$IT_PGHOST" -U postgres \
	    -d "${SYNCV3_DB##*dbname=}" -XAtq -v ON_ERROR_STOP=1 \
	    -c "BEGIN; LOCK TABLE $1 IN $2 MODE; SELECT pg_sleep($4); COMMIT"
	wait_for "[ \"\$(psql_q \"SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE c.relname = '$1' AND l.mode = '$3' AND l.granted\")\" = 1 ]" 10 ||
	    fail "no lock on $1"
}

# sim_typing ROOM USER...: upstream, exactly USERs type in ROOM (none: nobody).
sim_typing() {
	local r=$1 ids
	shift
	ids=$(printf '"%s",' "$@")
	sim "rooms/$r/typing" "{\"user_id\":\"@alice:localhost\",\"user_ids\":[${ids%,}]}" >/dev/null
}

# A standby accumulator (issue #15). acc_pair: SYNCV3_INGEST and
# SYNCV3_NOTICES name both accumulators, for the pollers and apis started
# after it. start_acc NAME [VAR=value...] (accumulator or accumulator2)
# starts one bound to its own endpoints; acc_active prints the name of the
# one holding the writer lock now (empty: none).
acc_pair() {
	export SYNCV3_INGEST="ipc://$T/ingest.sock,ipc://$T/ingest2.sock"
	export SYNCV3_NOTICES="ipc://$T/notices.sock,ipc://$T/notices2.sock"
}
start_acc() {
	local name=$1 k=${1#accumulator}
	shift
	start_proc "$name" env SYNCV3_INGEST="ipc://$T/ingest$k.sock" \
	    SYNCV3_NOTICES="ipc://$T/notices$k.sock" "$@" "$BIN/syncv3-accumulator"
}
acc_active() {
	psql_q "SELECT a.owner FROM syncv3_accumulator a JOIN pg_locks l ON l.pid = a.backend_pid AND l.locktype = 'advisory' AND l.granted" 2>/dev/null |
	    sed -n 's|.*/ingest\([0-9]*\)\.sock$|accumulator\1|p'
}

# it_pg_replica DIR PORT: a streaming replica of the cluster at IT_PGHOST
# (pg_basebackup -R), in DIR, on a unix socket there with port PORT; sets
# IT_REPLICA_DB to the libpq conninfo of the scenario's database on it.
it_pg_replica() {
	local dir=$1 port=$2 bindir
	bindir=$(pg_bindir)
	mkdir -p "$dir"
	[ "$(id -u)" = 0 ] && chown "${IT_PG_OSUSER:-postgres}" "$dir"
	as_pg_user "$bindir/pg_basebackup" -h "$IT_PGHOST" -U postgres \
	    -D "$dir/data" -R -X stream -c fast >"$dir/basebackup.log" 2>&1 || {
		cat "$dir/basebackup.log"; return 1; }
	as_pg_user "$bindir/pg_ctl" -D "$dir/data" -w -l "$dir/pg.log" \
	    -o "-c listen_addresses='' -k $dir -c port=$port -c hot_standby=on ${IT_PG_OPTS--c fsync=off} -c max_connections=300" \
	    start >/dev/null || { cat "$dir/pg.log"; return 1; }
	export IT_REPLICA_DB="host=$dir port=$port user=postgres dbname=${SYNCV3_DB##*dbname=}"
}
# replica_stack: it_setup on a cluster of the scenario's own, simhs, the
# accumulator and a streaming replica of that cluster in $T/replica (port
# 5433, stopped at exit, IT_REPLICA_DB), replaying.
replica_stack() {
	unset IT_PGHOST
	it_setup
	start_simhs
	start_accumulator
	it_on_exit() { it_pg_stop "$T/replica"; }
	it_pg_replica "$T/replica" 5433 || fail "no replica"
}
# it_sanitizer_logs: names of this scenario's logs holding a sanitizer report
it_sanitizer_logs() {
	grep -lE 'ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:' "$T"/*.log* 2>/dev/null |
	    xargs -r -n1 basename
}
# assert_error STATUS ERRCODE MESSAGE: the last v3 or sliding sync call
# ($T/last_status, $T/last_body) answered STATUS with that Matrix errcode.
assert_error() {
	assert_eq "$(last_status)" "$1" "$3: status"
	assert_jq "$(cat "$T/last_body")" .errcode "\"$2\"" "$3: errcode"
}

# Two pollers of one device each, bob (B1) on "poller", alice (A1) on
# "poller2", so one can lag behind the other (SIGSTOP); sets A B C and
# the tokens bob and alice. A later device of a user is never polled: its
# requests answer from what is stored once the api's initial wait (2 s
# here) ends.
start_two_pollers() {
	export SYNCV3_MAX_DEVICES=1 SYNCV3_TAKEOVER_MS=600000 SYNCV3_API_INITIAL_WAIT_MS=2000
	it_setup; start_simhs; start_accumulator; start_poller poller; start_api
	A=@alice:localhost B=@bob:localhost C=@carol:localhost
	bob=$(sim_login $B B1); v3 "$bob" "" '{}' 15000 >/dev/null
	start_poller poller2
	alice=$(sim_login $A A1); v3 "$alice" "" '{}' 15000 >/dev/null
	[ "$(psql_q "SELECT owner FROM syncv3_leases WHERE user_id='$B'")" = poller ] || fail "bob not on poller"
	[ "$(psql_q "SELECT owner FROM syncv3_leases WHERE user_id='$A'")" = poller2 ] || fail "alice not on poller2"
}

# typing_warm TOKEN ROOM: the first v3 request of a typing scenario reads
# Postgres, the second fills the api's typing table with the user's
# membership (api/ephemeral.c); prints the since to go on from.
typing_warm() {
	local out
	out=$(v3 "$1" "" "{\"typing\":{\"room_id\":\"$2\"}}" 0)
	assert_eq "$(last_status)" 200 "first request"
	out=$(v3 "$1" "$(printf '%s' "$out" | jq -r .next_batch)" '{}' 0)
	printf '%s' "$out" | jq -r .next_batch
}

# start_stack_acc_prom: start_stack with the accumulator's /metrics on
# $ACC_PROM; acc_metric NAME prints a sample's value (empty: absent).
start_stack_acc_prom() {
	it_setup
	start_simhs
	ACC_PROM=127.0.0.1:$(free_port)
	SYNCV3_PROM=$ACC_PROM start_accumulator
	start_poller poller
	start_api
	wait_for "curl -sf http://$ACC_PROM/health" 10 || fail "accumulator /health"
}
acc_metric() {
	curl -sS -f "http://$ACC_PROM/metrics" |
	    awk -v k="$1" '$1 == k && !f { print $2; f = 1 }'
}
