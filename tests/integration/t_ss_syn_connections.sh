#!/usr/bin/env bash
# Synapse-equivalent behaviours (SYNAPSE-EQUIVALENTS.md): connections and
# positions (test_connection_tracking.py expiry, test_sliding_sync.py
# test_wait_for_sync_token, test_rooms_required_state.py
# test_rooms_incremental_sync_restart). Ours keep connections in
# Postgres, so where Synapse forgets a connection on restart ours carries
# on; an unknown, forged or expired pos is M_UNKNOWN_POS as on Synapse.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_ss_syn.sh"

it_setup
start_simhs
start_accumulator
start_poller poller
port=$(free_port)
# a short idle expiry for the expiry check below
export SYNCV3_SS_CONN_IDLE_S=${SYNCV3_SS_CONN_IDLE_S:-4}
start_api_on api "$port"
API_URL="http://127.0.0.1:$port"
wait_for "curl -sf $API_URL/health" 20 || fail "api did not become healthy"
A=@alice:localhost B=@bob:localhost
alice=$(sim_login $A A1)
sim users '{"localpart":"bob"}' >/dev/null
r=$(mkroom $A "conn room")
member join "$r" "{\"user_id\":\"$B\"}" >/dev/null
m0=$(msg "$r" $A "m0")
LZ='{"lists":{"foo-list":{"ranges":[[0,9]],"required_state":[["m.room.create",""],["m.room.member","$LAZY"]],"timeline_limit":2}}}'
ss_first "$alice" "$LZ"
stored "$m0"
stored "$(msg "$r" $A "m0b")"
out=$(ss "$alice" "" "$LZ")
pos=$(ss_pos "$out")
assert_jq "$out" ".rooms[\"$r\"].initial" 'true' "first"

# --- unknown and forged pos
out=$(ss "$alice" "not-a-pos" "$LZ")
assert_eq "$(last_status)" 400 "forged pos status"
assert_jq "$out" '.errcode' '"M_UNKNOWN_POS"' "a forged pos is M_UNKNOWN_POS"
other=$(sim_login $A A2)
out=$(ss "$other" "$pos" "$LZ")
assert_jq "$out" '.errcode' '"M_UNKNOWN_POS"' "another device's pos is M_UNKNOWN_POS"

# --- retrying a pos (the response was lost): same answer, no gap, no duplicate
e1=$(msg "$r" $B "m1")
stored "$e1"
out1=$(ss "$alice" "$pos" "$LZ" 5000)
out2=$(ss "$alice" "$pos" "$LZ" 0)
assert_eq "$(timeline_of "$out2" "$r")" "$(timeline_of "$out1" "$r")" "a retried pos gets the same events"
assert_eq "$(timeline_of "$out2" "$r")" "[\"$e1\"]" "and only the new one"
assert_eq "$(state_keys "$out2" "$r")" "$(state_keys "$out1" "$r")" "and the same lazy members"
pos=$(ss_pos "$out2")
e2=$(msg "$r" $B "m2")
stored "$e2"
out=$(ss "$alice" "$pos" "$LZ" 5000)
assert_eq "$(timeline_of "$out" "$r")" "[\"$e2\"]" "after the retry: the next event, nothing twice"
assert_jq "$out" ".rooms[\"$r\"].required_state // [] | length" 0 "bob's member was sent by the retried response"
pos=$(ss_pos "$out")

# --- test_rooms_incremental_sync_restart: an api restart keeps the connection
stop_proc api
start_api_on api "$port"
wait_for "curl -sf $API_URL/health" 20 || fail "api did not come back"
e3=$(msg "$r" $B "m3")
stored "$e3"
out=$(ss "$alice" "$pos" "$LZ" 5000)
assert_eq "$(last_status)" 200 "test_rooms_incremental_sync_restart: the pos survives a restart (Synapse: M_UNKNOWN_POS)"
assert_eq "$(timeline_of "$out" "$r")" "[\"$e3\"]" "after the restart: just the new event"
assert_jq "$out" ".rooms[\"$r\"] | [(.initial // false), (.required_state // [] | length)]" '[false,0]' \
    "after the restart: not initial, members not re-sent"
pos=$(ss_pos "$out")

# --- test_wait_for_sync_token: a second api instance (catching up on its
# own) continues the connection of the first
port2=$(free_port)
start_proc api2 env SYNCV3_BINDADDR="127.0.0.1:$port2" "$BIN/syncv3-api"
wait_for "curl -sf http://127.0.0.1:$port2/health" 20 || fail "api2 did not start"
e4=$(msg "$r" $B "m4")
stored "$e4"
API_URL="http://127.0.0.1:$port2"
out=$(ss "$alice" "$pos" "$LZ" 5000)
assert_eq "$(timeline_of "$out" "$r")" "[\"$e4\"]" "test_wait_for_sync_token: a second instance continues the connection"
pos=$(ss_pos "$out")
# a long poll on the second instance is woken by the next message
(sleep 1; msg "$r" $B "m5" >"$T/m5") &
IT_BG=$!
out=$(ss "$alice" "$pos" "$LZ" 10000)
bg_wait
assert_eq "$(timeline_of "$out" "$r")" "[\"$(cat "$T/m5")\"]" "the second instance's long poll is woken"
API_URL="http://127.0.0.1:$port"
pos=$(ss_pos "$out")

# --- test_sliding_sync_connection_expires_after_time
sleep $((SYNCV3_SS_CONN_IDLE_S * 2 + 2))
wait_for "[ \"\$(psql_q \"SELECT count(*) FROM syncv3_ss_conns WHERE user_id = '$A' AND device_id = 'A1'\")\" = 0 ]" 10 ||
    fail "the idle connection's row was never freed"
out=$(ss "$alice" "$pos" "$LZ" 0)
assert_eq "$(last_status)" 400 "expired pos status"
assert_jq "$out" '.errcode' '"M_UNKNOWN_POS"' "test_sliding_sync_connection_expires_after_time"
# and a new connection starts over from scratch
out=$(ss "$alice" "" "$LZ")
assert_jq "$out" ".rooms[\"$r\"].initial" 'true' "a new connection after the expiry is initial again"
it_pass
