# tests/bench/figures.jq: run.sh's JSON from its sections' results ($r[0],
# by section name, absent when skipped): the machine, each section's
# result, the figures (one flat object of numbers, what compare.sh
# compares) and the goals of issues #6, #11 and #13 beside them.
def size_keys(o): o | keys_unsorted | map(select(test("^[0-9]+$")));
$r[0] as $s |
($s.ingest) as $i | ($s.e2e) as $e | ($s.first) as $fr | ($s.idle) as $l |
($s.devices) as $d |
($s.cold[0]?) as $c |
($s.typing // [] | map(select(.quiet)) | last) as $ty |
($s.rss // [] | map(select(.idle_rss_mib)) | last) as $rs |
($s.ss // [] | map(select(.new_connection_p50_ms)) | last) as $ss |
($s.ss_e2e // [] | {phases: map(select(.phase)),
                    background: map(select(.background)),
                    hops: map(select(.hops))}) as $se |
($s.ss_login // [] | {first_window: map(select(.login_to_first_window_ms)),
                      idle: (map(select(.idle_sliding_connections)) | last)}) as $sl |
($s.pg | if . == null then null else
   . + {bytes_per_event: ((.events_bytes + .state_bytes) / ([.events, 1] | max)),
        database_bytes_per_event: (.database_bytes / ([.events, 1] | max))} end) as $p |
{
  machine: {nproc: ($nproc | tonumber), loadavg_start: $load0, loadavg_end: $load1,
            loadavg_1min_max: ($loadmax | tonumber), commit: $commit, bin: $bin,
            run_secs: ($secs | tonumber), postgres_settings: $pgset,
            sections: ($s | keys - ["pg"]), section_runs: $runs[0]},
  ingest: $i, e2e: $e, first_response: $fr, idle_long_polls: $l,
  poller_devices: $d, postgres: $p, cold: $c, typing: $ty, rss: $rs,
  ss_new_connection: $ss, ss_e2e: $se, ss_login: $sl,
  figures: ((if $i then {
      ingest_events_per_s: $i.events_per_s,
      ingest_events_per_s_min: $i.events_per_s_min,
      ingest_events_per_s_median: $i.events_per_s_median,
      ingest_events_per_s_max: $i.events_per_s_max,
      ingest_ack_p50_ms: $i.ack_latency.p50_ms_median_interval,
      ingest_ack_p95_ms: $i.ack_latency.p95_ms_worst_interval,
      ingest_ack_p99_ms: $i.ack_latency.p99_ms_worst_interval,
      ingest_ack_max_ms: $i.ack_latency.max_ms,
      ingest_ack_p95_ms_median: $i.ack_latency.p95_ms_median_interval,
      ingest_ack_p99_ms_median: $i.ack_latency.p99_ms_median_interval,
      ingest_bodies_per_commit: $i.ack_latency.bodies_per_commit_avg,
      ingest_commit_ms_avg: $i.ack_latency.commit_ms_avg,
      ingest_commit_wait_ms_avg: $i.ack_latency.durable_ms_avg,
      ingest_upstream_held_secs: $i.upstream_held_secs,
      ingest_pg_backend_buffers_written: $i.pg_buffers_written.backend,
      cpu_s_per_1000_events_accumulator: $i.cpu_s_per_1000_events.accumulator,
      cpu_s_per_1000_events_poller: $i.cpu_s_per_1000_events.poller,
      cpu_s_per_1000_events_api: $i.cpu_s_per_1000_events.api,
      cpu_s_per_1000_events_postgres: $i.cpu_s_per_1000_events.postgres,
      cpu_s_per_1000_events_simhs: $i.cpu_s_per_1000_events.simhs
    } else {} end)
    + (if $e then {e2e_p50_ms: $e.p50_ms, e2e_p95_ms: $e.p95_ms, e2e_p99_ms: $e.p99_ms,
                   e2e_rate: $e.rate} else {} end)
    + (if $l then {api_bytes_per_idle_long_poll: $l.bytes_per_long_poll} else {} end)
    + (if $d then {poller_bytes_per_idle_device: $d.bytes_per_device} else {} end)
    + (if $p then {pg_bytes_per_event: $p.bytes_per_event} else {} end)
    + (if $fr then [$sizes | split(",")[] as $n |
          {("first_response_p50_ms_" + $n): $fr[$n].p50_ms,
           ("first_response_p99_ms_" + $n): $fr[$n].p99_ms}] | add else {} end)
    + (if $c then [size_keys($c.sizes)[] as $n | $c.sizes[$n] as $z |
          {("new_device_p50_ms_" + $n): $z.sibling_first.p50_ms,
           ("new_device_max_ms_" + $n): $z.sibling_first.max_ms,
           ("cold_login_first_p50_ms_" + $n): $z.cold_first.p50_ms,
           ("cold_login_first_max_ms_" + $n): $z.cold_first.max_ms,
           ("cold_login_stored_p50_ms_" + $n): $z.cold_stored.p50_ms}] | add
       else {} end)
    + (if $ty then {typing_quiet_p50_ms: $ty.quiet.p50_ms, typing_quiet_p99_ms: $ty.quiet.p99_ms,
                    typing_load_p50_ms: $ty.load.p50_ms, typing_load_p99_ms: $ty.load.p99_ms,
                    to_device_quiet_p50_ms: $ty.to_device.quiet.p50_ms,
                    to_device_quiet_p99_ms: $ty.to_device.quiet.p99_ms,
                    to_device_load_p50_ms: $ty.to_device.load.p50_ms,
                    to_device_load_p99_ms: $ty.to_device.load.p99_ms} else {} end)
    + (if $rs then {rss_idle_mib_total: $rs.idle_rss_mib.total,
                    rss_idle_mib_poller: $rs.idle_rss_mib.poller,
                    rss_idle_mib_accumulator: $rs.idle_rss_mib.accumulator,
                    rss_peak_mib_poller: $rs.peak_mib.poller,
                    rss_peak_mib_accumulator: $rs.peak_mib.accumulator} else {} end)
    + (if $ss then {("ss_new_connection_p50_ms_" + ($ss.rooms | tostring)): $ss.new_connection_p50_ms,
                    ("ss_new_connection_p99_ms_" + ($ss.rooms | tostring)): $ss.new_connection_p99_ms}
       else {} end)
    + ([$se.phases | to_entries[] | (["low", "high"][.key]) as $k |
          {("ss_message_" + $k + "_p50_ms"): .value.from_accepted_ms.p50,
           ("ss_message_" + $k + "_p99_ms"): .value.from_accepted_ms.p99}] | add // {})
    + ([$sl.first_window[] |
          {("ss_login_first_window_p50_ms_" + (.rooms | tostring)): .login_to_first_window_ms.p50,
           ("ss_login_first_window_max_ms_" + (.rooms | tostring)): .login_to_first_window_ms.worst}]
       | add // {})
    + (if $sl.idle then {ss_api_bytes_per_idle_connection: ($sl.idle.kb_per_connection * 1024)}
       else {} end)),
  # the goals of the issues, by figure; a size-specific goal only at its size
  goals: {
    ingest_events_per_s: ">= 40000 (200 devices)", ingest_events_per_s_min: "steady",
    e2e_p50_ms: "<= 5 (1000 ev/s, 100 clients)", e2e_p99_ms: "<= 50 (1000 ev/s, 100 clients)",
    first_response_p50_ms_10000: "<= 2", first_response_p99_ms_10000: "<= 10",
    api_bytes_per_idle_long_poll: "<= 20480", poller_bytes_per_idle_device: "<= 65536",
    new_device_p50_ms_1000: "<= 20", new_device_p50_ms_10000: "<= 50",
    cold_login_first_p50_ms_10000: "<= 500",
    typing_quiet_p50_ms: "<= 1", typing_quiet_p99_ms: "<= 2",
    to_device_quiet_p50_ms: "<= 1.5", to_device_quiet_p99_ms: "<= 3",
    rss_idle_mib_total: "<= 100 (after five 10k-room logins)",
    ss_new_connection_p50_ms_10000: "<= 2", ss_new_connection_p99_ms_10000: "<= 10",
    ss_message_low_p50_ms: "<= 2.5 (50 users, 25 msg/s)",
    ss_message_high_p99_ms: "<= 50 (1000 ev/s)",
    ss_login_first_window_p50_ms_1000: "<= 200", ss_login_first_window_p50_ms_10000: "<= 500"
  }
}
