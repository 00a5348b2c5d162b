/*
 * visible.h: what of a room a user may be sent, as SQL fragments every
 * stream splices into its statements (room_list, room_member, typing, the
 * long-poll room sets; sliding sync later). Constant strings, so each
 * statement stays one prepared text.
 *
 * The rule: a user sees a room's events only inside their visible ranges,
 * [the position of a join, the position of the leave, kick or ban that
 * ends it] (so the leave itself is seen, nothing after it), and a rejoin
 * opens a new range. An invite shows only the stripped state upstream sent
 * (syncv3_user_rooms.invite_state): no timeline, state or members.
 *
 * Where membership comes from: the user's own m.room.member rows in
 * syncv3_state, written by whichever user's poller delivered the event
 * first (a kick seen by another proxy user counts at once), and the
 * user's own syncv3_user_rooms row (pos = when their own sync changed it),
 * which alone knows invites into rooms no proxy user is in. The newer of
 * the two at the position asked wins; on a tie the room state does.
 *
 * Arguments are SQL expressions: r the room id, u the user id, p the
 * position. Inner aliases are vis_* so they cannot capture the caller's.
 */
#ifndef SYNCV3_VISIBLE_H
#define SYNCV3_VISIBLE_H

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
 * The visible ranges (lo, hi) of room r up to position p, both ends
 * inclusive: each join row of the user's member history until the row
 * that replaced it (or until their own sync said they left, when no
 * other poller has delivered the leave yet), capped at p. A user joined
 * by their own sync only, with no member rows yet, sees from that join.
 */
#define VIS_RANGES(r, u, p)                                                    \
	"(SELECT vis_j.from_pos AS lo, least(coalesce(vis_j.to_pos, " p        \
	"), " p                                                                \
	", coalesce((SELECT vis_u.pos FROM syncv3_user_rooms vis_u WHERE "     \
	"vis_u.user_id = " u " AND vis_u.room_id = " r " AND "                 \
	"vis_u.membership <> 'join' AND vis_u.pos > vis_j.from_pos), " p       \
	")) AS hi FROM syncv3_state vis_j WHERE vis_j.room_id = " r " AND "    \
	"vis_j.type = 'm.room.member' AND vis_j.state_key = " u " AND "        \
	"vis_j.membership = 'join' AND vis_j.from_pos <= " p " UNION ALL "     \
	"SELECT vis_u.pos, " p " FROM syncv3_user_rooms vis_u WHERE "          \
	"vis_u.user_id = " u " AND vis_u.room_id = " r " AND "                 \
	"vis_u.membership = 'join' AND vis_u.pos <= " p " AND NOT EXISTS "     \
	"(SELECT 1 FROM syncv3_state vis_n WHERE vis_n.room_id = " r " AND "   \
	"vis_n.type = 'm.room.member' AND vis_n.state_key = " u "))"

/* Is position (an event nid) n of room r visible to u up to p? */
#define VIS_SEES(r, u, p, n)                                                   \
	"EXISTS (SELECT 1 FROM " VIS_RANGES(                                   \
	    r, u, p) " vis_v WHERE " n " BETWEEN vis_v.lo AND vis_v.hi)"

/* The last position of room r that u may see up to p, NULL if none. */
#define VIS_LAST(r, u, p)                                                      \
	"(SELECT max(vis_v.hi) FROM " VIS_RANGES(r, u, p) " vis_v)"

#endif
