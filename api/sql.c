/*
 * sql.c: every statement the api runs, in one table (name, text,
 * parameter count), run through the pool by index with sql_query(). The
 * texts are constant strings built from visible.h's fragments, so a
 * schema change that breaks one is caught by test_api_sql, which PREPAREs
 * each against the migrated schema.
 */
#include <stdlib.h>

#include "api.h"
#include "pg.h"
#include "proto.h"
#include "util.h"
#include "visible.h"

/* session.c */
/* Deletes the device's messages every live session has acknowledged. */
/*
 * The to-device position every live v3 session of device (u, d) has
 * acknowledged (NULL: none is live); and the one every sliding sync
 * connection with to_device on has (NULL: none; an expired connection's
 * row is gone with it). A message is deleted once both are past it:
 * least() skips a NULL, and is NULL only when nobody holds it at all.
 */
#define V3_ACKED(u, d, idle)                                                   \
	"(SELECT min(acked_to_device) FROM syncv3_sessions s WHERE "           \
	"s.user_id = " u " AND s.device_id = " d " AND s.last_used > now() - " \
	"make_interval(secs => " idle "::bigint))"
#define SS_ACKED(u, d, other)                                                  \
	"(SELECT min(ss_a.acked) FROM syncv3_ss_to_device_acks ss_a WHERE "    \
	"ss_a.user_id = " u " AND ss_a.device_id = " d other ")"
#define SESSION_RELEASE                                                        \
	"DELETE FROM syncv3_to_device WHERE user_id = $1 AND device_id = $2 "  \
	"AND pos <= least(" V3_ACKED("$1", "$2",                               \
	                             "$3") ", " SS_ACKED("$1", "$2", "") ")"

/*
 * Whether the request's token is still the device's current one (and not
 * rejected upstream), as one CTE both statements below share. A device
 * has one live token: once another was registered for it, on this api or
 * any other behind the same database, the old one's cached whoami must
 * not keep it alive (contract 5). Reading the device row here costs the
 * request nothing extra.
 */
#define SESSION_TOKEN_OK(u, d, h)                                              \
	"dv AS (SELECT token_hash = " h " AND poll_state <> 'expired' AS ok "  \
	"FROM syncv3_devices WHERE user_id = " u " AND device_id = " d ")"

/*
 * Loads a live session, refreshes it, records its to-device ack and
 * releases what every live session and every sliding sync connection
 * (SS_ACKED) has now acknowledged, in one
 * statement (the release was a second round trip on every request). The
 * DELETE sees the sessions as they were before the UPDATE, so it counts
 * this session's new ack itself. One row always: whether the token is
 * current, then the session (NULL when unknown, expired or the token is
 * not current).
 */
#define SESSION_LOAD                                                           \
	"WITH " SESSION_TOKEN_OK(                                              \
	    "$2", "$3",                                                        \
	    "$6") ", "                                                         \
	          "u AS (UPDATE syncv3_sessions SET last_used = now(), "       \
	          "acked_to_device = greatest(acked_to_device, $4::bigint) "   \
	          "WHERE "                                                     \
	          "session_id = $1::bigint AND user_id = $2 AND device_id = "  \
	          "$3 AND "                                                    \
	          "last_used > now() - make_interval(secs => $5::bigint) AND " \
	          "(SELECT ok FROM dv) RETURNING params, acked_to_device), "   \
	          "d AS (DELETE FROM syncv3_to_device WHERE "                  \
	          "$4::bigint > 0 AND EXISTS (SELECT 1 FROM u) AND user_id = " \
	          "$2 AND "                                                    \
	          "device_id = $3 AND pos <= least((SELECT min(CASE WHEN "     \
	          "s.session_id = "                                            \
	          "$1::bigint THEN greatest(s.acked_to_device, $4::bigint) "   \
	          "ELSE "                                                      \
	          "s.acked_to_device END) FROM syncv3_sessions s WHERE "       \
	          "s.user_id = $2 "                                            \
	          "AND s.device_id = $3 AND (s.session_id = $1::bigint OR "    \
	          "s.last_used "                                               \
	          "> now() - make_interval(secs => $5::bigint))), " SS_ACKED(  \
	              "$2", "$3", "") ")) "                                    \
	                              "SELECT coalesce((SELECT ok FROM dv), "  \
	                              "false), u.params, "                     \
	                              "u.acked_to_device FROM (SELECT 1) one " \
	                              "LEFT JOIN u ON true"

/*
 * Creates a session when the token is current, and expires the device's
 * least recently used sessions beyond SYNCV3_API_SESSIONS_PER_DEVICE (a
 * client minting sessions must not hold the device's to-device messages
 * back with each). An expired session holds nothing from then on: the
 * next acknowledgement of any live session releases what all of them
 * acknowledged (SESSION_LOAD). No release here: this statement cannot see
 * the row it inserts, so it would release what the new session has not
 * been sent yet. Concurrent creations may leave a few sessions over the
 * cap until the next one. One row: the new session id (NULL when the
 * token is not current) and how many sessions were expired.
 */
#define SESSION_CREATE                                                         \
	"WITH " SESSION_TOKEN_OK(                                              \
	    "$1", "$2", "$4") ", "                                             \
	                      "ins AS (INSERT INTO syncv3_sessions "           \
	                      "(user_id, device_id, params) "                  \
	                      "SELECT $1, $2, $3 FROM dv WHERE dv.ok "         \
	                      "RETURNING session_id), "                        \
	                      "old AS (DELETE FROM syncv3_sessions "           \
	                      "WHERE session_id IN (SELECT "                   \
	                      "session_id FROM syncv3_sessions WHERE "         \
	                      "user_id = $1 AND device_id = "                  \
	                      "$2 AND EXISTS (SELECT 1 FROM ins) ORDER "       \
	                      "BY last_used DESC, "                            \
	                      "session_id DESC OFFSET $5::bigint - 1) "        \
	                      "RETURNING session_id) "                         \
	                      "SELECT ins.session_id, (SELECT count(*) "       \
	                      "FROM old) FROM (SELECT 1) "                     \
	                      "one LEFT JOIN ins ON true"

/* s_room_list.c */
/*
 * The position a query answers at is the database's committed position in
 * the query's own snapshot (pp.p), never lower than the api's: notices of
 * one batch arrive one by one, so the api's position can lie inside a
 * batch, while the rows it reads (names, counts, updated_pos) already show
 * the whole batch. Answering at the snapshot keeps rows and position
 * consistent, so no room is sent twice for one change. Each query returns
 * pp.p as its last column, on one row with NULLs when nothing matched.
 */
#define PP "(SELECT p FROM pp)"
#define LIST_SNAP(pp, q)                                                       \
	"WITH pp AS (SELECT " pp " AS p FROM syncv3_position) SELECT y.*, "    \
	"pp.p FROM pp LEFT JOIN LATERAL (" q ") y ON true"

#define LIST_AT(col, type, field)                                              \
	"CASE WHEN coalesce(r.updated_pos, 0) <= " PP " THEN r." col           \
	" ELSE (SELECT (e.json::json)->'content'->>'" field "' FROM "          \
	"syncv3_state s JOIN syncv3_events e ON e.nid = s.nid WHERE "          \
	"s.room_id = ur.room_id AND s.type = '" type "' AND s.state_key = '' " \
	"AND s.from_pos <= " PP " ORDER BY s.from_pos DESC LIMIT 1) END"

/* u: the user's id, as SQL ($1, or a column of one of several users) */
#define LIST_HEAD LIST_HEAD_OF("$1")
#define LIST_HEAD_OF(u)                                                        \
	"SELECT x.room_id, x.membership, x.notification_count, "               \
	"x.highlight_count, x.invite_state, x.ts, x.name, x.alias, "           \
	"x.joined_count, x.invited_count, CASE WHEN coalesce(x.name, '') = "   \
	"'' "                                                                  \
	"AND coalesce(x.alias, '') = '' THEN (SELECT json_agg("                \
	"json_build_array(h.uid, (SELECT (e.json::json)->'content'->>"         \
	"'displayname' FROM syncv3_state s JOIN syncv3_events e ON e.nid = "   \
	"s.nid WHERE s.room_id = x.room_id AND s.type = 'm.room.member' AND "  \
	"s.state_key = h.uid AND s.to_pos IS NULL LIMIT 1))) FROM (SELECT "    \
	"json_array_elements_text(CASE WHEN coalesce(x.heroes, '') NOT IN "    \
	"('', '[]') THEN x.heroes::json ELSE (SELECT coalesce(json_agg("       \
	"m.state_key), '[]'::json) FROM (SELECT s.state_key FROM "             \
	"syncv3_state "                                                        \
	"s WHERE s.room_id = x.room_id AND s.type = 'm.room.member' AND "      \
	"s.to_pos IS NULL AND s.membership IN ('join', 'invite') AND "         \
	"s.state_key <> " u                                                    \
	" ORDER BY s.state_key LIMIT 5) m) END) AS uid) h) "                   \
	"END AS heroes, x.prev_batch, x.is_new FROM (SELECT ur.room_id, "      \
	"ur.notification_count, ur.highlight_count, ur.invite_state, "         \
	"ur.heroes, ur.prev_batch, coalesce(r.joined_count, 0) AS "            \
	"joined_count, coalesce(r.invited_count, 0) AS invited_count, "

#define LIST_SPACES LIST_SPACES_OF("$3", "$1")
#define LIST_SPACES_OF(sp, u)                                                  \
	" AND (" sp "::text[] IS NULL OR ur.room_id IN (SELECT c.state_key "   \
	"FROM "                                                                \
	"syncv3_state c JOIN syncv3_events ce ON ce.nid = c.nid WHERE "        \
	"c.room_id = ANY(" sp "::text[]) AND c.type = 'm.space.child' AND "    \
	"c.to_pos IS NULL AND (ce.json::json)->'content'->'via' IS NOT NULL "  \
	"AND " VIS_MEMBERSHIP(                                                 \
	    "c.room_id", u,                                                    \
	    "(SELECT pos FROM syncv3_position)") " = 'join'))) x"

/* SQL reads better wrapped by clause than by column */
/* clang-format off */
/*
 * The user's membership at the answer's position (vm) and, streaming, at
 * the since position (vf), by the shared rule of visible.h.
 */
#define LIST_VM(u, p)                                                           \
	" CROSS JOIN LATERAL (SELECT "                                         \
	VIS_MEMBERSHIP("ur.room_id", u, p) " AS m) "

/*
 * The first page's membership, the rule of LIST_VM with the user's row
 * already at hand: one index probe a room (visible.h).
 */
#define VM_PAGE VIS_MEMBERSHIP_OF("ur", "vst", PP)

/* $1 user, $2 P (or at least P unless $4 pins it), $3 spaces */
#define LIST_PAGE                                                               \
	LIST_HEAD VM_PAGE " AS membership, false AS is_new, CASE WHEN "         \
	"coalesce(r.updated_pos, 0) <= " PP " THEN coalesce(r.last_ts, 0) "    \
	"ELSE coalesce((SELECT e.origin_ts FROM syncv3_events e WHERE "        \
	"e.room_id = ur.room_id AND e.nid <= " PP " AND e.is_timeline "        \
	"ORDER BY e.nid DESC LIMIT 1), 0) END AS ts, "                         \
	LIST_AT("name", "m.room.name", "name") " AS name, "                     \
	LIST_AT("canonical_alias", "m.room.canonical_alias", "alias")           \
	" AS alias FROM syncv3_user_rooms ur LEFT JOIN syncv3_rooms r ON "     \
	"r.room_id = ur.room_id LEFT JOIN "                                    \
	VIS_MEMBER_ROW("ur.room_id", "$1", PP) " vst ON true WHERE "           \
	"ur.user_id = $1 AND " VM_PAGE " IN ('join', 'invite')" LIST_SPACES

/*
 * $1 user, $2 at least P, $3 limit: a first page by recency alone, from
 * the keys the accumulator keeps (deploy/sql/012_sortkeys.sql): the first
 * $3 joined rooms of the index range and every invite (few; their
 * recency is the invite's own, in its stripped state), which the api
 * sorts and cuts. The keys are as of the snapshot, which is P: the same
 * rooms, order and memberships as LIST_PAGE's at P. The plan is generic
 * and often made on an empty database (api/main.c), so its shape is
 * forced: user_id COLLATE "C" matches only the 012 indexes (not a scan
 * of the user's rows by another one and a sort), and the LIMIT 1 lookups
 * keep the page's rooms the outer side (not a loop over all of them).
 */
#define LIST_FIRST                                                              \
	LIST_HEAD "ur.rl_m AS membership, false AS is_new, ur.rl_ts AS ts, "    \
	"r.name, r.canonical_alias AS alias FROM (SELECT j.room_id FROM "      \
	"(SELECT u.room_id FROM syncv3_user_rooms u WHERE u.user_id = $1 "     \
	"COLLATE \"C\" AND u.rl_m = 'join' ORDER BY u.rl_ts DESC, u.room_id "  \
	"COLLATE \"C\" LIMIT $3::bigint) j UNION ALL SELECT i.room_id FROM "   \
	"syncv3_user_rooms i WHERE i.user_id = $1 COLLATE \"C\" AND i.rl_m = " \
	"'invite') k CROSS JOIN LATERAL (SELECT * FROM syncv3_user_rooms "     \
	"WHERE user_id = $1 AND room_id = k.room_id LIMIT 1) ur LEFT JOIN "    \
	"LATERAL (SELECT * FROM syncv3_rooms WHERE room_id = ur.room_id "      \
	"LIMIT 1) r ON true) x"

