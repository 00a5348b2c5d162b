/*
 * s_room_list.c: the room_list stream (room_list.md, SEED-SPEC 5.5).
 * Pagination mode (first request or next_page): the user's joined and
 * invited rooms at the pinned position P (optionally only the children of
 * `spaces`), sorted by the requested sorts (by_recency: last event, newest
 * first; by_name: the spec room name, case-folded), one page of `limit`
 * with the requested state events and the last `timeline_limit` events.
 * Streaming mode: rooms sent to this session that changed since the since
 * position (new events, state, counts), rooms newly joined or invited (in
 * full), and rooms left (once). What a user may see of a room follows
 * visible.h: timelines stop at their leave, invites carry only their
 * stripped state. A page is two queries: the room set, then the page
 * details, and a third to remember the rooms sent; streaming brings the
 * rooms that changed with their details in one, and remembers only when
 * a room was new or left. The room set of a first page by
 * recency alone (the default) is the window of the sort keys the
 * accumulator keeps (deploy/sql/012_sortkeys.sql), not the rule and a
 * sort over each of the user's rooms, and that one statement also brings
 * the window's details and remembers its rooms (issue #13 item 5).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "json_util.h"
#include "pg.h"
#include "pg_lit.h"
#include "util.h"

/* The column of the snapshot position in Q_LIST_PAGE/STREAM (sql.c). */
#define COL_SNAP 13
/* Q_LIST_FIRST's count of joined rooms, after the snapshot position. */
#define COL_NJOINED 14
/*
 * Q_LIST_FIRST's and Q_LIST_STREAM's details of a joined room, and
 * whether Q_LIST_FIRST remembered.
 */
#define COL_TL 15
#define COL_ST 16
#define COL_REMEMBERED 17
/* Their prev_batch of a joined room's timeline (its chunk). */
#define COL_CHUNK 18
/* Q_LIST_STREAM's: whether a room's timeline was read afresh. */
#define COL_RESET 20

struct lroom {
	char *room_id;
	char *membership;
	char *name;
	char *key;
	char *invite_state;
	char *prev_batch;
	char *tl, *st; /* Q_LIST_FIRST: its details, comma-separated json */
	int64_t notif, highlight, ts, from;
	bool is_new, is_left;
	bool is_invite; /* stripped state only, no details */
	bool is_reset;  /* Q_LIST_STREAM read its timeline afresh */
};

struct lctx {
	struct sreq *r;
	struct lroom *v;
	int n;
	int lo, hi; /* the page */
	int64_t total;
	bool is_stream;
	bool is_first;      /* Q_LIST_FIRST: a window of the rooms, not all */
	bool has_details;   /* each row brought its room's details */
	bool is_remembered; /* Q_LIST_FIRST remembered the page's rooms */
};

static const int *cmp_sorts;
static int cmp_nsorts;

static int
lroom_cmp(const void *a, const void *b)
{
	const struct lroom *x = a, *y = b;
	int c;

	for (int i = 0; i < cmp_nsorts; i++) {
		if (cmp_sorts[i] == SORT_BY_RECENCY && x->ts != y->ts)
			return x->ts > y->ts ? -1 : 1;
		if (cmp_sorts[i] == SORT_BY_NAME &&
		    (c = strcmp(x->key, y->key)) != 0)
			return c;
	}
	return strcmp(x->room_id, y->room_id);
}

static void
lctx_free(struct lctx *c)
{
	for (int i = 0; i < c->n; i++) {
		struct lroom *x = &c->v[i];
		free(x->room_id);
		free(x->membership);
		free(x->name);
		free(x->key);
		free(x->invite_state);
		free(x->prev_batch);
		free(x->tl);
		free(x->st);
	}
	free(c->v);
	free(c);
}

static const char *
val(PGresult *res, int i, int col)
{
	return PQgetisnull(res, i, col) ? NULL : PQgetvalue(res, i, col);
}

static char *
val_dup(PGresult *res, int i, int col)
{
	return PQgetisnull(res, i, col) ? NULL
	                                : xstrdup(PQgetvalue(res, i, col));
}

/*
 * Name and timestamp (of the invite itself) of an invited room, from its
 * stripped state only: an invitee is shown nothing of the room as the
 * proxy knows it from its members (visible.h).
 */
