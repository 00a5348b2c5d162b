# tests/bench/table.jq: run.sh's table from its JSON, one row a line:
# figure, value, goal (from .goals, where an issue sets one), tab-separated.
# A skipped section has no rows.
def n(x; d): if x == null then "-" else (x * pow(10; d) | round / pow(10; d) | tostring) end;
def row(a; b; c): "\(a)\t\(b)\t\(c)";
.figures as $f | .goals as $g | .ingest as $i | .e2e as $e | .idle_long_polls as $l |
.poller_devices as $d | .postgres as $p | .first_response as $fr |
def fig(t; k; d): row(t; n($f[k]; d); $g[k] // "");
row("figure"; "value"; "goal"),
(if .cold then .cold.sizes | keys_unsorted[] as $n |
   fig("new device of a stored account, \($n) rooms, p50 ms (of \(.[$n].sibling_first.n))"; "new_device_p50_ms_\($n)"; 1),
   fig("new device of a stored account, \($n) rooms, max ms"; "new_device_max_ms_\($n)"; 1),
   fig("cold login, \($n) rooms, first response p50 ms (of \(.[$n].cold_first.n))"; "cold_login_first_p50_ms_\($n)"; 1),
   fig("cold login, \($n) rooms, first response max ms"; "cold_login_first_max_ms_\($n)"; 1),
   fig("cold login, \($n) rooms, whole initial sync stored p50 ms"; "cold_login_stored_p50_ms_\($n)"; 1)
 else empty end),
(if .typing then
   (["typing", "to_device"][] as $k | ["quiet", "load"][] as $q | ["p50", "p99"][] as $pc |
    fig("\($k | sub("_"; "-")) upstream -> long-polling client, \(if $q == "quiet" then "quiet" else "under load (\(.typing.load.rate) ev/s, \(.typing.load.clients) clients)" end), \($pc) ms";
        "\($k)_\($q)_\($pc)_ms"; 2))
 else empty end),
(if $i then
  row("ingest, timeline events/s (\($i.events_committed)/\($i.events_sent) ev, \($i.devices) devices, \($i.rooms) rooms)"; n($f.ingest_events_per_s; 0); $g.ingest_events_per_s),
  row("ingest events/s over whole seconds, min / median / max"; "\(n($f.ingest_events_per_s_min; 0)) / \(n($f.ingest_events_per_s_median; 0)) / \(n($f.ingest_events_per_s_max; 0))"; $g.ingest_events_per_s_min),
  row("ingest ack latency ms (accumulator, 1 s intervals): p50 median, p95 / p99 worst, max"; "\(n($f.ingest_ack_p50_ms; 0)) \(n($f.ingest_ack_p95_ms; 0))/\(n($f.ingest_ack_p99_ms; 0)) \(n($f.ingest_ack_max_ms; 0))"; ""),
  row("ingest ack latency ms, p95 / p99 of the median interval"; "\(n($f.ingest_ack_p95_ms_median; 0)) / \(n($f.ingest_ack_p99_ms_median; 0))"; ""),
  row("ingest commits: bodies each, ms each (of which COMMIT)"; "\(n($f.ingest_bodies_per_commit; 1)) \(n($f.ingest_commit_ms_avg; 1)) (\(n($f.ingest_commit_wait_ms_avg; 1)))"; ""),
  row("ingest \($i.upstream_send_secs // 0 | floor) s of sends, s held for commits (~all: the stack bounds the rate)"; n($f.ingest_upstream_held_secs; 2); ""),
  row("ingest: 8 kB buffers Postgres backends wrote themselves (shared_buffers full)"; n($f.ingest_pg_backend_buffers_written; 0); "")
 else empty end),
(if .rss then
   fig("RSS after \(.rss.logins) logins of \(.rss.rooms) rooms, idle, poller + accumulator MiB"; "rss_idle_mib_total"; 0),
   fig("  idle, poller MiB"; "rss_idle_mib_poller"; 0),
   fig("  idle, accumulator MiB"; "rss_idle_mib_accumulator"; 0),
   fig("  peak, poller MiB"; "rss_peak_mib_poller"; 0),
   fig("  peak, accumulator MiB"; "rss_peak_mib_accumulator"; 0)
 else empty end),
(if $e then
  fig("end-to-end p50 ms (\($e.rate) ev/s, \($e.clients) clients, \($e.events_received)/\($e.events_sent) seen)"; "e2e_p50_ms"; 1),
  fig("end-to-end p95 ms"; "e2e_p95_ms"; 1),
  fig("end-to-end p99 ms"; "e2e_p99_ms"; 1)
 else empty end),
(if $fr then ($fr | keys_unsorted[] | select(test("^[0-9]+$"))) as $s |
    fig("first response (room_list first page) p50 ms, \($s) rooms"; "first_response_p50_ms_\($s)"; 1),
    fig("first response (room_list first page) p99 ms, \($s) rooms"; "first_response_p99_ms_\($s)"; 1)
 else empty end),
(if .ss_new_connection then .ss_new_connection.rooms as $n |
   fig("sliding sync new connection, \($n) rooms, p50 ms"; "ss_new_connection_p50_ms_\($n)"; 2),
   fig("sliding sync new connection, \($n) rooms, p99 ms"; "ss_new_connection_p99_ms_\($n)"; 2)
 else empty end),
(.ss_e2e.phases | to_entries[] | (["low", "high"][.key]) as $k |
   fig("message -> sliding sync long poll, \(.value.phase), p50 ms"; "ss_message_\($k)_p50_ms"; 2),
   fig("message -> sliding sync long poll, \(.value.phase), p99 ms"; "ss_message_\($k)_p99_ms"; 2)),
(.ss_login.first_window[] | .rooms as $n |
   fig("sliding sync login never seen, \($n) rooms, first window p50 ms (of \(.samples))"; "ss_login_first_window_p50_ms_\($n)"; 1),
   fig("sliding sync login never seen, \($n) rooms, first window worst ms"; "ss_login_first_window_max_ms_\($n)"; 1)),
(if .ss_login.idle then
   fig("api bytes per idle sliding sync connection (\(.ss_login.idle.idle_sliding_connections) held)"; "ss_api_bytes_per_idle_connection"; 0)
 else empty end),
(if $l then fig("api bytes per idle long-poll (\($l.long_polls) held)"; "api_bytes_per_idle_long_poll"; 0) else empty end),
(if $d then fig("poller bytes per idle device (\($d.devices) devices)"; "poller_bytes_per_idle_device"; 0) else empty end),
(if $p then
  row("postgres bytes per event (events+state, \($p.events) events)"; n($f.pg_bytes_per_event; 0); ""),
  row("postgres bytes per event (whole database)"; n($p.database_bytes_per_event; 0); "")
 else empty end),
(if $i then ["accumulator", "poller", "api", "postgres", "simhs"][] as $k |
    row("CPU s per 1000 events (ingest), \($k)"; n($i.cpu_s_per_1000_events[$k]; 3); "") else empty end),
(if $e then ["accumulator", "poller", "api", "postgres", "simhs"][] as $k |
    row("CPU s per 1000 events (e2e steady), \($k)"; n($e.cpu_s_per_1000_events[$k]; 3); "") else empty end),
(if .machine.postgres_settings then
  row("postgres: fsync \(.machine.postgres_settings.fsync), synchronous_commit \(.machine.postgres_settings.synchronous_commit), max_wal_size \(.machine.postgres_settings.max_wal_size), wal_compression \(.machine.postgres_settings.wal_compression)"; ""; "")
 else empty end),
row("machine: nproc \(.machine.nproc), load \(.machine.loadavg_start) -> \(.machine.loadavg_end), max 1-min \(.machine.loadavg_1min_max)"; "\(.machine.run_secs) s"; "")
,
(.machine.section_runs // {} | to_entries[] |
  row("  section \(.key): load \(.value.loadavg_start) -> \(.value.loadavg_end)"; "\(.value.secs) s"; ""))
