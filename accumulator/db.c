/*
 * The writer connection and its statements: one blocking libpq
 * connection, which is fine here because this process does one thing and
 * a single writer is what makes positions commit in order (contract 2).
 * Every statement the store runs is in stmts[] below, prepared once per
 * connection; db_q/db_q0/db_copy are how the files above run them. This
 * file knows nothing of batches or positions; store.c decides when to
 * (re)connect.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "accumulator.h"
#include "pg.h"
#include "pg_lit.h"
#include "sqlarr.h"
#include "store_int.h"
#include "util.h"

/* Distinct from pg.c's migration lock ("syncv3" in hex). */
#define WRITER_LOCK_KEY "7370796e63763301"

/*
 * Sliding sync's sort key of a room (006_sliding_sync.sql), in the room
 * upsert: only moved forward, by (bump_ts, bump_nid). Its members' keys
 * follow in the upsert's statement trigger (022_ingest.sql).
 */
#define ROOMS_BUMP_FWD(col)                                                    \
	"CASE WHEN (syncv3_rooms.bump_ts, syncv3_rooms.bump_nid) < "           \
	"(excluded.bump_ts, excluded.bump_nid) THEN excluded." col " ELSE "    \
	"syncv3_rooms." col " END"

static const struct stmt {
	const char *name, *sql;
} stmts[] = {
	[S_CAS] = {"acc_cas", "SELECT k.i, d.since, d.is_initial_done, "
	    "d.cover_pos IS NOT NULL FROM "
	    "unnest($1::text[], $2::text[]) WITH ORDINALITY AS k(u, dv, i) "
	    "JOIN syncv3_devices d ON d.user_id = k.u AND d.device_id = k.dv "
	    "ORDER BY d.user_id, d.device_id FOR UPDATE OF d"},
	/* k.c > 0: a sibling-first sync, waiting from cover_pos k.c for a
	 * sibling to catch up; k.refill: done waiting; otherwise a device
	 * is synced once it is not waiting (008_cold.sql) */
	[S_SINCE] = {"acc_since", "UPDATE syncv3_devices d SET since = k.s, "
	    "is_initial_done = CASE WHEN k.c > 0 THEN false WHEN k.refill "
	    "THEN true ELSE d.is_initial_done OR d.cover_pos IS NULL END, "
	    "cover_pos = CASE WHEN k.c > 0 THEN k.c WHEN k.refill THEN NULL "
	    "ELSE d.cover_pos END FROM unnest($1::text[], $2::text[], "
	    "$3::text[], $4::bool[], $5::bigint[]) AS k(u, dv, s, refill, c) "
	    "WHERE d.user_id = k.u AND d.device_id = k.dv"},
	[S_CATCHUP] = {"acc_catchup", "SELECT pg_notify('"
	    PROTO_PG_CATCHUP_CHANNEL "', k.u || ' ' || k.c) FROM "
	    "unnest($1::text[], $2::bigint[]) AS k(u, c)"},
	/* a synced sibling (w) polled after their first commit: they are
	 * synced; a device waiting itself is no witness */
	[S_COVER] = {"acc_cover", "UPDATE syncv3_devices d SET "
	    "is_initial_done = true, cover_pos = NULL FROM unnest($1::text[], "
	    "$2::text[], $3::bigint[]) AS k(u, dv, c) JOIN syncv3_devices w ON "
	    "w.user_id = k.u AND w.device_id = k.dv WHERE w.is_initial_done "
	    "AND w.cover_pos IS NULL AND d.user_id = k.u AND d.device_id <> "
	    "k.dv AND d.cover_pos <= k.c RETURNING d.user_id, d.device_id"},
	/* the first window first (008_cold.sql) */
	/*
	 * The rest's ids, read once: those Postgres holds with a last or
	 * bump event at the cut ($2) or later (rows with an id), then how
	 * many of the others the user ($3) has no joined, invited or knocked
	 * row for (the row without an id: window_more). NOT IN, not NOT
	 * EXISTS: a hash of the user's rooms (none, for a user never seen)
	 * rather than an index probe per id, 37 to 1 ms for 9,900 ids.
	 */
	[S_WIN_REST] = {"acc_win_rest", "WITH x AS (SELECT k.id, EXISTS ("
	    "SELECT 1 FROM syncv3_rooms r WHERE r.room_id = k.id AND ("
	    "r.last_ts >= $2::bigint OR r.bump_ts >= $2::bigint)) AS hot "
	    "FROM unnest($1::text[]) AS k(id)) SELECT id, NULL::bigint FROM x "
	    "WHERE hot UNION ALL SELECT NULL, count(*) FROM x WHERE NOT hot "
	    "AND id NOT IN (SELECT u.room_id FROM syncv3_user_rooms u WHERE "
	    "u.user_id = $3 AND u.membership IN ('join', 'invite', 'knock'))"},
	[S_WINDOW] = {"acc_window", "UPDATE syncv3_devices SET window_pos = "
	    "$3::bigint, window_rooms = $4::int, window_cut = $5::bigint, "
	    "window_more = $6::int WHERE user_id = $1 AND device_id = $2 AND "
	    "NOT is_initial_done"},
	[S_FILL] = {"acc_fill", "UPDATE syncv3_devices SET fill_lo = "
	    "$3::bigint, fill_hi = $4::bigint WHERE user_id = $1 AND "
	    "device_id = $2"},
	[S_RESERVE] = {"acc_reserve", "SELECT setval('syncv3_pos_seq', "
	    "nextval('syncv3_pos_seq') + $1::bigint - 1)"},
	[S_POSITION] = {"acc_position", "UPDATE syncv3_position SET pos = "
	    "$1::bigint WHERE id = 1 AND pos < $1::bigint"},
	[S_KNOWN] = {"acc_known", "SELECT event_id, nid FROM syncv3_events "
	    "WHERE event_id = ANY($1::text[])"},
	/*
	 * The group's keys, each looked up by its index (S_CUR, S_UR_GET):
	 * OFFSET 0 keeps the lateral subquery a probe per key whatever the
	 * table's statistics say. A generic plan made while the table was
	 * near empty (a new stack, before autovacuum's first ANALYZE) hash
	 * joined all of it, and kept doing so as it grew: 165 ms of a cold
	 * login's 101-room window over 90,000 current state rows, against
	 * 6-10 ms of probes (tests/unit/test_store.c, test_lookup_plans).
	 */
	[S_CUR] = {"acc_cur", "SELECT k.i, s.nid, s.membership FROM "
	    "unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY "
	    "AS k(r, t, sk, i) CROSS JOIN LATERAL (SELECT s.nid, "
	    "s.membership FROM syncv3_state s WHERE s.room_id = k.r AND "
	    "s.type = k.t AND s.state_key = k.sk AND s.to_pos IS NULL "
	    "OFFSET 0) s"},
	[S_ST_CLOSE] = {"acc_st_close", "UPDATE syncv3_state s SET to_pos = "
	    "k.p FROM unnest($1::text[], $2::text[], $3::text[], "
	    "$4::bigint[]) AS k(r, t, sk, p) WHERE s.room_id = k.r AND "
	    "s.type = k.t AND s.state_key = k.sk AND s.to_pos IS NULL"},
	/* a small group's new events and state ranges (rooms.c, below
	 * ROWS_COPY_MIN rows): in the group's pipeline, where a COPY costs
	 * two waits of its own and a wait for what was sent before it */
	[S_EV_INS] = {"acc_ev_ins", "INSERT INTO syncv3_events (nid, "
	    "event_id, room_id, type, state_key, sender, membership, "
	    "origin_ts, is_timeline, json) SELECT * FROM unnest($1::bigint[], "
	    "$2::text[], $3::text[], $4::text[], $5::text[], $6::text[], "
	    "$7::text[], $8::bigint[], $9::boolean[], $10::text[])"},
	[S_ST_INS] = {"acc_st_ins", "INSERT INTO syncv3_state (room_id, type, "
	    "state_key, nid, from_pos, to_pos, membership) SELECT * FROM "
	    "unnest($1::text[], $2::text[], $3::text[], $4::bigint[], "
	    "$5::bigint[], $6::bigint[], $7::text[])"},
	[S_ROOMS_GET] = {"acc_rooms_get", "SELECT room_id, last_nid, last_ts,"
	    " name, canonical_alias, topic, avatar, room_type, is_encrypted, "
	    "joined_count, invited_count FROM syncv3_rooms "
	    "WHERE room_id = ANY($1::text[])"},
	[S_ROOMS_PUT] = {"acc_rooms_put", "INSERT INTO syncv3_rooms (room_id,"
	    " last_nid, last_ts, name, canonical_alias, topic, avatar, "
	    "room_type, is_encrypted, joined_count, invited_count, "
	    "updated_pos, bump_ts, bump_nid) SELECT * FROM unnest($1::text[], "
	    "$2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::text[], "
	    "$7::text[], $8::text[], $9::bool[], $10::int[], $11::int[], "
	    "$12::bigint[], $13::bigint[], $14::bigint[]) "
	    "ON CONFLICT (room_id) DO UPDATE SET last_nid = excluded.last_nid,"
	    " last_ts = excluded.last_ts, name = excluded.name, "
	    "canonical_alias = excluded.canonical_alias, topic = "
	    "excluded.topic, avatar = excluded.avatar, room_type = "
	    "excluded.room_type, is_encrypted = excluded.is_encrypted, "
	    "joined_count = excluded.joined_count, invited_count = "
	    "excluded.invited_count, updated_pos = excluded.updated_pos, "
	    "bump_ts = " ROOMS_BUMP_FWD("bump_ts") ", bump_nid = "
	    ROOMS_BUMP_FWD("bump_nid")},
	[S_UR_GET] = {"acc_ur_get", "SELECT k.i, u.membership, u.pos, "
	    "u.invite_state, u.heroes, u.notification_count, "
	    "u.highlight_count, u.prev_batch FROM unnest($1::text[], "
	    "$2::text[]) WITH ORDINALITY AS k(us, r, i) CROSS JOIN LATERAL "
	    "(SELECT * FROM syncv3_user_rooms u WHERE u.user_id = k.us AND "
	    "u.room_id = k.r OFFSET 0) u"},
	[S_UR_PUT] = {"acc_ur_put", "INSERT INTO syncv3_user_rooms (user_id,"
	    " room_id, membership, pos, invite_state, heroes, "
	    "notification_count, highlight_count, updated_pos, prev_batch) "
	    "SELECT * FROM unnest($1::text[], $2::text[], $3::text[], "
	    "$4::bigint[], $5::text[], $6::text[], $7::bigint[], "
	    "$8::bigint[], $9::bigint[], $10::text[]) "
	    "ON CONFLICT (user_id, room_id) DO UPDATE SET membership = "
	    "excluded.membership, pos = excluded.pos, invite_state = "
	    "excluded.invite_state, heroes = excluded.heroes, "
	    "notification_count = excluded.notification_count, "
	    "highlight_count = excluded.highlight_count, updated_pos = "
	    "CASE WHEN excluded.updated_pos = 0 THEN "
	    "syncv3_user_rooms.updated_pos ELSE excluded.updated_pos END, "
	    "prev_batch = excluded.prev_batch"},
	/* the rows S_UR_GET found, as S_UR_PUT's update: an upsert would run
	 * the BEFORE INSERT triggers of every row it is given (012, 016),
	 * which conflict and are thrown away */
	[S_UR_UPD] = {"acc_ur_upd", "UPDATE syncv3_user_rooms u SET "
	    "membership = k.m, pos = k.p, invite_state = k.inv, heroes = k.h, "
	    "notification_count = k.nc, highlight_count = k.hc, updated_pos = "
	    "CASE WHEN k.up = 0 THEN u.updated_pos ELSE k.up END, prev_batch = "
	    "k.pb FROM unnest($1::text[], $2::text[], $3::text[], "
	    "$4::bigint[], $5::text[], $6::text[], $7::bigint[], $8::bigint[], "
	    "$9::bigint[], $10::text[]) AS k(us, r, m, p, inv, h, nc, hc, up, "
	    "pb) WHERE u.user_id = k.us AND u.room_id = k.r"},
	/* S_UR_UPD's rows whose membership and pos stay, before the room
	 * upsert and with the keys it would give them (032_ur_keys.sql) */
	[S_UR_KEYS] = {"acc_ur_keys", "SELECT syncv3_ur_keys($1::text[], "
	    "$2::text[], $3::text[], $4::bigint[], $5::text[], $6::text[], "
	    "$7::bigint[], $8::bigint[], $9::bigint[], $10::text[], "
	    "$11::bool[], $12::bigint[], $13::bigint[], $14::bigint[])"},
	[S_TYPING] = {"acc_typing", "INSERT INTO syncv3_typing AS t (room_id,"
	    " user_ids, pos) SELECT * FROM unnest($1::text[], $2::text[], "
	    "$3::bigint[]) AS k(r, u, p) WHERE k.u <> '[]' OR EXISTS (SELECT"
	    " 1 FROM syncv3_typing x WHERE x.room_id = k.r) "
	    "ON CONFLICT (room_id) DO UPDATE SET user_ids = excluded.user_ids,"
	    " pos = excluded.pos WHERE t.user_ids <> excluded.user_ids "
	    "RETURNING room_id, pos, user_ids"},
	[S_RECEIPTS] = {"acc_receipts", "INSERT INTO syncv3_receipts AS x "
	    "(room_id, user_id, receipt_type, thread_id, event_id, ts, pos) "
	    "SELECT * FROM unnest($1::text[], $2::text[], $3::text[], "
	    "$4::text[], $5::text[], $6::bigint[], $7::bigint[]) "
	    "ON CONFLICT (room_id, user_id, receipt_type, thread_id) DO "
	    "UPDATE SET event_id = excluded.event_id, ts = excluded.ts, pos ="
	    " excluded.pos WHERE x.event_id <> excluded.event_id"},
	[S_ADATA] = {"acc_adata", "INSERT INTO syncv3_account_data AS a "
	    "(user_id, room_id, type, json, pos) SELECT * FROM "
	    "unnest($1::text[], $2::text[], $3::text[], $4::text[], "
	    "$5::bigint[]) ON CONFLICT (user_id, room_id, type) DO UPDATE SET "
	    "json = excluded.json, pos = excluded.pos WHERE a.json <> "
	    "excluded.json RETURNING pos"},
	[S_DKEYS] = {"acc_dkeys", "INSERT INTO syncv3_device_keys AS d "
	    "(user_id, device_id, otk_counts, fallback_types, pos) VALUES "
	    "($1, $2, coalesce($3::text, '{}'), $4::text, "
	    "$5::bigint) ON CONFLICT (user_id, device_id) DO UPDATE SET "
	    "otk_counts = coalesce($3::text, d.otk_counts), fallback_types = "
	    "coalesce($4::text, d.fallback_types), pos = $5::bigint WHERE "
	    "d.otk_counts <> coalesce($3::text, d.otk_counts) OR "
	    "d.fallback_types IS DISTINCT FROM coalesce($4::text, "
	    "d.fallback_types) RETURNING pos"},
	[S_POLL] = {"acc_poll", "UPDATE syncv3_devices SET poll_state = $3, "
	    "poll_error = $4, poll_updated = now() WHERE user_id = $1 AND "
	    "device_id = $2 AND left(token_hash, 16) = $5 RETURNING 1"},
	[S_MARK] = {"acc_mark", "INSERT INTO syncv3_pos_marks (at, pos) "
	    "VALUES (now(), $1::bigint)"},
	[S_CLEAN_HORIZON] = {"acc_clean_horizon", "SELECT coalesce(max(pos), "
	    "0) FROM syncv3_pos_marks WHERE at < now() - make_interval(secs "
	    "=> $1::bigint)"},
	[S_CLEAN_STATE] = {"acc_clean_state", "DELETE FROM syncv3_state WHERE"
	    " ctid = ANY(ARRAY(SELECT ctid FROM syncv3_state WHERE to_pos IS "
	    "NOT NULL AND to_pos <= $1::bigint LIMIT 10000))"},
	[S_CLEAN_DL] = {"acc_clean_dl", "DELETE FROM syncv3_device_lists "
	    "WHERE pos <= $1::bigint"},
	[S_CLEAN_MARKS] = {"acc_clean_marks", "DELETE FROM syncv3_pos_marks "
	    "WHERE pos < $1::bigint"},
	/* transaction ids of stored events (014_txn.sql); the first wins */
	[S_TXN] = {"acc_txn", "INSERT INTO syncv3_txns (nid, user_id, "
	    "device_id, txn_id) SELECT e.nid, k.u, k.d, k.t FROM unnest("
	    "$1::text[], $2::text[], $3::text[], $4::text[]) AS k(ev, u, d, t) "
	    "JOIN syncv3_events e ON e.event_id = k.ev ON CONFLICT DO NOTHING"},
	/* upstream timeline chunk boundaries (015_chunks.sql) */
	[S_CHUNKS] = {"acc_chunks", "INSERT INTO syncv3_chunks AS c (room_id,"
	    " nid, is_end, token, limited) SELECT * FROM unnest($1::text[], "
	    "$2::bigint[], $3::bool[], $4::text[], $5::bool[]) ON CONFLICT "
	    "(room_id, nid, is_end) DO UPDATE SET limited = true WHERE NOT "
	    "c.limited AND excluded.limited"},
	/*
	 * events $3..$4 of room $1, new and delivered right before the
	 * stored event $2 (031_order.sql): ord places them, in nid order,
	 * between $2 and the room's event just before it (u). Where float8
	 * has no room left there (some forty placements at one spot), the
	 * placed rows between the two events stored in order around the
	 * place (n0, n1) are given keys again, evenly, with the run among
	 * them (r): their order is kept, each stays below its nid (top),
	 * and the gap row is the same. The gap row names the clients that
	 * hold what follows the place. One row: the rows r renumbered.
	 */
	[S_LATE] = {"acc_late", "WITH a AS (SELECT coalesce(ord, nid::float8)"
	    " AS k FROM syncv3_events WHERE nid = $2::bigint), p AS (SELECT "
	    "q.*, (q.k - q.lo) / q.n > abs(q.k) * 1e-12 AS fits FROM (SELECT "
	    "a.k, coalesce(greatest((SELECT e.nid::float8 FROM syncv3_events e"
	    " WHERE e.room_id = $1 AND e.nid < ceil(a.k)::bigint AND e.ord IS "
	    "NULL ORDER BY e.nid DESC LIMIT 1), (SELECT max(e.ord) FROM "
	    "syncv3_events e WHERE e.room_id = $1 AND e.ord < a.k)), a.k - 1) "
	    "AS lo, ($4::bigint - $3::bigint + 2)::float8 AS n FROM a) q), u AS"
	    " (UPDATE syncv3_events e SET ord = p.lo + (p.k - p.lo) * (e.nid - "
	    "$3::bigint + 1) / p.n FROM p WHERE e.room_id = $1 AND e.nid "
	    "BETWEEN $3::bigint AND $4::bigint AND p.fits RETURNING e.nid), b "
	    "AS (SELECT p.k, coalesce((SELECT e.nid::float8 FROM syncv3_events "
	    "e WHERE e.room_id = $1 AND e.ord IS NULL AND e.nid < p.k ORDER BY "
	    "e.nid DESC LIMIT 1), (SELECT min(coalesce(e.ord, e.nid)) FROM "
	    "syncv3_events e WHERE e.room_id = $1) - 1) AS n0, coalesce(("
	    "SELECT e.nid::float8 FROM syncv3_events e WHERE e.room_id = $1 "
	    "AND e.ord IS NULL AND e.nid >= p.k AND e.nid NOT BETWEEN $3::bigint"
	    " AND $4::bigint ORDER BY e.nid LIMIT 1), (SELECT max(coalesce("
	    "e.ord, e.nid)) FROM syncv3_events e WHERE e.room_id = $1 AND "
	    "e.nid NOT BETWEEN $3::bigint AND $4::bigint) + 1)"
	    " AS n1 FROM p WHERE NOT p.fits), l AS (SELECT x.nid, row_number() "
	    "OVER (ORDER BY x.g, x.o, x.nid) AS i FROM b CROSS JOIN LATERAL ("
	    "SELECT e.nid, CASE WHEN e.ord < b.k THEN 0 ELSE 2 END AS g, e.ord "
	    "AS o FROM syncv3_events e WHERE e.room_id = $1 AND e.ord > b.n0 "
	    "AND e.ord < b.n1 UNION ALL SELECT e.nid, 1, 0 FROM syncv3_events "
	    "e WHERE e.room_id = $1 AND e.nid BETWEEN $3::bigint AND $4::"
	    "bigint) x), m AS (SELECT count(*) AS c, min(l.nid)::float8 AS top "
	    "FROM l), r AS (UPDATE syncv3_events e SET ord = b.n0 + (least(b.n1,"
	    " m.top) - b.n0) * l.i / (m.c + 1) FROM b, l, m WHERE e.nid = l.nid "
	    "RETURNING e.nid), gi AS (INSERT INTO syncv3_order_gaps (room_id, "
	    "anchor_pos, late_pos) SELECT $1, g.pos, $3::bigint FROM p CROSS "
	    "JOIN LATERAL (SELECT least((SELECT min(e.nid) FROM syncv3_events e"
	    " WHERE e.room_id = $1 AND e.nid >= ceil(p.k)::bigint AND e.nid < "
	    "$3::bigint AND e.ord IS NULL), (SELECT min(e.nid) FROM "
	    "syncv3_events e WHERE e.room_id = $1 AND e.ord >= p.k AND e.nid < "
	    "$3::bigint)) AS pos) g WHERE g.pos IS NOT NULL AND (EXISTS (SELECT"
	    " 1 FROM u) OR EXISTS (SELECT 1 FROM r)) ON CONFLICT DO NOTHING) "
	    "SELECT count(*) FROM r"},
	/* $1 rooms: each keeps its $2 newest boundaries (and a row at the
	 * nid of the oldest kept one) */
	[S_CLEAN_CHUNKS] = {"acc_clean_chunks", "DELETE FROM syncv3_chunks c "
	    "USING (SELECT r.id, (SELECT k.nid FROM syncv3_chunks k WHERE "
	    "k.room_id = r.id ORDER BY k.nid DESC, k.is_end DESC OFFSET "
	    "$2::bigint - 1 LIMIT 1) AS lo FROM unnest($1::text[]) AS r(id)) x "
	    "WHERE c.room_id = x.id AND c.nid < x.lo"},
	/*
	 * gap rows (031_order.sql) no client can still be inside: a v3
	 * since is only loaded in its own session, a sliding sync pos only
	 * in its own connection, and each holds positions the store had
	 * when it was created or later (its responses are read after), so a
	 * gap placed before the oldest live session and connection were
	 * created ($1 seconds of margin for responses under way, the last
	 * mark before that time bounding the position then from below) is
	 * below every position any of them can present
	 */
	[S_CLEAN_GAPS] = {"acc_clean_gaps", "DELETE FROM syncv3_order_gaps g "
	    "WHERE g.late_pos <= (SELECT coalesce(max(m.pos), 0) FROM "
	    "syncv3_pos_marks m WHERE m.at < least(now(), (SELECT min("
	    "s.created_at) FROM syncv3_sessions s), (SELECT min(c.created_at) "
	    "FROM syncv3_ss_conns c)) - make_interval(secs => $1::bigint))"},
	/* redactions that waited longer than the horizon, $1 seconds
	 * (034_rdx_wait.sql) */
	[S_CLEAN_RDX] = {"acc_clean_rdx", "DELETE FROM syncv3_redactions "
	    "WHERE at < now() - make_interval(secs => $1::bigint)"},
	/* redactions waiting for their target (018_redact.sql) */
	[S_RDX_ANY] = {"acc_rdx_any", "SELECT EXISTS (SELECT 1 FROM "
	    "syncv3_redactions)"},
	[S_RDX_ADD] = {"acc_rdx_add", "INSERT INTO syncv3_redactions (target,"
	    " room_id, json) SELECT * FROM unnest($1::text[], $2::text[], "
	    "$3::text[]) ON CONFLICT DO NOTHING"},
	/* the stored targets among $1, with their room's version (its
	 * current create event) and whether they are current state */
	[S_RDX_GET] = {"acc_rdx_get", "SELECT r.target, r.room_id, r.json, "
	    "e.nid, e.json, (SELECT ce.json FROM syncv3_state c JOIN "
	    "syncv3_events ce ON ce.nid = c.nid WHERE c.room_id = e.room_id "
	    "AND c.type = 'm.room.create' AND c.state_key = '' AND c.to_pos "
	    "IS NULL LIMIT 1), EXISTS (SELECT 1 FROM syncv3_state s WHERE "
	    "s.room_id = e.room_id AND s.type = e.type AND s.state_key = "
	    "e.state_key AND s.to_pos IS NULL AND s.nid = e.nid) FROM "
	    "syncv3_redactions r JOIN syncv3_events e ON e.event_id = "
	    "r.target AND e.room_id = r.room_id WHERE r.target = "
	    "ANY($1::text[])"},
	/* the pruned json of nid $1; its redaction row is done */
	[S_RDX_SET] = {"acc_rdx_set", "WITH d AS (DELETE FROM "
	    "syncv3_redactions WHERE target = $3 AND room_id = $4) UPDATE "
	    "syncv3_events SET json = $2 WHERE nid = $1::bigint"},
	/* a redacted current state event's summary column ($2 its type) */
	[S_RDX_ROOM] = {"acc_rdx_room", "UPDATE syncv3_rooms SET name = CASE "
	    "$2 WHEN 'm.room.name' THEN $3 ELSE name END, canonical_alias = "
	    "CASE $2 WHEN 'm.room.canonical_alias' THEN $3 ELSE "
	    "canonical_alias END, topic = CASE $2 WHEN 'm.room.topic' THEN $3 "
	    "ELSE topic END, avatar = CASE $2 WHEN 'm.room.avatar' THEN $3 "
	    "ELSE avatar END, room_type = CASE $2 WHEN 'm.room.create' THEN "
	    "$3 ELSE room_type END WHERE room_id = $1"},
	/* one statement, not a COPY's two round trips: a to-device
	 * message's commit is on its way to the client (issue #13) */
	[S_TO_DEVICE] = {"acc_to_device", "INSERT INTO syncv3_to_device (pos, "
	    "user_id, device_id, json) SELECT * FROM unnest($1::bigint[], "
	    "$2::text[], $3::text[], $4::text[])"},
	[S_DEVICE_LISTS] = {"acc_device_lists", "INSERT INTO "
	    "syncv3_device_lists (pos, user_id, device_id, target_user, "
	    "change) SELECT * FROM unnest($1::bigint[], $2::text[], "
	    "$3::text[], $4::text[], $5::text[])"},
	/* the WAL insert position after a COMMIT (db_commit) */
	[S_LSN] = {"acc_lsn", "SELECT (pg_current_wal_insert_lsn() - "
	    "'0/0')::bigint"},
};