static char *
invite_name(const char *invite_state, const char *self, int64_t *ts)
{
	struct json_object *a =
	    invite_state == NULL
	        ? NULL
	        : json_parse_bounded(invite_state, strlen(invite_state), NULL);
	const char *name = NULL, *alias = NULL;
	struct hero h[5];
	int nh = 0;
	char *out;

	for (size_t i = 0; json_object_is_type(a, json_type_array) &&
	                   i < json_object_array_length(a);
	     i++) {
		struct json_object *e = json_object_array_get_idx(a, i);
		struct json_object *c = json_get_obj(e, "content");
		const char *t = json_get_str(e, "type");
		const char *sk = json_get_str(e, "state_key");
		if (t == NULL)
			continue;
		if (strcmp(t, "m.room.name") == 0)
			name = json_get_str(c, "name");
		else if (strcmp(t, "m.room.canonical_alias") == 0)
			alias = json_get_str(c, "alias");
		else if (strcmp(t, "m.room.member") == 0 && sk != NULL &&
		         strcmp(sk, self) == 0)
			(void)json_get_int(e, "origin_server_ts", ts);
		else if (strcmp(t, "m.room.member") == 0 && sk != NULL &&
		         nh < 5) {
			h[nh].user_id = sk;
			h[nh++].displayname = json_get_str(c, "displayname");
		}
	}
	out = room_name_calc(name, alias, h, nh, nh + 1, 0);
	json_object_put(a);
	return out;
}

static char *
calc_name(PGresult *res, int i)
{
	struct json_object *heroes = NULL;
	struct hero h[5];
	int nh = 0;
	char *out;

	if (val(res, i, 10) != NULL)
		heroes = json_parse_bounded(
		    val(res, i, 10), (size_t)PQgetlength(res, i, 10), NULL);
	for (size_t k = 0; json_object_is_type(heroes, json_type_array) &&
	                   k < json_object_array_length(heroes) && nh < 5;
	     k++) {
		struct json_object *p = json_object_array_get_idx(heroes, k);
		h[nh].user_id =
		    json_object_get_string(json_object_array_get_idx(p, 0));
		h[nh++].displayname =
		    json_object_get_string(json_object_array_get_idx(p, 1));
	}
	out = room_name_calc(val(res, i, 6), val(res, i, 7), h, nh,
	                     strtol(PQgetvalue(res, i, 8), NULL, 10),
	                     strtol(PQgetvalue(res, i, 9), NULL, 10));
	json_object_put(heroes);
	return out;
}

/*
 * The room_list object's head: the negotiated parameters echoed back.
 */
static void
list_head(struct sreq *r, struct evbuffer *b, struct lctx *c)
{
	evbuffer_add_printf(b,
	                    "{\"limit\":%" PRId64 ",\"timeline_limit\":%" PRId64
	                    ",\"sort\":[",
	                    r->p.l_limit, r->p.l_timeline);
	for (int i = 0; i < r->p.l_nsorts; i++)
		evbuffer_add_printf(b, "%s\"%s\"", i ? "," : "",
		                    sort_name(r->p.l_sorts[i]));
	evbuffer_add(b, "],\"state_events\":[", 18);
	for (int i = 0; i < r->p.l_nst; i++) {
		evbuffer_add(b, i ? ",[" : "[", i ? 2 : 1);
		jstr(b, r->p.l_st_type[i]);
		evbuffer_add(b, ",", 1);
		jstr(b, r->p.l_st_key[i]);
		evbuffer_add(b, "]", 1);
	}
	evbuffer_add(b, "]", 1);
	if (r->p.l_nspaces > 0) {
		evbuffer_add(b, ",\"spaces\":[", 11);
		for (int i = 0; i < r->p.l_nspaces; i++) {
			if (i)
				evbuffer_add(b, ",", 1);
			jstr(b, r->p.l_spaces[i]);
		}
		evbuffer_add(b, "]", 1);
	}
	if (!c->is_stream)
		evbuffer_add_printf(b, ",\"count\":%" PRId64, c->total);
}

/*
 * Appends the json column of the rows of kind k for room id, in the
 * detail query's order: position ascending, so a timeline is
 * chronological (last event newest) however it was fetched.
 */
