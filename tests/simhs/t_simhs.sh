#!/usr/bin/env bash
# t_simhs.sh: smoke test for syncv3-simhs. Starts the binary on a free
# loopback port, drives the admin API with curl and checks the client API
# answers (JSON checks in python3). Usage: t_simhs.sh [path/to/syncv3-simhs]
source "$(dirname "$0")/lib_simhs.sh"

# --- users, login, whoami, auth errors --------------------------------
check "create user" "$(admin users '{"localpart":"alice"}')" 'd["user_id"] == "@alice:localhost"'
check "idempotent user" "$(admin users '{"user_id":"@alice:localhost"}')" 'd["user_id"] == "@alice:localhost"'
R=$(admin login '{"user_id":"@alice:localhost","device_id":"ADEV"}')
check "login" "$R" 'd["device_id"] == "ADEV" and d["access_token"].startswith("syt_")'
ALICE=$(val "$R" 'd["access_token"]')
BOB=$(val "$(admin login '{"localpart":"bob","device_id":"BDEV"}')" 'd["access_token"]')
check "whoami" "$(cs "$ALICE" account/whoami)" 'd == {"user_id":"@alice:localhost","device_id":"ADEV","is_guest":False}'
check "whoami r0 + query token" "$(curl -sS "$H/_matrix/client/r0/account/whoami?access_token=$BOB")" 'd["user_id"] == "@bob:localhost"'
[ "$(status GET "$CS/account/whoami")" = 401 ] || fail "missing token status"
check "missing token" "$(cat "$T/body")" 'd["errcode"] == "M_MISSING_TOKEN"'
[ "$(status GET "$CS/account/whoami" -H 'Authorization: Bearer nope')" = 401 ] || fail "unknown token status"
check "unknown token" "$(cat "$T/body")" 'd["errcode"] == "M_UNKNOWN_TOKEN" and d["soft_logout"] is False'
[ "$(status GET "$CS/nope" -H "Authorization: Bearer $ALICE")" = 404 ] || fail "404"
check "unrecognized" "$(cat "$T/body")" 'd["errcode"] == "M_UNRECOGNIZED"'
[ "$(status POST "$CS/sync" -H "Authorization: Bearer $ALICE")" = 405 ] || fail "405"

# --- room, initial sync -------------------------------------------------
ROOM=$(val "$(admin rooms '{"creator":"@alice:localhost","name":"Test"}')" 'd["room_id"]')
admin "rooms/$ROOM/join" '{"user_id":"@bob:localhost"}' >/dev/null
for i in 1 2 3; do
	admin "rooms/$ROOM/send" "{\"sender\":\"@bob:localhost\",\"type\":\"m.room.message\",\"content\":{\"msgtype\":\"m.text\",\"body\":\"hi $i\"}}" >/dev/null
done
R=$(cs "$ALICE" sync)
check "initial sync next_batch" "$R" 'd["next_batch"].startswith("s") and len(d["next_batch"].split("_")) == 10'
check "initial sync room" "$R" '"'"$ROOM"'" in d["rooms"]["join"]'
check "initial sync timeline" "$R" 'd["rooms"]["join"]["'"$ROOM"'"]["timeline"]["events"][-1]["content"]["body"] == "hi 3"'
check "initial sync limited" "$R" 'd["rooms"]["join"]["'"$ROOM"'"]["timeline"]["limited"] is True and len(d["rooms"]["join"]["'"$ROOM"'"]["timeline"]["events"]) == 10'
check "initial sync state has create" "$R" '[e["type"] for e in d["rooms"]["join"]["'"$ROOM"'"]["state"]["events"]] == ["m.room.create"]'
# without lazy-loaded members Synapse sends an empty summary
check "summary" "$R" 'd["rooms"]["join"]["'"$ROOM"'"]["summary"] == {}'
check "unread" "$R" 'd["rooms"]["join"]["'"$ROOM"'"]["unread_notifications"]["notification_count"] == 3'
S=$(val "$R" 'd["next_batch"]')
[ "$(status GET "$CS/sync?since=bogus" -H "Authorization: Bearer $ALICE")" = 400 ] || fail "bad since"