/*
 * Reads a pipeline's results up to its sync (libpq pipeline mode: each
 * statement's result, then NULL; a statement after a failed one is
 * PGRES_PIPELINE_ABORTED, not run) and leaves pipeline mode. 0 if every
 * statement succeeded. The results of the statements after the first
 * st->nlater (the writes db_q0 left before them), up to nout, go to out
 * (if set), the caller's to clear; a further one replaces the last.
 */
static int
pipe_read(struct store *st, PGresult **out, size_t nout)
{
	int rc = 0, nulls = 0;
	size_t i = 0, failed = SIZE_MAX;
	PGresult *r;

	while (nulls < 2) {
		ExecStatusType s;
		if ((r = PQgetResult(st->c)) == NULL) {
			nulls++; /* two in a row: nothing more is coming */
			continue;
		}
		nulls = 0;
		if ((s = PQresultStatus(r)) == PGRES_PIPELINE_SYNC) {
			PQclear(r);
			break;
		}
		if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK && rc == 0) {
			failed = i;
			st->stats.pg_errors++;
			log_warnx_rl("store: pipeline: %s",
			             PQresultErrorMessage(r));
			rc = -1;
		}
		if (i < st->nlater && st->nlres_read < st->nlres &&
		    st->lres[st->nlres_read].idx == i) {
			/* a db_q_later result, kept if it is one */
			if (s == PGRES_TUPLES_OK)
				st->lres[st->nlres_read].r = r;
			else
				PQclear(r);
			st->nlres_read++;
		} else if (out != NULL && nout > 0 && i >= st->nlater) {
			size_t k = i - st->nlater < nout ? i - st->nlater : nout - 1;
			PQclear(out[k]);
			out[k] = r;
		} else
			PQclear(r);
		i++;
	}
	/* the frame failed, or the connection before any answer */
	st->begin_lost = rc != 0 && st->nbegin > 0 &&
	                 st->nbegin == st->nlater &&
	                 (failed < st->nbegin || failed == SIZE_MAX);
	st->nlater = st->nbegin = 0;
	st->nlres_read = st->nlres; /* a result never read stays NULL */
	if (nulls == 2)
		rc = -1;
	if (PQpipelineStatus(st->c) != PQ_PIPELINE_OFF &&
	    PQexitPipelineMode(st->c) != 1) {
		log_warnx_rl("store: pipeline: %s", PQerrorMessage(st->c));
		rc = -1;
	}
	return rc;
}

