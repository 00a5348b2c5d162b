#!/usr/bin/env bash
# Helpers for the t_ss_syn_*.sh scenarios: the behaviours Synapse's own
# sliding sync tests assert (tests/integration/SYNAPSE-EQUIVALENTS.md),
# checked against our stack. Sourced after lib.sh; not a scenario itself.
# Requests use the Synapse dialect (the unstable path, pos/timeout in the
# query), which is what clients send today.

# lib_ss.sh (the core's t_ss_*.sh helpers): ss_post, ss4, ss_pos; our
# ss below replaces its ss with one that keeps connections apart
source "$(dirname "${BASH_SOURCE[0]}")/lib_ss.sh"

SS_PATH=/_matrix/client/unstable/org.matrix.simplified_msc3575/sync

# ss TOKEN POS BODY [TIMEOUT_MS]: one sliding sync request; body to
# stdout, status in $T/last_status (last_status). POS may be "".
# Connections are per conn_id, and a request without pos restarts its
# conn_id's connection, so a scenario's one-off requests would end the
# connection it is continuing. Unless BODY names a conn_id, a request
# without pos gets a conn_id of its own (t1, t2...) and a request with a
# pos the conn_id that pos was issued for ($T/ss_pos remembers them).
ss() {
	local token=$1 pos=$2 body=${3:-{\}} timeout=${4:-0} url out cid= n
	mkdir -p "$T/ss_pos"
	if ! printf '%s' "$body" | jq -e 'has("conn_id")' >/dev/null 2>&1; then
		if [ -z "$pos" ]; then
			n=$(($(cat "$T/ss_n" 2>/dev/null || echo 0) + 1))
			echo "$n" >"$T/ss_n"
			cid=t$n
		else
			cid=$(cat "$(pos_file "$pos")" 2>/dev/null)
		fi
		[ -n "$cid" ] && body=$(printf '%s' "$body" | jq -c --arg c "$cid" '. + {conn_id: $c}')
	fi
	url="$API_URL$SS_PATH?timeout=$timeout"
	[ -n "$pos" ] && url="$url&pos=$(jq -rn --arg s "$pos" '$s|@uri')"
	out=$(ss_post "$token" "$url" "$body")
	n=$(printf '%s' "$out" | jq -r '.pos // empty' 2>/dev/null)
	[ -n "$n" ] && printf '%s' "$cid" >"$(pos_file "$n")"
	printf '%s' "$out"
}

# pos_file POS: where ss remembers the conn_id POS was issued for.
pos_file() { printf '%s/ss_pos/%s' "$T" "$(printf '%s' "$1" | md5sum | cut -c1-32)"; }

# ss_first TOKEN BODY: the first request of a connection for a device the
# proxy may not have synced yet; retried until 200 (20 s at most). Sets
# $out (called in the script's own shell, so that fail ends the scenario).
ss_first() {
	local i
	for i in $(seq 1 100); do
		out=$(ss "$1" "" "$2" 0)
		[ "$(last_status)" = 200 ] && return 0
		sleep 0.2
	done
	fail "first sliding sync never answered 200: $(last_status) $out"
}

# bg_then SECS CMD...: runs CMD after SECS in the background; bg_wait
# waits for it (only it: the daemons are background jobs too).
bg_then() {
	local secs=$1
	shift
	(sleep "$secs"; "$@" >/dev/null) &
	IT_BG=$!
}
bg_wait() { wait "$IT_BG"; }

# ss_ok JSON MESSAGE: the last request answered 200 with a pos.
ss_ok() {
	[ "$(last_status)" = 200 ] || fail "$2: status $(last_status): $(printf '%s' "$1" | head -c 400)"
	[ -n "$(printf '%s' "$1" | jq -r '.pos // empty')" ] || fail "$2: no pos in $(printf '%s' "$1" | head -c 400)"
}

# msg ROOM SENDER BODY: an m.room.message upstream; prints its event id.
msg() {
	sim "rooms/$1/send" "$(jq -nc --arg s "$2" --arg b "$3" \
	    '{sender: $s, type: "m.room.message", content: {msgtype: "m.text", body: $b}}')" | jq -r .event_id
}
# state ROOM SENDER TYPE STATE_KEY CONTENT_JSON: a state event; prints its id.
state() {
	sim "rooms/$1/send" "$(jq -nc --arg s "$2" --arg t "$3" --arg k "$4" --argjson c "$5" \
	    '{sender: $s, type: $t, state_key: $k, content: $c}')" | jq -r .event_id
}
# mkroom CREATOR NAME [EXTRA_JSON]: prints the room id.
mkroom() {
	sim rooms "$(jq -nc --arg c "$1" --arg n "$2" --argjson x "${3:-{\}}" \
	    '{creator: $c} + (if $n == "" then {} else {name: $n} end) + $x')" | jq -r .room_id
}
# member ACTION ROOM JSON: join/leave/invite/kick/ban; prints the event id.
member() { sim "rooms/$2/$1" "$3" | jq -r .event_id; }

