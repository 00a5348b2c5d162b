#!/usr/bin/env bash
# The whole-pipeline benchmark (tests/bench/run.sh) at its --tiny size, so
# it never rots. Asserts only that every figure is in the JSON and is a
# number; never a time.
source "$(dirname "$0")/lib.sh"
out=$T/bench.json
bash "$IT_ROOT/tests/bench/run.sh" --tiny -o "$out" >"$T/bench.out" 2>&1 || {
	cat "$T/bench.out" >&2; fail "run.sh --tiny"; }
cat "$T/bench.out" >&2
for k in ingest_events_per_s e2e_p50_ms e2e_p95_ms e2e_p99_ms \
    api_bytes_per_idle_long_poll poller_bytes_per_idle_device \
    pg_bytes_per_event cpu_s_per_1000_events_accumulator \
    cpu_s_per_1000_events_poller cpu_s_per_1000_events_api \
    first_response_p50_ms_20 first_response_p99_ms_20 \
    first_response_p50_ms_100 first_response_p99_ms_100; do
	assert_jq "$(cat "$out")" ".figures.$k | type" '"number"' "figure $k"
done
assert_jq "$(cat "$out")" '[.figures[] | select(type != "number")] | length' 0 \
    "every figure numeric"
assert_jq "$(cat "$out")" '.machine.nproc | type' '"number"' "core count"
it_pass
