#!/usr/bin/env bash
# it: serial
# The whole benchmark (tests/bench/run.sh) at its --tiny size, so it never
# rots, and tests/bench/compare.sh on its result. Asserts only that every
# figure is in the JSON and is a number, and how compare.sh reads them;
# never a time.
source "$(dirname "$0")/lib.sh"
out=$T/bench.json
bash "$IT_ROOT/tests/bench/run.sh" --tiny -o "$out" >"$T/bench.out" 2>&1 || {
	cat "$T/bench.out" >&2; fail "run.sh --tiny"; }
cat "$T/bench.out" >&2
for k in ingest_events_per_s e2e_p50_ms e2e_p95_ms e2e_p99_ms \
    api_bytes_per_idle_long_poll poller_bytes_per_idle_device \
    pg_bytes_per_event cpu_s_per_1000_events_accumulator \
    ingest_bodies_per_commit ingest_commit_ms_avg ingest_pg_backend_buffers_written \
    cpu_s_per_1000_events_poller cpu_s_per_1000_events_api \
    first_response_p50_ms_20 first_response_p99_ms_20 \
    first_response_p50_ms_100 first_response_p99_ms_100 \
    new_device_p50_ms_30 cold_login_first_p50_ms_30 \
    typing_quiet_p50_ms typing_quiet_p99_ms typing_load_p50_ms typing_load_p99_ms \
    to_device_quiet_p50_ms to_device_quiet_p99_ms \
    to_device_load_p50_ms to_device_load_p99_ms \
    rss_idle_mib_total rss_peak_mib_poller rss_peak_mib_accumulator \
    ss_new_connection_p50_ms_30 ss_new_connection_p99_ms_30 \
    ss_message_low_p50_ms ss_message_low_p99_ms \
    ss_message_high_p50_ms ss_message_high_p99_ms \
    ss_login_first_window_p50_ms_30 ss_api_bytes_per_idle_connection; do
	assert_jq "$(cat "$out")" ".figures.$k | type" '"number"' "figure $k"
done
assert_jq "$(cat "$out")" '[.figures[] | select(type != "number")] | length' 0 \
    "every figure numeric"
assert_jq "$(cat "$out")" '.machine.nproc | type' '"number"' "core count"
# the idle figure is of long-polls held: none may be answered (a session
# expired by the per-device cap is answered at once with 400)
assert_jq "$(cat "$out")" '.idle_long_polls.answered_early' 0 "idle long-polls held"
# the goals name figures of the run
assert_jq "$(cat "$out")" '.goals.typing_quiet_p50_ms | type' '"string"' "a goal"
grep -q 'to-device upstream -> long-polling client, quiet, p50 ms' "$T/bench.out" ||
    fail "no to-device row in the table"
# compare.sh: a figure doubled reads +100%, one missing "-"
jq '.figures.e2e_p50_ms *= 2 | del(.figures.rss_idle_mib_total)' "$out" >"$T/after.json"
bash "$IT_ROOT/tests/bench/compare.sh" "$out" "$T/after.json" >"$T/cmp.out" ||
    fail "compare.sh"
cat "$T/cmp.out" >&2
assert_eq "$(awk '$1 == "e2e_p50_ms" { print $4 }' "$T/cmp.out")" "+100%" "doubled figure"
assert_eq "$(awk '$1 == "rss_idle_mib_total" { print $3, $4 }' "$T/cmp.out")" "- -" "missing figure"
assert_eq "$(awk '$1 == "typing_quiet_p50_ms" { print $4 }' "$T/cmp.out")" "0%" "same figure"
assert_eq "$(grep -c . "$T/cmp.out")" "$(( $(jq '.figures | length' "$out") + 3 ))" \
    "one row per figure"
# skipping sections: only what was asked for
bash "$IT_ROOT/tests/bench/run.sh" --tiny --only ss -o "$T/ss.json" >"$T/ss.out" 2>&1 || {
	cat "$T/ss.out" >&2; fail "run.sh --only ss"; }
assert_jq "$(cat "$T/ss.json")" '.machine.sections' '["ss"]' "--only ss"
assert_jq "$(cat "$T/ss.json")" '.figures | keys' \
    '["ss_new_connection_p50_ms_30","ss_new_connection_p99_ms_30"]' "--only ss figures"
it_pass
