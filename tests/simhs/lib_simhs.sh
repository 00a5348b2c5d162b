# lib_simhs.sh: shared by the simhs smoke tests. Sourcing it starts the
# binary ($1, default build/bin/syncv3-simhs) on a free loopback port and
# defines the helpers: check, val, admin, cs, status, fail, simhs_finish.
set -u

BIN=${1:-build/bin/syncv3-simhs}
T=$(mktemp -d)
# pyenv shims cost a second per call: resolve the real interpreter once.
PY=$(python3 -c 'import sys; print(sys.executable)')
PORT=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
H=http://127.0.0.1:$PORT
CS=$H/_matrix/client/v3
PID=
NFAIL=0

cleanup() {
	[ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
	[ -n "${TEST_KEEP:-}" ] || rm -rf "$T"
}
trap cleanup EXIT

fail() {
	echo "FAIL: $*" >&2
	NFAIL=$((NFAIL + 1))
}

# check DESC JSON PYEXPR: PYEXPR sees the parsed JSON as d.
check() {
	$PY - "$2" "$3" <<'EOF' || fail "$1: $3 :: ${2:0:400}"
import json, sys
d = json.loads(sys.argv[1])
sys.exit(0 if eval(sys.argv[2]) else 1)
EOF
}

# val JSON PYEXPR: print the value of PYEXPR.
val() {
	$PY -c 'import json,sys; d=json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$1" "$2"
}

admin() { curl -sS -X POST -d "$2" "$H/_simhs/$1"; }
# cs TOKEN PATH [curl args]: client-server GET, body on stdout
cs() { local tok=$1 p=$2; shift 2; curl -sS -H "Authorization: Bearer $tok" "$@" "$CS/$p"; }
# status METHOD URL [curl args]: HTTP status; body in $T/body
status() { local m=$1 u=$2; shift 2; curl -sS -o "$T/body" -w '%{http_code}' -X "$m" "$@" "$u"; }

"$BIN" -l "127.0.0.1:$PORT" -s localhost 2>"$T/log" &
PID=$!
for _ in $(seq 50); do grep -q "listening on" "$T/log" 2>/dev/null && break; sleep 0.1; done
grep -q "simhs: listening on 127.0.0.1:$PORT" "$T/log" || { cat "$T/log"; fail "did not start"; exit 1; }

# simhs_finish NAME: stop the binary (it must exit 0) and report.
simhs_finish() {
	kill -TERM "$PID"
	wait "$PID"
	local rc=$?
	PID=
	[ "$rc" = 0 ] || fail "exit status $rc"
	if [ "$NFAIL" -ne 0 ]; then
		echo "$1: $NFAIL failure(s); log:" >&2
		tail -20 "$T/log" >&2
		exit 1
	fi
	echo "$1: ok"
}
