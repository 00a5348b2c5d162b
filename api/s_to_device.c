/*
 * s_to_device.c: the to_device stream. {limit} (default 100, max 1000):
 * the device's messages after the since token's to-device position, as
 * stored, in order. A full page stops at its last message so the next
 * request pages forward. Messages stay until every live session has
 * acknowledged them (session.c).
 *
 * A request woken by a to-device notice that carries the device's
 * messages (proto.h: all of them at positions (after, pos]) answers from
 * them, with no Postgres read, when its own position is at least after:
 * then the notice holds every message it may be sent up to pos, and its
 * next position is pos (at most the round's; later ones come next time).
 * Anything else reads Postgres, as after a lost notice or a restart.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "pg.h"
#include "pg_lit.h"
#include "proto.h"
#include "util.h"

struct td_hint {
	int refs;
	int64_t after, last;	/* the messages are at (after, last] */
	size_t count, len;
	char msgs[];		/* each followed by a NUL */
};

struct td_hint *
td_hint_new(const struct proto_notice *pn)
{
	struct td_hint *h;

	if (pn->td_count == 0)
		return NULL;
	h = xmalloc(sizeof(*h) + pn->td_len);
	h->refs = 1;
	h->after = pn->after;
	h->last = pn->pos;
	h->count = pn->td_count;
	h->len = pn->td_len;
	memcpy(h->msgs, pn->td, pn->td_len);
	return h;
}

void
td_hint_unref(struct td_hint *h)
{
	if (h != NULL && --h->refs == 0)
		free(h);
}

void
td_hint_give(struct sreq *r, struct td_hint *h)
{
	h->refs++;
	td_hint_unref(r->td_hint);
	r->td_hint = h;
}

/*
 * Answers r's round from h, as to_device_cb would from the same rows;
 * false when h does not cover r's position (from).
 */
static bool
td_hint_answer(struct sreq *r, const struct td_hint *h, int64_t from)
{
	struct evbuffer *b = r->out[ST_TO_DEVICE];
	int64_t pos = h->last - (int64_t)h->count, n = 0;
	const char *m = h->msgs;
	size_t k;

	if (from < h->after || from >= h->last || h->last > r->to) {
		log_debug("to_device: %s/%s at %lld: the notice has (%lld, "
		          "%lld], the round is at %lld", r->user_id,
		          r->device_id, (long long)from, (long long)h->after,
		          (long long)h->last, (long long)r->to);
		return false;
	}
	evbuffer_add_printf(b, "{\"limit\":%" PRId64 ",\"events\":[",
	    r->p.td_limit);
	for (; m < h->msgs + h->len && n < r->p.td_limit; m += k + 1) {
		k = strlen(m);
		if (++pos <= from)
			continue;
		if (n++ > 0)
			evbuffer_add(b, ",", 1);
		evbuffer_add(b, m, k);
	}
	evbuffer_add(b, "]}", 2);
	r->has_data |= n > 0;
	r->next.d = n == r->p.td_limit ? pos : h->last;
	r->api->stats.td_notice_hits++;
	return true;
}

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
	int64_t at = r->acked_d > r->from.d ? r->acked_d : r->from.d;
	struct td_hint *h = r->td_hint;
	bool is_answered;

	if (h != NULL) {	/* one round only: its messages are old next */
		r->td_hint = NULL;
		is_answered = td_hint_answer(r, h, at);
		td_hint_unref(h);
		if (is_answered) {
			stream_done(r);
			return;
		}
	}
	pg_i64(from, at);
	pg_i64(to, r->to);
	pg_i64(limit, r->p.td_limit);
	params[0] = r->user_id;
	params[1] = r->device_id;
	params[2] = from;
	params[3] = to;
	params[4] = limit;
	sql_query_at(api, Q_TO_DEVICE, r->to, params, to_device_cb, r);
}