/*
 * The timeline rows (nid, json) of room r after f up to p as device d of
 * user u may see them, at most n; and its state rows after f current at
 * p whose type and state key match the pairs of arrays t, k. Shared by
 * the first page (one room a row) and the detail query (all rooms).
 */
#define LIST_TL_ROWS(r, f, p, n, u, d)                                         \
	"SELECT e.nid, " TXN_JSON("e", u, d) " AS json, vis_q.cut, vis_q.k "   \
	"FROM " VIS_LAST_ROWS(r, u, p, f, n) " vis_q JOIN syncv3_events e ON e.nid = " \
	"vis_q.nid"
#define LIST_ST_ROWS(r, f, p, t, k)                                            \
	"SELECT s.nid, e.json FROM syncv3_state s JOIN syncv3_events e ON "    \
	"e.nid = s.nid WHERE s.room_id = " r " AND s.from_pos <= " p " AND "   \
	"s.from_pos > " f " AND coalesce(s.to_pos, 9223372036854775807) > "    \
	p " AND EXISTS (SELECT 1 FROM unnest(" t ", " k ") AS q(t, k) WHERE "  \
	"(q.t = '*' OR q.t = s.type) AND (q.k = '*' OR q.k = s.state_key))"

/*
 * The first page in one round trip (it was four statements in sequence:
 * the window, the page's details, the rooms remembered, after the
 * session). $1 user, $2 at least P, $3 limit, $4/$5 state_events, $6
 * timeline limit, $7 session, $8 device. A row: the window's room, the
 * snapshot, the count of the joined rooms (rl_counts), then its timeline
 * and state as comma-separated json (joined rooms only, as the detail
 * query's), whether the rooms are remembered, and the timeline's
 * prev_batch (its chunk boundary, CHUNK_AT; NULL if none is known). The
 * page's joined rooms are a prefix of the window whatever the invites'
 * recency, so details for the whole window cover them; which rooms the page holds is known
 * here only without invites (their recency is in their stripped state,
 * which the api reads), so only then are they remembered (every row is
 * the page), else the api remembers them (Q_LIST_REMEMBER). Only for a
 * session still there, locked against its eviction as Q_LIST_REMEMBER
 * does: a session gone reads as not remembered, and Q_LIST_REMEMBER then
 * tells the client so.
 */
#define LIST_FIRST_SNAP                                                         \
	"WITH pp AS (SELECT greatest($2::bigint, pos) AS p FROM "              \
	"syncv3_position), y AS (" LIST_FIRST "), inv AS (SELECT EXISTS "      \
	"(SELECT 1 FROM y WHERE y.membership = 'invite') AS b), ss AS "        \
	"(SELECT session_id FROM syncv3_sessions WHERE session_id = "          \
	"$7::bigint FOR KEY SHARE), rem AS (INSERT INTO syncv3_session_rooms " \
	"(session_id, room_id) SELECT ss.session_id, y.room_id FROM y, ss "    \
	"WHERE NOT (SELECT b FROM inv) ON CONFLICT DO NOTHING) SELECT y.*, pp.p, coalesce((SELECT c.joined "    \
	"FROM syncv3_rl_counts c WHERE c.user_id = $1), 0), tl.j, CASE WHEN "  \
	"y.membership = 'join' AND cardinality($4::text[]) > 0 THEN (SELECT "  \
	"string_agg(t.json, ',' ORDER BY t.nid) FROM (" LIST_ST_ROWS(          \
	"y.room_id", "0", "pp.p", "$4::text[]", "$5::text[]") ") t) END, NOT " \
	"(SELECT b FROM inv) AND EXISTS (SELECT 1 FROM ss), ck.token FROM pp LEFT JOIN y ON true LEFT JOIN " \
	"LATERAL (SELECT string_agg(t.json, ',' ORDER BY t.k) AS j, (array_agg(" \
	"t.nid ORDER BY t.k))[1] AS e, count(*) < $6::bigint AND NOT coalesce(bool_or("     \
	"t.cut), false) AS fits FROM ("                                        \
	LIST_TL_ROWS("y.room_id", "0", "pp.p", "$6::bigint", "$1", "$8")       \
	") t WHERE y.membership = 'join') tl ON true LEFT JOIN LATERAL "       \
	CHUNK_AT("y.room_id", "tl.e", "tl.fits") " ck ON true"

/*
 * A room the user was joined to when a first window was answered at or
 * before from, though it was stored after it (docs/DESIGN.md, "The first
 * window first"): its join came with the rest of that initial sync, at a
 * position of the device's fill, and is not news.
 */
#define LIST_FILLED(u, f)                                                       \
	"(vf.m IS NULL AND EXISTS (SELECT 1 FROM syncv3_devices fd WHERE "     \
	"fd.user_id = " u " AND fd.window_pos <= " f "::bigint AND ur.pos "    \
	"BETWEEN "                                                             \
	"fd.fill_lo AND fd.fill_hi))"

/*
 * User u's rooms to stream from position f (SQL expressions: several
 * users' at once in Q_LIST_STREAM), sp the spaces (text[] or NULL), sid
 * the session. A room is sent when the user's membership changed between
 * from and to (joined or invited: in full; no longer joined or invited:
 * once, as left), when an invite's row changed, or when a joined room
 * this session was sent changed. Nothing of a room the user is not
 * joined to at to is sent. Its columns are LIST_HEAD's.
 */
#define LIST_STREAM(u, f, sp, sid)                                              \
	LIST_HEAD_OF(u) "coalesce(vm.m, 'leave') AS membership, (vm.m IS "      \
	"DISTINCT FROM vf.m OR vm.m = 'invite') AS is_new, coalesce(r.last_ts, " \
	"0) AS ts, r.name, r.canonical_alias AS alias FROM syncv3_user_rooms "  \
	"ur LEFT JOIN syncv3_rooms r ON r.room_id = ur.room_id" LIST_VM(u, PP)  \
	"vm" LIST_VM(u, f "::bigint") "vf WHERE ur.user_id = " u " AND "        \
	"((ur.updated_pos > " f "::bigint AND ur.updated_pos <= " PP ") OR "    \
	"(r.updated_pos > " f "::bigint AND r.updated_pos <= " PP ")) AND "     \
	"((vm.m = 'join' AND ((vf.m IS DISTINCT FROM 'join' AND NOT "           \
	LIST_FILLED(u, f) ") OR EXISTS (SELECT 1 FROM syncv3_session_rooms sr " \
	"WHERE sr.session_id = " sid "::bigint AND sr.room_id = ur.room_id))) " \
	"OR (vm.m = 'invite' AND (vf.m IS DISTINCT FROM 'invite' OR "           \
	"ur.updated_pos > " f "::bigint)) OR (coalesce(vm.m, 'leave') NOT IN "  \
	"('join', 'invite') AND vf.m IN ('join', 'invite')))"                   \
	LIST_SPACES_OF(sp, u)

/*
 * The streaming rounds of several requests in one statement (issue #13:
 * at 1,000 events/s to 100 clients each woken client ran the room set and
 * then Q_LIST_DETAIL, and Postgres, saturated, spent about as much on
 * each statement's start, locks and round trip as on its rows). The
 * requests share the parameters of their streams ($3 spaces, $6/$7
 * state_events, $8 timeline limit: s_room_list.c batches only requests
 * whose parameters are equal); per request, at the same index, $1 user,
 * $2 from, $4 at least to, $5 session, $9 device. Each request's rooms
 * are LIST_STREAM's for its own user, session and from, and its
 * timelines are what its own user and device may see (visible.h,
 * TXN_JSON): one request's rows never depend on another's. A row: the
 * room (LIST_HEAD's columns; NULLs on the one row of a request with none),
 * the snapshot every request answers at (the highest at-least-to, or the
 * committed position), then the columns of LIST_FIRST_SNAP's layout: a
 * NULL in place of its count, the room's timeline and state as
 * comma-separated json (joined rooms only, from the since position or,
 * for a room new to the list, from nothing, as Q_LIST_DETAIL takes them),
 * a NULL in place of its "remembered", the timeline's prev_batch
 * (CHUNK_AT), the request's index (from 1), rows in its order, and
 * whether the room's timeline was read afresh (LIST_STREAM_RESET).
 * y is MATERIALIZED: inlined, its membership columns (the rule of
 * visible.h, twice a room) were evaluated again in each detail that
 * reads them (about 0.2 ms more a request, EXPLAIN ANALYZE).
 */
#define LIST_STREAM_F "(CASE WHEN y.is_new THEN 0 ELSE y.q_f END)"
/*
 * A joined room with events placed before ones the request's client
 * holds (ORDER_GAP): its timeline is read afresh, from nothing, and the
 * row's last column says so (the client is told limited and replaces its
 * timeline); its state stays incremental.
 */
#define LIST_STREAM_RESET                                                      \
	"(y.membership = 'join' AND NOT y.is_new AND y.q_f > 0 AND "           \
	ORDER_GAP("y.room_id", "y.q_f") ")"
#define LIST_STREAM_TF                                                         \
	"(CASE WHEN y.is_new OR " LIST_STREAM_RESET " THEN 0 ELSE y.q_f END)"
#define LIST_STREAM_BATCH                                                       \
	"WITH pp AS (SELECT greatest((SELECT max(t.t) FROM unnest("            \
	"$4::bigint[]) t(t)), pos) AS p FROM syncv3_position), q AS (SELECT * " \
	"FROM unnest($1::text[], $2::bigint[], $5::bigint[], $9::text[]) "     \
	"WITH ORDINALITY AS q(u, f, sid, dev, i)), y AS MATERIALIZED (SELECT " \
	"z.*, q.i AS q_i, q.u AS q_u, q.f AS q_f, q.dev AS q_dev FROM q LEFT " \
	"JOIN LATERAL (" LIST_STREAM("q.u", "q.f", "$3", "q.sid") ") z ON "    \
	"true) SELECT y.room_id, y.membership, y.notification_count, "         \
	"y.highlight_count, y.invite_state, y.ts, y.name, y.alias, "           \
	"y.joined_count, y.invited_count, y.heroes, y.prev_batch, y.is_new, "  \
	"pp.p, NULL::bigint, tl.j, CASE WHEN y.membership = 'join' AND "       \
	"cardinality($6::text[]) > 0 THEN (SELECT string_agg(t.json, ',' "     \
	"ORDER BY t.nid) FROM (" LIST_ST_ROWS("y.room_id", LIST_STREAM_F,      \
	"pp.p", "$6::text[]", "$7::text[]") ") t) END, NULL::bool, ck.token, " \
	"y.q_i, " LIST_STREAM_RESET " FROM pp CROSS JOIN y LEFT JOIN LATERAL " \
	"(SELECT string_agg(t.json, ',' ORDER BY t.k) AS j, (array_agg(t.nid " \
	"ORDER BY t.k))[1] AS e, count(*) < $8::bigint AND NOT coalesce("      \
	"bool_or(t.cut), false) AS fits FROM (" LIST_TL_ROWS("y.room_id",      \
	LIST_STREAM_TF, "pp.p",                                                \
	"$8::bigint", "y.q_u", "y.q_dev") ") t WHERE y.membership = 'join') "  \
	"tl ON true LEFT JOIN LATERAL " CHUNK_AT("y.room_id", "tl.e",          \
	"tl.fits") " ck ON true ORDER BY y.q_i"

/*
 * The json of event e as device d of user u gets it: the transaction id
 * the accumulator cut from it (014_txn.sql) goes back only for the device
 * that sent it, so only its rows are re-serialised.
 */
#define TXN_JSON(e, u, d)                                                      \
	"coalesce((SELECT jsonb_set(" e ".json::jsonb, '{unsigned}', CASE "    \
	"WHEN jsonb_typeof((" e ".json::jsonb)->'unsigned') = 'object' THEN (" \
	e ".json::jsonb)->'unsigned' ELSE '{}'::jsonb END || "                 \
	"jsonb_build_object('transaction_id', txn.txn_id))::text FROM "        \
	"syncv3_txns txn WHERE txn.nid = " e ".nid AND txn.user_id = " u       \
	" AND txn.device_id = " d "), " e ".json)"

/*
 * Has room r events placed, since position f, before events a client at
 * f may hold (031_order.sql: f in [anchor_pos, late_pos) of a gap)? Such
 * a client gets the room afresh (a reset), not the new events appended
 * (docs/INTERNALS.md, "Late events: timeline order").
 */
#define ORDER_GAP(r, f)                                                        \
	"EXISTS (SELECT 1 FROM syncv3_order_gaps og WHERE og.room_id = " r     \
	" AND og.late_pos > " f " AND og.anchor_pos <= " f ")"
/*
 * A room with events placed late (031_order.sql): its boundaries are
 * compared by the room's order, coalesce(ord, nid), not by their nids.
 */
#define CHUNK_LATE(r)                                                          \
	"EXISTS (SELECT 1 FROM syncv3_events ko WHERE ko.room_id = " r " AND " \
	"ko.ord IS NOT NULL)"
