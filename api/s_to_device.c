/*
 * s_to_device.c: the to_device stream. {limit} (default 100, max 1000):
 * the device's messages after the since token's to-device position, as
 * stored, in order. A full page stops at its last message so the next
 * request pages forward. Messages stay until every live session has
 * acknowledged them (session.c). The rounds that start in one loop pass
 * are read in one statement.
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
 * Rounds read together (issue #13): a round that starts joins the open
 * batch, sent from the loop once the callbacks already queued have run,
 * which are the wake-ups of the notices read in the same turn, as
 * s_room_list.c batches its streaming rounds. So the clients one burst of
 * notices woke read their messages in one statement (Q_TO_DEVICE), each
 * its own device's from its own position, not one statement each; a
 * batch is at most TD_BATCH_MAX requests. Nothing waits for a batch but
 * the end of the loop pass.
 */
#define TD_BATCH_MAX 64

struct td_batch {
	struct sreq *v[TD_BATCH_MAX];
	int n;
};

/*
 * One request's messages, rows row0 to row0 + n of res, after the
 * acknowledged position, up to limit; the next position is the last one
 * sent when the limit cut the list, else the round's.
 */
static void
to_device_rows(struct sreq *r, PGresult *res, int row0, int n)
{
	struct evbuffer *b = r->out[ST_TO_DEVICE];

	if (sreq_replied(r))
		goto out;
	if (res == NULL) {
		stream_fail_db(r);
		goto out;
	}
	evbuffer_add_printf(b, "{\"limit\":%" PRId64 ",\"events\":[",
	    r->p.td_limit);
	for (int i = row0; i < row0 + n; i++) {
		if (i > row0)
			evbuffer_add(b, ",", 1);
		evbuffer_add(b, PQgetvalue(res, i, 2),
		    (size_t)PQgetlength(res, i, 2));
	}
	evbuffer_add(b, "]}", 2);
	r->has_data |= n > 0;
	r->next.d = n > 0 && n == r->p.td_limit ?
	    strtoll(PQgetvalue(res, row0 + n - 1, 1), NULL, 10) : r->to;
	if (r->next.d < r->from.d)
		r->next.d = r->from.d;
out:
	stream_done(r);
}

/* Hands each request its own rows (in index order). Frees b. */
static void
batch_cb(PGresult *res, void *arg)
{
	struct td_batch *b = arg;
	int row = 0, lo, n;

	for (int k = 0; k < b->n; k++) {
		n = sql_batch_rows(res, 0, k + 1, &row, &lo);
		to_device_rows(b->v[k], res, lo, n);
	}
	free(b);
}

static void
batch_send(struct api *api, struct td_batch *b)
{
	const char **users = xcalloc((size_t)b->n, sizeof(char *));
	const char **devs = xcalloc((size_t)b->n, sizeof(char *));
	struct pg_lit froms = {0}, tos = {0}, limits = {0};
	const char *params[5];
	char *ua, *da;
	int64_t at = 0;

	if (api->td_batch == b)
		api->td_batch = NULL;
	log_debug("to_device: %d rounds in one read", b->n);
	for (int i = 0; i < b->n; i++) {
		struct sreq *r = b->v[i];

		users[i] = r->user_id;
		devs[i] = r->device_id;
		/* what this session acknowledged is never sent to it again */
		pg_arr_i64(&froms,
		    r->acked_d > r->from.d ? r->acked_d : r->from.d);
		pg_arr_i64(&tos, r->to);
		pg_arr_i64(&limits, r->p.td_limit);
		if (r->to > at)
			at = r->to;
	}
	ua = pg_text_array(users, (size_t)b->n);
	da = pg_text_array(devs, (size_t)b->n);
	params[0] = ua;
	params[1] = da;
	params[2] = pg_arr_end(&froms);
	params[3] = pg_arr_end(&tos);
	params[4] = pg_arr_end(&limits);
	sql_query_at(api, Q_TO_DEVICE, at, params, batch_cb, b);
	pg_lit_free(&froms);
	pg_lit_free(&tos);
	pg_lit_free(&limits);
	free(ua);
	free(da);
	free(users);
	free(devs);
}

static void
batch_flush_cb(evutil_socket_t fd, short what, void *arg)
{
	struct api *api = arg;

	(void)fd;
	(void)what;
	if (api->td_batch != NULL)
		batch_send(api, api->td_batch);
}

/* A round answered from its notice, else joining the open batch. */
void
s_to_device_run(struct api *api, struct sreq *r)
{
	struct td_hint *h = r->td_hint;
	struct td_batch *b;
	bool is_answered;

	if (h != NULL) {	/* one round only: its messages are old next */
		r->td_hint = NULL;
		/* what this session acknowledged is never sent to it again */
		is_answered = td_hint_answer(r, h,
		    r->acked_d > r->from.d ? r->acked_d : r->from.d);
		td_hint_unref(h);
		if (is_answered) {
			stream_done(r);
			return;
		}
	}
	b = api->td_batch;
	if (b != NULL && b->n == TD_BATCH_MAX) {
		batch_send(api, b);
		b = NULL;
	}
	if (b == NULL) {
		b = api->td_batch = xcalloc(1, sizeof(*b));
		event_base_once(api->base, -1, EV_TIMEOUT, batch_flush_cb, api,
		    NULL);
	}
	b->v[b->n++] = r;
}
