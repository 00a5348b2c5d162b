#!/usr/bin/env bash
# t_simhs_sync.sh: what MSC4186 sliding sync will consume from v2, shaped
# as Synapse shapes it: account data (admin and client API), spaces and
# encryption state, invites with invite_state, receipts (private ones
# too), device list changes and key counts, /messages paging from a
# prev_batch, and lazy-loading filters. Usage: t_simhs_sync.sh [binary]
source "$(dirname "$0")/lib_simhs.sh"

# jroom JSON ROOM: the rooms.join entry of ROOM, as JSON ({} if absent)
jroom() { $PY -c 'import json,sys; print(json.dumps(json.loads(sys.argv[1]).get("rooms",{}).get("join",{}).get(sys.argv[2],{})))' "$1" "$2"; }
send() { admin "rooms/$1/send" "{\"sender\":\"$2\",\"type\":\"m.room.message\",\"content\":{\"msgtype\":\"m.text\",\"body\":\"$3\"}}"; }
eid() { val "$1" 'd["event_id"]'; }
urlq() { $PY -c 'import sys,urllib.parse; print(urllib.parse.quote(sys.argv[1]))' "$1"; }
nb() { val "$1" 'd["next_batch"]'; }

A1=$(val "$(admin login '{"user_id":"@alice:localhost","device_id":"A1"}')" 'd["access_token"]')
A2=$(val "$(admin login '{"user_id":"@alice:localhost","device_id":"A2"}')" 'd["access_token"]')
BOB=$(val "$(admin login '{"user_id":"@bob:localhost","device_id":"B1"}')" 'd["access_token"]')
ROOM=$(val "$(admin rooms '{"creator":"@alice:localhost","name":"Main"}')" 'd["room_id"]')
admin "rooms/$ROOM/join" '{"user_id":"@bob:localhost"}' >/dev/null
E1=$(eid "$(send "$ROOM" @bob:localhost one)")
S1=$(nb "$(cs "$A1" sync)")
S2=$(nb "$(cs "$A2" sync)")

# --- 1. account data ---------------------------------------------------
admin account_data '{"user_id":"@alice:localhost","type":"m.direct","content":{"@bob:localhost":["'"$ROOM"'"]}}' >/dev/null
R=$(cs "$A1" "sync?since=$S1&timeout=0")
check "admin m.direct, device 1" "$R" '[e for e in d["account_data"]["events"] if e["type"] == "m.direct"][0]["content"] == {"@bob:localhost": ["'"$ROOM"'"]}'
check "admin m.direct, device 2" "$(cs "$A2" "sync?since=$S2&timeout=0")" '"m.direct" in [e["type"] for e in d["account_data"]["events"]]'
S1=$(nb "$R")
AD=$CS/user/%40alice%3Alocalhost
[ "$(status PUT "$AD/account_data/org.example.x" -H "Authorization: Bearer $A2" -d '{"k":1}')" = 200 ] || fail "PUT global account data"
check "PUT reply" "$(cat "$T/body")" 'd == {}'
check "GET global" "$(cs "$A1" "user/%40alice%3Alocalhost/account_data/org.example.x")" 'd == {"k": 1}'
[ "$(status PUT "$AD/rooms/$ROOM/account_data/m.tag" -H "Authorization: Bearer $A2" -d '{"tags":{"m.favourite":{"order":0.5}}}')" = 200 ] || fail "PUT m.tag"
R=$(cs "$A1" "sync?since=$S1&timeout=0")
check "client global in sync" "$R" '[e["content"] for e in d["account_data"]["events"] if e["type"] == "org.example.x"] == [{"k": 1}]'
check "m.tag in the room" "$R" 'd["rooms"]["join"]["'"$ROOM"'"]["account_data"]["events"] == [{"type": "m.tag", "content": {"tags": {"m.favourite": {"order": 0.5}}}}]'
check "m.tag not global" "$R" '"m.tag" not in [e["type"] for e in d["account_data"]["events"]]'
check "tag alone: empty timeline" "$R" 'd["rooms"]["join"]["'"$ROOM"'"]["timeline"]["events"] == []'
S1=$(nb "$R")
check "GET room account data" "$(cs "$A1" "user/%40alice%3Alocalhost/rooms/$ROOM/account_data/m.tag")" 'd["tags"]["m.favourite"]["order"] == 0.5'
[ "$(status PUT "$CS/user/%40bob%3Alocalhost/account_data/x" -H "Authorization: Bearer $A1" -d '{}')" = 403 ] || fail "PUT for another user"
check "other user errcode" "$(cat "$T/body")" 'd["errcode"] == "M_FORBIDDEN"'
[ "$(status PUT "$AD/account_data/x" -H "Authorization: Bearer $A1" -d '[1]')" = 400 ] || fail "array body"
check "not json" "$(cat "$T/body")" 'd["errcode"] == "M_NOT_JSON"'
[ "$(status PUT "$AD/account_data/m.push_rules" -H "Authorization: Bearer $A1" -d '{}')" = 400 ] || fail "m.push_rules"
check "m.push_rules errcode" "$(cat "$T/body")" 'd["errcode"] == "M_BAD_JSON"'
[ "$(status PUT "$AD/rooms/$ROOM/account_data/m.fully_read" -H "Authorization: Bearer $A1" -d '{}')" = 405 ] || fail "m.fully_read via account data"
[ "$(status GET "$AD/account_data/nope" -H "Authorization: Bearer $A1")" = 404 ] || fail "GET missing"
check "missing errcode" "$(cat "$T/body")" 'd["errcode"] == "M_NOT_FOUND"'
[ "$(status PUT "$AD/account_data/x" -d '{}')" = 401 ] || fail "PUT without token"
[ "$(status POST "$AD/account_data/x" -H "Authorization: Bearer $A1" -d '{}')" = 405 ] || fail "POST account data"

