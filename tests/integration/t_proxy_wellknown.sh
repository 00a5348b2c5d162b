#!/usr/bin/env bash
# The client well-known names syncv3 (issue #11, [compat] 3): Element X
# takes m.homeserver.base_url of the well-known it finds at the URL it is
# given and never asks that URL's /versions, so one passed through as the
# homeserver wrote it would send it past syncv3. Passed through, base_url
# becomes syncv3's (SYNCV3_PUBLIC_URL, else X-Forwarded-Proto/-Host when
# SYNCV3_TRUST_FORWARDED, else Host and http), the rest unchanged, plain
# (no gzip) with a right Content-Length; upstream's 404 stays a 404.
source "$(dirname "$0")/lib.sh"

start_stack
WK=/.well-known/matrix/client
# wk [CURL ARGS...]: GET the well-known through the api; body in
# $T/wk.body, headers in $T/wk.hdr, status printed
wk() {
	curl -sS -D "$T/wk.hdr" -o "$T/wk.body" -w '%{http_code}' "$@" "$API_URL$WK"
}
hdr() { tr -d '\r' <"$T/wk.hdr" | awk -v k="$1" 'BEGIN{IGNORECASE=1} index(tolower($0), tolower(k) ":") == 1 {sub(/^[^:]*: */, ""); print}'; }
body() { cat "$T/wk.body"; }

# none upstream: the 404 comes back, so Element X falls back to /versions
assert_eq "$(wk)" 404 "no well-known upstream"
assert_jq "$(body)" .errcode '"M_UNRECOGNIZED"' "upstream's error unchanged"

up=$(jq -cn --arg hs "$SIMHS_URL" '{"m.homeserver":{base_url:$hs,"x.kept":1},"m.identity_server":{base_url:"https://id.example.org"},"org.example.other":{list:[1,"two",{three:3}]}}')
sim wellknown "{\"client\":$up}" >/dev/null
[ "$(curl -sS "$SIMHS_URL$WK" | jq -r '.["m.homeserver"].base_url')" = "$SIMHS_URL" ] ||
    fail "simhs does not serve the well-known"

assert_eq "$(wk -H 'Host: sync.example.org:8443' -H 'Accept-Encoding: gzip')" 200 "well-known"
assert_jq "$(body)" '.["m.homeserver"].base_url' '"http://sync.example.org:8443"' "base_url: ours, from Host"
assert_jq "$(body)" 'del(.["m.homeserver"].base_url)' \
    "$(jq -c 'del(.["m.homeserver"].base_url)' <<<"$up")" "everything else kept"
assert_eq "$(hdr Content-Encoding)" "" "not gzip-encoded"
assert_eq "$(hdr Content-Length)" "$(wc -c <"$T/wk.body")" "Content-Length is the rewritten body's"

# X-Forwarded-* are anyone's to send unless a reverse proxy is trusted
wk -H 'Host: sync.example.org' -H 'X-Forwarded-Proto: https' -H 'X-Forwarded-Host: evil.example' >/dev/null
assert_jq "$(body)" '.["m.homeserver"].base_url' '"http://sync.example.org"' "X-Forwarded-* ignored by default"
assert_eq "$(wk -H 'Host: user@evil.example')" 200 "a host that is no URL"
assert_jq "$(body)" '.["m.homeserver"].base_url' "\"$SIMHS_URL\"" "a host that is no URL: left as it was"

stop_proc api
SYNCV3_TRUST_FORWARDED=true start_api
wk -H 'Host: inner:8008' -H 'X-Forwarded-Proto: https, http' -H 'X-Forwarded-Host: sync.example.org, inner' >/dev/null
assert_jq "$(body)" '.["m.homeserver"].base_url' '"https://sync.example.org"' "trusted: X-Forwarded-Proto/-Host (first values)"
wk -H 'Host: inner:8008' >/dev/null
assert_jq "$(body)" '.["m.homeserver"].base_url' '"http://inner:8008"' "trusted, no X-Forwarded-*: Host"

stop_proc api
SYNCV3_PUBLIC_URL=https://matrix-sync.example.org/ start_api
wk -H 'Host: inner:8008' -H 'X-Forwarded-Host: evil.example' >/dev/null
assert_jq "$(body)" '.["m.homeserver"].base_url' '"https://matrix-sync.example.org"' "SYNCV3_PUBLIC_URL (trailing / dropped)"
assert_eq "$(curl -sS -o /dev/null -w '%{http_code}' -I "$API_URL$WK")" 200 "HEAD"

# a well-known without m.homeserver gets one; a non-object one is left
sim wellknown '{"client":{"m.identity_server":{"base_url":"https://id.example.org"}}}' >/dev/null
wk >/dev/null
assert_jq "$(body)" '.["m.homeserver"].base_url' '"https://matrix-sync.example.org"' "m.homeserver added"
sim wellknown '{}' >/dev/null
assert_eq "$(wk)" 404 "removed upstream: 404 again"

# a malformed SYNCV3_PUBLIC_URL is a startup error naming it
out=$(SYNCV3_PUBLIC_URL=ftp://x SYNCV3_BINDADDR=127.0.0.1:$(free_port) timeout 20 "$BIN/syncv3-api" 2>&1)
rc=$?
[ "$rc" = 1 ] || fail "bad SYNCV3_PUBLIC_URL: exit $rc, not 1"
case "$out" in *SYNCV3_PUBLIC_URL*) ;; *) fail "bad SYNCV3_PUBLIC_URL not named: $out" ;; esac
it_pass