static void
add_rows(struct evbuffer *b, PGresult *res, const char *id, char kind)
{
	int n = res ? PQntuples(res) : 0, cnt = 0;

	for (int i = 0; i < n; i++) {
		if (PQgetvalue(res, i, 0)[0] != kind ||
		    strcmp(PQgetvalue(res, i, 1), id) != 0)
			continue;
		if (cnt++ > 0)
			evbuffer_add(b, ",", 1);
		evbuffer_add(b, PQgetvalue(res, i, 3),
		             (size_t)PQgetlength(res, i, 3));
	}
}

/* The room's rows of kind k: its own details, or the detail query's. */
static void
room_rows(struct evbuffer *b, const struct lroom *x, PGresult *res, char kind)
{
	const char *own = kind == 't' ? x->tl : x->st;

	if (own != NULL)
		evbuffer_add(b, own, strlen(own));
	else
		add_rows(b, res, x->room_id, kind);
}

/*
 * The prev_batch of a room's timeline: its chunk boundary's token from the
 * detail query ('c'), else (no chunk known: stored before 015_chunks.sql) the
 * room's latest upstream one.
 */
static const char *
prev_batch_of(const struct lroom *x, PGresult *res)
{
	int n = res ? PQntuples(res) : 0;

	for (int i = 0; i < n; i++)
		if (PQgetvalue(res, i, 0)[0] == 'c' &&
		    strcmp(PQgetvalue(res, i, 1), x->room_id) == 0)
			return PQgetvalue(res, i, 3);
	return x->prev_batch;
}

/*
 * Was the room's timeline read afresh (Q_LIST_STREAM's last column, or
 * the detail query's 'l' row: events were placed before ones the client
 * holds, 031_order.sql)? The client is then told it is limited, so it
 * replaces its timeline.
 */
static bool
is_reset(const struct lroom *x, PGresult *res)
{
	int n = res ? PQntuples(res) : 0;

	if (x->is_reset)
		return true;
	for (int i = 0; i < n; i++)
		if (PQgetvalue(res, i, 0)[0] == 'l' &&
		    strcmp(PQgetvalue(res, i, 1), x->room_id) == 0)
			return true;
	return false;
}

/*
 * One room of the page: membership, name, counts, and its timeline and
 * state from the detail query (stripped state for an invite).
 */
static void
room_out(struct evbuffer *b, struct lroom *x, PGresult *res, bool first)
{
	const char *pb;

	if (!first)
		evbuffer_add(b, ",", 1);
	evbuffer_add(b, "{\"room_id\":", 11);
	jstr(b, x->room_id);
	evbuffer_add(b, ",\"membership\":", 14);
	jstr(b, x->membership);
	evbuffer_add(b, ",\"name\":", 8);
	jstr(b, x->name);
	evbuffer_add_printf(b,
	                    ",\"timestamp\":%" PRId64 ",\"notification_"
	                    "count\":%" PRId64 ",\"highlight_count\":%" PRId64,
	                    x->ts, x->notif, x->highlight);
	if (x->invite_state != NULL && strcmp(x->membership, "invite") == 0)
		evbuffer_add_printf(b, ",\"invite_state\":%s", x->invite_state);
	if (is_reset(x, res))
		evbuffer_add(b, ",\"limited\":true", 15);
	if ((pb = prev_batch_of(x, res)) != NULL && *pb != '\0') {
		evbuffer_add(b, ",\"prev_batch\":", 14);
		jstr(b, pb);
	}
	evbuffer_add(b, ",\"state_events\":[", 17);
	room_rows(b, x, res, 's');
	evbuffer_add(b, "],\"timeline\":[", 14);
	room_rows(b, x, res, 't');
	evbuffer_add(b, "]}", 2);
}

/*
 * The session may have been evicted (or expired) since it was loaded:
 * the client is told as for any unknown session, and starts a new one.
 */
static void
remembered_cb(PGresult *res, void *arg)
{
	struct sreq *r = arg;

	if (!sreq_replied(r)) {
		if (res == NULL)
			stream_fail_db(r);
		else if (PQntuples(res) != 1 ||
		         strcmp(PQgetvalue(res, 0, 0), "1") != 0)
			session_gone(r);
	}
	stream_done(r);
}

/*
 * Records the rooms sent (streaming mode follows exactly those; it only
 * adds the new ones, the others are there already) and forgets the rooms
 * reported left (a rejoin sends them in full again), then ends the
 * stream. The reply waits for it: the client's next request must find
 * them, whichever connection or api serves it. Frees c.
 */
