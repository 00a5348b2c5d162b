/*
 * s_to_device.c: the to_device stream. {limit} (default 100, max 1000):
 * the device's messages after the since token's to-device position, as
 * stored, in order. A full page stops at its last message so the next
 * request pages forward. Messages stay until every live session has
 * acknowledged them (session.c).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "api.h"
#include "pg.h"
#include "pg_lit.h"

/*
 * The device's messages after the acknowledged position, up to limit;
 * the next position is the last one sent when the limit cut the list,
 * else the round's.
 */
static void
to_device_cb(PGresult *res, void *arg)
{
	struct sreq *r = arg;
	struct evbuffer *b = r->out[ST_TO_DEVICE];
	int n;

	if (sreq_replied(r))
		goto out;
	if (res == NULL) {
		stream_fail_db(r);
		goto out;
	}
	n = PQntuples(res);
	evbuffer_add_printf(b, "{\"limit\":%" PRId64 ",\"events\":[",
	    r->p.td_limit);
	for (int i = 0; i < n; i++) {
		if (i > 0)
			evbuffer_add(b, ",", 1);
		evbuffer_add(b, PQgetvalue(res, i, 1),
		    (size_t)PQgetlength(res, i, 1));
	}
	evbuffer_add(b, "]}", 2);
	r->has_data |= n > 0;
	r->next.d = n > 0 && n == r->p.td_limit ?
	    strtoll(PQgetvalue(res, n - 1, 0), NULL, 10) : r->to;
	if (r->next.d < r->from.d)
		r->next.d = r->from.d;
out:
	stream_done(r);
}

void
s_to_device_run(struct api *api, struct sreq *r)
{
	char from[PG_I64_LEN], to[PG_I64_LEN], limit[PG_I64_LEN];
	const char *params[5];

	/* what this session acknowledged is never sent to it again */
	pg_i64(from, r->acked_d > r->from.d ? r->acked_d : r->from.d);
	pg_i64(to, r->to);
	pg_i64(limit, r->p.td_limit);
	params[0] = r->user_id;
	params[1] = r->device_id;
	params[2] = from;
	params[3] = to;
	params[4] = limit;
	sql_query_at(api, Q_TO_DEVICE, r->to, params, to_device_cb, r);
}