# stored EVENT_ID...: waits until the accumulator stored every event.
stored() {
	local e
	for SS_EV in "$@"; do
		# by name: wait_for evals its command, and event ids start with $
		wait_for "[ \"\$(psql_q \"SELECT count(*) FROM syncv3_events WHERE event_id = '\$SS_EV'\")\" = 1 ]" 20 ||
		    fail "event $SS_EV never stored"
	done
}
# stored_sql QUERY: waits until QUERY (psql) prints a non-zero count.
stored_sql() {
	SS_Q=$1
	wait_for '[ "$(psql_q "$SS_Q")" -ge 1 ]' 20 || fail "never stored: $1"
}

# rooms_of JSON: the room ids of a response, sorted.
rooms_of() { printf '%s' "$1" | jq -c '[.rooms // {} | keys[]] | sort'; }
# sorted JSON_ARRAY: sorts a JSON array (for expected room sets).
sorted() { printf '%s' "$1" | jq -c 'sort'; }
# ids A B ...: a sorted JSON array of its arguments.
ids() { printf '%s\n' "$@" | jq -Rsc 'split("\n") | map(select(. != "")) | sort'; }
# state_keys JSON ROOM: the (type, state_key) pairs of a room's
# required_state, sorted.
state_keys() {
	printf '%s' "$1" | jq -c --arg r "$2" '[.rooms[$r].required_state[]? | [.type, .state_key]] | sort'
}
# sim_state_keys ROOM JQ_SELECT: the (type, state_key) pairs of simhs's
# current state of ROOM that JQ_SELECT (a jq boolean on the event) keeps.
sim_state_keys() {
	sim_get "rooms/$1/state" | jq -c "[.events[] | select($2) | [.type, .state_key]] | sort"
}
# sim_timeline ROOM N: the ids of the room's last N events upstream.
sim_timeline() { sim_get "rooms/$1/events" | jq -c --argjson n "$2" '[.events[].event_id] | .[-$n:]'; }
# timeline_of JSON ROOM: the event ids of a room's timeline in a response.
timeline_of() { printf '%s' "$1" | jq -c --arg r "$2" '[.rooms[$r].timeline[]?.event_id]'; }
# has_membership USER ROOM MEMBERSHIP: waits until the proxy stored that
# membership of USER (an invite is not an event the proxy stores, only
# the user's row with its stripped state).
has_membership() {
	SS_Q="SELECT membership FROM syncv3_user_rooms WHERE user_id = '$1' AND room_id = '$2'"
	wait_for "[ \"\$(psql_q \"\$SS_Q\")\" = $3 ]" 20 ||
	    fail "$1 never stored as $3 in $2"
}

# xfail BUG ASSERT...: an assert of a behaviour reported as broken in
# /work/briefs/s3/ss-bugs.txt (BUG names the entry). While it fails it
# is logged as XFAIL and the scenario goes on; once it passes, XPASS
# says to drop the xfail. Every xfail is listed in SYNAPSE-EQUIVALENTS.md.
xfail() {
	local bug=$1
	shift
	if (fail() { log "$*"; exit 1; }; "$@") 2>"$T/xfail.err"; then
		log "XPASS (ss-bugs $bug): drop the xfail of: ${*: -1}"
	else
		log "XFAIL (ss-bugs $bug): $(tail -1 "$T/xfail.err" | cut -c1-300)"
	fi
}

# SS_SOFT=1 (by hand, to see every failing assert of a scenario at once):
# a failed assert is logged and counted, the scenario goes on, and fails
# at it_pass.
if [ "${SS_SOFT:-0}" = 1 ]; then
	fail() {
		log "FAIL: $*"
		echo "$*" >>"$T/soft_fails"
	}
	it_pass() {
		if [ -s "$T/soft_fails" ]; then
			log "$(wc -l <"$T/soft_fails") asserts failed"
			IT_FAILED=1
			exit 1
		fi
		log "PASS"
	}
fi