/* Sends a prepared statement into the pipeline, entering it if need be. */
static int
pipe_send(struct store *st, int id, int nparams, const char *const *params)
{
	if (PQenterPipelineMode(st->c) != 1 ||
	    PQsendQueryPrepared(st->c, stmts[id].name, nparams, params, NULL,
	                        NULL, 0) != 1) {
		log_warnx_rl("store: %s: %s", stmts[id].name,
		             PQerrorMessage(st->c));
		return -1;
	}
	return 0;
}

/*
 * Waits for the statements db_q0 left in the pipeline (st->is_later):
 * 0 if all succeeded. One round trip; none when nothing is pending.
 */
int
db_sync(struct store *st)
{
	if (PQpipelineStatus(st->c) == PQ_PIPELINE_OFF)
		return 0;
	st->stats.round_trips++;
	if (PQpipelineSync(st->c) != 1) {
		(void)pipe_read(st, NULL, 0);
		return -1;
	}
	return pipe_read(st, NULL, 0);
}

const char *
db_sql(int id)
{
	return stmts[id].sql;
}

PGresult *
db_q(struct store *st, int id, int nparams, const char *const *params)
{
	PGresult *r = NULL;
	ExecStatusType s;

	st->stats.round_trips++;
	if (st->nlater > 0) {
		/* with the statements left before it, in one round trip */
		if (pipe_send(st, id, nparams, params) == -1 ||
		    PQpipelineSync(st->c) != 1) {
			(void)pipe_read(st, NULL, 0);
			return NULL;
		}
		if (pipe_read(st, &r, 1) == 0)
			return r;
		PQclear(r);
		return NULL;
	}
	r = PQexecPrepared(st->c, stmts[id].name, nparams, params, NULL,
	    NULL, 0);
	s = PQresultStatus(r);
	if (s == PGRES_TUPLES_OK || s == PGRES_COMMAND_OK)
		return r;
	st->stats.pg_errors++;
	log_warnx_rl("store: %s: %s", stmts[id].name,
	    r ? PQresultErrorMessage(r) : PQerrorMessage(st->c));
	PQclear(r);
	return NULL;
}

