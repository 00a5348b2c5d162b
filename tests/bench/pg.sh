# tests/bench/pg.sh: the benchmarks' own Postgres, sourced after
# tests/integration/lib.sh. Unlike the integration tests' cluster
# (fsync=off, for speed), this one is durable as a deployment is: fsync
# and synchronous_commit at their defaults (on), with the settings of
# deploy/postgres/syncv3.conf unless BENCH_PG_STOCK=1 (stock settings, to
# measure what they change) and BENCH_PG_OPTS (more "-c name=value"
# options, to try a setting). lib.sh's it_setup uses it since IT_PGHOST is
# set; it is stopped on exit.

# bench_pg_start DIR: lib.sh's cluster, durable and with the settings.
bench_pg_start() {
	local conf=$IT_ROOT/deploy/postgres/apply-conf.sh
	[ "${BENCH_PG_STOCK:-0}" = 1 ] && conf=
	IT_PG_CONF=$conf IT_PG_OPTS=${BENCH_PG_OPTS:-} it_pg_start "$1" ||
	    return 1
	BENCH_PG_DIR=$1
}

# Stops it before lib.sh removes $T, after the script's own bench_on_exit
# if it has one.
it_on_exit() {
	declare -F bench_on_exit >/dev/null && bench_on_exit
	[ -n "${BENCH_PG_DIR:-}" ] && it_pg_stop "$BENCH_PG_DIR"
	BENCH_PG_DIR=
}

# bench_pg_settings: the settings that matter here, as one JSON object.
bench_pg_settings() {
	psql_q "SELECT json_object_agg(name, current_setting(name))
	    FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit',
	    'max_wal_size', 'min_wal_size', 'wal_compression', 'wal_buffers',
	    'checkpoint_timeout', 'checkpoint_completion_target',
	    'commit_delay', 'shared_buffers', 'full_page_writes')"
}

# bench_cpu_secs PID...: CPU seconds used so far by the PIDs and, for a
# postmaster, its children (the backends, the WAL writer, the
# checkpointer).
bench_cpu_secs() {
	local pids
	pids=$(for p in "$@"; do echo "$p"; pgrep -P "$p"; done | paste -sd,)
	ps -o pid= -p "$pids" | while read -r p; do
		cat "/proc/$p/stat" 2>/dev/null
	done | awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); s += $12 + $13 }
	    END { printf "%.2f\n", s / hz }'
}