static void
remember_rooms(struct sreq *r, struct lctx *c)
{
	const char **ids = xcalloc((size_t)c->n + 1, sizeof(char *));
	const char **left = xcalloc((size_t)c->n + 1, sizeof(char *));
	const char *params[3];
	char sid[PG_I64_LEN], *arr = NULL, *larr = NULL;
	int n = 0, nl = 0;

	/* a streamed room that is not new was found through session_rooms */
	for (int i = c->lo; i < c->hi; i++)
		if (c->v[i].is_left)
			left[nl++] = c->v[i].room_id;
		else if (!c->is_stream || c->v[i].is_new)
			ids[n++] = c->v[i].room_id;
	if (n + nl == 0) {
		lctx_free(c);
		stream_done(r);
		goto out;
	}
	pg_i64(sid, r->from.sid);
	arr = pg_text_array(ids, (size_t)n);
	larr = pg_text_array(left, (size_t)nl);
	params[0] = sid;
	params[1] = arr;
	params[2] = larr;
	sql_query(r->api, Q_LIST_REMEMBER, params, remembered_cb, r);
	lctx_free(c);
out:
	free(arr);
	free(larr);
	free(ids);
	free(left);
}

/*
 * Writes the page, then remembers in the session which rooms it was sent
 * (and forgets the ones it left), so streaming sends only their changes.
 */
static void
list_finish(struct lctx *c, PGresult *res)
{
	struct sreq *r = c->r;
	struct evbuffer *b = r->out[ST_LIST];
	int nout = 0, nleft = 0;

	list_head(r, b, c);
	evbuffer_add(b, ",\"rooms\":[", 10);
	for (int i = c->lo; i < c->hi; i++)
		if (!c->v[i].is_left)
			room_out(b, &c->v[i], res, nout++ == 0);
	evbuffer_add(b, "]", 1);
	for (int i = c->lo; i < c->hi; i++) {
		if (!c->v[i].is_left)
			continue;
		if (nleft++ == 0)
			evbuffer_add(b, ",\"left\":[", 9);
		else
			evbuffer_add(b, ",", 1);
		jstr(b, c->v[i].room_id);
	}
	if (nleft > 0)
		evbuffer_add(b, "]", 1);
	if (!c->is_stream && c->hi < c->total)
		evbuffer_add_printf(b, ",\"next_page\":\"%" PRId64 "\"",
		                    (r->p.l_page < 0 ? 0 : r->p.l_page) + 1);
	evbuffer_add(b, "}", 1);
	if (c->is_stream)
		r->has_data |= nout + nleft > 0;
	else
		r->is_pagination = true;
}

static void
detail_cb(PGresult *res, void *arg)
{
	struct lctx *c = arg;
	struct sreq *r = c->r;

	if (!sreq_replied(r) && res != NULL) {
		list_finish(c, res);
		remember_rooms(r, c);
		return;
	}
	if (res == NULL && !sreq_replied(r))
		stream_fail_db(r);
	lctx_free(c);
	stream_done(r);
}

/*
 * The second query: timelines and requested state of the page's rooms,
 * each from its own lower bound (the since position or nothing).
 */
static void
detail_query(struct lctx *c)
{
	struct sreq *r = c->r;
	const char **ids = xcalloc((size_t)c->n + 1, sizeof(char *));
	char *rooms, *types, *keys, to[PG_I64_LEN], tl[PG_I64_LEN];
	struct pg_lit froms = {0};
	const char *params[8];
	int n = 0;

	for (int i = c->lo; i < c->hi; i++) {
		if (c->v[i].is_left || c->v[i].is_invite)
			continue;
		ids[n] = c->v[i].room_id;
		pg_arr_i64(&froms, c->v[i].from);
		n++;
	}
	if (n == 0) {
		pg_lit_free(&froms);
		free(ids);
		if (!sreq_replied(r))
			list_finish(c, NULL);
		lctx_free(c);
		stream_done(r);
		return;
	}
	rooms = pg_text_array(ids, (size_t)n);
	types = pg_text_array(r->p.l_st_type, (size_t)r->p.l_nst);
	keys = pg_text_array(r->p.l_st_key, (size_t)r->p.l_nst);
	pg_i64(to, r->next.l);
	pg_i64(tl, r->p.l_timeline);
	params[0] = rooms;
	params[1] = pg_arr_end(&froms);
	params[2] = to;
	params[3] = tl;
	params[4] = types;
	params[5] = keys;
	params[6] = r->user_id;
	params[7] = r->device_id;
	sql_query(r->api, Q_LIST_DETAIL, params, detail_cb, c);
	free(rooms);
	free(types);
	free(keys);
	pg_lit_free(&froms);
	free(ids);
}