/*
 * Statements whose results the caller reads but which do not depend on
 * each other (a group's lookups): sent in one pipeline, with the writes
 * db_q0 left before them, and waited for once. 0 and out[i] the result
 * of calls[i] (the caller's to clear), or -1 and none.
 */
int
db_qv(struct store *st, const struct db_call *calls, size_t n,
    PGresult **out)
{
	memset(out, 0, n * sizeof(*out));
	if (n == 0)
		return 0;
	if (n == 1 && st->nlater == 0)
		return (out[0] = db_q(st, calls[0].id, calls[0].nparams,
		    calls[0].params)) != NULL ? 0 : -1;
	st->stats.round_trips++;
	for (size_t i = 0; i < n; i++) {
		if (pipe_send(st, calls[i].id, calls[i].nparams,
		    calls[i].params) == -1) {
			(void)PQpipelineSync(st->c);
			(void)pipe_read(st, NULL, 0);
			return -1;
		}
	}
	if (PQpipelineSync(st->c) != 1 || pipe_read(st, out, n) == -1) {
		if (PQpipelineStatus(st->c) != PQ_PIPELINE_OFF)
			(void)pipe_read(st, NULL, 0);
		for (size_t i = 0; i < n; i++) {
			PQclear(out[i]);
			out[i] = NULL;
		}
		return -1;
	}
	return 0;
}

