#!/usr/bin/env bash
# Helpers for the visibility scenarios (t_api_privacy*.sh), sourced after
# lib.sh: starts the stack with two proxy users, alice (watched) and bob
# (stays in the rooms and keeps them busy).
export SYNCV3_API_SESSION_IDLE_SECS=600
start_stack
A=@alice:localhost B=@bob:localhost
alice=$(sim_login $A A1)
bob=$(sim_login $B B1)
health() { curl -sf "$API_URL/health"; }
# say ROOM BODY: bob sends a message
say() { sim "rooms/$1/send" "{\"sender\":\"$B\",\"type\":\"m.room.message\",\"content\":{\"body\":\"$2\"}}" >/dev/null; }
# mk NAME: bob creates a room, prints its id
mk() { sim rooms "{\"creator\":\"$B\",\"name\":\"$1\"}" | jq -r .room_id; }
# ur_is USER ROOM MEMBERSHIP: the user's own poller has stored it
ur_is() { [ "$(psql_q "SELECT membership FROM syncv3_user_rooms WHERE user_id = '$1' AND room_id = '$2'")" = "$3" ]; }