/*
 * A first page by recency came with its details: written at once, and
 * remembered unless the statement already did (or, as detail_query does,
 * when it holds invites only).
 */
static void
first_finish(struct lctx *c)
{
	struct sreq *r = c->r;
	bool is_joined = false;

	list_finish(c, NULL);
	for (int i = c->lo; i < c->hi; i++)
		is_joined |= !c->v[i].is_invite;
	if (!c->is_remembered && is_joined) {
		remember_rooms(r, c);
		return;
	}
	lctx_free(c);
	stream_done(r);
}

/*
 * The room set, rows row0 on of res (nrows of them: a batch holds several
 * requests' rows): computes the sort keys, sorts, cuts the page (a
 * next_page resumes it) and runs the detail query for it, or finishes.
 */
static void
list_rows(struct lctx *c, PGresult *res, int row0, int nrows)
{
	struct sreq *r = c->r;
	int64_t lo;

	if (sreq_replied(r) || res == NULL) {
		if (res == NULL && !sreq_replied(r))
			stream_fail_db(r);
		lctx_free(c);
		stream_done(r);
		return;
	}
	c->n = nrows;
	if (c->n > 0 && !PQgetisnull(res, row0, COL_SNAP))
		r->next.l = strtoll(PQgetvalue(res, row0, COL_SNAP), NULL, 10);
	if (c->n == 1 && PQgetisnull(res, row0, 0))
		c->n = 0;
	c->v = xcalloc((size_t)c->n + 1, sizeof(*c->v));
	for (int k = 0; k < c->n; k++) {
		struct lroom *x = &c->v[k];
		int i = row0 + k;

		x->room_id = xstrdup(PQgetvalue(res, i, 0));
		x->membership = xstrdup(PQgetvalue(res, i, 1));
		x->notif = strtoll(PQgetvalue(res, i, 2), NULL, 10);
		x->highlight = strtoll(PQgetvalue(res, i, 3), NULL, 10);
		x->invite_state =
		    val(res, i, 4) ? xstrdup(val(res, i, 4)) : NULL;
		x->is_invite = strcmp(x->membership, "invite") == 0;
		x->ts = 0;
		if (x->is_invite)
			x->name =
			    invite_name(x->invite_state, r->user_id, &x->ts);
		else {
			x->ts = strtoll(PQgetvalue(res, i, 5), NULL, 10);
			x->name = calc_name(res, i);
		}
		x->key = casefold(x->name);
		x->prev_batch = val(res, i, 11) && !x->is_invite
		                    ? xstrdup(val(res, i, 11))
		                    : NULL;
		x->is_new = PQgetvalue(res, i, 12)[0] == 't';
		x->is_left = c->is_stream && x->is_new &&
		             strcmp(x->membership, "join") != 0 &&
		             strcmp(x->membership, "invite") != 0;
		x->from = c->is_stream && !x->is_new ? r->from.l : 0;
		if (c->has_details && !x->is_invite) {
			x->tl = val_dup(res, i, COL_TL);
			x->st = val_dup(res, i, COL_ST);
			if (val(res, i, COL_CHUNK) != NULL) {
				free(x->prev_batch);
				x->prev_batch = val_dup(res, i, COL_CHUNK);
			}
			x->is_reset = c->is_stream &&
			              val(res, i, COL_RESET) != NULL &&
			              PQgetvalue(res, i, COL_RESET)[0] == 't';
		}
	}
	c->total = c->n;
	if (c->is_first) {
		/* the query sent the joined rooms' window and every invite */
		c->total =
		    strtoll(PQgetvalue(res, row0, COL_NJOINED), NULL, 10);
		c->is_remembered =
		    PQgetvalue(res, row0, COL_REMEMBERED)[0] == 't';
		for (int i = 0; i < c->n; i++)
			c->total += c->v[i].is_invite;
	}
	cmp_sorts = r->p.l_sorts;
	cmp_nsorts = r->p.l_nsorts;
	qsort(c->v, (size_t)c->n, sizeof(*c->v), lroom_cmp);
	c->lo = 0;
	c->hi = c->n;
	if (!c->is_stream) {
		lo = (r->p.l_page < 0 ? 0 : r->p.l_page) * r->p.l_limit;
		if (lo > c->n) {
			r->err_status = 400;
			r->err_code = "M_INVALID_PARAM";
			free(r->err_msg);
			r->err_msg = xstrdup("room_list.next_page is past the "
			                     "end");
			lctx_free(c);
			stream_done(r);
			return;
		}
		c->lo = (int)lo;
		c->hi =
		    lo + r->p.l_limit < c->n ? (int)(lo + r->p.l_limit) : c->n;
	}
	if (c->is_first)
		first_finish(c);
	else if (c->has_details) {
		list_finish(c, NULL);
		remember_rooms(r, c);
	} else
		detail_query(c);
}