/*
 * A statement whose result nobody reads. While a group is applied
 * (st->is_later) it is only sent: it goes in the pipeline of the next
 * statement that waits (db_q, db_sync, db_commit), whose failure it
 * then is, so a group's writes cost no round trip of their own.
 */
int
db_q0(struct store *st, int id, int nparams, const char *const *params)
{
	PGresult *r;

	if (st->is_later) {
		if (pipe_send(st, id, nparams, params) == -1)
			return -1;
		st->nlater++;
		return 0;
	}
	r = db_q(st, id, nparams, params);
	PQclear(r);
	return r ? 0 : -1;
}

/*
 * A statement whose result is read only once the group has succeeded
 * (apply_finish): while a group is applied it goes out with the next
 * statement that waits, as db_q0's, and a lone group's with its COMMIT
 * (issue #13: a to-device body's key counts cost a round trip of their
 * own). Outside a group it runs at once.
 */
int
db_q_later(struct store *st, struct store_msg *m, int id, int nparams,
           const char *const *params)
{
	struct later_res *l;

	if (st->nlres == st->caplres) {
		st->caplres = st->caplres ? st->caplres * 2 : 16;
		st->lres = xrealloc(st->lres, st->caplres * sizeof(*st->lres));
	}
	l = &st->lres[st->nlres];
	l->idx = st->nlater;
	l->m = m;
	l->r = NULL;
	if (!st->is_later) {
		st->nlres_read = ++st->nlres;
		return (l->r = db_q(st, id, nparams, params)) != NULL ? 0 : -1;
	}
	if (pipe_send(st, id, nparams, params) == -1)
		return -1;
	st->nlres++;
	st->nlater++;
	return 0;
}