# --- incremental ------------------------------------------------------
admin "rooms/$ROOM/send" '{"sender":"@alice:localhost","type":"m.room.message","content":{"msgtype":"m.text","body":"inc"}}' >/dev/null
R=$(cs "$ALICE" "sync?since=$S&timeout=0")
check "incremental" "$R" 'len(d["rooms"]["join"]["'"$ROOM"'"]["timeline"]["events"]) == 1 and d["rooms"]["join"]["'"$ROOM"'"]["state"]["events"] == []'
S=$(val "$R" 'd["next_batch"]')

# --- limited timeline with a state block -------------------------------
admin "rooms/$ROOM/send" '{"sender":"@alice:localhost","type":"m.room.topic","state_key":"","content":{"topic":"t1"}}' >/dev/null
for i in $(seq 12); do
	admin "rooms/$ROOM/send" "{\"sender\":\"@bob:localhost\",\"type\":\"m.room.message\",\"content\":{\"body\":\"m$i\"}}" >/dev/null
done
R=$(cs "$ALICE" "sync?since=$S&timeout=0&filter=%7B%22room%22%3A%7B%22timeline%22%3A%7B%22limit%22%3A5%7D%7D%7D")
check "limited" "$R" 'd["rooms"]["join"]["'"$ROOM"'"]["timeline"]["limited"] is True and len(d["rooms"]["join"]["'"$ROOM"'"]["timeline"]["events"]) == 5'
check "prev_batch" "$R" 'd["rooms"]["join"]["'"$ROOM"'"]["timeline"]["prev_batch"].startswith("t")'
check "state block" "$R" '[e["content"]["topic"] for e in d["rooms"]["join"]["'"$ROOM"'"]["state"]["events"]] == ["t1"]'
S=$(val "$R" 'd["next_batch"]')
admin "rooms/$ROOM/send" '{"sender":"@alice:localhost","type":"m.room.topic","state_key":"","content":{"topic":"t2"}}' >/dev/null
R=$(cs "$ALICE" "sync?since=$S&timeout=0")
check "replaces_state" "$R" 'd["rooms"]["join"]["'"$ROOM"'"]["timeline"]["events"][0]["unsigned"]["prev_content"] == {"topic":"t1"}'
S=$(val "$R" 'd["next_batch"]')

# --- long-poll woken by a send; and an empty timeout -------------------
START=$(date +%s%N)
cs "$ALICE" "sync?since=$S&timeout=10000" >"$T/lp" &
LP=$!
sleep 0.5
check "waiter parked" "$(curl -sS "$H/_simhs/stats")" 'd["waiters"] == 1'
admin "rooms/$ROOM/send" '{"sender":"@bob:localhost","type":"m.room.message","content":{"body":"wake"}}' >/dev/null
wait $LP
MS=$((($(date +%s%N) - START) / 1000000))
[ "$MS" -lt 5000 ] || fail "long-poll took ${MS}ms"
check "long-poll woken" "$(cat "$T/lp")" 'd["rooms"]["join"]["'"$ROOM"'"]["timeline"]["events"][-1]["content"]["body"] == "wake"'
S=$(val "$(cat "$T/lp")" 'd["next_batch"]')
R=$(cs "$ALICE" "sync?since=$S&timeout=300")
check "empty long-poll" "$R" '"rooms" not in d and d["next_batch"] == "'"$S"'"'

# --- typing ------------------------------------------------------------
admin "rooms/$ROOM/typing" '{"user_ids":["@bob:localhost"]}' >/dev/null
R=$(cs "$ALICE" "sync?since=$S&timeout=0")
check "typing" "$R" 'd["rooms"]["join"]["'"$ROOM"'"]["ephemeral"]["events"][0] == {"type":"m.typing","content":{"user_ids":["@bob:localhost"]}}'
S=$(val "$R" 'd["next_batch"]')

