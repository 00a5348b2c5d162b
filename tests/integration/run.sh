#!/usr/bin/env bash
# Runs the integration scenarios (t_*.sh here, or those named as arguments)
# one after another against one private Postgres cluster, each in its own
# database with its own daemons. Prints "N passed, N failed, N skipped"
# last; a scenario exiting 77 is skipped.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
trap - EXIT
it_pg_start "$T/pg" || exit 1
export IT_PGHOST IT_PGPORT
pass=0 failn=0 skipn=0 failed=()
shopt -s nullglob
if [ $# -gt 0 ]; then tests=("$@"); else tests=("$here"/t_*.sh); fi
for t in "${tests[@]}"; do
	case $t in */*) ;; *) t=$here/$t ;; esac
	start=$(date +%s)
	bash "$t"
	rc=$?
	if [ $rc = 0 ]; then
		pass=$((pass + 1))
		echo "ok   $(basename "$t") ($(( $(date +%s) - start ))s)"
	elif [ $rc = 77 ]; then # the scenario's tools are missing
		skipn=$((skipn + 1))
		echo "skip $(basename "$t")"
	else
		failn=$((failn + 1)); failed+=("$(basename "$t")")
		echo "FAIL $(basename "$t") ($(( $(date +%s) - start ))s)"
	fi
done
it_pg_stop "$T/pg"
rm -rf "$T"
[ $failn -gt 0 ] && echo "failed: ${failed[*]}"
echo "integration: $pass passed, $failn failed, $skipn skipped"
[ $failn = 0 ]
