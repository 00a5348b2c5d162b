#!/usr/bin/env bash
# Sliding sync e2ee extension (MSC3884): the device's one-time key counts
# (signed_curve25519 always named) and unused fallback key types on every
# response, the first one included; device_lists.changed/left only with
# a pos, the changes after it; a long-poll is woken by new key counts and
# by a device list change. An unknown extension is ignored. The same on
# /v4/sync.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_ss_ext.sh"

start_stack
tok=$(sim_login @alice:localhost A1)
room=$(ss_mk Shared)
sim "rooms/$room/join" '{"user_id":"@bob:localhost"}' >/dev/null
body='{"lists":{"w":{"ranges":[[0,5]],"timeline_limit":1}},"extensions":{"e2ee":{"enabled":true},"org.matrix.msc4354.sticky_events":{"enabled":true,"limit":100}}}'
e='.extensions.e2ee'
out=$(ss_ready "$tok" "$body")
assert_jq "$out" "$e.device_one_time_keys_count" '{"signed_curve25519":0}' "counts on the first response"
assert_jq "$out" "$e.device_unused_fallback_key_types" '[]' "fallback types on the first response"
assert_jq "$out" "$e|has(\"device_lists\")" 'false' "no device lists without a pos"
assert_jq "$out" '.extensions|keys' '["e2ee"]' "unknown extension ignored"
p=$(ss_pos "$out")
out=$(ss "$tok" "$p" "$body" 0)
assert_jq "$out" "$e.device_lists" '{"changed":[],"left":[]}' "with a pos: device lists, empty"
assert_jq "$out" "$e.device_one_time_keys_count.signed_curve25519" '0' "counts every time"
p=$(ss_pos "$out")
# woken by new key counts
keys() {
	sim keys '{"user_id":"@alice:localhost","device_id":"A1","one_time_keys_count":{"signed_curve25519":50},"unused_fallback_key_types":["signed_curve25519"]}' >/dev/null
	# key counts alone do not answer upstream's long-poll (as on
	# Synapse): account data, which this connection does not ask for,
	# brings them
	sim account_data '{"user_id":"@alice:localhost","type":"org.x.nudge","content":{}}' >/dev/null
}
ss_woken_by lp "$tok" "$p" "$body" keys
assert_jq "$out" "$e.device_one_time_keys_count" '{"signed_curve25519":50}' "new counts"
assert_jq "$out" "$e.device_unused_fallback_key_types" '["signed_curve25519"]' "fallback types"
p=$(ss_pos "$out")
# woken by a device list change of a user sharing a room
ss_woken_by lp2 "$tok" "$p" "$body" "sim device_change '{\"user_id\":\"@bob:localhost\"}' >/dev/null"
assert_jq "$out" "$e.device_lists.changed" '["@bob:localhost"]' "bob changed"
assert_jq "$out" "$e.device_one_time_keys_count.signed_curve25519" '50' "counts kept"
p=$(ss_pos "$out")
# bob leaves the only shared room: left
sim "rooms/$room/leave" '{"user_id":"@bob:localhost"}' >/dev/null
ok=""
for i in 1 2 3 4 5; do
	out=$(ss "$tok" "$p" "$body" 2000)
	p=$(ss_pos "$out")
	if printf '%s' "$out" | jq -e "$e.device_lists.left|index(\"@bob:localhost\")" >/dev/null; then ok=1; break; fi
done
[ -n "$ok" ] || fail "bob not in device_lists.left"
# the merged dialect (/v4/sync, pos in the body) serves the same
out=$(ss4 "$tok" "{\"conn_id\":\"v4\",\"extensions\":{\"e2ee\":{\"enabled\":true}}}")
assert_jq "$out" "$e.device_one_time_keys_count.signed_curve25519" '50' "v4: counts"
out=$(ss4 "$tok" "{\"conn_id\":\"v4\",\"pos\":\"$(ss_pos "$out")\"}")
assert_jq "$out" "$e.device_lists" '{"changed":[],"left":[]}' "v4: sticky, device lists with a pos"
# nothing new: the counts alone do not answer a long-poll
ss_bg idle "$tok" "$p" "$body" 1500
ss_wait idle
[ "$(cat "$T/idle.ms")" -ge 1400 ] || fail "answered early with nothing new ($(cat "$T/idle.ms") ms)"
assert_jq "$out" "$e.device_lists" '{"changed":[],"left":[]}' "no changes"
# fallback key types as the homeserver said them: under MSC2732's name
# only (older Synapse), served under the stable one; not said at all (no
# fallback key support: ruma, Conduit), absent, not [] (matrix-rust-sdk's
# Account::update_key_counts makes a fallback key on [], not on absent)
fb=.device_unused_fallback_key_types
for d in U1:unstable N1:none; do
	t=$(sim_login @alice:localhost "${d%%:*}")
	sim keys "{\"user_id\":\"@alice:localhost\",\"device_id\":\"${d%%:*}\",\"fallback_names\":\"${d#*:}\",\"unused_fallback_key_types\":[\"signed_curve25519\"]}" >/dev/null
	out=$(ss_ready "$t" "$body")
	if [ "${d#*:}" = none ]; then
		assert_jq "$out" "$e|has(\"${fb#.}\")" false "fallback types not said: absent"
	else
		assert_jq "$out" "$e$fb" '["signed_curve25519"]' "fallback types under the MSC2732 name"
	fi
	assert_jq "$out" "$e.device_one_time_keys_count" '{"signed_curve25519":0}' "${d%%:*}: counts"
done
it_pass