#define CHUNK_KEY(e)                                                           \
	"(SELECT coalesce(eo.ord, eo.nid) FROM syncv3_events eo WHERE "        \
	"eo.nid = " e ")"
/*
 * The upstream chunk boundary (015_chunks.sql) that a timeline of room r
 * whose oldest event is at nid e pages back from, by docs/INTERNALS.md,
 * "prev_batch": when the timeline holds every event before it that the
 * user may see (fits), the last chunk start at or before e, the events
 * between being none of theirs (exact: right before e for them); else
 * the first boundary at or after e (before an event comes before after
 * it), exact when a chunk began at e, otherwise repeating events the
 * client has and skipping none. "Before" and "after" are in the room's
 * order: e is the nid of the timeline's oldest event in that order; a
 * room with placed events compares keys (whether it has any is read once,
 * cl: tested in every branch it cost SS_DETAIL three times its time).
 * is_end also when the boundary is not exactly right before e (a later
 * one): the caller then says limited, as for a boundary after e.
 */
#define CHUNK_AT(r, e, fits)                                                   \
	"(SELECT x.nid, x.is_end OR NOT x.exact AS is_end, x.token, x.limited " \
	"FROM (SELECT " CHUNK_LATE(r) " AS late) cl CROSS JOIN LATERAL ((SELECT 0 " \
	"AS o, k.nid, k.is_end, k.token, k.limited, true AS exact FROM "       \
	"syncv3_chunks k WHERE " fits " AND k.room_id = " r " AND k.nid <= " e \
	" AND NOT k.is_end AND NOT cl.late ORDER BY k.nid DESC LIMIT 1) UNION " \
	"ALL (SELECT 1, k.nid, k.is_end, k.token, k.limited, k.nid = " e      \
	" FROM syncv3_chunks k WHERE k.room_id = " r " AND k.nid >= " e " AND " \
	"NOT cl.late ORDER BY k.nid, k.is_end LIMIT 1) UNION ALL (SELECT 0, "  \
	"k.nid, k.is_end, k.token, k.limited, true FROM syncv3_chunks k JOIN " \
	"syncv3_events ke ON ke.nid = k.nid WHERE cl.late AND " fits " AND "   \
	"k.room_id = " r " AND NOT k.is_end AND coalesce(ke.ord, ke.nid) <= "  \
	CHUNK_KEY(e) " ORDER BY coalesce(ke.ord, ke.nid) DESC LIMIT 1) UNION " \
	"ALL (SELECT 1, k.nid, k.is_end, k.token, k.limited, k.nid = " e      \
	" FROM syncv3_chunks k JOIN syncv3_events ke ON ke.nid = k.nid WHERE " \
	"cl.late AND k.room_id = " r " AND coalesce(ke.ord, ke.nid) >= "       \
	CHUNK_KEY(e) " ORDER BY coalesce(ke.ord, ke.nid), k.is_end LIMIT 1)) " \
	"x ORDER BY x.o LIMIT 1)"

/*
 * $1 rooms, $2 per-room lower bounds, $3 to, $4 timeline limit, $5/$6
 * state_events, $7 user, $8 their device: the timeline is what the user
 * may see of it ('t' rows, in the room's order), its prev_batch the chunk
 * boundary of its oldest event ('c': nid, token). A room with events
 * placed before what the client at its bound holds (ORDER_GAP) has its
 * last events from the start instead and an 'l' row: the client is told
 * the timeline is limited and replaces what it has.
 * The state branch runs per room (LATERAL, so the (room_id, ...) index
 * is used; a join over all rooms' current state cost ~3 ms a room) and
 * not at all when no state_events were asked for (a one-time filter).
 */
#define LIST_DETAIL                                                             \
	"WITH g AS (SELECT r.id, r.f, r.f > 0 AND " ORDER_GAP("r.id", "r.f")  \
	" AS reset FROM unnest($1::text[], $2::bigint[]) AS r(id, f)), t AS "  \
	"(SELECT 't'::text AS k, r.id, x.nid, x.json, x.cut, x.k AS ok FROM g " \
	"r CROSS JOIN LATERAL ("                                               \
	LIST_TL_ROWS("r.id", "(CASE WHEN r.reset THEN 0 ELSE r.f END)",          \
	"$3::bigint", "$4::bigint", "$7", "$8")                                \
	") x) SELECT k, id, ok, json FROM t UNION ALL SELECT 'l', id, 0, NULL " \
	"FROM g WHERE reset UNION ALL SELECT 's', r.id, "                      \
	"y.nid, y.json FROM "                                                  \
	"unnest($1::text[], $2::bigint[]) AS r(id, f) CROSS JOIN LATERAL ("    \
	LIST_ST_ROWS("r.id", "r.f", "$3::bigint", "$5::text[]", "$6::text[]")  \
	") y WHERE cardinality($5::text[]) > 0 UNION ALL SELECT 'c', o.id, "   \
	"c.nid, c.token FROM (SELECT id, (array_agg(nid ORDER BY ok))[1] AS "  \
	"e, count(*) < "                                                       \
	"$4::bigint AND NOT bool_or(cut) AS fits FROM t GROUP BY id) o CROSS " \
	"JOIN LATERAL "                                                        \
	CHUNK_AT("o.id", "o.e", "o.fits") " c ORDER BY 1, 2, 3"
/* clang-format on */

/*
 * $1 rooms, $2 the nid of each one's oldest timeline event, $3 whether it
 * holds all the user may see before it: its chunk boundary (CHUNK_AT); no
 * row when no chunk is known.
 */
#define CHUNKS                                                                 \
	"SELECT r.id, c.nid, c.is_end, c.token, c.limited FROM "               \
	"unnest($1::text[], $2::bigint[], $3::bool[]) AS r(id, e, fits) "      \
	"CROSS JOIN LATERAL " CHUNK_AT("r.id", "r.e", "r.fits") " c"

/* s_room_member.c */
/*
 * p.pos: the position the user may see the room at, NULL if never: the
 * end of their last visible range (visible.h), so a user who left sees the
 * room as it was at their leave; an invitee sees no members.
 */
/* SQL reads better wrapped by clause than by column */
/* clang-format off */
#define MEMBER_ME                                                                 \
	"WITH p AS (SELECT CASE WHEN "                                         \
	VIS_MEMBERSHIP("$1", "$2", "$3::bigint") " = 'invite' THEN NULL "      \
	"ELSE " VIS_LAST("$1", "$2", "$3::bigint") " END AS pos) "             \
	"SELECT 1 AS k, p.pos, NULL, NULL FROM p WHERE p.pos IS NOT NULL "     \
	"UNION ALL "

#define MEMBER_PAGE                                                               \
	MEMBER_ME "SELECT 0, s.nid, s.type, e.json FROM p JOIN syncv3_state s ON " \
	"s.room_id = $1 AND s.type IN ('m.room.member', "                      \
	"'m.room.power_levels') AND s.from_pos <= p.pos AND (s.to_pos IS "     \
	"NULL OR s.to_pos > p.pos) JOIN syncv3_events e ON e.nid = s.nid "     \
	"WHERE s.type = 'm.room.member' OR s.state_key = ''"

/*
 * Streaming: the member events after $4 that were the member's state (a
 * syncv3_state row), in position order, the order the state changed in.
 * A member event that never was (stored late, 031_order.sql, or from a
 * lagging poller's state block, behind the member's newer event already
 * stored) is left out: a client applies the stream to its member set, and
 * sent after the newer one it would undo it.
 */
#define MEMBER_STREAM                                                             \
	MEMBER_ME "SELECT 0, x.nid, x.type, x.json FROM p, LATERAL (SELECT "      \
	"e.nid, e.type, e.json FROM syncv3_events e WHERE e.room_id = $1 AND " \
	"e.type = 'm.room.member' AND e.nid > $4::bigint AND e.nid <= p.pos "  \
	"AND " VIS_SEES("$1", "$2", "p.pos", "e.nid") " AND EXISTS (SELECT 1 " \
	"FROM syncv3_state s WHERE s.room_id = $1 AND s.type = "               \
	"'m.room.member' AND s.state_key = e.state_key AND s.nid = e.nid) "    \
	"ORDER BY e.nid LIMIT $5::bigint) x"
/* clang-format on */

/* longpoll.c */
/* $1 user, $2 generation: the rooms the user is joined to now. */
/* clang-format off */
#define USER_ROOMS                                                             \
	"SELECT ur.room_id FROM syncv3_user_rooms ur LEFT JOIN "               \
	VIS_MEMBER_ROW("ur.room_id", "$1", "9223372036854775807") " vst ON "   \
	"true WHERE ur.user_id = $1 AND " VIS_MEMBERSHIP_OF("ur", "vst",       \
	"9223372036854775807") " = 'join' UNION ALL SELECT $2"
/* clang-format on */

/* ss_conn.c, ss_rooms.c: sliding sync (006_sliding_sync.sql) */
/* SQL reads better wrapped by clause than by column */
/* clang-format off */
/*
 * The device's committed v2 since and the position of the same snapshot
 * (021_pos_token.sql): a since committed at or below that position, kept
 * with a response built at or above it as the upstream token its pos
 * stands for in /messages (ss_pos.c). '' before the first sync: NULL.
 */
#define SS_SINCE(u, d)                                                         \
	"(SELECT nullif(sd.since, '') FROM syncv3_devices sd WHERE "           \
	"sd.user_id = " u " AND sd.device_id = " d "), (SELECT sp.pos FROM "   \
	"syncv3_position sp)"

/*
 * $1 conn, $2 user, $3 device, $4 gen the pos names, $5 idle secs, $6
 * conn_id, $7 the token's hash (is it still the device's? contract 5, as
 * SESSION_LOAD). The pos names the confirmed response (the client lost the one
 * after it: drop it) or the unconfirmed one (confirm it: it becomes the
 * connection's state). Either way the rooms of any later response go. One
 * row, or none for an unknown, expired or foreign pos.
 */
#define SS_LOAD                                                                \
	"WITH " SESSION_TOKEN_OK("$2", "$3", "$7") ", "                        \
	"c AS (UPDATE syncv3_ss_conns SET "                                    \
	"gen = CASE WHEN p_gen = $4::bigint THEN p_gen ELSE gen END, "         \
	"pos = CASE WHEN p_gen = $4::bigint THEN p_pos ELSE pos END, "         \
	"subs = CASE WHEN p_gen = $4::bigint THEN p_subs ELSE subs END, "      \
	"ext = CASE WHEN p_gen = $4::bigint THEN p_ext ELSE ext END, "         \
	"ext_state = CASE WHEN p_gen = $4::bigint THEN p_ext_state ELSE "      \
	"ext_state END, tok = CASE WHEN p_gen = $4::bigint THEN p_tok ELSE "   \
	"tok END, p_tok = NULL, "                                              \
	"p_gen = NULL, p_pos = NULL, p_subs = NULL, p_ext = "                  \
	"NULL, p_ext_state = NULL, ver = ver + 1, last_used = now() WHERE "    \
	"conn = $1::bigint AND user_id = $2 AND device_id = $3 AND conn_id = " \
	"$6 AND (gen = $4::bigint OR p_gen = $4::bigint) AND last_used > "     \
	"now() - make_interval(secs => $5::bigint) AND (SELECT ok FROM dv) "   \
	"RETURNING conn, gen, pos, subs, ext, ext_state, ver, dialect), "      \
	"d AS (DELETE FROM syncv3_ss_rooms o USING c WHERE o.conn = c.conn "   \
	"AND o.gen > c.gen) "                                                  \
	"SELECT c.conn, c.gen, c.pos, c.subs, c.ext, c.ext_state, c.ver, "     \
	"c.dialect, coalesce((SELECT ok FROM dv), false), " SS_SINCE("$2",    \
	"$3") " FROM (SELECT 1) one LEFT JOIN c ON true"

/*
 * $1 user, $2 device, $3 conn_id, $4 dialect, $5 connections per device,
 * $6 the token's hash (nothing is created for a token no longer current).
 * A connection without pos starts afresh: the same conn_id's row is
 * reset (its rooms and to-device acknowledgement dropped: it holds no
 * message until its first response with to_device on; its generation
 * moves on, so no pos of its past matches again) and the device's least
 * recently used connections beyond the cap go. One row: conn, gen, ver, how many were dropped
 * (NULLs when the token is not current), whether the token is current.
 */