# --- 2. spaces and encryption ------------------------------------------
[ "$(status POST "$H/_simhs/rooms" -d '{"creator":"@alice:localhost","room_type":5}')" = 400 ] || fail "bad room_type"
SPACE=$(val "$(admin rooms '{"creator":"@alice:localhost","name":"Space","room_type":"m.space"}')" 'd["room_id"]')
ENC=$(val "$(admin rooms '{"creator":"@alice:localhost","name":"Secret","topic":"hush","encrypted":true}')" 'd["room_id"]')
admin "rooms/$SPACE/send" '{"sender":"@alice:localhost","type":"m.space.child","state_key":"'"$ENC"'","content":{"via":["localhost"]}}' >/dev/null
R=$(cs "$A1" "sync?since=$S1&timeout=0")
check "space create type" "$R" '[e for e in d["rooms"]["join"]["'"$SPACE"'"]["state"]["events"] + d["rooms"]["join"]["'"$SPACE"'"]["timeline"]["events"] if e["type"] == "m.room.create"][0]["content"]["type"] == "m.space"'
check "space child" "$R" '[(e["state_key"], e["content"]) for e in d["rooms"]["join"]["'"$SPACE"'"]["timeline"]["events"] if e["type"] == "m.space.child"] == [("'"$ENC"'", {"via": ["localhost"]})]'
check "encryption state" "$R" '[e["content"] for e in d["rooms"]["join"]["'"$ENC"'"]["timeline"]["events"] if e["type"] == "m.room.encryption"] == [{"algorithm": "m.megolm.v1.aes-sha2"}]'
check "plain room has no type" "$(curl -sS "$H/_simhs/rooms/$ROOM/state")" '"type" not in [e for e in d["events"] if e["type"] == "m.room.create"][0]["content"]'
S1=$(nb "$R")

# --- 3. invites ---------------------------------------------------------
CAROL=$(val "$(admin login '{"user_id":"@carol:localhost","device_id":"C1"}')" 'd["access_token"]')
SC=$(nb "$(cs "$CAROL" sync)")
send "$ENC" @alice:localhost "before invite" >/dev/null
admin "rooms/$ENC/invite" '{"sender":"@alice:localhost","user_id":"@carol:localhost"}' >/dev/null
R=$(cs "$CAROL" "sync?since=$SC&timeout=0")
INV="d[\"rooms\"][\"invite\"][\"$ENC\"]"
check "invite only keys" "$R" 'list('"$INV"'.keys()) == ["invite_state"] and "join" not in d["rooms"]'
check "invite_state types" "$R" 'sorted((e["type"], e["state_key"]) for e in '"$INV"'["invite_state"]["events"][:-1]) == sorted([("m.room.create",""),("m.room.join_rules",""),("m.room.encryption",""),("m.room.name",""),("m.room.topic",""),("m.room.member","@alice:localhost")])'
check "stripped: four keys" "$R" 'all(sorted(e.keys()) == ["content","sender","state_key","type"] for e in '"$INV"'["invite_state"]["events"][:-1])'
check "invite event in full" "$R" '(lambda e: e["content"]["membership"] == "invite" and e["state_key"] == "@carol:localhost" and e["event_id"].startswith("$"))('"$INV"'["invite_state"]["events"][-1])'
check "no timeline message" "$R" '"before invite" not in json.dumps('"$INV"')'
SC=$(nb "$R")
admin "rooms/$ENC/join" '{"user_id":"@carol:localhost"}' >/dev/null
R=$(cs "$CAROL" "sync?since=$SC&timeout=0")
check "accepted: joined" "$R" '"'"$ENC"'" in d["rooms"]["join"] and "invite" not in d["rooms"]'
check "accepted: full state" "$R" '"m.room.create" in [e["type"] for e in d["rooms"]["join"]["'"$ENC"'"]["state"]["events"] + d["rooms"]["join"]["'"$ENC"'"]["timeline"]["events"]]'
SC=$(nb "$R")
admin "rooms/$ROOM/invite" '{"sender":"@alice:localhost","user_id":"@carol:localhost"}' >/dev/null
SC=$(nb "$(cs "$CAROL" "sync?since=$SC&timeout=0")")
admin "rooms/$ROOM/leave" '{"user_id":"@carol:localhost"}' >/dev/null
R=$(cs "$CAROL" "sync?since=$SC&timeout=0")
check "rejected: leave with the leave only" "$R" '[e["content"]["membership"] for e in d["rooms"]["leave"]["'"$ROOM"'"]["timeline"]["events"]] == ["leave"]'
SC=$(nb "$R")
# Synapse loads a rejected invite's timeline from since (shared history)
admin "rooms/$SPACE/invite" '{"sender":"@alice:localhost","user_id":"@carol:localhost"}' >/dev/null
SC=$(nb "$(cs "$CAROL" "sync?since=$SC&timeout=0")")
send "$SPACE" @alice:localhost "while invited" >/dev/null
admin "rooms/$SPACE/leave" '{"user_id":"@carol:localhost"}' >/dev/null
R=$(cs "$CAROL" "sync?since=$SC&timeout=0")
check "rejected: events since, then the leave" "$R" '[e["content"].get("body", e["content"].get("membership")) for e in d["rooms"]["leave"]["'"$SPACE"'"]["timeline"]["events"]] == ["while invited", "leave"]'
SC=$(nb "$R")

