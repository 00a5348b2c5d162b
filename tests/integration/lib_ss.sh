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
# ss_hops: the api's count of each woken round step (api/prom.c
# ss_hop), "step=n " each; ss_hops_grown BEFORE AFTER: those that grew,
# "step+d " each
ss_hops() {
	curl -sS "$API_URL/metrics" |
	    awk -F'[{}" ]+' '$1 == "syncv3_api_ss_hop_seconds_count" {printf "%s=%s ", $3, $4}'
}
ss_hops_grown() {
	local kv kv0 k v v0
	for kv in $2; do
		k=${kv%=*} v=${kv#*=} v0=0
		for kv0 in $1; do [ "${kv0%=*}" = "$k" ] && v0=${kv0#*=}; done
		[ "$v" != "$v0" ] && printf '%s+%s ' "$k" $((v - v0))
	done
}
# ss_pos JSON: the response's pos.
ss_pos() { printf '%s' "$1" | jq -r .pos; }
# sim_msg ROOM SENDER BODY: a message upstream.
sim_msg() {
	sim "rooms/$1/send" "{\"sender\":\"$2\",\"type\":\"m.room.message\",\"content\":{\"body\":\"$3\"}}" >/dev/null
}