#define SS_CREATE                                                              \
	"WITH " SESSION_TOKEN_OK("$1", "$2", "$6") ", "                        \
	"c AS (INSERT INTO syncv3_ss_conns (user_id, device_id, conn_id, "     \
	"dialect) SELECT $1, $2, $3, $4 FROM dv WHERE dv.ok ON CONFLICT "      \
	"(user_id, device_id, "                                                \
	"conn_id) DO UPDATE SET gen = syncv3_ss_conns.top_gen + 1, top_gen = " \
	"syncv3_ss_conns.top_gen + 1, pos = 0, subs = '{}', ext = "            \
	"'{}', ext_state = NULL, p_gen = NULL, p_pos = NULL, p_subs = NULL, "  \
	"p_ext = NULL, p_ext_state = NULL, tok = NULL, p_tok = NULL, "         \
	"dialect = excluded.dialect, ver = "                                   \
	"syncv3_ss_conns.ver + 1, created_at = now(), last_used = now() "      \
	"RETURNING conn, gen, ver), "                                          \
	"r AS (DELETE FROM syncv3_ss_rooms o USING c WHERE o.conn = c.conn), " \
	"t AS (DELETE FROM syncv3_ss_to_device_acks a USING c WHERE a.conn = " \
	"c.conn), "                                                            \
	"x AS (DELETE FROM syncv3_ss_conns WHERE conn IN (SELECT conn FROM "   \
	"syncv3_ss_conns WHERE user_id = $1 AND device_id = $2 AND conn_id "   \
	"<> $3 ORDER BY last_used DESC, conn DESC OFFSET $5::bigint - 1) "     \
	"RETURNING conn) "                                                     \
	"SELECT c.conn, c.gen, c.ver, (SELECT count(*) FROM x), coalesce(("    \
	"SELECT ok FROM dv), false), " SS_SINCE("$1", "$2") " FROM (SELECT 1) " \
	"one LEFT JOIN c ON true"

/*
 * $1 conn, $2 ver loaded, $3 confirmed gen, $4 position answered, $5 subs,
 * $6 ext, $7 ext_state, $8.. per room sent: id, nid, limit, rs, lazy,
 * membership, $14 the since read before the round (NULL: none usable),
 * $15 the generation a folded save of this round stored and did not use
 * (SS_DETAIL_SAVE_CONT; NULL: none), whose rows go.
 * Its /messages token (021_pos_token.sql) is the device's since now when
 * nothing was committed after the position answered (a since committed
 * at or below it, the newest such: fewest repeats), else $14. Saved as the unconfirmed response, under a generation never
 * handed out before, only if nobody wrote the connection since it was
 * loaded (ver). Rooms re-sent drop their rows older than the confirmed
 * one they replace. One row (the new generation), none if it lost the
 * race.
 */
/*
 * SS_SAVE's CTEs (also SS_DETAIL_SAVE_CONT's): conn, ver loaded, gen
 * confirmed, at position answered, subs, ext, st ext_state, ids the
 * rooms sent (text[]), rows a FROM item k(r, n, l, rs, lz, m) of them,
 * since the since read before the round, drop a generation whose rows go
 * (NULL: none). c returns conn, the generation saved and the new ver.
 */
#define SS_SAVE_CTES(conn, ver, gen, at, subs, ext, st, ids, rows, since,    \
                     drop)                                                     \
	"c AS (UPDATE syncv3_ss_conns SET p_gen = greatest(top_gen, gen) "     \
	"+ 1, top_gen = greatest(top_gen, gen) + 1, p_pos = " at "::bigint, "  \
	"p_subs = " subs ", p_ext = " ext ", p_ext_state = " st ", p_tok = "   \
	"CASE WHEN (SELECT sp.pos FROM syncv3_position sp) <= " at "::bigint " \
	"THEN coalesce((SELECT nullif(sd.since, '') FROM syncv3_devices sd "   \
	"WHERE sd.user_id = syncv3_ss_conns.user_id AND sd.device_id = "       \
	"syncv3_ss_conns.device_id), " since ") ELSE " since " END, ver = "    \
	"ver + 1, last_used = now() WHERE conn = " conn "::bigint AND ver = "  \
	ver "::bigint RETURNING conn, p_gen, ver), "                           \
	"d AS (DELETE FROM syncv3_ss_rooms o USING c WHERE o.conn = c.conn "   \
	"AND o.room_id = ANY(" ids "::text[]) AND o.gen < (SELECT max(n.gen) " \
	"FROM syncv3_ss_rooms n WHERE n.conn = o.conn AND n.room_id = "        \
	"o.room_id AND n.gen <= " gen "::bigint)), "                           \
	"g AS (DELETE FROM syncv3_ss_rooms o USING c WHERE " drop "::bigint "  \
	"IS NOT NULL AND o.conn = c.conn AND o.gen = " drop "::bigint), "      \
	"i AS (INSERT INTO syncv3_ss_rooms (conn, room_id, gen, nid, "         \
	"tl_limit, rs, state_pos, lazy, membership) SELECT c.conn, k.r, "      \
	"c.p_gen, k.n, k.l, k.rs, " at "::bigint, k.lz, k.m FROM c, " rows     \
	" ON CONFLICT "                                                        \
	"(conn, room_id, gen) DO UPDATE SET nid = excluded.nid, tl_limit = "   \
	"excluded.tl_limit, rs = excluded.rs, state_pos = excluded.state_pos, " \
	"lazy = excluded.lazy, membership = excluded.membership)"
#define SS_SAVE                                                                \
	"WITH " SS_SAVE_CTES("$1", "$2", "$3", "$4", "$5", "$6", "$7", "$8",   \
	"unnest($8::text[], $9::bigint[], $10::int[], $11::text[], "           \
	"$12::text[], $13::text[]) AS k(r, n, l, rs, lz, m)", "$14", "$15")    \
	" SELECT p_gen FROM c"

/*
 * A new connection's first response, created and saved at once (the
 * round read nothing of it: conn 0 has sent no room). $1 user, $2
 * device, $3 conn_id, $4 dialect, $5 connections per device, $6 the
 * token's hash, $7 position answered, $8 subs, $9 ext, $10 ext_state,
 * $11.. per room sent as SS_SAVE's $8.., $17 to_device on, $18 its ack,
 * $19 the since read with the lists (NULL: none usable).
 * As SS_CREATE then SS_SAVE in one: the conn_id's row starts afresh (a
 * generation never handed out, its rooms dropped) with this response
 * as its unconfirmed one; the to-device ack is this request's since
 * (none: no row, as SS_CREATE's reset). A concurrent request of the
 * same conn_id is serialised on the row: the later one's connection
 * wins, as two SS_CREATEs. The /messages token only when nothing was
 * committed after the position answered, else $19: the since read with
 * the lists (SS_LIST_SINCE) at or below that position. One row: conn, gen saved, how many were dropped, whether
 * the token is current (conn NULL when not).
 */
/*
 * SS_CREATE_SAVE's CTEs (also SS_DETAIL_SAVE's): u user, d device, id
 * conn_id, dia dialect, cap connections per device, h the token's hash,
 * at position answered, subs, ext, st ext_state, rows a FROM item
 * k(r, n, l, rs, lz, m) of the rooms sent, on to_device on, ack its ack,
 * since the since read with the lists.
 */
#define SS_CREATE_SAVE_CTES(u, d, id, dia, cap, h, at, subs, ext, st, rows,   \
                            on, ack, since)                                    \
	SESSION_TOKEN_OK(u, d, h) ", "                                         \
	"c AS (INSERT INTO syncv3_ss_conns (user_id, device_id, conn_id, "     \
	"dialect, gen, top_gen, p_gen, p_pos, p_subs, p_ext, p_ext_state, "    \
	"p_tok) SELECT " u ", " d ", " id ", " dia ", 0, 1, 1, " at            \
	"::bigint, " subs ", " ext ", " st ", "                                \
	"CASE WHEN (SELECT sp.pos FROM syncv3_position sp) <= " at "::bigint " \
	"THEN coalesce((SELECT nullif(sd.since, '') FROM syncv3_devices sd "   \
	"WHERE sd.user_id = " u " AND sd.device_id = " d "), " since ") ELSE " \
	since " END "                                                          \
	"FROM dv WHERE dv.ok ON "                                              \
	"CONFLICT (user_id, device_id, conn_id) DO UPDATE SET gen = "          \
	"syncv3_ss_conns.top_gen + 1, top_gen = syncv3_ss_conns.top_gen + 2, " \
	"pos = 0, subs = '{}', ext = '{}', ext_state = NULL, tok = NULL, "     \
	"p_gen = syncv3_ss_conns.top_gen + 2, p_pos = excluded.p_pos, "        \
	"p_subs = excluded.p_subs, p_ext = excluded.p_ext, p_ext_state = "     \
	"excluded.p_ext_state, p_tok = excluded.p_tok, dialect = "             \
	"excluded.dialect, ver = syncv3_ss_conns.ver + 1, created_at = now(), " \
	"last_used = now() RETURNING conn, p_gen), "                           \
	"r AS (DELETE FROM syncv3_ss_rooms o USING c WHERE o.conn = c.conn), " \
	"td AS (DELETE FROM syncv3_ss_to_device_acks a USING c WHERE a.conn = " \
	"c.conn AND NOT " on "::bool), "                                       \
	"tu AS (INSERT INTO syncv3_ss_to_device_acks (conn, user_id, "         \
	"device_id, acked) SELECT c.conn, " u ", " d ", greatest(" ack         \
	"::bigint, 0) FROM c WHERE " on "::bool ON CONFLICT (conn) DO UPDATE " \
	"SET acked = excluded.acked), "                                        \
	"x AS (DELETE FROM syncv3_ss_conns WHERE conn IN (SELECT conn FROM "   \
	"syncv3_ss_conns WHERE user_id = " u " AND device_id = " d " AND "     \
	"conn_id <> " id " ORDER BY last_used DESC, conn DESC OFFSET " cap     \
	"::bigint - 1) RETURNING conn), "                                      \
	"i AS (INSERT INTO syncv3_ss_rooms (conn, room_id, gen, nid, "         \
	"tl_limit, rs, state_pos, lazy, membership) SELECT c.conn, k.r, "      \
	"c.p_gen, k.n, k.l, k.rs, " at "::bigint, k.lz, k.m FROM c, " rows     \
	" ON CONFLICT "                                                        \
	"(conn, room_id, gen) DO UPDATE SET nid = excluded.nid, tl_limit = "   \
	"excluded.tl_limit, rs = excluded.rs, state_pos = excluded.state_pos, " \
	"lazy = excluded.lazy, membership = excluded.membership)"
#define SS_CREATE_SAVE                                                         \
	"WITH " SS_CREATE_SAVE_CTES("$1", "$2", "$3", "$4", "$5", "$6", "$7",  \
	"$8", "$9", "$10", "unnest($11::text[], $12::bigint[], $13::int[], "   \
	"$14::text[], $15::text[], $16::text[]) AS k(r, n, l, rs, lz, m)",     \
	"$17", "$18", "$19") " "                                               \
	"SELECT c.conn, c.p_gen, (SELECT count(*) FROM x), coalesce((SELECT "  \
	"ok FROM dv), false) FROM (SELECT 1) one LEFT JOIN c ON true"

/* The newest row of what connection $2 sent of room r by gen $3. */
#define SS_SENT(r)                                                             \
	"LATERAL (SELECT sr.nid, sr.tl_limit, sr.rs, sr.state_pos, sr.lazy, "  \
	"sr.membership FROM syncv3_ss_rooms sr WHERE sr.conn = $2::bigint AND " \
	"sr.room_id = " r " AND sr.gen <= $3::bigint ORDER BY sr.gen DESC "    \
	"LIMIT 1)"

/* Is room x in the user's m.direct (content: user -> [room ids])? */
#define SS_IS_DM(x)                                                            \
	"EXISTS (SELECT 1 FROM syncv3_account_data ad, jsonb_each("            \
	"(ad.json::jsonb)->'content') AS kv(k, v) WHERE ad.user_id = $1 AND "  \
	"ad.room_id = '' AND ad.type = 'm.direct' AND jsonb_typeof(kv.v) = "   \
	"'array' AND kv.v ? " x ")"

/*
 * An invite's stripped state event of type t (first match), for the
 * filters: what the invite tells is all the user may know of the room.
 */
#define SS_INVITE_EV(t)                                                        \
	"(SELECT x.e FROM json_array_elements(CASE WHEN json_typeof("          \
	"ur.invite_state::json) = 'array' THEN ur.invite_state::json ELSE "    \
	"'[]'::json END) AS x(e) WHERE x.e->>'type' = '" t "' LIMIT 1)"
/* The room's type (m.room.create content.type), NULL if none. */
#define SS_ROOM_TYPE                                                           \
	"(CASE WHEN ur.membership = 'invite' THEN " SS_INVITE_EV(              \
	    "m.room.create") "->'content'->>'type' ELSE (SELECT rt.room_type " \
	"FROM syncv3_rooms rt WHERE rt.room_id = ur.room_id) END)"
/* Room type among $n (a NULL element: no type). */
#define SS_TYPE_IN(n)                                                          \
	"(coalesce(" SS_ROOM_TYPE " = ANY(" n "::text[]), false) OR ("         \
	SS_ROOM_TYPE " IS NULL AND array_position(" n "::text[], NULL) IS "    \
	"NOT NULL))"
#define SS_TAGGED(n)                                                           \
	"EXISTS (SELECT 1 FROM syncv3_account_data tg WHERE tg.user_id = $1 "  \
	"AND tg.room_id = ur.room_id AND tg.type = 'm.tag' AND "               \
	"((tg.json::jsonb)->'content'->'tags') ?| " n "::text[])"

/*
 * The user's rooms a list may show, by the MSC: joined, invited and
 * knocked; banned after a join or kicked; left by themselves only when
 * this connection already sent the room. The membership is the user's
 * own row (their sync's view): the rooms sent are checked against
 * visible.h's rule by SS_ROOMS, so a list never shows more than that
 * allows. Each filter is skipped at run time when its parameter is NULL
 * (OR stops at the first true), so a list without filters is an index
 * scan of syncv3_user_rooms_ss.
 */