# --- 4. receipts -------------------------------------------------------
SB=$(nb "$(cs "$BOB" sync)")
S1=$(nb "$(cs "$A1" "sync?since=$S1&timeout=0")")
RC=$CS/rooms/$ROOM/receipt
[ "$(status POST "$RC/m.read/$E1" -H "Authorization: Bearer $A1" -d '{}')" = 200 ] || fail "receipt"
R=$(cs "$BOB" "sync?since=$SB&timeout=0")
check "m.receipt shape" "$R" '(lambda ev: ev["type"] == "m.receipt" and list(ev["content"]["'"$E1"'"]["m.read"].keys()) == ["@alice:localhost"] and isinstance(ev["content"]["'"$E1"'"]["m.read"]["@alice:localhost"]["ts"], int))([e for e in d["rooms"]["join"]["'"$ROOM"'"]["ephemeral"]["events"] if e["type"] == "m.receipt"][0])'
SB=$(nb "$R")
E2=$(eid "$(send "$ROOM" @bob:localhost two)")
SB=$(nb "$(cs "$BOB" "sync?since=$SB&timeout=0")")
S1=$(nb "$(cs "$A1" "sync?since=$S1&timeout=0")")
[ "$(status POST "$RC/m.read.private/$E2" -H "Authorization: Bearer $A1" -d '{}')" = 200 ] || fail "private receipt"
R=$(cs "$A1" "sync?since=$S1&timeout=0")
check "private: owner sees it" "$R" '[e for e in d["rooms"]["join"]["'"$ROOM"'"]["ephemeral"]["events"] if e["type"] == "m.receipt"][0]["content"]["'"$E2"'"]["m.read.private"]["@alice:localhost"]["ts"] > 0'
check "private receipt clears unread" "$R" 'd["rooms"]["join"]["'"$ROOM"'"]["unread_notifications"]["notification_count"] == 0'
check "private: others do not" "$(cs "$BOB" "sync?since=$SB&timeout=0")" '"'"$ROOM"'" not in d.get("rooms", {}).get("join", {})'
S1=$(nb "$R")
[ "$(status POST "$RC/m.read/$E2" -H "Authorization: Bearer $A1" -d '{}')" = 200 ] || fail "m.read moves on"
S1=$(nb "$(cs "$A1" "sync?since=$S1&timeout=0")")
[ "$(status POST "$RC/m.read/$E1" -H "Authorization: Bearer $A1" -d '{}')" = 200 ] || fail "older receipt accepted"
check "receipts never go back" "$(cs "$A1" "sync?since=$S1&timeout=0")" '"rooms" not in d'
[ "$(status POST "$RC/m.bogus/$E1" -H "Authorization: Bearer $A1" -d '{}')" = 400 ] || fail "bad receipt type"
[ "$(status POST "$RC/m.read/$E1" -H "Authorization: Bearer $A1")" = 400 ] || fail "receipt without body"
check "receipt without body errcode" "$(cat "$T/body")" 'd["errcode"] == "M_NOT_JSON"'
[ "$(status POST "$RC/m.read/\$nope" -H "Authorization: Bearer $A1" -d '{}')" = 404 ] || fail "receipt unknown event"
[ "$(status POST "$RC/m.read/$E1" -H "Authorization: Bearer $CAROL" -d '{}')" = 403 ] || fail "receipt not joined"
[ "$(status POST "$RC/m.read/$E1" -H "Authorization: Bearer $A1" -d '{"thread_id":""}')" = 400 ] || fail "empty thread_id"
[ "$(status POST "$RC/m.fully_read/$E2" -H "Authorization: Bearer $A1" -d '{}')" = 200 ] || fail "m.fully_read"
check "m.fully_read is room account data" "$(cs "$A1" "sync?since=$S1&timeout=0")" 'd["rooms"]["join"]["'"$ROOM"'"]["account_data"]["events"] == [{"type": "m.fully_read", "content": {"event_id": "'"$E2"'"}}]'
S1=$(nb "$(cs "$A1" "sync?since=$S1&timeout=0")")
E3=$(eid "$(send "$ROOM" @bob:localhost three)")
S1=$(nb "$(cs "$A1" "sync?since=$S1&timeout=0")")
[ "$(status POST "$CS/rooms/$ROOM/read_markers" -H "Authorization: Bearer $A1" -d '{"m.fully_read":"'"$E3"'","m.read":"'"$E3"'","x.unknown":1}')" = 200 ] || fail "read_markers"
R=$(cs "$A1" "sync?since=$S1&timeout=0")
check "read_markers: fully_read" "$R" 'd["rooms"]["join"]["'"$ROOM"'"]["account_data"]["events"] == [{"type": "m.fully_read", "content": {"event_id": "'"$E3"'"}}]'
check "read_markers: m.read" "$R" '"@alice:localhost" in [e for e in d["rooms"]["join"]["'"$ROOM"'"]["ephemeral"]["events"] if e["type"] == "m.receipt"][0]["content"]["'"$E3"'"]["m.read"]'
[ "$(status POST "$CS/rooms/$ROOM/read_markers" -H "Authorization: Bearer $A1" -d '{"m.read":"$nope"}')" = 404 ] || fail "read_markers unknown event"
S1=$(nb "$R")
admin "rooms/$ROOM/receipt" '{"user_id":"@bob:localhost","event_id":"'"$E2"'","receipt_type":"m.read.private"}' >/dev/null
check "admin private receipt hidden" "$(cs "$A1" "sync?since=$S1&timeout=0")" '"rooms" not in d'
[ "$(status POST "$H/_simhs/rooms/$ROOM/receipt" -d '{"user_id":"@bob:localhost","event_id":"'"$E2"'","receipt_type":"x"}')" = 400 ] || fail "admin bad receipt_type"

