#!/usr/bin/env bash
# Golden test: each daemon's `-n` under deploy/env/example.env (plus a fixed
# poller id) must print exactly tests/data/config/<daemon>.ok, and a
# malformed value must be a startup error naming the variable.
# UPDATE_GOLDEN=1 rewrites the .ok files.
set -u
BIN=$1
ROOT=$(cd "$(dirname "$0")/.." && pwd)
rc=0
env_args=()
while IFS= read -r line; do
	case $line in '#'* | '') continue ;; esac
	env_args+=("$line")
done <"$ROOT/deploy/env/example.env"
env_args+=(SYNCV3_POLLER_ID=poller-1)
for d in accumulator poller api; do
	ok=$ROOT/tests/data/config/$d.ok
	out=$(env -i PATH="$PATH" "${env_args[@]}" "$BIN/syncv3-$d" -n 2>&1)
	if [ "${UPDATE_GOLDEN:-0}" = 1 ]; then
		printf '%s\n' "$out" >"$ok"
	elif ! diff -u "$ok" <(printf '%s\n' "$out"); then
		echo "FAIL: syncv3-$d -n differs from $ok"; rc=1
	fi
	grep -q 'replace-with' <<<"$out" && { echo "FAIL: $d printed the secret"; rc=1; }
	err=$(env -i PATH="$PATH" "${env_args[@]}" SYNCV3_LOG_LEVEL=loud \
	    "$BIN/syncv3-$d" -n 2>&1) && { echo "FAIL: $d accepted a bad log level"; rc=1; }
	grep -q SYNCV3_LOG_LEVEL <<<"$err" || { echo "FAIL: $d error does not name the variable: $err"; rc=1; }
done
[ $rc = 0 ] && echo "golden config: 3 daemons ok"
exit $rc