#define SS_GONE_SHOWN                                                          \
	"(ur.membership = 'ban' AND EXISTS "                                  \
	"(SELECT 1 FROM syncv3_state j WHERE j.room_id = ur.room_id AND "     \
	"j.type = 'm.room.member' AND j.state_key = $1 AND j.membership = "   \
	"'join')) OR (ur.membership = 'leave' AND (coalesce((SELECT e.sender " \
	"FROM syncv3_state k JOIN syncv3_events e ON e.nid = k.nid WHERE "    \
	"k.room_id = ur.room_id AND k.type = 'm.room.member' AND k.state_key " \
	"= $1 ORDER BY k.from_pos DESC LIMIT 1), $1) <> $1 OR EXISTS (SELECT " \
	"1 FROM syncv3_ss_rooms sr WHERE sr.conn = $2::bigint AND "            \
	"sr.room_id = ur.room_id AND sr.gen <= $3::bigint)))"
#define SS_CANDIDATES_OF(filters)                                              \
	"FROM syncv3_user_rooms ur WHERE ur.user_id = $1 AND (ur.membership " \
	"IN ('join', 'invite', 'knock') OR " SS_GONE_SHOWN ") " filters
#define SS_FILTERS                                                             \
	"AND ($4::bool IS NULL OR " SS_IS_DM("ur.room_id") " = $4::bool) "     \
	"AND ($5::bool IS NULL OR (ur.membership = 'invite') = $5::bool) "     \
	"AND ($6::bool IS NULL OR coalesce(CASE WHEN ur.membership = "        \
	"'invite' THEN " SS_INVITE_EV("m.room.encryption") " IS NOT NULL "     \
	"WHEN ur.membership IN ('leave', 'ban') THEN EXISTS (SELECT 1 FROM "   \
	"syncv3_state se WHERE se.room_id = ur.room_id AND se.type = "         \
	"'m.room.encryption' AND se.state_key = '' AND se.from_pos <= "        \
	"ur.pos) ELSE (SELECT re.is_encrypted FROM syncv3_rooms re WHERE "     \
	"re.room_id = ur.room_id) END, false) = $6::bool) "                    \
	"AND ($7::text[] IS NULL OR ur.room_id IN (SELECT c.state_key FROM "   \
	"syncv3_state c JOIN syncv3_events ce ON ce.nid = c.nid WHERE "        \
	"c.room_id = ANY($7::text[]) AND c.type = 'm.space.child' AND "        \
	"c.to_pos IS NULL AND (ce.json::json)->'content'->'via' IS NOT NULL "  \
	"AND " VIS_MEMBERSHIP("c.room_id", "$1",                              \
	    "(SELECT pos FROM syncv3_position)") " = 'join')) "                \
	"AND ($8::text[] IS NULL OR " SS_TYPE_IN("$8") ") "                    \
	"AND ($9::text[] IS NULL OR NOT (" SS_TYPE_IN("$9") ")) "              \
	"AND ($10::text[] IS NULL OR " SS_TAGGED("$10") ") "                   \
	"AND ($11::text[] IS NULL OR NOT " SS_TAGGED("$11") ")"
#define SS_CANDIDATES SS_CANDIDATES_OF(SS_FILTERS)

/*
 * One list: the position, its count and the rooms of its ranges ($12
 * starts, $13 ends; NULL: all; $14 the highest end + 1, so the scan
 * stops there), newest activity first, ties by position then room id.
 * $1 user, $2 conn, $3 gen, $4.. the filters (NULL: unset). Rows:
 * position, count, then room, membership and its bump key (NULLs for
 * an empty window), then SS_MORE.
 * Without filters the count is the user's count row (017_ssperf.sql)
 * and their bans and leaves shown; CASE runs only the branch it takes.
 */
#define SS_NO_FILTER                                                           \
	"$4::bool IS NULL AND $5::bool IS NULL AND $6::bool IS NULL AND "      \
	"$7::text[] IS NULL AND $8::text[] IS NULL AND $9::text[] IS NULL "    \
	"AND $10::text[] IS NULL AND $11::text[] IS NULL"
#define SS_COUNT_OF(filtered)                                                  \
	"CASE WHEN " SS_NO_FILTER " THEN coalesce((SELECT sc.shown FROM "      \
	"syncv3_ss_counts sc WHERE sc.user_id = $1), 0) + (SELECT count(*) "   \
	"FROM syncv3_user_rooms ur WHERE ur.user_id = $1 AND ur.membership "   \
	"IN ('leave', 'ban') AND (" SS_GONE_SHOWN ")) ELSE " filtered " END"
#define SS_COUNT SS_COUNT_OF("(SELECT count(*) " SS_CANDIDATES ")")
#define SS_WINDOW_OF(filters)                                                  \
	"w AS (SELECT y.room_id, y.membership, y.idx, y.k FROM (SELECT "       \
	"ur.room_id, ur.membership, ur.ss_bump_ts AS k, row_number() OVER ("  \
	"ORDER BY "                                                            \
	"ur.ss_bump_ts DESC, ur.ss_bump_nid DESC, ur.room_id) - 1 AS idx "     \
	SS_CANDIDATES_OF(filters) " ORDER BY ur.ss_bump_ts DESC, "             \
	"ur.ss_bump_nid DESC, "                                                \
	"ur.room_id LIMIT $14::bigint) y WHERE $12::bigint[] IS NULL OR "      \
	"EXISTS (SELECT 1 FROM unnest($12::bigint[], $13::bigint[]) AS g(lo, " \
	"hi) WHERE y.idx BETWEEN g.lo AND g.hi))"
#define SS_WINDOW SS_WINDOW_OF(SS_FILTERS)
/*
 * The rooms the rest of a first window's initial sync will add
 * (016_cold.sql), read in the list's own snapshot: 0 once the device's
 * initial sync is stored, so a count never adds them to rooms already
 * stored (the device state the request was gated on is an older read).
 */
#define SS_MORE                                                                \
	"coalesce((SELECT d.window_more FROM syncv3_ss_conns sc JOIN "         \
	"syncv3_devices d ON d.user_id = sc.user_id AND d.device_id = "        \
	"sc.device_id WHERE sc.conn = $2::bigint AND NOT "                     \
	"d.is_initial_done), 0)"
/*
 * Last column of SS_LIST and SS_LIST_ROOMS: the device's ($15) committed
 * since in the list's snapshot, whose position is the first column: the
 * /messages token of a new connection's first response (SS_CREATE_SAVE).
 */
#define SS_LIST_SINCE                                                          \
	"(SELECT nullif(sd.since, '') FROM syncv3_devices sd WHERE "           \
	"sd.user_id = $1 AND sd.device_id = $15)"
#define SS_LIST_OF(filters, count)                                             \
	"WITH " SS_WINDOW_OF(filters) " SELECT p.pos, " SS_COUNT_OF(count)     \
	", w.room_id, w.membership, w.k, " SS_MORE ", " SS_LIST_SINCE " FROM " \
	"syncv3_position p LEFT JOIN w ON true ORDER BY w.idx"
#define SS_LIST SS_LIST_OF(SS_FILTERS, "(SELECT count(*) " SS_CANDIDATES ")")
/*
 * SS_LIST for a list without filters ($4..$11 all NULL), as
 * SS_LIST_ROOMS_PLAIN is SS_LIST_ROOMS's: a request of several lists, or
 * of lists and subscriptions (Element X's room list and the rooms it
 * shows), runs one per list, and a generic plan sets up every filter's
 * branch at each Bind.
 */
#define SS_LIST_PLAIN SS_LIST_OF("", "NULL")

/*
 * The rooms to answer ($4, list windows and subscriptions, with $6 and
 * $7 their combined timeline_limit and required_state canonical, for
 * SS_QUIET) at position $5: what the user may see of each (visible.h: membership at $5 and the
 * last position they may see, capped at their leave), its summary, and
 * what this connection sent of it (the last position seen is only worked
 * out for rooms left: it costs). A room left shows its name, avatar and
 * heroes as of the leave (nothing after it). Whether its name, members or
 * bump event changed since it was sent. Rooms the user was never in, and
 * rooms never visible to them (an invite rejected or withdrawn, a ban
 * without a join) unless this connection sent them, are left out. $1
 * user, $2 conn, $3 gen. Column 21, the user's own row's position, tells
 * an invite or unread counts changed (the room's is anyone's activity).
 * The laterals vm, vl and v end in OFFSET 0 so the planner keeps them
 * apart: pulled up, each use of v.m or v.p (a dozen) ran the membership
 * subquery again, 2.8 ms instead of 1.0 for a window of 20 (EXPLAIN
 * ANALYZE, 10,000 rooms, issue #11 benchmarks). So does nm, the name,
 * read once for its column and the heroes' test (it was read twice).
 */
/* The room's state (type, "") field f at position v.p (SS_ROOMS). */
#define SS_AT(type, f)                                                         \
	"(SELECT (ae.json::json)->'content'->>'" f "' FROM syncv3_state sa "   \
	"JOIN syncv3_events ae ON ae.nid = sa.nid WHERE sa.room_id = q.id AND " \
	"sa.type = '" type "' AND sa.state_key = '' AND sa.from_pos <= v.p "   \
	"AND coalesce(sa.to_pos, 9223372036854775807) > v.p LIMIT 1)"
/*
 * Did state of types t (SQL list) change since the room was sent? The
 * members' list has a second type no event has (''): with the one type
 * alone, the planner of a database not analysed yet (a fresh deployment
 * after its first large initial sync) took the partial index of a user's
 * memberships, syncv3_state_user, and walked all of it for each room,
 * 11.5 ms of Postgres per new connection at 10,000 rooms instead of 1.1
 * (bench_ss.sh with PG_EXTRA='-c autovacuum=off'); two types rule that
 * index out and keep (room_id, type) of syncv3_state_at.
 */
#define SS_CHANGED(t)                                                          \
	"EXISTS (SELECT 1 FROM syncv3_state sc WHERE sc.room_id = q.id AND "   \
	"sc.type IN " t " AND sc.from_pos > coalesce(sent.state_pos, 0) AND "  \
	"sc.from_pos <= v.p)"
/* x, or NULL when quiet: a column only a room sent needs. */
#define SS_UNLESS(quiet, x) "CASE WHEN " quiet " THEN NULL ELSE " x " END"
/*
 * A room SS_ROOMS need not describe (q.lim and q.rs: its combined
 * timeline_limit and required_state canonical; SS_LIST_ROOMS: $16 and
 * $17, the list's): sent before as joined, joined still, with the same
 * config, nothing newer than what was sent in its rows and no event
 * placed before them (ORDER_GAP: such a room goes afresh). ss_rooms.c
 * decide() sends such a room not at all, so its name, avatar, heroes,
 * m.direct and changed flags go unread: a woken long poll reads them for
 * the rooms that changed, not for its whole window.
 */
#define SS_QUIET                                                               \
	"(sent.membership = 'join' AND v.m = 'join' AND sent.tl_limit >= "     \
	"q.lim AND sent.rs = q.rs AND greatest(coalesce(r.updated_pos, 0), "   \
	"coalesce(ur.updated_pos, 0)) <= sent.state_pos AND NOT " ORDER_GAP(   \
	"q.id", "sent.nid") ")"