# --- 5. device lists and keys -------------------------------------------
S1=$(nb "$(cs "$A1" "sync?since=$S1&timeout=0")")
admin login '{"user_id":"@bob:localhost","device_id":"B2"}' >/dev/null
admin login '{"user_id":"@erin:localhost","device_id":"E1"}' >/dev/null
R=$(cs "$A1" "sync?since=$S1&timeout=0")
check "new device of a room mate" "$R" 'd["device_lists"] == {"changed": ["@bob:localhost"]}'
S1=$(nb "$R")
admin device_change '{"user_id":"@erin:localhost"}' >/dev/null
check "stranger's change unseen" "$(cs "$A1" "sync?since=$S1&timeout=0")" '"device_lists" not in d'
admin device_change '{"user_id":"@alice:localhost"}' >/dev/null
check "own change seen" "$(cs "$A1" "sync?since=$S1&timeout=0")" 'd["device_lists"]["changed"] == ["@alice:localhost"]'
S1=$(nb "$(cs "$A1" "sync?since=$S1&timeout=0")")
admin "rooms/$ROOM/join" '{"user_id":"@erin:localhost"}' >/dev/null
check "a joiner is changed" "$(cs "$A1" "sync?since=$S1&timeout=0")" '"@erin:localhost" in d["device_lists"]["changed"]'
S1=$(nb "$(cs "$A1" "sync?since=$S1&timeout=0")")
admin "rooms/$ROOM/leave" '{"user_id":"@erin:localhost"}' >/dev/null
check "no shared room left: left" "$(cs "$A1" "sync?since=$S1&timeout=0")" 'd["device_lists"] == {"left": ["@erin:localhost"]}'
S1=$(nb "$(cs "$A1" "sync?since=$S1&timeout=0")")
admin "rooms/$ENC/join" '{"user_id":"@bob:localhost"}' >/dev/null
admin "rooms/$ENC/leave" '{"user_id":"@bob:localhost"}' >/dev/null
check "still sharing a room: not left" "$(cs "$A1" "sync?since=$S1&timeout=0")" '"@bob:localhost" not in d.get("device_lists", {}).get("left", [])'
S1=$(nb "$(cs "$A1" "sync?since=$S1&timeout=0")")
KR=$(val "$(admin rooms '{"creator":"@kim:localhost"}')" 'd["room_id"]')
admin "rooms/$KR/join" '{"user_id":"@alice:localhost"}' >/dev/null
check "a room we join: its members changed" "$(cs "$A1" "sync?since=$S1&timeout=0")" '"@kim:localhost" in d["device_lists"]["changed"]'
S1=$(nb "$(cs "$A1" "sync?since=$S1&timeout=0")")
admin "rooms/$KR/leave" '{"user_id":"@alice:localhost"}' >/dev/null
check "a room we left: its members left" "$(cs "$A1" "sync?since=$S1&timeout=0")" 'd["device_lists"]["left"] == ["@kim:localhost"]'
check "device_lists not on initial" "$(cs "$A1" sync)" '"device_lists" not in d'
check "default key counts" "$(cs "$A1" "sync?since=$S1&timeout=0")" 'd["device_one_time_keys_count"] == {"signed_curve25519": 0} and d["device_unused_fallback_key_types"] == []'
R=$(curl -sS -H "Authorization: Bearer $A1" -d '{"one_time_keys":{"signed_curve25519:AAAAAQ":{"key":"a"},"signed_curve25519:AAAAAg":{"key":"b"},"signed_curve25519:AAAAAw":{"key":"c"}},"fallback_keys":{"signed_curve25519:AAAABA":{"key":"f","fallback":true}}}' "$CS/keys/upload")
check "keys/upload counts" "$R" 'd == {"one_time_key_counts": {"signed_curve25519": 3}}'
R=$(cs "$A1" "sync?since=$S1&timeout=0")
check "sync otk count" "$R" 'd["device_one_time_keys_count"]["signed_curve25519"] == 3'
check "sync fallback types" "$R" 'd["device_unused_fallback_key_types"] == ["signed_curve25519"] and d["org.matrix.msc2732.device_unused_fallback_key_types"] == ["signed_curve25519"]'
check "other device unaffected" "$(cs "$A2" sync)" 'd["device_one_time_keys_count"] == {"signed_curve25519": 0}'
S1=$(nb "$R")
curl -sS -o /dev/null -H "Authorization: Bearer $A1" -d '{"device_keys":{"user_id":"@alice:localhost","device_id":"A1","algorithms":[],"keys":{}}}' "$CS/keys/upload"
check "device keys upload: changed" "$(cs "$BOB" "sync?since=$SB&timeout=0")" '"@alice:localhost" in d["device_lists"]["changed"]'
SB=$(nb "$(cs "$BOB" "sync?since=$SB&timeout=0")")
curl -sS -o /dev/null -H "Authorization: Bearer $A1" -d '{"device_keys":{"user_id":"@alice:localhost","device_id":"A1","algorithms":[],"keys":{}}}' "$CS/keys/upload"
check "same device keys again: no change" "$(cs "$BOB" "sync?since=$SB&timeout=0")" '"device_lists" not in d'
check "one-time key re-upload not counted" "$(curl -sS -H "Authorization: Bearer $A1" -d '{"one_time_keys":{"signed_curve25519:AAAAAQ":{"key":"a"},"signed_curve25519:AAAACQ":{"key":"d"}}}' "$CS/keys/upload")" 'd == {"one_time_key_counts": {"signed_curve25519": 4}}'
[ "$(status POST "$CS/keys/upload" -H "Authorization: Bearer $A1" -d '{"device_keys":{"user_id":"@bob:localhost","device_id":"A1"}}')" = 400 ] || fail "keys for another user"
[ "$(status POST "$CS/keys/upload" -H "Authorization: Bearer $A1" -d 'nope')" = 400 ] || fail "keys bad json"
admin keys '{"user_id":"@alice:localhost","device_id":"A2","one_time_keys_count":{"signed_curve25519":7}}' >/dev/null
check "admin keys" "$(cs "$A2" sync)" 'd["device_one_time_keys_count"] == {"signed_curve25519": 7}'

