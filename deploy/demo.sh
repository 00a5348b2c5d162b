#!/usr/bin/env bash
# Shows a running stack at work against the simulated homeserver's demo
# data (alice and bob in !demo:localhost). Every figure printed came from
# upstream through poller -> accumulator -> Postgres -> api.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
HOME_DIR=${SYNCV3_HOME:-$ROOT/.stack}
API=http://${SYNCV3_BINDADDR:-127.0.0.1:8008}
API=${API/0.0.0.0/127.0.0.1}
SIM=http://$(cat "$HOME_DIR/env/SIMHS_LISTEN")
ROOM='!demo:localhost'
TOKEN=syt_alice_demo

v3() { # SINCE BODY TIMEOUT_MS
	local url="$API/_matrix/client/v3/sync?timeout=$3"
	[ -n "$1" ] && url="$url&since=$(jq -rn --arg s "$1" '$s|@uri')"
	curl -sS -X POST -H "Authorization: Bearer $TOKEN" \
	    -H 'Content-Type: application/json' --data "$2" "$url"
}
admin() { curl -sS -f -X POST -H 'Content-Type: application/json' --data "$2" "$SIM/_simhs/$1" >/dev/null; }
ms() { date +%s%3N; }

echo "== 1. alice opens a v3 session: typing and members of $ROOM, to-device"
body="{\"typing\":{\"room_id\":\"$ROOM\"},\"room_member\":{\"room_id\":\"$ROOM\",\"limit\":10},\"to_device\":{}}"
r=$(v3 "" "$body" 0)
echo "$r" | jq .
since=$(echo "$r" | jq -r .next_batch)

echo "== 2. a long-poll (timeout 20 s) woken by alice starting to type upstream"
t0=$(ms)
( sleep 1; admin "rooms/$ROOM/typing" '{"user_ids":["@alice:localhost","@bob:localhost"]}' ) &
r=$(v3 "$since" '{}' 20000)
t1=$(ms)
wait
echo "$r" | jq .
echo "answered $((t1 - t0 - 1000)) ms after the typing change (timeout was 20000 ms)"
since=$(echo "$r" | jq -r .next_batch)

echo "== 3. bob sends alice a to-device message"
admin to_device '{"sender":"@bob:localhost","type":"m.demo","content":{"hello":"alice"},"user_id":"@alice:localhost","device_id":"ALICEDEV"}'
v3 "$since" '{}' 10000 | jq .

echo
echo "The stack keeps running: deploy/syncv3ctl status | down. Logs: $HOME_DIR/service/*/log/main/current"