#define SS_ROOMS_OF(ids, at)                                                   \
	"SELECT q.id, v.m, v.last, nm.name, " SS_UNLESS(SS_QUIET,                  \
	SS_AT("m.room.avatar", "url")) ", "                                    \
	"coalesce(r.joined_count, 0), "                                         \
	"coalesce(r.invited_count, 0), CASE WHEN ur.ss_bump_ts > 0 THEN "      \
	"ur.ss_bump_ts ELSE coalesce(r.bump_ts, 0) END, greatest(coalesce("    \
	"r.updated_pos, 0), coalesce(ur.updated_pos, "                         \
	"0)), ur.notification_count, ur.highlight_count, ur.invite_state, "    \
	"ur.prev_batch, CASE WHEN " SS_QUIET " THEN NULL WHEN coalesce(nm.name, "  \
	"'') = '' AND coalesce(" SS_AT("m.room.canonical_alias", "alias")    \
	", '') = '' THEN (SELECT json_agg(json_strip_nulls("                   \
	"json_build_object('user_id', h.uid, 'displayname', (he.json::json)"   \
	"->'content'->>'displayname', 'avatar_url', (he.json::json)->"         \
	"'content'->>'avatar_url'))) FROM (SELECT json_array_elements_text("   \
	"CASE WHEN v.last IS NULL AND coalesce(ur.heroes, '') NOT IN ('', "    \
	"'[]') THEN ur.heroes::json ELSE (SELECT coalesce(json_agg("           \
	"hm.state_key), '[]'::json) FROM (SELECT s.state_key FROM "            \
	"syncv3_state s WHERE s.room_id = q.id AND s.type = 'm.room.member' "  \
	"AND s.from_pos <= v.p AND coalesce(s.to_pos, 9223372036854775807) > " \
	"v.p AND s.membership IN ('join', 'invite') AND s.state_key <> $1 "    \
	"ORDER BY s.state_key LIMIT 5) hm) END) AS uid) h LEFT JOIN "          \
	"syncv3_state hs ON hs.room_id = q.id AND hs.type = 'm.room.member' "  \
	"AND hs.state_key = h.uid AND hs.from_pos <= v.p AND coalesce("        \
	"hs.to_pos, 9223372036854775807) > v.p LEFT JOIN syncv3_events he ON " \
	"he.nid = hs.nid) END, " SS_UNLESS(SS_QUIET, SS_IS_DM("q.id")) ", "        \
	"sent.nid, "                                                            \
	"sent.tl_limit, sent.rs, sent.state_pos, sent.lazy, sent.membership, " \
	"coalesce(ur.updated_pos, 0), " SS_UNLESS(SS_QUIET, SS_CHANGED(           \
	"('m.room.name', 'm.room.avatar', 'm.room.canonical_alias')")) ", "    \
	SS_UNLESS(SS_QUIET, SS_CHANGED("('m.room.member', '')"))                  \
	", coalesce(r.bump_nid, 0) > coalesce(sent.nid, 0), " ORDER_GAP(      \
	"q.id", "sent.nid") " FROM " ids " AS q(id, lim, rs) CROSS JOIN "      \
	"LATERAL (SELECT " VIS_MEMBERSHIP("q.id", "$1", at) " AS m "           \
	"OFFSET 0) vm CROSS JOIN LATERAL (SELECT vm.m, CASE WHEN vm.m IN ("    \
	"'join', 'invite', 'knock') THEN NULL ELSE " VIS_LAST("q.id", "$1",    \
	at) " END AS last OFFSET 0) vl CROSS JOIN LATERAL (SELECT "            \
	"vl.m, vl.last, coalesce(vl.last, " at ") AS p OFFSET 0) v LEFT "      \
	"JOIN "                                                                \
	"syncv3_rooms r ON r.room_id = q.id LEFT JOIN "                        \
	"syncv3_user_rooms ur ON ur.user_id = $1 AND ur.room_id = q.id LEFT "  \
	"JOIN " SS_SENT("q.id") " sent ON true CROSS JOIN LATERAL (SELECT "     \
	SS_UNLESS(SS_QUIET, SS_AT("m.room.name", "name")) " AS name OFFSET 0) nm " \
	"WHERE v.m IS NOT NULL AND ("                                           \
	"v.m IN ('join', 'invite', 'knock') OR v.last IS NOT NULL OR "         \
	"sent.membership IS NOT NULL)"
#define SS_ROOMS                                                               \
	SS_ROOMS_OF("unnest($4::text[], $6::int[], $7::text[])", "$5::bigint")
/*
 * One list and its rooms in one statement (a request with one list and
 * no subscriptions: one round trip less per round): SS_LIST's rows, each
 * followed by SS_ROOMS' columns for its room (NULLs when SS_ROOMS leaves
 * the room out), at the position of the same snapshot. $1.. as SS_LIST,
 * $16 and $17 the list's timeline_limit and required_state canonical.
 * filters and count are the list's filter clauses and its count when
 * one is set (SS_COUNT_OF). The window's rooms reach SS_ROOMS_OF as an
 * array: a generic plan cannot know LIMIT $14 and guesses a tenth of
 * the user's rooms (1,000 of 10,000), and without the filters' clauses
 * to shrink that guess it hashed syncv3_rooms and syncv3_user_rooms
 * whole for a window of 20 (8-11 ms instead of 2); unnest of an array is
 * guessed at 10 rows, which keeps the index lookups of SS_ROOMS.
 */
#define SS_LIST_ROOMS_OF(filters, count)                                       \
	"WITH " SS_WINDOW_OF(filters) ", rr AS (" SS_ROOMS_OF(                 \
	"(SELECT u.id, $16::int, $17::text FROM unnest(ARRAY(SELECT "          \
	"w.room_id FROM w)) AS u(id))", "(SELECT pos FROM syncv3_position)")   \
	") "                                                                    \
	"SELECT p.pos, "                                                        \
	SS_COUNT_OF(count) ", "                                                 \
	"w.room_id, w.membership, w.k, " SS_MORE ", rr.*, " SS_LIST_SINCE     \
	" FROM "                                                               \
	"syncv3_position p LEFT JOIN w ON "                                    \
	"true LEFT JOIN rr ON rr.id = w.room_id ORDER BY w.idx"
#define SS_LIST_ROOMS                                                          \
	SS_LIST_ROOMS_OF(SS_FILTERS, "(SELECT count(*) " SS_CANDIDATES ")")
/*
 * The same for a list without filters ($4..$11 all NULL; ss_rooms.c
 * list_query), the common case (Element X's and js-sdk's room lists
 * send "filters": {}). A generic plan keeps every filter's branch, and a
 * plain SELECT sets its whole plan up at Bind: without them it has about
 * 100 nodes instead of 175 (docs/POSTGRES.md). SS_NO_FILTER still names
 * $4..$11, so the parameters are the same 17; with a filter set the
 * count would be NULL and the rooms unfiltered, so it is never used so.
 */
#define SS_LIST_ROOMS_PLAIN SS_LIST_ROOMS_OF("", "NULL")

/*
 * Timeline and state of rooms $1 (with per-room bounds: $2 timeline
 * after, $3 state changed after, $4 up to, $5 how many events, one more
 * than the limit so "limited" is known) for user $6: the timeline is what
 * visible.h lets them see, newest first; state rows current at the bound
 * whose (type, state_key) matches a pattern of $7/$8 ('*' any), exact
 * matching is done by the caller; $9 is the user's device (TXN_JSON).
 * The state rows are matched before their events are read (OFFSET 0: the
 * planner joined every current row's event first).
 * Rows: kind, room, nid (state: its from_pos), json, type, state_key,
 * sender, event_id, cut (timeline: visible.h cut the window, so the
 * timeline is limited), limited, and what they are sorted by (timeline:
 * the room's order, 031_order.sql; state: from_pos; chunk: nid).
 * With them, in the same statement (one round trip less for every room
 * sent in full), the chunk boundary (CHUNK_AT) of each timeline a client
 * pages back from, $10 the room is sent initial or its timeline turns out
 * limited ('c' rows: nid, token in json, is_end in cut, the chunk's
 * limited): e is its oldest event sent (the extra row is not), fits when
 * it holds every event the user may see before that one.
 */
#define SS_DETAIL_OF(ctes, rows)                                              \
	"WITH t AS (SELECT r.id, x.nid, x.json, x.type, x.state_key, "         \
	"x.sender, x.event_id, x.cut, x.k, r.n, r.c, row_number() OVER "       \
	"(PARTITION BY r.id ORDER BY x.k DESC) AS rk FROM unnest($1::text[], " \
	"$2::bigint[], $4::bigint[], $5::bigint[], $10::bool[]) AS r(id, f, "  \
	"p, n, c) CROSS JOIN LATERAL (SELECT e.nid, " TXN_JSON("e", "$6", "$9") \
	" AS json, e.type, e.state_key, e.sender, e.event_id, vis_q.cut, "     \
	"vis_q.k FROM "                                                        \
	VIS_LAST_ROWS("r.id", "$6", "r.p", "r.f", "r.n") " vis_q JOIN "        \
	"syncv3_events e ON e.nid = vis_q.nid) x)" ctes " "                     \
	"SELECT 't', id, nid, json, type, state_key, sender, event_id, cut, "  \
	"NULL::bool, k FROM t UNION ALL "                                      \
	"SELECT 's', r.id, y.from_pos, ye.json, y.type, y.state_key, NULL, "  \
	"NULL, NULL, NULL, y.from_pos "                                        \
	"FROM "                                                                \
	"unnest($1::text[], $3::bigint[], $4::bigint[]) AS r(id, f, p) CROSS " \
	"JOIN LATERAL (SELECT s.from_pos, s.nid, s.type, s.state_key FROM "    \
	"syncv3_state s WHERE s.room_id = r.id AND s.from_pos <= r.p AND "     \
	"s.from_pos > r.f AND coalesce(s.to_pos, 9223372036854775807) > r.p "  \
	"AND EXISTS (SELECT 1 FROM unnest($7::text[], $8::text[]) AS k(t, sk) " \
	"WHERE (k.t = '*' OR k.t = s.type) AND (k.sk = '*' OR k.sk = "         \
	"s.state_key)) OFFSET 0) y JOIN syncv3_events ye ON ye.nid = y.nid "   \
	"WHERE r.f >= 0 UNION ALL "                                            \
	"SELECT 'c', o.id, ch.nid, ch.token, NULL, NULL, NULL, NULL, "         \
	"ch.is_end, ch.limited, ch.nid FROM (SELECT id, (array_agg(nid ORDER " \
	"BY k) FILTER (WHERE rk < n))[1] AS e, count(*) < max(n) AND NOT bool_or(cut) AS fits FROM t "      \
	"GROUP BY id HAVING bool_or(c) OR count(*) >= max(n) OR bool_or(cut)" \
	") o CROSS JOIN LATERAL " CHUNK_AT("o.id", "o.e", "o.fits") " ch "     \
	"WHERE o.e IS NOT NULL" rows " ORDER BY 1, 2, 11 DESC"
#define SS_DETAIL SS_DETAIL_OF("", "")

/*
 * SS_DETAIL and a new connection's first response created and saved
 * with it (SS_CREATE_SAVE), one round trip less for every new connection
 * whose save follows from this statement alone (ss_conn_may_fold): no
 * extension, no lazy or member state, so each room's row is its sent
 * timeline's newest event, computed here from t. $1..$10 as SS_DETAIL;
 * $11 conn_id, $12 dialect, $13 connections per device, $14 the token's
 * hash, $15 position answered, $16 subs, $17 ext, $18 ext_state, per
 * room sent $19 id, $20 limit, $21 rs, $22 membership, $23 the since read
 * with the lists. One more row, kind 'z': conn in nid, gen saved in
 * json, how many were dropped in type, whether the token is current in
 * cut (conn NULL when not).
 */
#define SS_DETAIL_SAVE                                                         \
	SS_DETAIL_OF(", " SS_CREATE_SAVE_CTES("$6", "$9", "$11", "$12", "$13", \
	"$14", "$15", "$16", "$17", "$18", "(SELECT u.r, coalesce((SELECT "   \
	"max(t.nid) FROM t WHERE t.id = u.r AND t.rk < t.n), 0), u.l, u.rs, "  \
	"'{}', u.m FROM unnest($19::text[], $20::int[], $21::text[], "         \
	"$22::text[]) AS u(r, l, rs, m)) AS k(r, n, l, rs, lz, m)", "false",   \
	"0", "$23"), " UNION ALL SELECT 'z', NULL, c.conn, c.p_gen::text, ("    \
	"SELECT count(*) FROM x)::text, NULL, NULL, NULL, coalesce((SELECT ok " \
	"FROM dv), false), NULL, NULL FROM (SELECT 1) one LEFT JOIN c ON true")

/*
 * SS_DETAIL and the response of a continuing connection saved with it
 * (SS_SAVE), one round trip less for every long-poll woken by a message
 * (issue #11: each statement of the woken round waited its turn behind
 * the v3 clients' work): no extension, no lazy or member state, so each
 * room's row is its sent timeline's newest event or, if none, what was
 * sent before, computed here from t. $1..$10 as SS_DETAIL; $11 conn, $12
 * ver loaded, $13 confirmed gen, $14 position answered, $15 subs, $16
 * ext, $17 ext_state, per room sent $18 id, $19 the nid it was sent up
 * to (0: sent in full now), $20 limit, $21 rs, $22 membership, $23 the
 * since read before the round, $24 as SS_SAVE's $15. One more row, kind
 * 'z': conn in nid (NULL when it lost the race), gen saved in json, the
 * new ver in type.
 */
#define SS_DETAIL_SAVE_CONT                                                    \
	SS_DETAIL_OF(", " SS_SAVE_CTES("$11", "$12", "$13", "$14", "$15",      \
	"$16", "$17", "$18", "(SELECT u.r, greatest(coalesce((SELECT "        \
	"max(t.nid) FROM t WHERE t.id = u.r AND t.rk < t.n), 0), u.f), u.l, "  \
	"u.rs, '{}', u.m FROM unnest($18::text[], $19::bigint[], $20::int[], " \
	"$21::text[], $22::text[]) AS u(r, f, l, rs, m)) AS k(r, n, l, rs, "   \
	"lz, m)", "$23", "$24"), " UNION ALL SELECT 'z', NULL, c.conn, "       \
	"c.p_gen::text, c.ver::text, NULL, NULL, NULL, c.conn IS NOT NULL, "   \
	"NULL, NULL FROM (SELECT 1) one LEFT JOIN c ON true")

/*
 * The member events of ($1 room, $2 user) pairs at $3 (per room bound),
 * with the position they took effect (resent to $LAZY when newer).
 */
#define SS_MEMBERS                                                             \
	"SELECT k.r, s.state_key, e.json, s.from_pos FROM unnest($1::text[], " \
	"$2::text[], "                                                         \
	"$3::bigint[]) AS k(r, u, p) JOIN syncv3_state s ON s.room_id = k.r "  \
	"AND s.type = 'm.room.member' AND s.state_key = k.u AND s.from_pos <= " \
	"k.p AND coalesce(s.to_pos, 9223372036854775807) > k.p JOIN "          \
	"syncv3_events e ON e.nid = s.nid"