# --- 6. /messages --------------------------------------------------------
PG=$(val "$(admin rooms '{"creator":"@alice:localhost","name":"Paging"}')" 'd["room_id"]')
admin "rooms/$PG/join" '{"user_id":"@bob:localhost"}' >/dev/null
EVS=$($PY -c 'import json; print(json.dumps({"events":[{"sender":"@bob:localhost","type":"m.room.message","content":{"body":"p%d" % i}} for i in range(25)]}))')
admin "rooms/$PG/send_batch" "$EVS" >/dev/null
F5=$(urlq '{"room":{"timeline":{"limit":5}}}')
R=$(cs "$A1" "sync?filter=$F5")
PB=$(val "$(jroom "$R" "$PG")" 'd["timeline"]["prev_batch"]')
check "gappy timeline" "$(jroom "$R" "$PG")" 'd["timeline"]["limited"] is True and [e["content"]["body"] for e in d["timeline"]["events"]] == ["p20","p21","p22","p23","p24"]'
ALL=$(curl -sS "$H/_simhs/rooms/$PG/events")
M=$(cs "$A1" "rooms/$PG/messages?from=$PB&dir=b")
check "back from prev_batch: default 10, newest first" "$M" '[e["content"]["body"] for e in d["chunk"]] == ["p%d" % i for i in range(19, 9, -1)] and d["start"] == "'"$PB"'" and "end" in d'
check "events carry room_id" "$M" 'all(e["room_id"] == "'"$PG"'" for e in d["chunk"])'
# follow end tokens to the start: every earlier event once, then an empty page without end
TOK=$PB; SEEN=0; LAST=
for _ in $(seq 20); do
	M=$(cs "$A1" "rooms/$PG/messages?from=$TOK&dir=b&limit=7")
	N=$(val "$M" 'len(d["chunk"])'); SEEN=$((SEEN + N))
	[ "$(val "$M" '"end" in d')" = True ] || { LAST=$M; break; }
	TOK=$(val "$M" 'd["end"]')
