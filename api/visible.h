/*
 * visible.h: what of a room a user may be sent, as SQL fragments every
 * stream splices into its statements (room_list, room_member, typing, the
 * long-poll room sets; sliding sync later). Constant strings, so each
 * statement stays one prepared text.
 *
 * The rule: a user sees a room's events only inside their visible ranges,
 * [the start of a range, the position of the leave, kick or ban that ends
 * it] (so the leave itself is seen, nothing after it). A range starts at
 * its join, except the first one, which starts where the room's history
 * visibility (client-server spec, "History visibility") lets a newly
 * joined member read from, as the homeserver itself shows them:
 *  - shared, world_readable in force at the join: the room's beginning;
 *  - invited: the user's invite, when an invite row precedes the join;
 *  - joined (or any other value): the join.
 * The spec decides per event, by the visibility in force at that event, so
 * the start is moved up past the last earlier change under a value that
 * would not have allowed it (shared, then joined, then shared again: from
 * the second shared). The visibility is read from the room's state rows
 * (syncv3_state, content in syncv3_events.json); no row at all means the
 * spec's default, shared. Where history is not known (superseded rows are
 * cleaned after a horizon: the earliest row left replaced another, or the
 * row in force at the join is gone) the start is the earliest known row
 * or the join, never earlier.
 *
 * Positions are arrival order at the accumulator, not room order: an
 * event sent before a join can arrive after it, through another user's
 * lagging poller. So a range that starts at the user's own join or
 * invite row also hides its events whose origin_server_ts is before that
 * row's event (lt), as sent before the start. Events of one homeserver
 * are stamped by one clock, so that hides exactly the late arrivals; a
 * federated event from a server whose clock is behind can be hidden
 * although it came later. Fail-closed: the rule may hide, never reveal,
 * and a timeline that met such an event says so (VIS_LAST_ROWS) so the
 * client pages it in from the homeserver. Ranges from the room's
 * beginning or from a visibility change keep the positions alone, and so
 * does VIS_SEES (member events, state a joined user is shown anyway).
 * docs/INTERNALS.md, "Late events and history visibility".
 *
 * A rejoin opens a new range at the rejoin, even under shared, where the
 * spec would allow the gap too. That is deliberate: what the proxy holds
 * of the gap came from other users' pollers, the visibility may have
 * changed inside it, and a user's older member rows are cleaned after the
 * horizon, so the gap's rule cannot be checked reliably here. Hiding it
 * is safe: the client can still page back through the homeserver, which
 * applies the full rule. A join is taken as a rejoin when the user has an
 * earlier join, leave or ban row, or when the join event itself says it
 * replaced one (unsigned.prev_content), which outlives the cleaning.
 *
 * An invite shows only the stripped state upstream sent
 * (syncv3_user_rooms.invite_state): no timeline, state or members, even
 * under world_readable (an invitee is not joined; the proxy serves its
 * members only).
 *
 * Where membership comes from: the user's own m.room.member rows in
 * syncv3_state, written by whichever user's poller delivered the event
 * first (a kick seen by another proxy user counts at once), and the
 * user's own syncv3_user_rooms row (pos = when their own sync changed it),
 * which alone knows invites into rooms no proxy user is in. The newer of
 * the two at the position asked wins; on a tie the room state does.
 *
 * Timelines leave out the non-state events of senders the user ignores
 * (VIS_NOT_IGNORED): other users' pollers store them, the user's own
 * homeserver sync would not have carried them.
 *
 * Arguments are SQL expressions: r the room id, u the user id, p the
 * position. Inner aliases are vis_* so they cannot capture the caller's.
 */
#ifndef SYNCV3_VISIBLE_H
#define SYNCV3_VISIBLE_H

/* SQL reads better wrapped by clause than by column */
/* clang-format off */
/* The user's membership of room r at position p, NULL if none known. */
#define VIS_MEMBERSHIP(r, u, p)                                                \
	"(SELECT vis_m.m FROM ((SELECT vis_s.membership AS m, vis_s.from_pos " \
	"AS at, 1 AS k FROM syncv3_state vis_s WHERE vis_s.room_id = " r       \
	" AND vis_s.type = 'm.room.member' AND vis_s.state_key = " u           \
	" AND vis_s.from_pos <= " p " ORDER BY vis_s.from_pos DESC LIMIT 1) "  \
	"UNION ALL SELECT vis_u.membership, vis_u.pos, 0 FROM "                \
	"syncv3_user_rooms vis_u WHERE vis_u.user_id = " u " AND "             \
	"vis_u.room_id = " r " AND vis_u.pos <= " p ") vis_m ORDER BY "        \
	"vis_m.at DESC, vis_m.k DESC LIMIT 1)"