# --- to-device kept until synced past ----------------------------------
admin to_device '{"messages":[{"sender":"@bob:localhost","type":"m.room_key","content":{"n":1},"user_id":"@alice:localhost","device_id":"ADEV"},{"sender":"@bob:localhost","type":"m.room_key","content":{"n":2},"user_id":"@alice:localhost","device_id":"ADEV"}]}' >/dev/null
PEND="$H/_simhs/to_device_pending?user_id=%40alice%3Alocalhost&device_id=ADEV"
R=$(cs "$ALICE" "sync?since=$S&timeout=0")
check "to-device delivered" "$R" '[e["content"]["n"] for e in d["to_device"]["events"]] == [1, 2]'
check "still pending" "$(curl -sS "$PEND")" 'd["count"] == 2'
R2=$(cs "$ALICE" "sync?since=$S&timeout=0")
check "replay redelivers" "$R2" 'len(d["to_device"]["events"]) == 2'
S=$(val "$R" 'd["next_batch"]')
R=$(cs "$ALICE" "sync?since=$S&timeout=0")
check "deleted after since" "$(curl -sS "$PEND")" 'd["count"] == 0'
check "no redelivery" "$R" '"to_device" not in d'
MSGS=$($PY -c 'import json; print(json.dumps({"messages":[{"sender":"@bob:localhost","type":"m.x","content":{"n":i},"user_id":"@alice:localhost","device_id":"ADEV"} for i in range(150)]}))')
admin to_device "$MSGS" >/dev/null
R=$(cs "$ALICE" "sync?since=$S&timeout=0")
check "100 per response" "$R" 'len(d["to_device"]["events"]) == 100'
S=$(val "$R" 'd["next_batch"]')
R=$(cs "$ALICE" "sync?since=$S&timeout=10000")
check "rest returned at once" "$R" '[e["content"]["n"] for e in d["to_device"]["events"]] == list(range(100, 150))'
S=$(val "$R" 'd["next_batch"]')

# --- injected failures -------------------------------------------------
admin fail '{"path":"sync","count":1,"mode":"status","status":429,"retry_after_ms":1500}' >/dev/null
[ "$(status GET "$CS/sync?since=$S&timeout=0" -H "Authorization: Bearer $ALICE" -D "$T/hdr")" = 429 ] || fail "429"
check "429 body" "$(cat "$T/body")" 'd["errcode"] == "M_LIMIT_EXCEEDED" and d["retry_after_ms"] == 1500'
grep -qi '^Retry-After: 2' "$T/hdr" || fail "Retry-After header"
[ "$(status GET "$CS/sync?since=$S&timeout=0" -H "Authorization: Bearer $ALICE")" = 200 ] || fail "rule used up"
admin fail '{"path":"sync","mode":"malformed"}' >/dev/null
[ "$(status GET "$CS/sync?since=$S&timeout=0" -H "Authorization: Bearer $ALICE")" = 200 ] || fail "malformed status"
$PY -c 'import json,sys; json.load(open(sys.argv[1]))' "$T/body" 2>/dev/null && fail "malformed body parsed"
admin fail '{"path":"*","mode":"truncated","access_token":"'"$ALICE"'"}' >/dev/null
R=$(cs "$ALICE" "sync?since=$S&timeout=0")
$PY -c 'import json,sys; json.loads(sys.argv[1])' "$R" 2>/dev/null && fail "truncated body parsed"
admin fail '{"path":"whoami","mode":"drop"}' >/dev/null
curl -sS "$CS/account/whoami" -H "Authorization: Bearer $ALICE" >/dev/null 2>&1 && fail "drop answered"
admin fail '{"path":"sync","mode":"slow","delay_ms":700}' >/dev/null
START=$(date +%s%N)
cs "$ALICE" "sync?since=$S&timeout=0" >/dev/null
MS=$((($(date +%s%N) - START) / 1000000))
[ "$MS" -ge 650 ] || fail "slow took only ${MS}ms"
admin fail '{"mode":"status","status":500,"count":5}' >/dev/null
check "fail clear" "$(admin fail/clear '{}')" 'd == {}'
[ "$(status GET "$CS/account/whoami" -H "Authorization: Bearer $ALICE")" = 200 ] || fail "after clear"