done
check "paged to the start" "$ALL" 'len(d["events"]) - 5 == '"$SEEN"
check "last page: empty, no end" "${LAST:-{\}}" 'd["chunk"] == [] and "end" not in d'
M=$(cs "$A1" "rooms/$PG/messages?from=$PB&dir=b&limit=3")
END=$(val "$M" 'd["end"]')
check "forward from an end token" "$(cs "$A1" "rooms/$PG/messages?from=$END&dir=f&limit=4")" '[e["content"]["body"] for e in d["chunk"]] == ["p17","p18","p19","p20"]'
check "forward to a token" "$(cs "$A1" "rooms/$PG/messages?from=$END&to=$PB&dir=f")" '[e["content"]["body"] for e in d["chunk"]] == ["p17","p18","p19"]'
NOW=$(nb "$R")
check "back from a sync token" "$(cs "$A1" "rooms/$PG/messages?from=$NOW&dir=b&limit=2")" '[e["content"]["body"] for e in d["chunk"]] == ["p24","p23"]'
check "no from, backwards" "$(cs "$A1" "rooms/$PG/messages?dir=b&limit=1")" '[e["content"]["body"] for e in d["chunk"]] == ["p24"]'
check "filter types" "$(cs "$A1" "rooms/$PG/messages?dir=b&limit=3&filter=$(urlq '{"types":["m.room.member"]}')")" '[e["state_key"] for e in d["chunk"]] == ["@bob:localhost","@alice:localhost"]'
check "lazy members state" "$(cs "$A1" "rooms/$PG/messages?dir=b&limit=2&filter=$(urlq '{"lazy_load_members":true}')")" '[e["state_key"] for e in d["state"]] == ["@bob:localhost"]'
check "limit capped, none more" "$(cs "$A1" "rooms/$PG/messages?from=$NOW&dir=f&limit=5000")" 'd["chunk"] == [] and "end" not in d'
[ "$(status GET "$CS/rooms/$PG/messages?dir=x" -H "Authorization: Bearer $A1")" = 400 ] || fail "bad dir"
[ "$(status GET "$CS/rooms/$PG/messages?from=garbage&dir=b" -H "Authorization: Bearer $A1")" = 400 ] || fail "bad from"
[ "$(status GET "$CS/rooms/$PG/messages?limit=-1" -H "Authorization: Bearer $A1")" = 400 ] || fail "negative limit"
[ "$(status GET "$CS/rooms/$PG/messages?filter=%7Bx" -H "Authorization: Bearer $A1")" = 400 ] || fail "bad filter"
[ "$(status GET "$CS/rooms/$PG/messages" -H "Authorization: Bearer $CAROL")" = 403 ] || fail "non-member"
check "non-member errcode" "$(cat "$T/body")" 'd["errcode"] == "M_FORBIDDEN"'
[ "$(status GET "$CS/rooms/%21nope%3Alocalhost/messages" -H "Authorization: Bearer $A1")" = 403 ] || fail "unknown room"
[ "$(status GET "$CS/rooms/$PG/messages")" = 401 ] || fail "messages without token"
admin "rooms/$PG/leave" '{"user_id":"@bob:localhost"}' >/dev/null
send "$PG" @alice:localhost "after bob" >/dev/null
check "departed: up to the leave" "$(cs "$BOB" "rooms/$PG/messages?dir=b&limit=2")" '[e.get("content", {}).get("membership") for e in d["chunk"]][0] == "leave" and "after bob" not in json.dumps(d)'