/* Idle connections (their rooms cascade); the devices they belonged to. */
#define SS_EXPIRE                                                              \
	"WITH gone AS (DELETE FROM syncv3_ss_conns WHERE last_used <= now() - " \
	"make_interval(secs => $1::bigint) RETURNING user_id, device_id) "     \
	"SELECT DISTINCT user_id, device_id FROM gone"
/* admin.c: a time as milliseconds since the epoch, an interval as ms */
#define ADMIN_TS(t) "(extract(epoch FROM " t ") * 1000)::bigint"
#define ADMIN_MS(i) "ceil(extract(epoch FROM " i ") * 1000)::bigint"
/*
 * A device, its lease and poller, its polling, its sessions and sliding
 * sync connections counted.
 */
/* clang-format off */
#define ADMIN_DEVICE_ROWS                                                      \
	"SELECT d.user_id, d.device_id, l.owner, " ADMIN_MS("l.expires - now()") \
	", coalesce(p.expires > now(), false), d.poll_state, d.poll_error, "   \
	ADMIN_TS("d.poll_updated") ", " ADMIN_TS("d.last_ok") ", "             \
	"d.since <> '', " ADMIN_MS("now() - d.since_at") ", "                  \
	"d.is_initial_done, " ADMIN_TS("d.last_seen") ", "                     \
	ADMIN_TS("d.created_at") ", (SELECT count(*) FROM syncv3_sessions s "  \
	"WHERE s.user_id = d.user_id AND s.device_id = d.device_id), "         \
	"(SELECT count(*) FROM syncv3_ss_conns c WHERE c.user_id = d.user_id " \
	"AND c.device_id = d.device_id) "                                      \
	"FROM syncv3_devices d LEFT JOIN syncv3_leases l ON l.user_id = "      \
	"d.user_id AND l.device_id = d.device_id LEFT JOIN syncv3_pollers p "  \
	"ON p.id = l.owner "
/* ss_ext.c */
/*
 * The extensions of one sliding sync response, one round trip:
 * $1 user, $2 device, $3 connection, $4 from, $5 to (the response's
 * position), $6 to_device on, $7 its since (-1: none), $8 limit, $9 the
 * v3 session idle seconds, $10 e2ee on, $11 global account data (0 off,
 * 1 all, 2 changes), per room-scoped extension its fresh rooms (all
 * there is) and live ones (changes after $4): account data $12/$13,
 * typing $14/$15, receipts $16/$19, and $17/$18 the (room, event) pairs
 * of the timelines sent in fresh rooms, whose receipts go with them;
 * $20 to_device was on in the confirmed response: turned off, the
 * connection stops holding messages (its ack row goes, and what the
 * others acknowledged is deleted).
 * $21/$22 receipts' rooms back in scope and the position each left at:
 * the receipts made while it was out (Synapse's "previously" rooms).
 * Room data only for rooms the user is joined to at $5 (visible.h),
 * tested once per room (distinct first: the three extensions' rooms
 * mostly repeat, and the test is the statement's main cost).
 * The to-device ack is recorded only while the connection lives (lc,
 * locked against its eviction by SS_CREATE's cap or the expiry, which
 * would break the foreign key; the save then answers M_UNKNOWN_POS), and
 * what every holder acknowledged is deleted (as SESSION_LOAD: the DELETE sees the acks as before, so this
 * connection's own counts as $7). Rows: kind, room, then per kind
 * d: json, pos; k: otk counts, fallback types, pos; l: user, change, pos;
 * g/a: type, json, pos; t: user_ids, pos; r: event, type, user, thread,
 * ts.
 */
/* clang-format off */
#define SS_EXT_ROOMS                                                           \
	"unnest($12::text[] || $13::text[] || $14::text[] || $15::text[] || "  \
	"$16::text[] || $19::text[] || $21::text[])"
#define SS_EXT                                                                 \
	"WITH j AS MATERIALIZED (SELECT x.id FROM (SELECT DISTINCT u.id FROM " \
	SS_EXT_ROOMS " AS u(id)) x WHERE " VIS_MEMBERSHIP("x.id", "$1",        \
	"$5::bigint") " = 'join'), ta AS (SELECT acked FROM syncv3_ss_to_device_acks WHERE "    \
	"conn = $3::bigint), lc AS (SELECT conn FROM syncv3_ss_conns WHERE "   \
	"conn = $3::bigint FOR KEY SHARE), "                                   \
	"tu AS (INSERT INTO syncv3_ss_to_device_acks "                          \
	"(conn, user_id, device_id, acked) SELECT lc.conn, $1, $2, "           \
	"greatest($7::bigint, 0) FROM lc WHERE $6::bool ON CONFLICT (conn) DO UPDATE " \
	"SET acked = excluded.acked WHERE excluded.acked > "                   \
	"syncv3_ss_to_device_acks.acked RETURNING 1), tx AS (DELETE FROM "     \
	"syncv3_ss_to_device_acks WHERE NOT $6::bool AND $20::bool AND conn = " \
	"$3::bigint RETURNING 1), td AS (DELETE FROM syncv3_to_device WHERE "  \
	"(($6::bool AND $7::bigint > 0) OR (NOT $6::bool AND $20::bool)) AND " \
	"user_id = $1 AND device_id = $2 AND pos <= least(CASE WHEN $6::bool " \
	"THEN $7::bigint END, " V3_ACKED("$1", "$2", "$9") ", "                \
	SS_ACKED("$1", "$2", " AND ss_a.conn <> $3::bigint") ") RETURNING 1) " \
	"SELECT 'd', NULL, m.json, NULL, NULL, NULL, m.pos FROM (SELECT pos, " \
	"json FROM syncv3_to_device WHERE $6::bool AND user_id = $1 AND "      \
	"device_id = $2 AND pos > greatest($7::bigint, coalesce((SELECT "      \
	"acked FROM ta), 0)) AND pos <= $5::bigint ORDER BY pos LIMIT "        \
	"$8::bigint) m UNION ALL SELECT 'k', NULL, k.otk_counts, "             \
	"k.fallback_types, NULL, NULL, coalesce(k.pos, 0) FROM (SELECT 1) one " \
	"LEFT JOIN syncv3_device_keys k ON k.user_id = $1 AND k.device_id = "  \
	"$2 WHERE $10::bool UNION ALL SELECT 'l', NULL, l.target_user, "       \
	"l.change, NULL, NULL, l.pos FROM syncv3_device_lists l WHERE "        \
	"$10::bool AND $4::bigint > 0 AND l.user_id = $1 AND l.device_id = $2 " \
	"AND l.pos > $4::bigint AND l.pos <= $5::bigint UNION ALL SELECT "     \
	"'g', '', g.type, g.json, NULL, NULL, g.pos FROM syncv3_account_data " \
	"g WHERE $11::int > 0 AND g.user_id = $1 AND g.room_id = '' AND "      \
	"g.pos <= $5::bigint AND ($11::int = 1 OR g.pos > $4::bigint) "        \
	"UNION ALL SELECT 'a', a.room_id, a.type, a.json, NULL, NULL, a.pos "  \
	"FROM syncv3_account_data a JOIN j ON j.id = a.room_id WHERE "         \
	"a.user_id = $1 AND a.pos <= $5::bigint AND (a.room_id = "             \
	"ANY($12::text[]) OR (a.room_id = ANY($13::text[]) AND a.pos > "       \
	"$4::bigint)) UNION ALL SELECT 't', t.room_id, t.user_ids, NULL, "     \
	"NULL, NULL, t.pos FROM syncv3_typing t JOIN j ON j.id = t.room_id "   \
	"WHERE t.pos <= $5::bigint AND ((t.room_id = ANY($14::text[]) AND "    \
	"t.user_ids <> '[]') OR (t.room_id = ANY($15::text[]) AND t.pos > "    \
	"$4::bigint)) UNION ALL SELECT 'r', x.room_id, x.event_id, "           \
	"x.receipt_type, x.user_id, x.thread_id, x.ts FROM syncv3_receipts x " \
	"JOIN j ON j.id = x.room_id WHERE x.pos <= $5::bigint AND "            \
	"(x.receipt_type <> 'm.read.private' OR x.user_id = $1) AND "          \
	"((x.room_id = ANY($16::text[]) AND (x.user_id = $1 OR (x.room_id, "   \
	"x.event_id) IN (SELECT * FROM unnest($17::text[], $18::text[])))) "   \
	"OR (x.room_id = ANY($19::text[]) AND x.pos > $4::bigint) OR EXISTS "  \
	"(SELECT 1 FROM unnest($21::text[], $22::bigint[]) AS bk(r, p) WHERE " \
	"bk.r = x.room_id AND x.pos > bk.p)) "                                  \
	"ORDER BY 1, 2, 7"
/* clang-format on */