static void
main_cb(PGresult *res, void *arg)
{
	struct lctx *c = arg;

	list_rows(c, res, 0, res != NULL ? PQntuples(res) : 0);
}

/*
 * Streaming rounds read together (Q_LIST_STREAM, sql.c): a round that
 * starts joins the open batch, and the batch is sent from the loop once
 * the callbacks already queued have run, which are the wake-ups of the
 * notices read in the same turn (longpoll.c wakes through
 * event_base_once, which runs a zero timeout in the order queued). So
 * the clients one burst of notices woke read what changed in one
 * statement, each its own rooms from its own since as the single query
 * read them; a batch is at most LIST_BATCH_MAX requests, all with the
 * same stream parameters. Nothing waits for a batch but the end of the
 * loop pass.
 */
/*
 * A batch runs on one pool connection, one request after another in one
 * backend: a burst of 40 woken clients as three statements keeps both
 * cores of the bench machine busy and still starts 3 statements, not 40.
 */
#define LIST_BATCH_MAX 16
/* Q_LIST_STREAM's last column: the index of the row's request (from 1) */
#define COL_BATCH_I 19

struct list_batch {
	struct lctx *v[LIST_BATCH_MAX];
	int n;
};

static bool
same_strs(const char *const *a, const char *const *b, int n)
{
	for (int i = 0; i < n; i++)
		if (strcmp(a[i], b[i]) != 0)
			return false;
	return true;
}

/* Do two requests' room_list parameters read the same way (sql.c)? */
static bool
batch_alike(const struct params *a, const struct params *b)
{
	return a->l_timeline == b->l_timeline && a->l_nst == b->l_nst &&
	       a->l_nspaces == b->l_nspaces &&
	       same_strs(a->l_st_type, b->l_st_type, a->l_nst) &&
	       same_strs(a->l_st_key, b->l_st_key, a->l_nst) &&
	       same_strs(a->l_spaces, b->l_spaces, a->l_nspaces);
}

/*
 * Hands each request its own rows: they come in index order, and a row
 * whose index is not the request's is never given to it (a request with
 * no row reads as one without changes). Frees b.
 */
static void
batch_cb(PGresult *res, void *arg)
{
	struct list_batch *b = arg;
	int row = 0, lo, n;

	for (int k = 0; k < b->n; k++) {
		n = sql_batch_rows(res, COL_BATCH_I, k + 1, &row, &lo);
		list_rows(b->v[k], res, lo, n);
	}
	free(b);
}