# --- 7. filters and lazy loading -----------------------------------------
# heroes are the first six members by join order but us, sorted, five at
# most; lazy loading sends the senders', our own and the heroes' members
LL=$(val "$(admin rooms '{"creator":"@alice:localhost"}')" 'd["room_id"]')
for u in bob carol dave frank hank ivan; do admin "rooms/$LL/join" "{\"user_id\":\"@$u:localhost\"}" >/dev/null; done
for i in 1 2 3; do send "$LL" @bob:localhost "ll$i" >/dev/null; done
LN=$(val "$(admin rooms '{"creator":"@alice:localhost","name":"Named"}')" 'd["room_id"]')
for u in bob carol dave; do admin "rooms/$LN/join" "{\"user_id\":\"@$u:localhost\"}" >/dev/null; done
for i in 1 2 3; do send "$LN" @bob:localhost "ln$i" >/dev/null; done
FLL=$(urlq '{"room":{"timeline":{"limit":2},"state":{"lazy_load_members":true}}}')
R=$(cs "$A2" "sync?filter=$FLL")
SL=$(nb "$R")
check "lazy: senders and self only" "$(jroom "$R" "$LN")" 'sorted(e["state_key"] for e in d["state"]["events"] if e["type"] == "m.room.member") == ["@alice:localhost","@bob:localhost"]'
check "lazy: other state kept" "$(jroom "$R" "$LN")" '"m.room.create" in [e["type"] for e in d["state"]["events"]]'
check "named room: counts, no heroes" "$(jroom "$R" "$LN")" 'd["summary"] == {"m.joined_member_count": 4, "m.invited_member_count": 0}'
check "lazy: heroes" "$(jroom "$R" "$LL")" 'd["summary"]["m.heroes"] == ["@bob:localhost","@carol:localhost","@dave:localhost","@frank:localhost","@hank:localhost"] and d["summary"]["m.joined_member_count"] == 7'
check "lazy: heroes' members sent, not ivan" "$(jroom "$R" "$LL")" 'sorted(e["state_key"] for e in d["state"]["events"] if e["type"] == "m.room.member") == ["@alice:localhost","@bob:localhost","@carol:localhost","@dave:localhost","@frank:localhost","@hank:localhost"]'
R=$(jroom "$(cs "$A2" "sync?filter=$F5")" "$LN")
check "no lazy loading: every member" "$R" 'len({e["state_key"] for e in d["state"]["events"] + d["timeline"]["events"] if e["type"] == "m.room.member"}) == 4 and d["summary"] == {}'
send "$LL" @ivan:localhost "from ivan" >/dev/null
R=$(cs "$A2" "sync?since=$SL&timeout=0&filter=$FLL")
check "lazy incremental: new sender's member" "$(jroom "$R" "$LL")" '[e["state_key"] for e in d["state"]["events"]] == ["@ivan:localhost"] and d["summary"] == {}'
SL=$(nb "$R")
send "$LL" @ivan:localhost "again" >/dev/null
R=$(cs "$A2" "sync?since=$SL&timeout=0&filter=$FLL")
check "lazy: member not sent twice" "$(jroom "$R" "$LL")" 'd["state"]["events"] == []'
FRED=$(urlq '{"room":{"timeline":{"limit":2},"state":{"lazy_load_members":true,"include_redundant_members":true}}}')
check "include_redundant_members" "$(jroom "$(cs "$A2" "sync?since=$SL&timeout=0&filter=$FRED")" "$LL")" '[e["state_key"] for e in d["state"]["events"]] == ["@ivan:localhost"]'
# Synapse's cache holds 50 members: after 60 the first ones are sent again
BIGR=$(val "$(admin rooms '{"creator":"@alice:localhost","name":"Crowd"}')" 'd["room_id"]')
EVS=$($PY -c 'import json; u=["@crowd%02d:localhost" % i for i in range(60)]; print(json.dumps({"events":[{"sender":x,"type":"m.room.member","state_key":x,"content":{"membership":"join"}} for x in u] + [{"sender":x,"type":"m.room.message","content":{"body":"hi"}} for x in u]}))')
admin "rooms/$BIGR/send_batch" "$EVS" >/dev/null
FBIG=$(urlq '{"room":{"timeline":{"limit":60},"state":{"lazy_load_members":true}}}')
R=$(cs "$A2" "sync?since=$SL&timeout=0&filter=$FBIG")
check "crowd: 60 members lazily sent" "$(jroom "$R" "$BIGR")" 'len([e for e in d["state"]["events"] + d["timeline"]["events"] if e["type"] == "m.room.member" and e["state_key"].startswith("@crowd")]) == 60'
SL=$(nb "$R")
send "$BIGR" @crowd00:localhost "first again" >/dev/null
send "$BIGR" @crowd59:localhost "last again" >/dev/null
check "crowd: the oldest re-sent, the newest not" "$(jroom "$(cs "$A2" "sync?since=$SL&timeout=0&filter=$FLL")" "$BIGR")" '[e["state_key"] for e in d["state"]["events"]] == ["@crowd00:localhost"]'
SL=$(nb "$(cs "$A2" "sync?since=$SL&timeout=0&filter=$FLL")")
SL=$(nb "$R")
admin "rooms/$LL/join" '{"user_id":"@gina:localhost"}' >/dev/null
check "member event in timeline: summary" "$(jroom "$(cs "$A2" "sync?since=$SL&timeout=0&filter=$FLL")" "$LL")" 'd["summary"]["m.joined_member_count"] == 8'
# the poller's filter today, and the "little first" one for cold logins
N=$(val "$(curl -sS "$H/_simhs/rooms/$PG/events")" 'len(d["events"])')
check "poller filter" "$(jroom "$(cs "$A2" "sync?filter=$(urlq '{"room":{"timeline":{"limit":50}}}')")" "$PG")" 'len(d["timeline"]["events"]) == '"$N"' and d["timeline"]["limited"] is False and d["summary"] == {}'
R=$(cs "$A2" "sync?filter=$(urlq '{"room":{"timeline":{"limit":1},"state":{"lazy_load_members":true}}}')")
check "little first" "$(jroom "$R" "$LN")" 'len(d["timeline"]["events"]) == 1 and d["timeline"]["limited"] is True and sorted(e["state_key"] for e in d["state"]["events"] if e["type"] == "m.room.member") == ["@alice:localhost","@bob:localhost"] and d["summary"]["m.joined_member_count"] == 4'
check "little first, unnamed" "$(jroom "$R" "$LL")" '[e["sender"] for e in d["timeline"]["events"]] == ["@gina:localhost"] and "@gina:localhost" not in [e["state_key"] for e in d["state"]["events"]] and len(d["summary"]["m.heroes"]) == 5'
check "room.rooms" "$(cs "$A2" "sync?filter=$(urlq '{"room":{"rooms":["'"$LL"'"]}}')")" 'list(d["rooms"]["join"].keys()) == ["'"$LL"'"]'
check "room.not_rooms" "$(cs "$A2" "sync?filter=$(urlq '{"room":{"not_rooms":["'"$LL"'"]}}')")" '"'"$LL"'" not in d["rooms"]["join"] and "'"$ROOM"'" in d["rooms"]["join"]'
check "state.types" "$(jroom "$(cs "$A2" "sync?filter=$(urlq '{"room":{"timeline":{"limit":1},"state":{"types":["m.room.create"]}}}')")" "$LL")" '[e["type"] for e in d["state"]["events"]] == ["m.room.create"]'
check "timeline.types" "$(jroom "$(cs "$A2" "sync?filter=$(urlq '{"room":{"timeline":{"limit":3,"types":["m.room.member"]}}}')")" "$LL")" '[e["type"] for e in d["timeline"]["events"]] == ["m.room.member"] * 3 and d["timeline"]["limited"] is True'
SF=$(nb "$(cs "$A2" "sync?since=$SL&timeout=0")")
# a topic set between timeline events but filtered out of the timeline
for i in 1 2; do send "$LN" @bob:localhost "f$i" >/dev/null; done
admin "rooms/$LN/send" '{"sender":"@alice:localhost","type":"m.room.topic","state_key":"","content":{"topic":"hidden"}}' >/dev/null
for i in 3 4; do send "$LN" @bob:localhost "f$i" >/dev/null; done
check "filtered-out state change in state" "$(jroom "$(cs "$A2" "sync?since=$SF&timeout=0&filter=$(urlq '{"room":{"timeline":{"limit":3,"types":["m.room.message"]}}}')")" "$LN")" '[e["content"] for e in d["state"]["events"] if e["type"] == "m.room.topic"] == [{"topic": "hidden"}] and d["timeline"]["limited"] is True'
check "timeline.not_senders" "$(jroom "$(cs "$A2" "sync?filter=$(urlq '{"room":{"timeline":{"limit":50,"not_senders":["@bob:localhost"]}}}')")" "$LL")" '"@bob:localhost" not in [e["sender"] for e in d["timeline"]["events"]]'
check "ephemeral.not_types" "$(jroom "$(cs "$A1" "sync?filter=$(urlq '{"room":{"ephemeral":{"not_types":["m.receipt"]}}}')")" "$ROOM")" 'd["ephemeral"]["events"] == []'
check "account_data.types wildcard" "$(cs "$A1" "sync?filter=$(urlq '{"account_data":{"types":["org.example.*"]}}')")" '[e["type"] for e in d["account_data"]["events"]] == ["org.example.x"]'
check "include_leave" "$(cs "$CAROL" "sync?filter=$(urlq '{"room":{"include_leave":true}}')")" '"'"$ROOM"'" in d["rooms"]["leave"]'
check "no include_leave" "$(cs "$CAROL" sync)" '"leave" not in d["rooms"]'
EVS=$($PY -c 'import json; print(json.dumps({"events":[{"sender":"@bob:localhost","type":"m.room.message","content":{"body":"b%d" % i}} for i in range(120)]}))')
admin "rooms/$ENC/join" '{"user_id":"@bob:localhost"}' >/dev/null
admin "rooms/$ENC/send_batch" "$EVS" >/dev/null
check "inline limit capped at 100" "$(jroom "$(cs "$A1" "sync?filter=$(urlq '{"room":{"timeline":{"limit":150}}}')")" "$ENC")" 'len(d["timeline"]["events"]) == 100'
FID=$(val "$(curl -sS -H "Authorization: Bearer $A1" -d '{"room":{"timeline":{"limit":150}}}' "$AD/filter")" 'd["filter_id"]')
N=$(val "$(curl -sS "$H/_simhs/rooms/$ENC/events")" 'min(150, len(d["events"]))')
check "stored filter not capped" "$(jroom "$(cs "$A1" "sync?filter=$FID")" "$ENC")" 'len(d["timeline"]["events"]) == '"$N"' > 100'
[ "$(status GET "$CS/sync?filter=$(urlq '{"room":{"timeline":{"types":"m.room.message"}}}')" -H "Authorization: Bearer $A1")" = 400 ] || fail "filter types not a list"
check "bad filter errcode" "$(cat "$T/body")" 'd["errcode"] == "M_UNKNOWN"'
[ "$(status GET "$CS/sync?filter=99" -H "Authorization: Bearer $A1")" = 400 ] || fail "unknown filter id"
check "unknown filter errcode" "$(cat "$T/body")" 'd["errcode"] == "M_INVALID_PARAM"'
[ "$(status POST "$AD/filter" -H "Authorization: Bearer $A1" -d '{"room":{"state":{"lazy_load_members":"yes"}}}')" = 400 ] || fail "POST bad filter"

simhs_finish t_simhs_sync
