#!/usr/bin/env bash
# CORS in a real browser (issue #12): headless Chromium loads a page from
# another origin (a loopback port) whose script calls the api with an
# Authorization header: whoami and a PUT send (passed through, each after
# a pre-flight the api answers; one with a header outside Allow-Headers fails), /versions and the api's own POST /sync
# all readable by the page, and so is an ETag, with If-Match and
# If-None-Match sent (MSC4108's rendezvous, QR code login). Skips (exit 77) without chromium or the
# tests/js packages.
source "$(dirname "$0")/lib.sh"

JS=$IT_ROOT/tests/js
node22=$(SETUP_NO_APT=1 "$JS/setup.sh" 2>"$T/setup.err") || {
	log "SKIP: node/npm or tests/js packages unavailable: $(tail -1 "$T/setup.err")"
	exit 77
}
[ -x /usr/bin/chromium ] || { log "SKIP: /usr/bin/chromium missing (apt-get install chromium)"; exit 77; }
start_stack
tok=$(sim_login @alice:localhost BRDEV)
room=$(sim rooms '{"creator":"@alice:localhost","name":"Browser"}' | jq -r .room_id)
out=$(cd "$JS" && API_URL=$API_URL ACCESS_TOKEN=$tok ROOM_ID=$room \
    timeout 90 "$node22" browser_test.mjs 2>"$T/browser.err") ||
    fail "browser_test.mjs: $(tail -5 "$T/browser.err")"
out=$(printf '%s\n' "$out" | sed -n 's/^RESULT //p')
assert_jq "$out" '[.whoami.status,.whoami.body.user_id,.flag,.sent.status,.v3]' \
    '[200,"@alice:localhost",true,200,200]' "cross-origin calls readable"
assert_jq "$out" '.origin != env.API_URL' true "page from another origin"
# MSC4108's rendezvous headers: If-Match / If-None-Match sent, ETag read
assert_jq "$out" '[.rz.status,(.rz.etag|type),.rz.if_match,.rz.if_none_match]' \
    '[200,"string","\"e1\"","\"e1\""]' "rendezvous headers cross-origin"
# the browser does check: a header outside Allow-Headers fails its
# pre-flight, and a server without CORS headers is unreadable
assert_jq "$out" '[.custom_blocked,.blocked]' '[true,true]' "the browser enforces CORS"
ev=$(printf '%s' "$out" | jq -r .sent.body.event_id)
assert_jq "$(sim_get "rooms/$room/events")" "[.events[] | select(.event_id == \"$ev\") | .content.body]" \
    '["hello from chromium"]' "browser's message stored upstream"
it_pass