/*
 * The batch's frame (BEGIN and what goes with it, one statement each)
 * sent into the pipeline, not waited for: it goes with the batch's first
 * statement that waits (the CAS), one round trip for both (issue #13).
 * If that pipeline fails with only these before the statement,
 * st->begin_lost says so, and the caller may begin again. 0 or -1.
 */
int
db_begin_later(struct store *st, const char *const *sqls, size_t n)
{
	if (st->nlater > 0 || PQenterPipelineMode(st->c) != 1)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (PQsendQueryParams(st->c, sqls[i], 0, NULL, NULL, NULL, NULL,
		                      0) != 1) {
			log_warnx_rl("store: %s: %s", sqls[i],
			             PQerrorMessage(st->c));
			(void)PQpipelineSync(st->c);
			(void)pipe_read(st, NULL, 0);
			return -1;
		}
		st->nlater++;
		st->nbegin++;
	}
	return 0;
}

void
db_later_clear(struct store *st)
{
	for (size_t i = 0; i < st->nlres; i++)
		PQclear(st->lres[i].r);
	st->nlres = st->nlres_read = 0;
}

/* A statement of the batch's frame (BEGIN, savepoints): 0 or -1. */
int
db_exec(struct store *st, const char *tag, const char *sql)
{
	if (db_sync(st) == -1)
		return -1;
	st->stats.round_trips++;
	return pg_exec(st->c, tag, sql);
}

