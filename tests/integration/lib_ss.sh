# Sliding sync helpers for t_ss_*.sh (sourced after lib.sh).
#
# ss TOKEN POS BODY [TIMEOUT_MS]: POST the Synapse-dialect endpoint (pos
# and timeout in the query); body to stdout, status in $T/last_status.
ss() {
	local token=$1 pos=$2 body=${3:-{\}} timeout=${4:-0} url out
	url="$API_URL/_matrix/client/unstable/org.matrix.simplified_msc3575/sync?timeout=$timeout"
	[ -n "$pos" ] && url="$url&pos=$(jq -rn --arg s "$pos" '$s|@uri')"
	ss_post "$token" "$url" "$body"
}
# ss4 TOKEN BODY: POST /_matrix/client/v4/sync (pos, timeout in the body).
ss4() {
	ss_post "$1" "$API_URL/_matrix/client/v4/sync" "${2:-{\}}"
}
ss_post() {
	local out
	out=$(mktemp "$T/ss.XXXXXX")
	curl -sS -o "$out.body" -w '%{http_code}' -X POST \
	    -H "Authorization: Bearer $1" -H 'Content-Type: application/json' \
	    --data "$3" "$2" >"$out.status"
	cat "$out.body"
	mv -f "$out.body" "$T/last_body"
	mv -f "$out.status" "$T/last_status"
	rm -f "$out"
}
# ss_pos JSON: the response's pos.
ss_pos() { printf '%s' "$1" | jq -r .pos; }
# sim_msg ROOM SENDER BODY: a message upstream.
sim_msg() {
	sim "rooms/$1/send" "{\"sender\":\"$2\",\"type\":\"m.room.message\",\"content\":{\"body\":\"$3\"}}" >/dev/null
}
