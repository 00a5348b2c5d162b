/*
 * s_typing.c: the typing stream. {room_id}: the full list of typing users
 * when it changed since the since token's typing position, nothing
 * otherwise; only for a room the user is joined to (M_FORBIDDEN otherwise:
 * the whole request when this body names the room, else this stream alone,
 * r_sync.c).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "api.h"
#include "pg.h"
#include "util.h"

/*
 * The room's typing users, for a member of the room only (403 else);
 * sent when their row changed after the since position.
 */
static void
typing_cb(PGresult *res, void *arg)
{
	struct sreq *r = arg;
	int64_t pos;

	if (sreq_replied(r))
		goto out;
	if (res == NULL || PQntuples(res) != 1) {
		stream_fail_db(r);
		goto out;
	}
	if (PQgetvalue(res, 0, 2)[0] != 't') {
		r->err_status = 403;
		r->err_code = "M_FORBIDDEN";
		free(r->err_msg);
		r->err_msg = xasprintf("typing: you are not in room %s",
		    r->p.typing_room);
		goto out;
	}
	r->next.t = r->to;
	if (PQgetisnull(res, 0, 0))
		goto out;
	pos = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	if (pos <= r->from.t || pos > r->to)
		goto out;
	r->has_data = true;
	evbuffer_add(r->out[ST_TYPING], "{\"room_id\":", 11);
	jstr(r->out[ST_TYPING], r->p.typing_room);
	evbuffer_add(r->out[ST_TYPING], ",\"user_ids\":", 12);
	evbuffer_add(r->out[ST_TYPING], PQgetvalue(res, 0, 1),
	    (size_t)PQgetlength(res, 0, 1));
	evbuffer_add(r->out[ST_TYPING], "}", 1);
out:
	stream_done(r);
}

void
s_typing_run(struct api *api, struct sreq *r)
{
	const char *params[2];

	if (*r->p.typing_room == '\0') {
		r->next.t = r->to;
		stream_done(r);
		return;
	}
	params[0] = r->p.typing_room;
	params[1] = r->user_id;
	sql_query(api, Q_TYPING, params, typing_cb, r);
}