/* COPY ... FROM STDIN of ready rows (sqlarr.c cp_*): 0 or -1. */
int
db_copy(struct store *st, const char *sql, const char *data, size_t len)
{
	PGresult *r;
	int rc = 0;

	if (db_sync(st) == -1) /* no COPY in a pipeline */
		return -1;
	/* the COPY's start, then its rows and end */
	st->stats.round_trips += 2;
	r = PQexec(st->c, sql);
	if (PQresultStatus(r) != PGRES_COPY_IN) {
		st->stats.pg_errors++;
		log_warnx_rl("store: %s: %s", sql,
		    r ? PQresultErrorMessage(r) : PQerrorMessage(st->c));
		PQclear(r);
		return -1;
	}
	PQclear(r);
	for (size_t off = 0; rc == 0 && off < len;) {
		size_t n = len - off > (1 << 20) ? (1 << 20) : len - off;
		if (PQputCopyData(st->c, data + off, (int)n) != 1)
			rc = -1;
		off += n;
	}
	if (PQputCopyEnd(st->c, rc == 0 ? NULL : "send failed") != 1)
		rc = -1;
	while ((r = PQgetResult(st->c)) != NULL) {
		if (PQresultStatus(r) != PGRES_COMMAND_OK) {
			st->stats.pg_errors++;
			log_warnx_rl("store: %s: %s", sql,
			    PQresultErrorMessage(r));
			rc = -1;
		}
		PQclear(r);
	}
	return rc;
}

/*
 * An insert-only table's rows (sqlarr.c, struct rows): a COPY, or
 * statement id with the columns as its parameters, which db_q0 sends in
 * the group's pipeline. 0 or -1.
 */
int
db_rows(struct store *st, struct rows *r, const char *copy_sql, int id)
{
	const char *p[SQLARR_COLS_MAX];

	if (r->c.rows == 0)
		return 0;
	if (r->is_copy)
		return db_copy(st, copy_sql, r->b.p, r->b.n);
	cols_params(&r->c, p);
	return db_q0(st, id, r->c.ncols, p);
}

static int
prepare_all(struct store *st)
{
	for (size_t i = 0; i < sizeof(stmts) / sizeof(stmts[0]); i++) {
		PGresult *r;

		r = PQprepare(st->c, stmts[i].name, stmts[i].sql, 0,
		    NULL);
		if (PQresultStatus(r) != PGRES_COMMAND_OK) {
			log_warnx("store: prepare %s: %s", stmts[i].name,
			    PQresultErrorMessage(r));
			PQclear(r);
			return -1;
		}
		PQclear(r);
	}
	return 0;
}

/*
 * The writer lock: a session advisory lock held by the active
 * accumulator's writer connection (single writer, contract 2). It goes
 * with the session, so a process that dies releases it at once, and
 * every statement of a batch runs on the session that holds it: a session
 * ended by a standby (writer_fence) can commit nothing more.
 */
#define WRITER_KEY "x'" WRITER_LOCK_KEY "'::bigint"

/* 1 held (now or already), 0 another session holds it, -1 error. */
static int
writer_try(struct store *st)
{
	PGresult *r;
	int got;

	if ((r = pg_query(st->c, "writer lock",
	                  "SELECT pg_try_advisory_lock(" WRITER_KEY ")", 0,
	                  NULL)) == NULL)
		return -1;
	got = PQgetvalue(r, 0, 0)[0] == 't';
	PQclear(r);
	return got;
}

/*
 * A standby's check on the holder: when the holder is the registered
 * writer and its liveness row has expired (its loop has not renewed it
 * for SYNCV3_ACC_TAKEOVER_MS: frozen, hung, or cut off from Postgres),
 * its writer session is ended, which releases the lock for our next try.
 * The join on pg_locks ends only the session that holds the lock now, not
 * a recycled pid. A holder without a row (one starting up, a few
 * milliseconds) is left alone.
 */
static void
writer_fence(struct store *st)
{
	PGresult *r;

	r = pg_query(
	    st->c, "writer fence",
	    "SELECT a.owner, a.backend_pid, "
	    "pg_terminate_backend(a.backend_pid) FROM syncv3_accumulator a "
	    "JOIN pg_locks l ON l.pid = a.backend_pid AND l.locktype = "
	    "'advisory' AND l.granted AND l.objsubid = 1 AND "
	    "l.classid::bigint = (" WRITER_KEY " >> 32) AND l.objid::bigint = "
	    "(" WRITER_KEY " & 4294967295) WHERE a.expires < now()",
	    0, NULL);
	if (r != NULL && PQntuples(r) == 1)
		log_warnx("store: the active accumulator (%s, backend %s) has "
		          "not renewed its liveness row: its writer session is "
		          "ended",
		          PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 1));
	PQclear(r);
}

