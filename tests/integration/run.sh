#!/usr/bin/env bash
# Runs the integration scenarios (t_*.sh here, or those named as arguments)
# against one private Postgres cluster, each in its own database with its
# own daemons. Prints "N passed, N failed, N skipped" last; a scenario
# exiting 77 is skipped.
#
# IT_JOBS=N (default 1) runs up to N scenarios at once, each one's output
# kept apart and printed whole when it ends; a scenario whose file says
# "# it: serial" (its assertions depend on timing: takeovers, chaos, memory)
# runs after the others, alone. tests/run_all.sh sets 2: most scenarios
# spend their time waiting, and CI must stay under 30 minutes.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
trap - EXIT
it_pg_start "$T/pg" || exit 1
export IT_PGHOST IT_PGPORT
jobs_max=${IT_JOBS:-1}
case $jobs_max in '' | *[!0-9]* | 0) jobs_max=1 ;; esac
pass=0 failn=0 skipn=0 failed=()
shopt -s nullglob
if [ $# -gt 0 ]; then tests=("$@"); else tests=("$here"/t_*.sh); fi
declare -A t_pid=() t_start=()
mkdir -p "$T/out"

# report T RC: the scenario's output (kept apart when run beside others)
# and its line
report() {
	local t=$1 rc=$2 name
	name=$(basename "$t")
	[ -f "$T/out/$name" ] && cat "$T/out/$name"
	if [ "$rc" = 0 ]; then
		pass=$((pass + 1))
		echo "ok   $name ($(( $(date +%s) - t_start[$t] ))s)"
	elif [ "$rc" = 77 ]; then # the scenario's tools are missing
		skipn=$((skipn + 1))
		echo "skip $name"
	else
		failn=$((failn + 1)); failed+=("$name")
		echo "FAIL $name ($(( $(date +%s) - t_start[$t] ))s)"
	fi
}

# reap: waits for one running scenario and reports it
reap() {
	local t done_pid= rc
	wait -n -p done_pid "${t_pid[@]}"
	rc=$?
	for t in "${!t_pid[@]}"; do
		if [ "${t_pid[$t]}" = "$done_pid" ]; then
			unset "t_pid[$t]"
			report "$t" "$rc"
			return
		fi
	done
}

serial=()
for t in "${tests[@]}"; do
	case $t in */*) ;; *) t=$here/$t ;; esac
	if [ "$jobs_max" = 1 ]; then
		t_start[$t]=$(date +%s)
		bash "$t"
		report "$t" $?
		continue
	fi
	if grep -q '^# it: serial' "$t"; then
		serial+=("$t")
		continue
	fi
	while [ "${#t_pid[@]}" -ge "$jobs_max" ]; do reap; done
	t_start[$t]=$(date +%s)
	bash "$t" >"$T/out/$(basename "$t")" 2>&1 &
	t_pid[$t]=$!
done
while [ "${#t_pid[@]}" -gt 0 ]; do reap; done
for t in "${serial[@]}"; do
	t_start[$t]=$(date +%s)
	bash "$t"
	report "$t" $?
done
it_pg_stop "$T/pg"
rm -rf "$T"
[ $failn -gt 0 ] && echo "failed: ${failed[*]}"
echo "integration: $pass passed, $failn failed, $skipn skipped"
[ $failn = 0 ]