/*
 * The same rule for statements over the user's syncv3_user_rooms rows
 * (the first room_list page, the long-poll room sets), which have the
 * user's row ur at hand: VIS_MEMBER_ROW, LEFT JOINed ON true, is their
 * latest member row st of room r at p (NULLs if none), one index probe;
 * VIS_MEMBERSHIP_OF combines the two. VIS_MEMBERSHIP for each of 10,000
 * rooms (a union and a sort a room) made the first page ~230 ms slower.
 * Not a join with all of the user's member rows: the api plans once per
 * connection, often on an empty database, and that plan was a nested
 * loop over both sets (seconds at 10,000 rooms).
 */
#define VIS_MEMBER_ROW(r, u, p)                                                \
	"LATERAL (SELECT vis_s.membership, vis_s.from_pos FROM syncv3_state "  \
	"vis_s WHERE vis_s.state_key = " u " AND vis_s.room_id = " r " AND "   \
	"vis_s.type = 'm.room.member' AND vis_s.from_pos <= " p " ORDER BY "   \
	"vis_s.from_pos DESC LIMIT 1)"
#define VIS_MEMBERSHIP_OF(ur, st, p)                                           \
	"(CASE WHEN " st ".from_pos IS NOT NULL AND (" ur ".pos > " p " OR " st \
	".from_pos >= " ur ".pos) THEN " st ".membership WHEN " ur ".pos <= " p \
	" THEN " ur ".membership END)"

/* The history visibility rows of room r (alias a, its event ae). */
#define VIS_HV_ROWS(a, r)                                                      \
	"syncv3_state " a " JOIN syncv3_events " a "e ON " a "e.nid = " a      \
	".nid WHERE " a ".room_id = " r " AND " a ".type = "                   \
	"'m.room.history_visibility' AND " a ".state_key = ''"
#define VIS_HV_VAL(a)                                                          \
	"coalesce((" a "e.json::json)->'content'->>'history_visibility', '')"

/*
 * Where the run of visibility values in s (an SQL list) ending at j
 * starts: after the last earlier row with another value, else at the
 * earliest known row if it replaced one, else 0.
 */
#define VIS_RUN(r, j, s)                                                       \
	"least(" j ", coalesce((SELECT max(coalesce(vis_b.to_pos, " j ")) "    \
	"FROM " VIS_HV_ROWS("vis_b", r) " AND vis_b.from_pos <= " j " AND "     \
	VIS_HV_VAL("vis_b") " NOT IN " s "), (SELECT CASE WHEN "               \
	"(vis_fe.json::json)->'unsigned'->>'replaces_state' IS NULL THEN 0 "   \
	"ELSE vis_f.from_pos END FROM " VIS_HV_ROWS("vis_f", r) " AND "        \
	"vis_f.from_pos <= " j " ORDER BY vis_f.from_pos LIMIT 1), 0))"

/*
 * The start of the first range of a user joined at j, invited at i (NULL
 * if not invited just before): by the visibility in force at j, which is
 * unknown ('') when rows exist but none at j, the spec's shared when the
 * room has none.
 */
#define VIS_FIRST(r, j, i)                                                     \
	"(SELECT CASE WHEN vis_c.v IN ('shared', 'world_readable') THEN "      \
	VIS_RUN(r, j, "('shared', 'world_readable')") " WHEN vis_c.v = "       \
	"'invited' AND " i " IS NOT NULL THEN greatest(" i ", "                \
	VIS_RUN(r, j, "('invited', 'shared', 'world_readable')") ") ELSE "     \
	j " END FROM (SELECT coalesce((SELECT " VIS_HV_VAL("vis_h") " FROM "   \
	VIS_HV_ROWS("vis_h", r) " AND vis_h.from_pos <= " j " ORDER BY "        \
	"vis_h.from_pos DESC LIMIT 1), CASE WHEN EXISTS (SELECT 1 FROM "       \
	"syncv3_state vis_x WHERE vis_x.room_id = " r " AND vis_x.type = "     \
	"'m.room.history_visibility' AND vis_x.state_key = '') THEN '' ELSE "  \
	"'shared' END) AS v) vis_c)"

/*
 * Is join row vis_j the user's first join (no earlier join, leave or ban
 * row, and its event replaced none)? If so, its invite position (the row
 * just before it, if an invite) as vis_i.
 */