/* With the lock just taken: we are the next generation of writer. */
static int
writer_register(struct store *st)
{
	char ms[PG_I64_LEN];
	const char *p[2] = {st->owner, pg_i64(ms, st->takeover_ms)};
	PGresult *r;

	r = pg_query(
	    st->c, "writer register",
	    "INSERT INTO "
	    "syncv3_accumulator AS a (generation, owner, backend_pid, expires) "
	    "VALUES (1, $1, pg_backend_pid(), now() + make_interval(secs => "
	    "$2::bigint / 1000.0)) ON CONFLICT (id) DO UPDATE SET generation "
	    "= a.generation + 1, owner = $1, backend_pid = pg_backend_pid(), "
	    "expires = excluded.expires, started = now() RETURNING generation",
	    2, p);
	if (r == NULL)
		return -1;
	st->generation = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	return 0;
}

/*
 * After a reconnect with the lock taken again (Postgres restarted, or the
 * connection broke and nobody took over): still our generation, now on
 * this session? 1 yes, 0 another accumulator was writer meanwhile, -1
 * error.
 */
static int
writer_reclaim(struct store *st)
{
	char gen[PG_I64_LEN], ms[PG_I64_LEN];
	const char *p[2] = {pg_i64(gen, st->generation),
	                    pg_i64(ms, st->takeover_ms)};
	PGresult *r;
	int n;

	/* and a fresh expiry: the renewals' connection may still be on its
	 * way back from the same outage */
	r = pg_query(
	    st->c, "writer reclaim",
	    "UPDATE syncv3_accumulator SET backend_pid = "
	    "pg_backend_pid(), expires = now() + make_interval(secs => "
	    "$2::bigint / 1000.0) WHERE generation = $1::bigint "
	    "RETURNING 1",
	    2, p);
	if (r == NULL)
		return -1;
	n = PQntuples(r);
	PQclear(r);
	return n > 0;
}

/*
 * Opens (or reopens) the writer connection: custom plans for the session
 * (batches switch to generic plans with SET LOCAL, see store.c) and the
 * schema migrated, trying for up to max_wait_s (0: once). A writer that
 * reconnects must get its lock and its
 * generation back at once, or it is no longer the writer (is_demoted):
 * then the session is closed, so it holds nothing a new writer needs.
 */
int
db_connect(struct store *st, int max_wait_s)
{
	int rc;

	if (st->c != NULL)
		PQfinish(st->c);
	if ((st->c = pg_connect_wait(st->conninfo, max_wait_s)) == NULL)
		return -1;
	if (pg_exec(st->c, "session",
	            "SET plan_cache_mode = force_custom_plan") == -1 ||
	    pg_migrate(st->c) == -1)
		return -1;
	if (st->generation == 0)
		return 0;
	if ((rc = writer_try(st)) == 1)
		rc = writer_reclaim(st);
	if (rc == 1)
		return prepare_all(st);
	if (rc == 0) {
		log_warnx("store: another accumulator became the writer");
		st->is_demoted = true;
		PQfinish(st->c);
		st->c = NULL;
	}
	return -1;
}

/*
 * A standby's try: 1 we are the writer now (lock held, registered,
 * statements prepared), 0 another accumulator is, -1 error (the
 * connection is reopened on the next try).
 */
int
db_take_writer(struct store *st)
{
	int rc;

	/* one connect attempt: the loop must stay free for SIGTERM */
	if ((st->c == NULL || PQstatus(st->c) != CONNECTION_OK) &&
	    db_connect(st, 0) == -1)
		return -1;
	if ((rc = writer_try(st)) == 0)
		writer_fence(st);
	if (rc != 1)
		return rc;
	if (writer_register(st) == -1 || prepare_all(st) == -1)
		return -1;
	return 1;
}

/* Sends the commit's statements into the pipeline, after any a lone
 * group left there (store.c, group_run), and its sync. */
static int
commit_send(struct store *st, const char *const *pos)
{
	if (PQenterPipelineMode(st->c) != 1)
		return -1;
	if (pos != NULL && PQsendQueryPrepared(st->c, stmts[S_POSITION].name,
	                                       1, pos, NULL, NULL, 0) != 1)
		return -1;
	if (PQsendQueryParams(st->c, "COMMIT", 0, NULL, NULL, NULL, NULL,
	                      0) != 1 ||
	    PQsendQueryPrepared(st->c, stmts[S_LSN].name, 0, NULL, NULL, NULL,
	                        0) != 1 ||
	    PQpipelineSync(st->c) != 1)
		return -1;
	return 0;
}

/*
 * The batch's position (pos: its parameter, NULL when no position was
 * taken), COMMIT and the WAL insert position after it, which covers the
 * commit record: a replica that has replayed up to it shows the batch
 * (the api's read routing, SYNCV3_DB_READ). One round trip for the three
 * and any statements left in the pipeline (a pipeline; they were two
 * round trips before). A failure of any is a failed
 * commit to the caller: the batch is nacked and the pollers reload their
 * since (the commit may have happened; the compare-and-set makes their
 * resend harmless).
 */
int
db_commit(struct store *st, const char *const *pos)
{
	long long t0 = now_us();
	PGresult *r = NULL;
	int rc;

	st->stats.round_trips++;
	if (commit_send(st, pos) == -1) {
		st->stats.pg_errors++;
		log_warnx_rl("store: commit: %s", PQerrorMessage(st->c));
		(void)pipe_read(st, NULL, 0);
		rc = -1;
	} else if ((rc = pipe_read(st, &r, 1)) == 0 && PQntuples(r) == 1)
		st->lsn = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	else
		rc = -1;
	PQclear(r);
	/* the durability wait, beside the batch's statements */
	st->stats.commit_us += now_us() - t0;
	return rc;
}