static void
batch_send(struct api *api, struct list_batch *b)
{
	const char **users = xcalloc((size_t)b->n, sizeof(char *));
	const char **devs = xcalloc((size_t)b->n, sizeof(char *));
	const struct params *p = &b->v[0]->r->p;
	struct pg_lit froms = {0}, tos = {0}, sids = {0};
	char *ua, *da, *spaces = NULL, *types, *keys, tl[PG_I64_LEN];
	const char *params[9];

	if (api->list_batch == b)
		api->list_batch = NULL;
	log_debug("room_list: %d streaming rounds in one read", b->n);
	for (int i = 0; i < b->n; i++) {
		struct sreq *r = b->v[i]->r;

		users[i] = r->user_id;
		devs[i] = r->device_id;
		pg_arr_i64(&froms, r->from.l);
		pg_arr_i64(&tos, r->to);
		pg_arr_i64(&sids, r->from.sid);
	}
	ua = pg_text_array(users, (size_t)b->n);
	da = pg_text_array(devs, (size_t)b->n);
	if (p->l_nspaces > 0)
		spaces = pg_text_array(p->l_spaces, (size_t)p->l_nspaces);
	types = pg_text_array(p->l_st_type, (size_t)p->l_nst);
	keys = pg_text_array(p->l_st_key, (size_t)p->l_nst);
	pg_i64(tl, p->l_timeline);
	params[0] = ua;
	params[1] = pg_arr_end(&froms);
	params[2] = spaces;
	params[3] = pg_arr_end(&tos);
	params[4] = pg_arr_end(&sids);
	params[5] = types;
	params[6] = keys;
	params[7] = tl;
	params[8] = da;
	sql_query(api, Q_LIST_STREAM, params, batch_cb, b);
	pg_lit_free(&froms);
	pg_lit_free(&tos);
	pg_lit_free(&sids);
	free(ua);
	free(da);
	free(spaces);
	free(types);
	free(keys);
	free(users);
	free(devs);
}

static void
batch_flush_cb(evutil_socket_t fd, short what, void *arg)
{
	struct api *api = arg;

	(void)fd;
	(void)what;
	if (api->list_batch != NULL)
		batch_send(api, api->list_batch);
}

/* A streaming round joins the open batch (or opens one). */
static void
batch_add(struct api *api, struct lctx *c)
{
	struct list_batch *b = api->list_batch;

	if (b != NULL && (b->n == LIST_BATCH_MAX ||
	                  !batch_alike(&b->v[0]->r->p, &c->r->p))) {
		batch_send(api, b);
		b = NULL;
	}
	if (b == NULL) {
		b = api->list_batch = xcalloc(1, sizeof(*b));
		event_base_once(api->base, -1, EV_TIMEOUT, batch_flush_cb, api,
		                NULL);
	}
	b->v[b->n++] = c;
}

/*
 * Pagination (first request or next_page) at the snapshot or the pinned
 * position, or streaming from the since position to the round's.
 */
void
s_room_list_run(struct api *api, struct sreq *r)
{
	struct lctx *c = xcalloc(1, sizeof(*c));
	char a[PG_I64_LEN], b[PG_I64_LEN], sid[PG_I64_LEN], tl[PG_I64_LEN];
	char *spaces = NULL, *types = NULL, *keys = NULL;
	const char *params[8];

	c->r = r;
	if (r->p.l_nspaces > 0)
		spaces = pg_text_array(r->p.l_spaces, (size_t)r->p.l_nspaces);
	params[0] = r->user_id;
	params[2] = spaces;
	if (r->from.l == 0 && r->p.l_page <= 0 && r->p.l_nspaces == 0 &&
	    r->p.l_nsorts == 1 && r->p.l_sorts[0] == SORT_BY_RECENCY) {
		/* the common first page: an index range of kept keys */
		c->is_first = c->has_details = true;
		r->next.l = r->to;
		pg_i64(a, r->next.l);
		pg_i64(b, r->p.l_limit);
		pg_i64(tl, r->p.l_timeline);
		pg_i64(sid, r->from.sid);
		types = pg_text_array(r->p.l_st_type, (size_t)r->p.l_nst);
		keys = pg_text_array(r->p.l_st_key, (size_t)r->p.l_nst);
		params[1] = a;
		params[2] = b;
		params[3] = types;
		params[4] = keys;
		params[5] = tl;
		params[6] = sid;
		params[7] = r->device_id;
		sql_query(api, Q_LIST_FIRST, params, main_cb, c);
	} else if (r->from.l == 0 || r->p.l_page >= 0) {
		/* a first page is taken at the snapshot, a next page pinned */
		r->next.l = r->from.l != 0 ? r->from.l : r->to;
		pg_i64(a, r->next.l);
		params[1] = a;
		params[3] = r->from.l != 0 ? "true" : "false";
		sql_query(api, Q_LIST_PAGE, params, main_cb, c);
	} else {
		/* the rooms that changed, with their details, in a batch */
		c->is_stream = c->has_details = true;
		r->next.l = r->to;
		batch_add(api, c);
	}
	free(spaces);
	free(types);
	free(keys);
}