#define VIS_IS_FIRST(r, u)                                                     \
	"NOT EXISTS (SELECT 1 FROM syncv3_state vis_o WHERE vis_o.room_id = "  \
	r " AND vis_o.type = 'm.room.member' AND vis_o.state_key = " u         \
	" AND vis_o.from_pos < vis_j.from_pos AND vis_o.membership IN "        \
	"('join', 'leave', 'ban')) AND coalesce((SELECT (vis_je.json::json)"   \
	"->'unsigned'->'prev_content'->>'membership' FROM syncv3_events "      \
	"vis_je WHERE vis_je.nid = vis_j.nid), '') NOT IN ('join', 'leave', "  \
	"'ban')"
#define VIS_INVITE(r, u)                                                       \
	"(SELECT CASE WHEN vis_p.membership = 'invite' THEN vis_p.from_pos "   \
	"END FROM syncv3_state vis_p WHERE vis_p.room_id = " r " AND "         \
	"vis_p.type = 'm.room.member' AND vis_p.state_key = " u " AND "        \
	"vis_p.from_pos < vis_j.from_pos ORDER BY vis_p.from_pos DESC LIMIT 1)"

/*
 * The origin_server_ts of the event that starts a range at position lo
 * when it is u's own join or invite row (NULL otherwise: the room's
 * beginning or a visibility change), one index probe and one primary key
 * probe a range.
 */
#define VIS_START_TS(r, u, lo)                                                 \
	"(SELECT vis_le.origin_ts FROM syncv3_state vis_l JOIN syncv3_events " \
	"vis_le ON vis_le.nid = vis_l.nid WHERE vis_l.room_id = " r " AND "    \
	"vis_l.type = 'm.room.member' AND vis_l.state_key = " u " AND "        \
	"vis_l.from_pos = " lo " AND vis_l.membership IN ('join', 'invite') "  \
	"LIMIT 1)"

/*
 * The visible ranges (lo, hi, lt) of room r up to position p, both ends
 * inclusive, lt the timestamp events in the range must have at least
 * (NULL: none): each join row of the user's member history until the row
 * that replaced it (or until their own sync said they left, when no
 * other poller has delivered the leave yet), capped at p; the first one
 * from where the history visibility allows. A user joined by their own
 * sync only, with no member rows yet, sees from that join (or earlier,
 * by the same rule).
 */
#define VIS_RANGES(r, u, p)                                                    \
	"(SELECT vis_w.lo, vis_w.hi, " VIS_START_TS(r, u, "vis_w.lo") " AS lt " \
	"FROM " VIS_RANGES_POS(r, u, p) " vis_w)"
#define VIS_RANGES_POS(r, u, p)                                                \
	"(SELECT CASE WHEN " VIS_IS_FIRST(r, u) " THEN "                       \
	VIS_FIRST(r, "vis_j.from_pos", VIS_INVITE(r, u)) " ELSE "              \
	"vis_j.from_pos END AS lo, least(coalesce(vis_j.to_pos, " p "), " p    \
	", coalesce((SELECT vis_u.pos FROM syncv3_user_rooms vis_u WHERE "     \
	"vis_u.user_id = " u " AND vis_u.room_id = " r " AND "                 \
	"vis_u.membership <> 'join' AND vis_u.pos > vis_j.from_pos), " p       \
	")) AS hi FROM syncv3_state vis_j WHERE vis_j.room_id = " r " AND "    \
	"vis_j.type = 'm.room.member' AND vis_j.state_key = " u " AND "        \
	"vis_j.membership = 'join' AND vis_j.from_pos <= " p " UNION ALL "     \
	"SELECT " VIS_FIRST(r, "vis_u.pos", "NULL") ", " p " FROM "            \
	"syncv3_user_rooms vis_u WHERE vis_u.user_id = " u " AND "             \
	"vis_u.room_id = " r " AND vis_u.membership = 'join' AND vis_u.pos "   \
	"<= " p " AND NOT EXISTS (SELECT 1 FROM syncv3_state vis_n WHERE "     \
	"vis_n.room_id = " r " AND vis_n.type = 'm.room.member' AND "          \
	"vis_n.state_key = " u "))"

/*
 * The users u ignores (m.ignored_user_list in their global account data),
 * as a text[], empty when none. It depends on u alone, so Postgres runs
 * it once per statement (an InitPlan), one primary key probe, and the
 * usual empty list costs each event one comparison with nothing.
 */
