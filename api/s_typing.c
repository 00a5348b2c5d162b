/*
 * s_typing.c: the typing stream. {room_id}: the full list of typing users
 * when it changed since the since token's typing position, nothing
 * otherwise; only for a room the user is joined to (M_FORBIDDEN otherwise:
 * the whole request when this body names the room, else this stream alone,
 * r_sync.c). Answered from the api's typing table when it knows the room
 * and the user's membership (ephemeral.c), else from Postgres.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "pg.h"
#include "util.h"

/* Where a list is (ephemeral.c): shown at (pos, early), stored at stored. */
struct typing_place {
	int64_t pos, early, stored;
};

/* A Postgres typing read in flight, and the table's mark at its start. */
struct typing_q {
	struct sreq *r;
	uint64_t mark;
};

/*
 * Appends the room's list when it changed after the since position.
 * From Postgres the stream's position is the round's; from the table it
 * is the list's own (or stays), since a typing notice may still arrive
 * below the round's position (positions are not sent in order). A list
 * sent before its commit sits at (last commit, its notice's seq): the
 * token keeps both (t, te), so each such list is shown once, and its
 * commit, which the table does not move, shows nothing again.
 */
static void
typing_answer(struct sreq *r, const struct typing_place *w, const char *ids,
              size_t len, bool is_table)
{
	bool is_seen = w->pos < r->from.t ||
	               (w->pos == r->from.t && w->early <= r->from.te);

	if (!is_table && r->to > r->from.t) {
		r->next.t = r->to;
		r->next.te = 0;
	}
	/* shown early, now stored: the token moves to the row */
	if (is_table && is_seen && w->early != 0 && w->stored > r->from.t &&
	    w->stored <= r->to) {
		r->next.t = w->stored;
		r->next.te = 0;
	}
	/*
	 * A row above the round is the next round's (its notice wakes it),
	 * but a table list above it arrived while this read was in Postgres:
	 * the round reads it as seen (typing_mark), so neither its notice,
	 * already past, nor its commit, the same list, wakes the request
	 * again. It is news: shown now, at its own position.
	 */
	if (is_seen || (!is_table && w->pos > r->to))
		return;
	if (is_table) {
		r->next.t = w->pos;
		r->next.te = w->early;
	}
	r->has_data = true;
	evbuffer_add(r->out[ST_TYPING], "{\"room_id\":", 11);
	jstr(r->out[ST_TYPING], r->p.typing_room);
	evbuffer_add(r->out[ST_TYPING], ",\"user_ids\":", 12);
	evbuffer_add(r->out[ST_TYPING], ids, len);
	evbuffer_add(r->out[ST_TYPING], "}", 1);
}

/*
 * The room's typing users, for a member of the room only (403 else);
 * the answer also fills the table (ephemeral.c).
 */
static void
typing_cb(PGresult *res, void *arg)
{
	struct typing_q *q = arg;
	struct sreq *r = q->r;
	bool is_member, has_row;
	struct typing_place w = {0};
	int64_t pos;
	const char *ids;

	if (sreq_replied(r))
		goto out;
	if (res == NULL || PQntuples(res) != 1) {
		stream_fail_db(r);
		goto out;
	}
	is_member = PQgetvalue(res, 0, 2)[0] == 't';
	has_row = !PQgetisnull(res, 0, 0);
	pos = has_row ? strtoll(PQgetvalue(res, 0, 0), NULL, 10) : 0;
	eph_typing_fill(r->api, r->p.typing_room, r->user_id, q->mark, pos,
	                has_row ? PQgetvalue(res, 0, 1) : "[]", is_member);
	if (!is_member) {
		r->err_status = 403;
		r->err_code = "M_FORBIDDEN";
		free(r->err_msg);
		r->err_msg = xasprintf("typing: you are not in room %s",
		                       r->p.typing_room);
		goto out;
	}
	/* a list sent before its commit is newer than the row */
	if (eph_typing_get(r->api, r->p.typing_room, r->user_id, &w.pos,
	                   &w.early, &w.stored, &ids, &r->typing_mark)) {
		typing_answer(r, &w, ids, strlen(ids), true);
		goto out;
	}
	w.pos = w.stored = pos;
	typing_answer(r, &w, PQgetvalue(res, 0, 1),
	              (size_t)PQgetlength(res, 0, 1), false);
out:
	free(q);
	stream_done(r);
}

void
s_typing_run(struct api *api, struct sreq *r)
{
	const char *params[2], *ids;
	struct typing_q *q;
	struct typing_place w;

	r->typing_mark = 0;
	if (*r->p.typing_room == '\0') {
		r->next.t = r->to;
		stream_done(r);
		return;
	}
	if (eph_typing_get(api, r->p.typing_room, r->user_id, &w.pos, &w.early,
	                   &w.stored, &ids, &r->typing_mark)) {
		typing_answer(r, &w, ids, strlen(ids), true);
		stream_done(r);
		return;
	}
	q = xmalloc(sizeof(*q));
	q->r = r;
	q->mark = eph_fill_mark(api);
	params[0] = r->p.typing_room;
	params[1] = r->user_id;
	sql_query(api, Q_TYPING, params, typing_cb, q);
}
