#!/usr/bin/env bash
# The live web view (issue #14 item 4). Served from the binary at
# /_syncv3/client/: the files byte for byte as in api/web, with a
# Content-Security-Policy that allows only this origin, nosniff, and
# Matrix errors for anything else (no path leaves the built-in files);
# the script never writes HTML. Then headless Chromium (tests/js,
# webview_test.mjs) pastes a token and sees the rooms in bump order, a
# message sent upstream at the top of the list within a second, typing,
# and a click's timeline (a room subscription) where hostile content is
# text and runs nothing; a screenshot is kept next to the logs
# ($T/webview.png, copied to $TEST_ARTIFACTS when set). The browser part
# skips (exit 77) without chromium or the tests/js packages, or while the
# api has no sliding sync endpoint.
source "$(dirname "$0")/lib.sh"

SS=/_matrix/client/unstable/org.matrix.simplified_msc3575/sync
WEB=$IT_ROOT/api/web
start_stack
C=$API_URL/_syncv3/client

# get PATH [CURL ARGS...]: body to $T/w_body, headers to $T/w_hdr, status out
get() {
	local p=$1
	shift
	curl -sS --path-as-is -D "$T/w_hdr" -o "$T/w_body" -w '%{http_code}' "$@" "$API_URL$p"
}
hdr() { tr -d '\r' <"$T/w_hdr" | awk -v k="$(tr 'A-Z' 'a-z' <<<"$1"):" 'tolower($1) == k { $1 = ""; print substr($0, 2) }'; }

assert_eq "$(get /_syncv3/client)" 301 "the bare path redirects"
assert_eq "$(hdr Location)" /_syncv3/client/ "to the directory"
for f in "/:index.html:text/html" "/index.html:index.html:text/html" \
    "/app.js:app.js:text/javascript" "/app.css:app.css:text/css"; do
	IFS=: read -r p file type <<<"$f"
	assert_eq "$(get "/_syncv3/client$p")" 200 "$p"
	cmp -s "$T/w_body" "$WEB/$file" || fail "$p is not api/web/$file byte for byte"
	assert_eq "$(hdr Content-Type)" "$type; charset=utf-8" "$p content type"
	csp=$(hdr Content-Security-Policy)
	for d in "default-src 'none'" "script-src 'self'" "connect-src 'self'" \
	    "frame-ancestors 'none'"; do
		grep -qF "$d" <<<"$csp" || fail "$p: CSP without $d: $csp"
	done
	assert_eq "$(hdr X-Content-Type-Options)" nosniff "$p nosniff"
done
assert_eq "$(get /_syncv3/client/ -I)" 200 "HEAD"
for p in /_syncv3/client/nope /_syncv3/client/../README.md \
    /_syncv3/client/%2e%2e/README.md /_syncv3/client/web/app.js \
    /_syncv3/client//app.js /_syncv3/client/app.js/; do
	assert_eq "$(get "$p")" 404 "$p"
	assert_jq "$(cat "$T/w_body")" .errcode '"M_NOT_FOUND"' "$p errcode"
done
assert_eq "$(get /_syncv3/client/ -X POST -d x)" 405 "POST"
assert_jq "$(cat "$T/w_body")" .errcode '"M_UNRECOGNIZED"' "POST errcode"
# the page builds its DOM from text only
if grep -nE 'innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function' "$WEB/app.js"; then
	fail "app.js writes HTML or evaluates strings"
fi
grep -q '<script src="app.js"' "$WEB/index.html" || fail "index.html loads no app.js"
grep -qi '<script>' "$WEB/index.html" && fail "an inline script (the CSP forbids it)"

# the browser part
JS=$IT_ROOT/tests/js
node22=$(SETUP_NO_APT=1 "$JS/setup.sh" 2>"$T/setup.err") || {
	log "SKIP: node/npm or tests/js packages unavailable: $(tail -1 "$T/setup.err")"
	exit 77
}
[ -x /usr/bin/chromium ] || { log "SKIP: /usr/bin/chromium missing (apt-get install chromium)"; exit 77; }
tok=$(sim_login @alice:localhost WEBDEV)
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $tok" \
    -H 'Content-Type: application/json' -d '{}' "$API_URL$SS?timeout=0")
if [ "$code" = 404 ]; then
	log "SKIP: the api serves no sliding sync yet ($SS: 404)"
	exit 77
fi

# three rooms of alice's and bob's, and one with hostile content; their
# last messages go out in this order, so the newest is the last sent
hostile=('<img src=x onerror="window.__xss=1">' '<b>bold</b>' \
    '</li><script>window.__xss=2</script>' 'plain')