#define VIS_IGNORED(u)                                                         \
	"coalesce((SELECT array(SELECT jsonb_object_keys(CASE WHEN "           \
	"jsonb_typeof((vis_ig.json::jsonb)->'content'->'ignored_users') = "    \
	"'object' THEN (vis_ig.json::jsonb)->'content'->'ignored_users' ELSE " \
	"'{}'::jsonb END)) FROM syncv3_account_data vis_ig WHERE "             \
	"vis_ig.user_id = " u " AND vis_ig.room_id = '' AND vis_ig.type = "    \
	"'m.ignored_user_list'), '{}'::text[])"

/*
 * Event e is not hidden from u by their ignore list: as Synapse's
 * filter_events_for_client, a non-state event of an ignored sender is
 * left out, a state event is kept (the spec, "Ignoring Users": the room
 * must not look different for it). The list in force at the request
 * applies to every event served from then on, stored before or after.
 */
#define VIS_NOT_IGNORED(e, u)                                                  \
	"(" e ".state_key IS NOT NULL OR " e ".sender <> ALL (" VIS_IGNORED(   \
	    u) "))"

/*
 * The last n timeline events of room r after f that u may see up to p,
 * as rows (nid, cut, k), newest first in the room's order k =
 * coalesce(ord, nid) (031_order.sql; "after f" is by nid, the change
 * position): per range one backward index scan of the events in nid
 * order and one of the few placed late (the partial ord index: "+ 0"
 * keeps the planner off the nid indexes there, which read the whole
 * room), merged, not the rule per event. A range that starts at u's join or invite
 * (lt) hides its events stamped before that start (they arrived late,
 * see above); the window is then cut after the newest one it met, so
 * the timeline has no hole in it, and cut says so: the caller makes the
 * timeline limited, its prev_batch from its oldest event, and the client
 * pages back through the homeserver, which shows what is theirs.
 */
#define VIS_LAST_ROWS(r, u, p, f, n)                                           \
	"(SELECT vis_t.nid, bool_or(vis_t.cut) AS cut, min(vis_t.k) AS k "     \
	"FROM " VIS_RANGES(r, u, p) " vis_v CROSS JOIN LATERAL (SELECT "       \
	"vis_d.nid, vis_d.k, vis_d.h IS NOT NULL AS cut FROM (SELECT "         \
	"vis_c.nid, vis_c.k, max(CASE WHEN vis_c.origin_ts < vis_v.lt THEN "   \
	"vis_c.k END) OVER () AS h FROM (SELECT * FROM ((SELECT vis_e.nid, "   \
	"vis_e.origin_ts, vis_e.nid::float8 AS k FROM syncv3_events vis_e "    \
	"WHERE vis_e.room_id = " r " AND vis_e.nid > " f " AND vis_e.nid "     \
	"BETWEEN vis_v.lo AND vis_v.hi AND vis_e.is_timeline AND vis_e.ord IS " \
	"NULL AND " VIS_NOT_IGNORED("vis_e", u) " ORDER BY vis_e.nid DESC "    \
	"LIMIT " n ") UNION ALL (SELECT vis_e.nid, vis_e.origin_ts, "          \
	"vis_e.ord FROM syncv3_events vis_e WHERE vis_e.room_id = " r " AND "  \
	"vis_e.ord IS NOT NULL AND vis_e.nid + 0 > " f " AND vis_e.nid + 0 "   \
	"BETWEEN vis_v.lo AND vis_v.hi AND vis_e.is_timeline AND "             \
	VIS_NOT_IGNORED(                                                       \
	"vis_e", u) " ORDER BY vis_e.ord DESC LIMIT " n ")) vis_o ORDER BY "   \
	"vis_o.k DESC LIMIT " n ") vis_c) vis_d WHERE vis_d.k > coalesce("     \
	"vis_d.h, -1)) vis_t GROUP BY vis_t.nid ORDER BY min(vis_t.k) DESC "   \
	"LIMIT " n ")"

/* Is position (an event nid) n of room r visible to u up to p? */
#define VIS_SEES(r, u, p, n)                                                   \
	"EXISTS (SELECT 1 FROM " VIS_RANGES(                                   \
	    r, u, p) " vis_v WHERE " n " BETWEEN vis_v.lo AND vis_v.hi)"

/* The last position of room r that u may see up to p, NULL if none. */
#define VIS_LAST(r, u, p)                                                      \
	"(SELECT max(vis_v.hi) FROM " VIS_RANGES(r, u, p) " vis_v)"
/* clang-format on */

#endif
