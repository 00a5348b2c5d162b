# Helpers of the sliding sync extension scenarios (t_ss_ext_*.sh), sourced
# after lib.sh; lib_ss.sh gives ss and ss_pos.

source "$(dirname "${BASH_SOURCE[0]}")/lib_ss.sh"

# ss_bg NAME TOKEN POS BODY TIMEOUT_MS: ss in the background, its body in
# $T/NAME.out and its duration (ms) in $T/NAME.ms. ss_wait NAME waits for
# it and sets $out (not in a $(...): wait needs the shell that started it).
ss_bg() {
	local name=$1
	shift
	( t0=$(now_ms); ss "$@" >"$T/$name.out"; echo $(( $(now_ms) - t0 )) >"$T/$name.ms" ) &
	eval "SS_BG_$name=$!"
}
ss_wait() { local v="SS_BG_$1"; wait "${!v}"; out=$(cat "$T/$1.out"); }

# ss_ready TOKEN BODY: the first response of a new connection, once the
# device's initial sync is stored (the api holds it until then).
ss_ready() {
	local out
	out=$(ss "$1" "" "$2" 0)
	[ "$(last_status)" = 200 ] || fail "first sliding sync: $(last_status) $out"
	printf '%s' "$out"
}

# assert_woken NAME MAX_MS: the background request came back within MAX_MS.
assert_woken() {
	local ms
	ms=$(cat "$T/$1.ms")
	[ "$ms" -lt "$2" ] || fail "$1: long-poll took ${ms} ms, not woken (< $2)"
}

# ss_register TOKEN: registers the device with the api (so its poller
# starts) and waits for its initial sync, on a connection of its own.
ss_register() {
	ss "$1" "" '{"conn_id":"register"}' 0 >/dev/null
	[ "$(last_status)" = 200 ] || fail "register: $(last_status) $(cat "$T/last_body")"
}

# ss_woken_by NAME TOKEN POS BODY CMD: a long-poll (5 s) that CMD, run
# half a second into it, must answer within 4 s; sets $out.
ss_woken_by() {
	ss_bg "$1" "$2" "$3" "$4" 5000
	sleep 0.5
	eval "$5"
	ss_wait "$1"
	assert_woken "$1" 4000
}

# ss_mk NAME [CREATOR]: a room (name, creator joined), prints its id.
ss_mk() { sim rooms "{\"creator\":\"${2:-@alice:localhost}\",\"name\":\"$1\"}" | jq -r .room_id; }
# ss_say ROOM [SENDER]: a message, prints its event id.
ss_say() {
	sim "rooms/$1/send" "{\"sender\":\"${2:-@alice:localhost}\",\"type\":\"m.room.message\",\"content\":{\"msgtype\":\"m.text\",\"body\":\"hi\"}}" | jq -r .event_id
}