/* clang-format off */
const struct api_stmt api_stmts[Q_COUNT] = {
	/* auth.c: a token upstream vouched for becomes its device's */
	[Q_DEVICE_REGISTER] = {"api_device_register",
	    "WITH up AS (INSERT INTO syncv3_devices (user_id, device_id, "
	    "token_hash, token_enc) VALUES ($1, $2, $3, $4) "
	    "ON CONFLICT (user_id, device_id) DO UPDATE SET "
	    "token_hash = EXCLUDED.token_hash, token_enc = EXCLUDED.token_enc, "
	    "poll_state = CASE WHEN syncv3_devices.poll_state = 'expired' "
	    "THEN 'new' ELSE syncv3_devices.poll_state END, "
	    "poll_error = CASE WHEN syncv3_devices.poll_state = 'expired' "
	    "THEN '' ELSE syncv3_devices.poll_error END, last_seen = now() "
	    "RETURNING user_id, device_id, is_initial_done) "
	    "SELECT user_id, device_id, is_initial_done, "
	    "pg_notify('" PROTO_PG_DEVICES_CHANNEL "', user_id || ' ' || "
	    "device_id) FROM up", 4},
	[Q_DEVICE_SEEN] = {"api_device_seen",
	    "UPDATE syncv3_devices SET last_seen = now() "
	    "WHERE user_id = $1 AND device_id = $2", 2},
	[Q_TOKEN_LOOKUP] = {"api_token_lookup",
	    "SELECT user_id, device_id, "
	    "poll_state, is_initial_done, "
	    "poll_error LIKE '% " POLL_ERROR_SOFT_LOGOUT "', "
	    "starts_with(poll_error, '" POLL_ERROR_USER_LOCKED "') "
	    "FROM syncv3_devices WHERE token_hash = $1", 1},
	/* auth_rejected: is the token refused still, softly? */
	[Q_TOKEN_REJECTED] = {"api_token_rejected",
	    "SELECT token_hash <> $3 OR poll_state = 'expired', "
	    "token_hash = $3 AND poll_state = 'expired' AND "
	    "poll_error LIKE '% " POLL_ERROR_SOFT_LOGOUT "', "
	    "token_hash = $3 AND poll_state = 'expired' AND "
	    "starts_with(poll_error, '" POLL_ERROR_USER_LOCKED "') "
	    "FROM syncv3_devices WHERE user_id = $1 AND device_id = $2", 3},
	/* session.c */
	[Q_SESSION_CREATE] = {"api_session_create", SESSION_CREATE, 5},
	[Q_SESSION_LOAD] = {"api_session_load", SESSION_LOAD, 6},
	[Q_SESSION_PARAMS] = {"api_session_params",
	    "UPDATE syncv3_sessions SET params = $2 "
	    "WHERE session_id = $1", 2},
	[Q_SESSION_EXPIRE] = {"api_session_expire",
	    "WITH gone AS (DELETE FROM syncv3_sessions "
	    "WHERE last_used <= now() - make_interval(secs => $1::bigint) "
	    "RETURNING user_id, device_id) "
	    "SELECT DISTINCT user_id, device_id FROM gone", 1},
	[Q_SESSION_RELEASE] = {"api_session_release", SESSION_RELEASE, 3},
	/* r_sync.c: hold a device until its initial sync is stored */
	[Q_DEVICE_STATE] = {"api_device_state",
	    "SELECT is_initial_done, poll_state, coalesce(window_rooms, 0), "
	    "window_cut, coalesce(window_more, 0) FROM syncv3_devices WHERE "
	    "user_id = $1 AND device_id = $2", 2},
	/* main.c, notices.c */
	/* the WAL position covers pos: what the replica must replay */
	[Q_POSITION] = {"api_position", "SELECT pos, "
	    "(pg_current_wal_insert_lsn() - '0/0')::bigint FROM "
	    "syncv3_position", 0},
	/* longpoll.c */
	[Q_USER_ROOMS] = {"api_user_rooms", USER_ROOMS, 2},
	/* the streams */
	[Q_TYPING] = {"api_typing",
	    /* joined now, by the rule every stream shares (visible.h) */
	    "SELECT t.pos, t.user_ids, coalesce("
	    VIS_MEMBERSHIP("$1", "$2", "(SELECT pos FROM syncv3_position)")
	    " = 'join', false) FROM (SELECT 1) one "
	    "LEFT JOIN syncv3_typing t ON t.room_id = $1", 2},
	/*
	 * The to_device rounds of several requests in one statement (the
	 * clients one notice woke, s_to_device.c): per request, at the same
	 * index, $1 user, $2 device, $3 after, $4 up to, $5 limit. A row: the
	 * request's index (from 1), then one message (pos, json), in request
	 * then pos order; a request with no message has no row.
	 */
	[Q_TO_DEVICE] = {"api_to_device",
	    "SELECT q.i, m.pos, m.json FROM unnest($1::text[], $2::text[], "
	    "$3::bigint[], $4::bigint[], $5::bigint[]) WITH ORDINALITY AS "
	    "q(u, d, f, t, l, i) CROSS JOIN LATERAL (SELECT pos, json FROM "
	    "syncv3_to_device WHERE user_id = q.u AND device_id = q.d AND "
	    "pos > q.f AND pos <= q.t ORDER BY pos LIMIT q.l) m "
	    "ORDER BY q.i, m.pos", 5},
	[Q_MEMBER_PAGE] = {"api_member_page",
	    MEMBER_PAGE " ORDER BY 1 DESC, 2", 3},
	[Q_MEMBER_STREAM] = {"api_member_stream",
	    MEMBER_STREAM " ORDER BY 1 DESC, 2", 5},
	[Q_LIST_PAGE] = {"api_list_page", LIST_SNAP("CASE WHEN $4::bool THEN "
	    "$2::bigint ELSE greatest($2::bigint, pos) END", LIST_PAGE), 4},
	[Q_LIST_STREAM] = {"api_list_stream", LIST_STREAM_BATCH, 9},
	[Q_LIST_DETAIL] = {"api_list_detail", LIST_DETAIL, 8},
	/*
	 * Only for a live session, locked against its eviction (the cap of
	 * SESSION_CREATE or the expiry may delete it while a request of it
	 * is under way; the insert then broke the foreign key). One row:
	 * 1, or 0 when the session is gone.
	 */
	[Q_LIST_REMEMBER] = {"api_list_remember",
	    "WITH s AS (SELECT session_id FROM syncv3_sessions WHERE "
	    "session_id = $1::bigint FOR KEY SHARE), d AS (DELETE FROM "
	    "syncv3_session_rooms WHERE session_id = $1::bigint AND room_id = "
	    "ANY($3::text[])), i AS (INSERT INTO syncv3_session_rooms "
	    "(session_id, room_id) SELECT s.session_id, unnest($2::text[]) "
	    "FROM s ON CONFLICT DO NOTHING) SELECT count(*) FROM s", 3},
	/* proxy.c: a logout, device by device (see logout_forget) */
	[Q_LOGOUT_ONE] = {"api_logout_one",
	    "SELECT user_id, device_id FROM "
	    "syncv3_devices WHERE token_hash = $1", 1},
	[Q_LOGOUT_ALL] = {"api_logout_all",
	    "SELECT user_id, device_id FROM syncv3_devices WHERE user_id = "
	    "(SELECT user_id FROM syncv3_devices WHERE token_hash = $1) "
	    "ORDER BY device_id", 1},
	[Q_LOGOUT_DEVICE] = {"api_logout_device",
	    "WITH l AS (DELETE FROM syncv3_leases WHERE user_id = $1 AND "
	    "device_id = $2 RETURNING 1) UPDATE syncv3_devices SET poll_state = "
	    "'expired', poll_error = 'logged out', poll_updated = now() "
	    "WHERE user_id = $1 AND device_id = $2 AND (SELECT count(*) FROM l) "
	    ">= 0 RETURNING user_id, device_id", 2},
	/* ss_conn.c, ss_rooms.c: sliding sync */
	[Q_SS_LOAD] = {"api_ss_load", SS_LOAD, 7},
	[Q_SS_CREATE] = {"api_ss_create", SS_CREATE, 6},
	[Q_SS_SAVE] = {"api_ss_save", SS_SAVE, 15},
	[Q_SS_CREATE_SAVE] = {"api_ss_create_save", SS_CREATE_SAVE, 19},
	[Q_SS_DETAIL_SAVE] = {"api_ss_detail_save", SS_DETAIL_SAVE, 23},
	[Q_SS_DETAIL_SAVE_CONT] = {"api_ss_detail_save_cont",
	                           SS_DETAIL_SAVE_CONT, 24},
	[Q_SS_LIST] = {"api_ss_list", SS_LIST, 15},
	[Q_SS_ROOMS] = {"api_ss_rooms", SS_ROOMS, 7},
	[Q_SS_DETAIL] = {"api_ss_detail", SS_DETAIL, 10},
	[Q_SS_MEMBERS] = {"api_ss_members", SS_MEMBERS, 3},
	[Q_SS_EXPIRE] = {"api_ss_expire", SS_EXPIRE, 1},
	[Q_SS_LIST_ROOMS] = {"api_ss_list_rooms", SS_LIST_ROOMS, 17},
	[Q_SS_LIST_ROOMS_PLAIN] = {"api_ss_list_rooms_plain",
	    SS_LIST_ROOMS_PLAIN, 17},
	[Q_SS_LIST_PLAIN] = {"api_ss_list_plain", SS_LIST_PLAIN, 15},
	/*
	 * admin.c. Times are milliseconds: since the epoch (_ts) or until
	 * or since now (_in_ms, _age_ms). Never a token or its hash.
	 * $1 user ('' any), $2/$3 after this (user, device), $4 limit.
	 */
	[Q_ADMIN_DEVICES] = {"api_admin_devices", ADMIN_DEVICE_ROWS
	    "WHERE ($1 = '' OR d.user_id = $1) AND (d.user_id, d.device_id) > "
	    "($2, $3) ORDER BY d.user_id, d.device_id LIMIT $4::bigint", 4},
	/* $1 user, $2 device: the same row for one device */
	[Q_ADMIN_DEVICE] = {"api_admin_device", ADMIN_DEVICE_ROWS
	    "WHERE d.user_id = $1 AND d.device_id = $2", 2},
	/* $1 user, $2 device: its sessions (their rooms counted, no params) */
	[Q_ADMIN_SESSIONS] = {"api_admin_sessions",
	    "SELECT s.session_id, " ADMIN_TS("s.created_at") ", "
	    ADMIN_TS("s.last_used") ", s.acked_to_device, (SELECT count(*) "
	    "FROM syncv3_session_rooms r WHERE r.session_id = s.session_id) "
	    "FROM syncv3_sessions s WHERE s.user_id = $1 AND s.device_id = $2 "
	    "ORDER BY s.session_id", 2},
	/* $1 user, $2 device: its sliding sync connections (no state) */
	[Q_ADMIN_CONNS] = {"api_admin_conns",
	    "SELECT c.conn, c.conn_id, c.dialect, " ADMIN_TS("c.created_at")
	    ", " ADMIN_TS("c.last_used") ", (SELECT count(DISTINCT r.room_id) "
	    "FROM syncv3_ss_rooms r WHERE r.conn = c.conn) FROM syncv3_ss_conns "
	    "c WHERE c.user_id = $1 AND c.device_id = $2 ORDER BY c.conn", 2},
	/* every poller with a liveness row or a lease, and its devices */
	[Q_ADMIN_POLLERS] = {"api_admin_pollers",
	    "SELECT coalesce(p.id, l.owner), p.incarnation, "
	    ADMIN_TS("p.started") ", " ADMIN_MS("p.expires - now()") ", "
	    "coalesce(p.expires > now(), false), coalesce(l.n, 0) FROM "
	    "syncv3_pollers p FULL JOIN (SELECT owner, count(*) AS n FROM "
	    "syncv3_leases GROUP BY owner) l ON l.owner = p.id ORDER BY 1", 0},
	/*
	 * $1 user, $2 device: stop and forget it. The lease row goes first,
	 * then the device row (the lock order of "lease stop" and of
	 * Q_LOGOUT_DEVICE, docs/INTERNALS.md), with its sessions and its
	 * undelivered to-device messages. Its poller drops it at its next
	 * heartbeat; the accumulator refuses what is still in flight.
	 */
	[Q_ADMIN_FORGET] = {"api_admin_forget",
	    "WITH l AS (DELETE FROM syncv3_leases WHERE user_id = $1 AND "
	    "device_id = $2 RETURNING 1), s AS (DELETE FROM syncv3_sessions "
	    "WHERE user_id = $1 AND device_id = $2 AND (SELECT count(*) FROM l) "
	    ">= 0 RETURNING 1), t AS (DELETE FROM syncv3_to_device WHERE "
	    "user_id = $1 AND device_id = $2 AND (SELECT count(*) FROM l) >= 0 "
	    "RETURNING 1), c AS (DELETE FROM syncv3_ss_conns WHERE user_id = $1 "
	    "AND device_id = $2 AND (SELECT count(*) FROM l) >= 0 RETURNING 1), "
	    "dv AS (DELETE FROM syncv3_devices WHERE user_id = $1 "
	    "AND device_id = $2 AND (SELECT count(*) FROM l) >= 0 RETURNING 1) "
	    "SELECT (SELECT count(*) FROM dv), (SELECT count(*) FROM s), "
	    "(SELECT count(*) FROM c), (SELECT count(*) FROM t)", 2},
	/*
	 * $1 user: every session and sliding sync connection of every
	 * device of the user (their rooms go with them: ON DELETE CASCADE)
	 */
	[Q_ADMIN_DROP_USER] = {"api_admin_drop_user",
	    "WITH s AS (DELETE FROM syncv3_sessions WHERE user_id = $1 "
	    "RETURNING 1), c AS (DELETE FROM syncv3_ss_conns WHERE user_id = $1 "
	    "RETURNING 1) SELECT (SELECT count(*) FROM s), (SELECT count(*) "
	    "FROM c)", 1},
	/*
	 * $1 user, $2 device: the next poll is an initial sync. The poller
	 * polls with the since it holds; the accumulator's compare-and-set
	 * refuses that body (contract 1), and the poller re-reads the since,
	 * now empty. One device row, autocommit, nothing else held.
	 */
	[Q_ADMIN_RESYNC] = {"api_admin_resync",
	    "UPDATE syncv3_devices SET since = '' WHERE user_id = $1 AND "
	    "device_id = $2 RETURNING 1", 2},
	/* ss_ext.c: the extensions of a sliding sync response */
	[Q_SS_EXT] = {"api_ss_ext", SS_EXT, 22},
	[Q_LIST_FIRST] = {"api_list_first", LIST_FIRST_SNAP, 8},
	[Q_CHUNKS] = {"api_chunks", CHUNKS, 3},
	/*
	 * ss_pos.c: the upstream token a pos stands for ($1 conn, $2 user,
	 * $3 device, $4 gen, $5 idle secs): the confirmed or the unconfirmed
	 * response's, while the connection lives; no row otherwise.
	 */
	[Q_SS_POS_TOKEN] = {"api_ss_pos_token",
	    "SELECT CASE WHEN p_gen = $4::bigint THEN p_tok ELSE tok END FROM "
	    "syncv3_ss_conns WHERE conn = $1::bigint AND user_id = $2 AND "
	    "device_id = $3 AND (gen = $4::bigint OR p_gen = $4::bigint) AND "
	    "last_used > now() - make_interval(secs => $5::bigint)", 5},
};
/* clang-format on */

/*
 * The statements a streaming replica may answer (api.h). room_list is not
 * among them: its stream reads the session's rooms (written here), and
 * its detail query reads at the position of the page or stream query's
 * own snapshot, which on the primary can be past anything this api has
 * heard of.
 */
/* one statement a line */
/* clang-format off */
const bool api_stmt_is_read[Q_COUNT] = {
	[Q_USER_ROOMS] = true,
	[Q_TYPING] = true,
	[Q_TO_DEVICE] = true,
	[Q_MEMBER_PAGE] = true,
	[Q_MEMBER_STREAM] = true,
};
/* clang-format on */

struct pg_job *
sql_query(struct api *api, enum api_sql id, const char *const *params, pg_cb cb,
          void *arg)
{
	return sql_query_at(api, id, api->cur_pos, params, cb, arg);
}

/*
 * The replica only for a read at a position this api has heard of: its
 * notice's commit is in read_lsn. A since token from an api that heard of
 * a later commit asks about one whose LSN we do not know: the primary.
 */
struct pg_job *
sql_query_at(struct api *api, enum api_sql id, int64_t pos,
             const char *const *params, pg_cb cb, void *arg)
{
	api->stats.queries++;
	if (api_stmt_is_read[id] && api->pool_read != NULL &&
	    pos <= api->cur_pos)
		return pg_pool_query_read(
		    api->pool_read, api->read_lsn, api_stmts[id].sql,
		    api_stmts[id].nparams, params, cb, arg);
	return pg_pool_query(api->pool, api_stmts[id].sql,
	                     api_stmts[id].nparams, params, cb, arg);
}

int
sql_batch_rows(PGresult *res, int col, int k, int *row, int *lo)
{
	int n = res != NULL ? PQntuples(res) : 0;

	while (*row < n && strtol(PQgetvalue(res, *row, col), NULL, 10) < k)
		(*row)++;
	*lo = *row;
	while (*row < n && strtol(PQgetvalue(res, *row, col), NULL, 10) == k)
		(*row)++;
	return *row - *lo;
}
