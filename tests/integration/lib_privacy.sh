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
# ignored_is JSON: alice's stored m.ignored_user_list is JSON
ignored_is() {
	psql_q "SELECT json FROM syncv3_account_data WHERE user_id = '$A' AND room_id = '' AND type = 'm.ignored_user_list'" |
	    jq -e --argjson want "$1" '.content.ignored_users == $want' >/dev/null
}
# ignore JSON: alice's ignore list upstream becomes JSON, and is stored
ignore() {
	sim account_data "{\"user_id\":\"$A\",\"type\":\"m.ignored_user_list\",\"content\":{\"ignored_users\":$1}}" >/dev/null
	wait_for "ignored_is '$1'" 15 || fail "alice's poller did not store the ignore list $1"
}
# ignored_room NAME: alice and bob synced, bob's room NAME (its id in r)
# with alice and carol ($C) in it, and alice ignoring carol
ignored_room() {
	v3 "$alice" "" '{}' 10000 >/dev/null
	v3 "$bob" "" '{}' 10000 >/dev/null
	r=$(mk "$1")
	sim "rooms/$r/join" "{\"user_id\":\"$A\"}" >/dev/null
	sim "rooms/$r/join" "{\"user_id\":\"$C\"}" >/dev/null
	ignore "{\"$C\":{}}"
}