# --- leave, kick, invite -----------------------------------------------
SB=$(val "$(cs "$BOB" sync)" 'd["next_batch"]')
admin "rooms/$ROOM/leave" '{"user_id":"@bob:localhost"}' >/dev/null
admin "rooms/$ROOM/send" '{"sender":"@alice:localhost","type":"m.room.message","content":{"body":"after bob left"}}' >/dev/null
R=$(cs "$BOB" "sync?since=$SB&timeout=0")
check "rooms.leave" "$R" 'd["rooms"]["leave"]["'"$ROOM"'"]["timeline"]["events"][-1]["content"]["membership"] == "leave"'
check "no events after leave" "$R" 'all(e.get("content", {}).get("body") != "after bob left" for e in d["rooms"]["leave"]["'"$ROOM"'"]["timeline"]["events"])'
check "left room not joined" "$R" '"join" not in d["rooms"]'
admin users '{"localpart":"carol"}' >/dev/null
CAROL=$(val "$(admin login '{"user_id":"@carol:localhost"}')" 'd["access_token"]')
admin "rooms/$ROOM/invite" '{"sender":"@alice:localhost","user_id":"@carol:localhost"}' >/dev/null
R=$(cs "$CAROL" sync)
check "invite" "$R" 'd["rooms"]["invite"]["'"$ROOM"'"]["invite_state"]["events"][-1]["content"]["membership"] == "invite"'
SC=$(val "$R" 'd["next_batch"]')
admin "rooms/$ROOM/join" '{"user_id":"@carol:localhost"}' >/dev/null
admin "rooms/$ROOM/kick" '{"sender":"@alice:localhost","user_id":"@carol:localhost","reason":"bye"}' >/dev/null
R=$(cs "$CAROL" "sync?since=$SC&timeout=0")
check "kick in leave" "$R" 'd["rooms"]["leave"]["'"$ROOM"'"]["timeline"]["events"][-1]["sender"] == "@alice:localhost"'

# --- revoke ------------------------------------------------------------
admin revoke "{\"access_token\":\"$CAROL\"}" >/dev/null
[ "$(status GET "$CS/account/whoami" -H "Authorization: Bearer $CAROL")" = 401 ] || fail "revoked status"
check "revoked" "$(cat "$T/body")" 'd["errcode"] == "M_UNKNOWN_TOKEN"'

# --- stats: concurrency per device --------------------------------------
SB=$(val "$(cs "$BOB" sync)" 'd["next_batch"]')
cs "$BOB" "sync?since=$SB&timeout=1000" >/dev/null &
P1=$!
cs "$BOB" "sync?since=$SB&timeout=1000" >/dev/null &
P2=$!
sleep 0.4
check "inflight now" "$(curl -sS "$H/_simhs/stats")" 'd["sync_inflight"]["@bob:localhost|BDEV"] == 2'
wait $P1 $P2
R=$(curl -sS "$H/_simhs/stats")
check "inflight max" "$R" 'd["sync_inflight_max"]["@bob:localhost|BDEV"] == 2 and d["sync_inflight_max"]["@alice:localhost|ADEV"] == 1'
check "inflight back to 0" "$R" 'd["sync_inflight"]["@bob:localhost|BDEV"] == 0 and d["waiters"] == 0'
# a client giving up while parked frees the waiter
curl -sS -m 0.5 -H "Authorization: Bearer $BOB" "$CS/sync?since=$SB&timeout=20000" >/dev/null 2>&1
sleep 0.3
check "closed waiter freed" "$(curl -sS "$H/_simhs/stats")" 'd["waiters"] == 0 and d["sync_inflight"]["@bob:localhost|BDEV"] == 0'