ids=()
for name in 'Garden' 'Kitchen' '<img src=y onerror=window.__xss=3>' 'Attic'; do
	id=$(sim rooms "$(jq -cn --arg n "$name" '{creator:"@alice:localhost",name:$n}')" | jq -r .room_id)
	sim "rooms/$id/join" '{"user_id":"@bob:localhost","displayname":"Bob"}' >/dev/null
	ids+=("$id")
done
xroom=${ids[2]}
for m in "${hostile[@]}"; do
	sim "rooms/$xroom/send" "$(jq -cn --arg b "$m" '{sender:"@bob:localhost",type:"m.room.message",content:{msgtype:"m.text",body:$b}}')" >/dev/null
done
for id in "${ids[@]}"; do
	[ "$id" = "$xroom" ] && continue
	sim "rooms/$id/send" '{"sender":"@bob:localhost","type":"m.room.message","content":{"msgtype":"m.text","body":"hello"}}' >/dev/null
done
# newest first: Attic, Kitchen, Garden (sent last to first), then the
# hostile room, whose last message went out before theirs
want=$(jq -cn --arg a "${ids[3]}" --arg k "${ids[1]}" --arg g "${ids[0]}" --arg x "$xroom" '[$a,$k,$g,$x]')
v3 "$tok" "" '{}' 10000 >/dev/null # alice's device is polled and synced
assert_eq "$(last_status)" 200 "alice's first sync"
# typing comes from the sliding sync typing extension
sim "rooms/${ids[1]}/typing" '{"user_ids":["@bob:localhost"]}' >/dev/null
sleep 1
typ=$(curl -sS -X POST -H "Authorization: Bearer $tok" -H 'Content-Type: application/json' \
    -d '{"lists":{"all":{"ranges":[[0,9]],"timeline_limit":1}},"extensions":{"typing":{"enabled":true}}}' \
    "$API_URL$SS?timeout=0" | jq --arg r "${ids[1]}" '.extensions.typing.rooms[$r].content.user_ids // [] | length')
sim "rooms/${ids[1]}/typing" '{"user_ids":[]}' >/dev/null
assert_eq "$typ" 1 "the typing extension serves bob's typing"
nx=$(($(sim_get "rooms/$xroom/events" | jq '[.events[] | select(.type == "m.room.message")] | length')))
out=$(cd "$JS" && API_URL=$API_URL SIMHS_URL=$SIMHS_URL ACCESS_TOKEN=$tok ROOMS=$want \
    XSS_ROOM=$xroom XSS_EVENTS=$nx OTHER_ID=@bob:localhost SHOT=$T/webview.png \
    CHECK_TYPING=1 \
    timeout 120 "$node22" webview_test.mjs 2>"$T/browser.err") ||
    fail "webview_test.mjs: $(tail -5 "$T/browser.err")"
out=$(printf '%s\n' "$out" | sed -n 's/^RESULT //p')
log "browser: $(jq -c '{live_ms, timeline_live_ms, names, initials, unread}' <<<"$out")"
assert_jq "$out" '.error // null' null "the browser part ran to its end (page: $(jq -c '[.status, .dom_rooms, .console]' <<<"$out"))"
assert_jq "$out" .order "$want" "rooms in bump order"
assert_jq "$out" '.names' '["Attic","Kitchen","Garden","<img src=y onerror=window.__xss=3>"]' \
    "names, a hostile one as text"
assert_jq "$out" '.initials' '["A","K","G","IS"]' "avatars as initials"
assert_jq "$out" '.order_after' "$(jq -c '[.[-1]] + .[:-1]' <<<"$want")" \
    "a message upstream brings the last room to the top"
assert_jq "$out" '.live_ms < 1000' true "within a second ($(jq .live_ms <<<"$out") ms)"
assert_jq "$out" .typing true "typing shows"
for m in "${hostile[@]}"; do
	jq -e --arg m "$m" '[.timeline[] | select(. == $m)] | length == 1' <<<"$out" >/dev/null ||
	    fail "timeline does not show $m as text: $(jq -c .timeline <<<"$out")"
done
assert_jq "$out" '[.html_elements, .xss]' '[0,null]' "hostile content created no element and ran nothing"
assert_jq "$out" '.timeline_live_ms < 1000' true "a message reaches the open timeline within a second"
assert_jq "$out" '[.unread[] > 0]' '[true,true,true,true]' "unread counts of bob's messages shown"
assert_jq "$out" '.token_field' '""' "the token field is cleared"
assert_jq "$out" '.console' '[]' "no script error or CSP violation in the console"
[ -s "$T/webview.png" ] || fail "no screenshot"
if [ -n "${TEST_ARTIFACTS:-}" ]; then
	mkdir -p "$TEST_ARTIFACTS" && cp "$T/webview.png" "$TEST_ARTIFACTS/t_webview.png"
fi
log "screenshot: $T/webview.png${TEST_ARTIFACTS:+ and $TEST_ARTIFACTS/t_webview.png}"
it_pass