# --- gzip, scenario, events, bad input ---------------------------------
curl -sS -o /dev/null -D "$T/hdr" -H 'Accept-Encoding: gzip' -H "Authorization: Bearer $ALICE" "$CS/sync"
grep -qi '^Content-Encoding: gzip' "$T/hdr" || fail "gzip"
R=$(admin scenario '{"users":2,"rooms_per_user":3,"members_per_room":3,"messages_per_room":4,"prefix":"t"}')
check "scenario" "$R" 'len(d["users"]) == 2 and len(d["rooms"]) == 6'
TK=$(val "$R" 'd["users"][0]["access_token"]')
check "scenario sync" "$(cs "$TK" sync)" 'len(d["rooms"]["join"]) == 3'
# a large gzip answer is streamed in chunks: the same JSON as unzipped
R=$(admin scenario '{"users":1,"rooms_per_user":600,"members_per_room":3,"messages_per_room":2,"prefix":"gz"}')
TK=$(val "$R" 'd["users"][0]["access_token"]')
cs "$TK" sync -o "$T/plain"
cs "$TK" sync --compressed -D "$T/hdr" -o "$T/gz"
grep -qi '^Content-Encoding: gzip' "$T/hdr" && grep -qi '^Transfer-Encoding: chunked' "$T/hdr" ||
	fail "large gzip: not streamed"
$PY - "$T/plain" "$T/gz" <<'EOF2' || fail "large gzip: bodies differ"
import json, sys
def noage(x):
    if isinstance(x, dict):
        return {k: noage(v) for k, v in x.items() if k != "age"}
    return [noage(v) for v in x] if isinstance(x, list) else x
a, b = (json.load(open(f)) for f in sys.argv[1:])
sys.exit(0 if len(open(sys.argv[1]).read()) > 1100000 and len(a["rooms"]["join"]) == 600 and noage(a) == noage(b) else 1)
EOF2
check "events" "$(curl -sS "$H/_simhs/rooms/$ROOM/events")" 'd["events"][0]["type"] == "m.room.create" and "pos" in d["events"][0]'
[ "$(status POST "$H/_simhs/rooms" -d '{nope')" = 400 ] || fail "bad json"
[ "$(status POST "$H/_simhs/rooms/$ROOM/send" -d '{"sender":5}')" = 400 ] || fail "bad send"
[ "$(status POST "$H/_simhs/rooms/$ROOM/send" -d '{"sender":"@carol:localhost","type":"m.room.message","content":{}}')" = 403 ] || fail "send not joined"
[ "$(status POST "$H/_simhs/fail" -d '{"mode":"weird"}')" = 400 ] || fail "bad fail rule"
[ "$(status POST "$H/_simhs/login" -d '[]')" = 400 ] || fail "array body"
[ "$(status GET "$CS/sync?timeout=abc" -H "Authorization: Bearer $ALICE")" = 400 ] || fail "bad timeout"
[ "$(status GET "$H/%00x")" = 400 ] || fail "nul in path"

# --- failure modes stall and unchanged, the /sync query log ------------
admin fail '{"path":"sync","access_token":"'"$BOB"'","mode":"unchanged","count":2}' >/dev/null
R=$(cs "$BOB" "sync?since=s1_0_1_1_1_1_0_1_0_1&timeout=5000")
check "unchanged: next_batch is the since" "$R" 'd["next_batch"] == "s1_0_1_1_1_1_0_1_0_1" and "rooms" not in d'
check "unchanged: no since" "$(cs "$BOB" "sync?timeout=5000")" 'd["next_batch"].startswith("s") and "rooms" not in d'
admin fail '{"path":"sync","access_token":"'"$BOB"'","mode":"stall","delay_ms":1500}' >/dev/null
S0=$(date +%s%N)
curl -sS -o "$T/stall" -H "Authorization: Bearer $BOB" "$CS/sync" 2>/dev/null && fail "stall: body completed"
MS=$(( ($(date +%s%N) - S0) / 1000000 ))
[ "$MS" -ge 1400 ] || fail "stall: dropped after ${MS}ms"
grep -q '"next_batch"' "$T/stall" || fail "stall: no half body"
check "sync_log" "$(curl -sS "$H/_simhs/sync_log?access_token=$BOB")" '[r["query"] for r in d["requests"]][-3:] == ["since=s1_0_1_1_1_1_0_1_0_1&timeout=5000", "timeout=5000", ""] and d["total"] >= 3'

simhs_finish t_simhs
