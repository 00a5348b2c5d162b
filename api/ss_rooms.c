/*
 * ss_rooms.c: one sliding sync round, at one position. Steps, each a
 * query through the pool (nothing blocks):
 *  1. lists: each list's count and window (SS_LIST: the user's rooms by
 *     the MSC's rules, filtered, newest activity first);
 *  2. rooms: the windows and the sticky subscriptions, their configs
 *     combined; what the user may see of each and what this connection
 *     already sent of it (SS_ROOMS); decide per room whether it is sent,
 *     in full (initial) or as what changed. One list and no subscription:
 *     steps 1 and 2 are one statement (SS_LIST_ROOMS);
 *  3. details: timelines and required state of the rooms sent, and for
 *     the timelines a client pages back from the upstream chunk boundary
 *     their prev_batch comes from (SS_DETAIL; a new connection whose save
 *     follows from it is created and saved by the same statement,
 *     SS_DETAIL_SAVE, ss_conn_may_fold);
 *  4. lazy members: the member events of the timelines' senders and
 *     targets not sent before (SS_MEMBERS);
 *  5. extensions (ss_ext_run) over every room in scope.
 * Then done(arg, 0) with s->resp and s->has_data set.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "json_util.h"
#include "pg.h"
#include "pg_lit.h"
#include "ss.h"
#include "util.h"

static void rooms_step(struct ss_req *s);
static void step1_end(struct ss_req *s);
static void room_row(struct ss_req *s, PGresult *res, int i, int o);
static void lazy_sent(struct ss_room *rm, const char *user, int64_t at);
static bool strv_has(struct json_object *a, const char *x);
static void detail_step(struct ss_req *s);
static void members_step(struct ss_req *s);
static void ext_step(struct ss_req *s);

static void
round_end(struct ss_req *s, int status, const char *errcode, const char *msg)
{
	s->round_done(s->round_arg, status, errcode, msg);
}

/* A query's completion: NULL when the request was answered meanwhile. */
static struct ss_req *
step_take(struct sreq *r, PGresult *res)
{
	struct ss_req *s = r->ss;

	if (sreq_replied(r) || s == NULL)
		return NULL;
	if (res == NULL)
		s->is_failed = true;
	return s;
}

/* The same, and a failed query ends the round with 503 (retry). */
static struct ss_req *
step_ok(struct sreq *r, PGresult *res)
{
	struct ss_req *s = step_take(r, res);

	if (s != NULL && res == NULL) {
		round_end(s, 503, "M_UNKNOWN", "database unavailable");
		return NULL;
	}
	return s;
}

static struct ss_room *
room_get(struct ss_req *s, const char *id)
{
	struct ss_room *rm;

	for (int i = 0; i < s->nrooms; i++)
		if (strcmp(s->rooms[i].id, id) == 0)
			return &s->rooms[i];
	if (s->nrooms == s->caprooms) {
		s->caprooms = s->caprooms ? s->caprooms * 2 : 32;
		s->rooms =
		    xrealloc(s->rooms, sizeof(*s->rooms) * (size_t)s->caprooms);
	}
	rm = &s->rooms[s->nrooms++];
	memset(rm, 0, sizeof(*rm));
	rm->id = xstrdup(id);
	return rm;
}

static void
room_take_config(struct ss_room *rm, const struct ss_room_config *cfg)
{
	ss_room_config_merge(&rm->cfg, cfg);
}

/*
 * The room's required_state canonical, once its config is whole: a room
 * of one list and no subscription has that list's, made once per list
 * (list_query) rather than once per room; the merge of one config into
 * none is that config, so the text is the same.
 */
static void
room_canon(struct ss_req *s, struct ss_room *rm)
{
	free(rm->rs_canon);
	rm->rs_canon = rm->nlists == 1 && !rm->is_sub
	                   ? xstrdup(s->list_canon[rm->lists[0]])
	                   : ss_rs_canonical(&rm->cfg.rs);
}

struct list_q {
	struct ss_req *s;
	int idx;
};

/*
 * Whether a list's rows at the window of an initial sync still being
 * stored are the ones it will have (docs/DESIGN.md, "The first window
 * first"): every room the window lacks sorts below window_cut, so a
 * range whose last row is stored and sorts at the cut or later is whole.
 * A list of all rooms, or one whose ranges reach past the stored rooms,
 * is not.
 */
static bool
window_list_fits(const struct ss_req *s, int idx, PGresult *res)
{
	const struct ss_list *l = &s->q.lists[idx];
	int64_t end = -1, count;
	int n = PQntuples(res);

	for (int i = 0; i < l->nranges; i++)
		if (l->ranges[i].hi > end)
			end = l->ranges[i].hi;
	if (end < 0 || n == 0)
		return false;
	count = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
	if (count <= end || PQgetisnull(res, n - 1, 4))
		return false;
	return strtoll(PQgetvalue(res, n - 1, 4), NULL, 10) >= s->window_cut;
}

static void
list_cb(PGresult *res, void *arg)
{
	struct list_q *lq = arg;
	struct sreq *r = lq->s->r;
	struct ss_req *s = step_take(r, res);
	struct ss_room *rm;
	int64_t p;

	if (s == NULL || res == NULL)
		goto out;
	if (s->is_window && !window_list_fits(s, lq->idx, res))
		s->is_window_short = true;
	for (int i = 0; i < PQntuples(res); i++) {
		p = strtoll(PQgetvalue(res, i, 0), NULL, 10);
		if (p > s->at)
			s->at = p;
		s->resp.counts[lq->idx] =
		    strtoll(PQgetvalue(res, i, 1), NULL, 10) +
		    (s->is_window ? strtoll(PQgetvalue(res, i, 5), NULL, 10)
		                  : 0);
		if (PQgetisnull(res, i, 2))
			continue;
		rm = room_get(s, PQgetvalue(res, i, 2));
		rm->lists =
		    xrealloc(rm->lists, sizeof(int) * (size_t)(rm->nlists + 1));
		rm->lists[rm->nlists++] = lq->idx;
		room_take_config(rm, &s->q.lists[lq->idx].cfg);
	}
	/* a deferred connection's /messages token (SS_LIST_SINCE) */
	if (s->conn.is_deferred && s->conn.tok == NULL && PQntuples(res) > 0 &&
	    !PQgetisnull(res, 0, PQnfields(res) - 1)) {
		s->conn.tok = xstrdup(PQgetvalue(res, 0, PQnfields(res) - 1));
		s->conn.tok_at = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	}
	/*
	 * SS_LIST_ROOMS: each room's SS_ROOMS columns after the list's 6
	 * (the list is the request's only one: the rooms' configs are whole)
	 */
	for (int i = 0; s->is_rooms_read && i < PQntuples(res); i++)
		if (PQnfields(res) > 6 && !PQgetisnull(res, i, 6)) {
			room_canon(s, room_get(s, PQgetvalue(res, i, 6)));
			room_row(s, res, i, 6);
		}
out:
	if (s != NULL)
		step1_end(s);
	free(lq);
	sreq_unref(r);
}

/* A text[] parameter of a filter: NULL when unset. */
static const char *
strv_param(struct pg_lit *b, bool has, char *const *v, int n)
{
	if (!has)
		return NULL;
	for (int i = 0; i < n; i++)
		pg_arr_str(b, v[i]);
	return pg_arr_end(b);
}

static const char *
tri_param(enum ss_tri t)
{
	return t == SS_UNSET ? NULL : t == SS_YES ? "true" : "false";
}

static void
list_query(struct ss_req *s, int idx)
{
	const struct ss_list *l = &s->q.lists[idx];
	struct pg_lit arr[7];
	char a[PG_I64_LEN], b[PG_I64_LEN], c[PG_I64_LEN], d[PG_I64_LEN];
	const char *p[17];
	int64_t end = 0;
	struct list_q *lq = xcalloc(1, sizeof(*lq));
	struct ss_room_config cfg;
	enum api_sql q;
	bool is_plain = true;
	char *canon;

	memset(arr, 0, sizeof(arr));
	lq->s = s;
	lq->idx = idx;
	p[0] = s->r->user_id;
	p[1] = pg_i64(a, s->conn.id);
	p[2] = pg_i64(b, s->conn.gen);
	p[3] = tri_param(l->f.is_dm);
	p[4] = tri_param(l->f.is_invite);
	p[5] = tri_param(l->f.is_encrypted);
	p[6] = strv_param(&arr[0], l->f.has_spaces, l->f.spaces, l->f.nspaces);
	p[7] = strv_param(&arr[1], l->f.has_room_types, l->f.room_types,
	                  l->f.nroom_types);
	p[8] = strv_param(&arr[2], l->f.has_not_room_types, l->f.not_room_types,
	                  l->f.nnot_room_types);
	p[9] = strv_param(&arr[3], l->f.has_tags, l->f.tags, l->f.ntags);
	p[10] = strv_param(&arr[4], l->f.has_not_tags, l->f.not_tags,
	                   l->f.nnot_tags);
	for (int i = 0; i < l->nranges; i++) {
		pg_arr_i64(&arr[5], l->ranges[i].lo);
		pg_arr_i64(&arr[6], l->ranges[i].hi);
		if (l->ranges[i].hi >= end)
			end = l->ranges[i].hi < INT64_MAX ? l->ranges[i].hi + 1
			                                  : INT64_MAX;
	}
	p[11] = l->nranges > 0 ? pg_arr_end(&arr[5]) : NULL;
	p[12] = l->nranges > 0 ? pg_arr_end(&arr[6]) : NULL;
	/* the scan stops after the last range (LIMIT NULL: all) */
	p[13] = l->nranges > 0 ? pg_i64(c, end) : NULL;
	p[14] = s->r->device_id;
	/* SS_QUIET: the config each room of the list gets (room_take_config) */
	memset(&cfg, 0, sizeof(cfg));
	ss_room_config_merge(&cfg, &l->cfg);
	canon = s->list_canon[idx] = ss_rs_canonical(&cfg.rs);
	p[15] = pg_i64(d, cfg.timeline_limit);
	p[16] = canon;
	/* no filter set ($4..$11): the statement without their branches */
	for (int i = 3; i <= 10; i++)
		is_plain = is_plain && p[i] == NULL;
	if (!s->is_rooms_read)
		q = is_plain ? Q_SS_LIST_PLAIN : Q_SS_LIST;
	else
		q = is_plain ? Q_SS_LIST_ROOMS_PLAIN : Q_SS_LIST_ROOMS;
	log_debug("ss: %s: list %d: %s", s->r->user_id, idx, api_stmts[q].name);
	sreq_ref(s->r);
	sql_query(s->api, q, p, list_cb, lq);
	for (int i = 0; i < 7; i++)
		pg_lit_free(&arr[i]);
	ss_room_config_free(&cfg);
}

/* One query of step 1 is in: the rooms step once all are. */
static void
step1_end(struct ss_req *s)
{
	if (--s->pending == 0) {
		ss_hop(s, PROM_SS_LIST);
		rooms_step(s);
	}
}

static void
position_cb(PGresult *res, void *arg)
{
	struct sreq *r = arg;
	struct ss_req *s = step_take(r, res);

	if (s != NULL && res != NULL && PQntuples(res) == 1) {
		int64_t p = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		if (p > s->at)
			s->at = p;
	}
	if (s != NULL)
		step1_end(s);
	sreq_unref(r);
}

/*
 * Step 1: every list at once (no list: the position alone). With
 * is_create, a request without pos, the connection is created with its
 * first response (ss_conn_defer): the round reads it as conn 0, which
 * has sent no room, as creating drops what the conn_id had sent. One
 * statement less for every new connection, and none before its lists.
 */
void
ss_rooms_run(struct ss_req *s, bool is_create, api_done_fn done, void *arg)
{
	ss_rooms_clear(s);
	/* a fold of an earlier round that waited on is not this one's */
	s->conn.is_folded = false;
	s->round_done = done;
	s->round_arg = arg;
	s->at = s->conn.pos;
	s->resp.ncounts = s->q.nlists;
	s->resp.counts = xcalloc((size_t)s->q.nlists + 1, sizeof(int64_t));
	s->pending = s->q.nlists > 0 ? s->q.nlists : 1;
	s->nlist_canon = s->q.nlists;
	s->list_canon = xcalloc((size_t)s->q.nlists + 1, sizeof(char *));
	/*
	 * one list and no subscription: its rooms come with it (the lists
	 * read with conn 0 when creating: so do their rooms, and a new
	 * connection has sent none)
	 */
	s->is_rooms_read =
	    s->q.nlists == 1 && json_object_object_length(s->subs) == 0;
	if (is_create)
		ss_conn_defer(s);
	if (s->q.nlists == 0) {
		sreq_ref(s->r);
		sql_query(s->api, Q_POSITION, NULL, position_cb, s->r);
		return;
	}
	for (int i = 0; i < s->q.nlists; i++)
		list_query(s, i);
}

/* The subscriptions (sticky, merged with this request's) join the scope. */
static void
subs_add(struct ss_req *s)
{
	struct ss_room_config cfg;
	struct ss_parse_err e;
	struct ss_room *rm;

	json_object_object_foreach(s->subs, id, val)
	{
		if (ss_room_config_parse(s->q.dialect, val, &cfg, &e) == -1)
			continue; /* checked when it was stored */
		rm = room_get(s, id);
		rm->is_sub = true;
		room_take_config(rm, &cfg);
		ss_room_config_free(&cfg);
	}
}

static char *
dup_col(PGresult *res, int i, int c)
{
	return PQgetisnull(res, i, c) ? NULL : xstrdup(PQgetvalue(res, i, c));
}

static int64_t
i64_col(PGresult *res, int i, int c, int64_t dflt)
{
	return PQgetisnull(res, i, c)
	           ? dflt
	           : strtoll(PQgetvalue(res, i, c), NULL, 10);
}

static bool
is_joined(const struct ss_room *rm)
{
	return strcmp(rm->membership, "join") == 0;
}

static bool
is_invited(const struct ss_room *rm)
{
	return strcmp(rm->membership, "invite") == 0 ||
	       strcmp(rm->membership, "knock") == 0;
}

/*
 * Whether and how a room is sent (the MSC's "room results"): in full the
 * first time on this connection, when its membership changed to a join,
 * and when timeline_limit grew past what was sent (expanded); else only
 * when it changed since it was sent (events, state, counts). A room the
 * user is no longer in is sent once with its leave, then never again.
 */
static void
decide(struct ss_req *s, struct ss_room *rm)
{
	bool is_same_m =
	    rm->has_sent && strcmp(rm->s_membership, rm->membership) == 0;

	if (rm->rs_canon == NULL) /* SS_ROOMS: rooms_step made it */
		rm->rs_canon = ss_rs_canonical(&rm->cfg.rs);
	rm->ub = s->at;
	rm->tl_from = rm->st_from = 0;
	rm->is_initial = !is_same_m;
	if (is_invited(rm)) {
		/* her own row only: the room's activity is not hers to see */
		rm->is_send = !is_same_m || rm->ur_upos > rm->s_state_pos;
		return;
	}
	if (!is_joined(rm) && rm->last <= 0) {
		/*
		 * never visible (an invite rejected or withdrawn): its
		 * membership once, nothing of the room (SS_ROOMS lists it
		 * only if this connection sent it)
		 */
		rm->is_bare = true;
		rm->is_send = !is_same_m;
		rm->is_initial = false;
		return;
	}
	if (!is_joined(rm)) {
		rm->is_send = !is_same_m;
		rm->ub = rm->last > 0 && rm->last < s->at ? rm->last : s->at;
		if (rm->has_sent && strcmp(rm->s_membership, "join") == 0) {
			rm->is_initial = false;
			rm->tl_from = rm->s_nid;
			rm->st_from = rm->s_state_pos;
		}
		return;
	}
	rm->is_send = true;
	if (rm->is_initial)
		return;
	if (rm->cfg.timeline_limit > rm->s_limit) {
		/* js-sdk 43 needs initial to order the longer timeline */
		rm->is_initial = rm->is_expanded = true;
		return;
	}
	if (rm->is_order_gap) {
		/*
		 * events were placed before ones the client holds: appended
		 * they would be out of order, so the room goes afresh
		 */
		rm->is_initial = true;
		return;
	}
	rm->tl_from = rm->s_nid;
	if (strcmp(rm->rs_canon, rm->s_rs) != 0)
		rm->st_from = 0;
	else if (rm->upos > rm->s_state_pos)
		rm->st_from = rm->s_state_pos;
	else
		rm->is_send = false;
}

/* Row i of SS_ROOMS' columns, from column o on (SS_LIST_ROOMS: 4). */
static void
room_row(struct ss_req *s, PGresult *res, int i, int o)
{
	struct ss_room *rm = room_get(s, PQgetvalue(res, i, o + 0));
	const char *lz;

	rm->is_visible = true;
	rm->membership = xstrdup(PQgetvalue(res, i, o + 1));
	rm->last = i64_col(res, i, o + 2, 0);
	rm->name = dup_col(res, i, o + 3);
	rm->avatar = dup_col(res, i, o + 4);
	rm->joined = i64_col(res, i, o + 5, 0);
	rm->invited = i64_col(res, i, o + 6, 0);
	rm->bump = i64_col(res, i, o + 7, 0);
	rm->upos = i64_col(res, i, o + 8, 0);
	rm->notif = i64_col(res, i, o + 9, 0);
	rm->highlight = i64_col(res, i, o + 10, 0);
	rm->invite_state = dup_col(res, i, o + 11);
	rm->prev_batch = dup_col(res, i, o + 12);
	rm->heroes = dup_col(res, i, o + 13);
	rm->is_dm = PQgetvalue(res, i, o + 14)[0] == 't';
	rm->has_sent = !PQgetisnull(res, i, o + 15);
	rm->s_nid = i64_col(res, i, o + 15, 0);
	rm->s_limit = i64_col(res, i, o + 16, 0);
	rm->s_rs = xstrdup(PQgetvalue(res, i, o + 17));
	rm->s_state_pos = i64_col(res, i, o + 18, 0);
	lz = PQgetvalue(res, i, o + 19);
	rm->s_membership = xstrdup(PQgetvalue(res, i, o + 20));
	rm->ur_upos = i64_col(res, i, o + 21, 0);
	rm->is_name_changed = PQgetvalue(res, i, o + 22)[0] == 't';
	rm->is_members_changed = PQgetvalue(res, i, o + 23)[0] == 't';
	rm->is_bump_changed = PQgetvalue(res, i, o + 24)[0] == 't';
	rm->is_order_gap = PQgetvalue(res, i, o + 25)[0] == 't';
	decide(s, rm);
	log_debug("ss: %s: %s %s: send %d initial %d, changed name %d "
	          "members %d bump %d",
	          s->r->user_id, rm->id, rm->membership, rm->is_send,
	          rm->is_initial, rm->is_name_changed, rm->is_members_changed,
	          rm->is_bump_changed);
	rm->max_nid = rm->is_initial ? 0 : rm->s_nid;
	/* a changed config sends what it adds, not all it matches (MSC) */
	rm->has_s_cfg = !rm->is_initial && rm->has_sent &&
	                strcmp(rm->rs_canon, rm->s_rs) != 0 &&
	                ss_rs_from_canonical(rm->s_rs, &rm->s_cfg) == 0;
	rm->lazy_asked = json_object_new_array();
	rm->lazy = NULL;
	if (!rm->is_initial && rm->has_sent)
		rm->lazy = json_parse_bounded(lz, strlen(lz), NULL);
	if (rm->lazy == NULL ||
	    !json_object_is_type(rm->lazy, json_type_object)) {
		json_object_put(rm->lazy);
		rm->lazy = json_object_new_object();
	}
}

static void
rooms_cb(PGresult *res, void *arg)
{
	struct sreq *r = arg;
	struct ss_req *s = step_ok(r, res);

	if (s == NULL)
		goto out;
	ss_hop(s, PROM_SS_ROOMS);
	for (int i = 0; i < PQntuples(res); i++)
		room_row(s, res, i, 0);
	for (int i = 0; s->is_window && i < s->nrooms; i++)
		if (s->rooms[i].is_sub && !s->rooms[i].is_visible)
			s->is_window_short = true; /* may come with the rest */
	if (s->is_window_short) {
		round_end(s, 0, NULL, NULL);
		return;
	}
	detail_step(s);
out:
	sreq_unref(r);
}

/* Step 2: what the user may see of the rooms in scope, and what was sent. */
static void
rooms_step(struct ss_req *s)
{
	struct pg_lit ids = {0}, lims = {0}, rss = {0};
	char a[PG_I64_LEN], b[PG_I64_LEN], c[PG_I64_LEN];
	const char *p[7];

	if (s->is_failed) {
		round_end(s, 503, "M_UNKNOWN", "database unavailable");
		return;
	}
	if (s->is_window_short) {
		round_end(s, 0, NULL, NULL); /* ss_req.c waits for the rest */
		return;
	}
	if (s->is_rooms_read) {
		detail_step(s);
		return;
	}
	subs_add(s);
	if (s->nrooms == 0) {
		ext_step(s);
		return;
	}
	for (int i = 0; i < s->nrooms; i++) {
		struct ss_room *rm = &s->rooms[i];
		/* its config is whole now: decide() takes this canonical */
		room_canon(s, rm);
		pg_arr_str(&ids, rm->id);
		pg_arr_i64(&lims, rm->cfg.timeline_limit);
		pg_arr_str(&rss, rm->rs_canon);
	}
	p[0] = s->r->user_id;
	p[1] = pg_i64(a, s->conn.id);
	p[2] = pg_i64(b, s->conn.gen);
	p[3] = pg_arr_end(&ids);
	p[4] = pg_i64(c, s->at);
	p[5] = pg_arr_end(&lims);
	p[6] = pg_arr_end(&rss);
	sreq_ref(s->r);
	sql_query(s->api, Q_SS_ROOMS, p, rooms_cb, s->r);
	pg_lit_free(&ids);
	pg_lit_free(&lims);
	pg_lit_free(&rss);
}

static bool
wants_detail(const struct ss_room *rm)
{
	return rm->is_visible && rm->is_send && !is_invited(rm) && !rm->is_bare;
}

/*
 * The required_state patterns of every room sent, for SQL to pre-filter,
 * each pair once: rooms of one list repeat the same few, and SS_DETAIL
 * tests every state row against every pair (20 rooms of 3 patterns took
 * 3.2 ms as 60 pairs, 1.7 as 3).
 */
static void
patterns_add(struct ss_req *s, struct pg_lit *t, struct pg_lit *k)
{
	const char **seen = NULL;
	int nseen = 0, j;

	for (int i = 0; i < s->nrooms; i++) {
		const struct ss_required_state *rs = &s->rooms[i].cfg.rs;
		if (!wants_detail(&s->rooms[i]))
			continue;
		for (int e = 0; e < rs->ninclude; e++) {
			const char *ty =
			    rs->include[e].type ? rs->include[e].type : "*";
			const char *sk = rs->include[e].state_key;
			sk = sk == NULL               ? "*"
			     : strcmp(sk, "$ME") == 0 ? s->r->user_id
			                              : sk;
			for (j = 0; j < nseen; j += 2)
				if (strcmp(seen[j], ty) == 0 &&
				    strcmp(seen[j + 1], sk) == 0)
					break;
			if (j < nseen)
				continue;
			seen =
			    xrealloc(seen, sizeof(*seen) * (size_t)(nseen + 2));
			seen[nseen++] = ty;
			seen[nseen++] = sk;
			pg_arr_str(t, ty);
			pg_arr_str(k, sk);
		}
	}
	free(seen);
}

static void
strv_push(char ***v, int *n, char *x)
{
	*v = xrealloc(*v, sizeof(**v) * (size_t)(*n + 1));
	(*v)[(*n)++] = x;
}

/*
 * Whether a room sent in full holds fewer events than asked only because
 * its older history was never fetched (the light first sync asks upstream
 * for one event per room): every stored event read, the oldest not the
 * room's create event, and upstream's prev_batch to page back from. Then
 * the timeline is limited, as upstream's was. Only for rooms without a
 * known chunk (stored before 015_chunks.sql): a chunk carries upstream's
 * own limited flag, which chunk_row applies, and a room whose visible
 * history starts at the user's join is not limited.
 */
static bool
is_history_before(const struct ss_room *rm)
{
	return rm->is_initial && !rm->is_limited && !rm->has_chunk &&
	       rm->ntl > 0 && !rm->is_from_create && rm->prev_batch != NULL;
}

static void
detail_row(struct ss_req *s, PGresult *res, int i)
{
	struct ss_room *rm = room_get(s, PQgetvalue(res, i, 1));
	int64_t nid = i64_col(res, i, 2, 0);
	const char *type = PQgetvalue(res, i, 4);
	const char *sk = PQgetisnull(res, i, 5) ? NULL : PQgetvalue(res, i, 5);

	if (PQgetvalue(res, i, 0)[0] == 's') {
		/* nid is the row's from_pos here */
		if (sk == NULL ||
		    !ss_rs_matches(&rm->cfg.rs, type, sk, s->r->user_id) ||
		    (rm->has_s_cfg && nid <= rm->s_state_pos &&
		     ss_rs_matches(&rm->s_cfg, type, sk, s->r->user_id)))
			return;
		strv_push(&rm->st, &rm->nst, xstrdup(PQgetvalue(res, i, 3)));
		/* a member sent counts for $LAZY too */
		if (strcmp(type, "m.room.member") == 0)
			lazy_sent(rm, sk, nid);
		return;
	}
	/* cut after events hidden inside the window (visible.h) */
	if (PQgetvalue(res, i, 8)[0] == 't')
		rm->is_limited = true;
	/* timeline rows come newest first; one more than the limit */
	if (rm->ntl >= rm->cfg.timeline_limit) {
		rm->is_limited = true;
		return;
	}
	strv_push(&rm->tl, &rm->ntl, xstrdup(PQgetvalue(res, i, 3)));
	rm->is_from_create = strcmp(type, "m.room.create") == 0;
	strv_push(&rm->event_ids, &rm->nevent_ids,
	          xstrdup(PQgetvalue(res, i, 7)));
	rm->tl_oldest = nid;
	if (nid > rm->max_nid)
		rm->max_nid = nid;
	if (!s->conn.is_new && nid > s->conn.pos)
		rm->num_live++;
}

/* Turns a newest-first array around. */
static void
strv_reverse(char **v, int n)
{
	for (int i = 0; i < n / 2; i++) {
		char *t = v[i];
		v[i] = v[n - 1 - i];
		v[n - 1 - i] = t;
	}
}

/*
 * Does the client page back from this room's timeline? js-sdk 43 takes
 * prev_batch as its back-pagination token when the room is limited, and
 * an initial room may become limited here (its chunk says so); an
 * incremental timeline that is not limited continues what was sent.
 */
static bool
wants_chunk(const struct ss_room *rm)
{
	return wants_detail(rm) && rm->ntl > 0 &&
	       (rm->is_initial || rm->is_limited);
}

/*
 * A room's chunk boundary (SS_DETAIL's 'c' rows): its token is the
 * prev_batch. The timeline is limited also when the boundary is after
 * its oldest event (the events between are the client's already,
 * /messages repeats them) and when upstream had history before the chunk
 * that was never stored (a first sync that took few events): the client
 * pages back either way. A chunk start before the oldest event comes only
 * when nothing between is the user's to see: as good as right before it.
 */
static void
chunk_row(struct ss_req *s, PGresult *res, int i)
{
	struct ss_room *rm = room_get(s, PQgetvalue(res, i, 1));
	bool is_exact = i64_col(res, i, 2, 0) <= rm->tl_oldest &&
	                PQgetvalue(res, i, 8)[0] == 'f';

	free(rm->prev_batch);
	rm->prev_batch = xstrdup(PQgetvalue(res, i, 3));
	rm->has_chunk = true;
	if (!is_exact || PQgetvalue(res, i, 9)[0] == 't')
		rm->is_limited = true;
}

/*
 * SS_DETAIL's rows: the timelines and state first, then the chunk rows,
 * which apply to the timelines as they came out (a room without a known
 * chunk, stored before 015_chunks.sql, keeps its row's latest upstream
 * token as prev_batch).
 */
static void
detail_cb(PGresult *res, void *arg)
{
	struct sreq *r = arg;
	struct ss_req *s = step_ok(r, res);

	if (s == NULL)
		goto out;
	ss_hop(s, PROM_SS_DETAIL);
	for (int i = 0; i < PQntuples(res); i++)
		if (PQgetvalue(res, i, 0)[0] == 'z')
			ss_conn_fold_row(s, res, i);
		else if (PQgetvalue(res, i, 0)[0] != 'c')
			detail_row(s, res, i);
	for (int i = 0; i < s->nrooms; i++) {
		strv_reverse(s->rooms[i].tl, s->rooms[i].ntl);
		strv_reverse(s->rooms[i].event_ids, s->rooms[i].nevent_ids);
	}
	for (int i = 0; i < PQntuples(res); i++)
		if (PQgetvalue(res, i, 0)[0] == 'c' &&
		    wants_chunk(room_get(s, PQgetvalue(res, i, 1))))
			chunk_row(s, res, i);
	members_step(s);
out:
	sreq_unref(r);
}

/* Step 3: timelines and state of the rooms sent (not of invites). */
static void
detail_step(struct ss_req *s)
{
	struct pg_lit c[8];
	const char *p[10];
	int n = 0;

	memset(c, 0, sizeof(c));
	for (int i = 0; i < s->nrooms; i++) {
		struct ss_room *rm = &s->rooms[i];
		if (!wants_detail(rm))
			continue;
		n++;
		pg_arr_str(&c[0], rm->id);
		pg_arr_i64(&c[1], rm->tl_from);
		pg_arr_i64(&c[2], rm->cfg.rs.ninclude > 0 ? rm->st_from : -1);
		pg_arr_i64(&c[3], rm->ub);
		pg_arr_i64(&c[4], rm->cfg.timeline_limit > 0
		                      ? rm->cfg.timeline_limit + 1
		                      : 0);
		/* its chunk is wanted even if the timeline is whole */
		pg_arr_bool(&c[7], rm->is_initial);
	}
	if (n == 0) {
		members_step(s);
		return;
	}
	patterns_add(s, &c[5], &c[6]);
	for (int i = 0; i < 5; i++)
		p[i] = pg_arr_end(&c[i]);
	p[5] = s->r->user_id;
	p[6] = pg_arr_end(&c[5]);
	p[7] = pg_arr_end(&c[6]);
	p[8] = s->r->device_id;
	p[9] = pg_arr_end(&c[7]);
	sreq_ref(s->r);
	if (ss_conn_may_fold(s))
		ss_conn_fold_query(s, p, detail_cb, s->r);
	else
		sql_query(s->api, Q_SS_DETAIL, p, detail_cb, s->r);
	for (int i = 0; i < 8; i++)
		pg_lit_free(&c[i]);
}

static bool
strv_has(struct json_object *a, const char *x)
{
	for (size_t i = 0; i < json_object_array_length(a); i++)
		if (strcmp(
		        json_object_get_string(json_object_array_get_idx(a, i)),
		        x) == 0)
			return true;
	return false;
}

/*
 * The members this connection has sent of a room (rm->lazy: user id ->
 * the position of the member event sent), so a member whose event
 * changed since is sent again, wherever the change was (Synapse).
 */
static void
lazy_sent(struct ss_room *rm, const char *user, int64_t at)
{
	json_object_object_add(rm->lazy, user, json_object_new_int64(at));
}

static int64_t
lazy_sent_at(struct ss_room *rm, const char *user)
{
	struct json_object *v;

	if (!json_object_object_get_ex(rm->lazy, user, &v))
		return -1;
	return json_object_get_int64(v);
}

/* A timeline event's sender or member target, for lazy loading. */
static void
lazy_want(struct ss_room *rm, struct json_object *ev, const char *key,
          struct pg_lit *rooms, struct pg_lit *users, struct pg_lit *ubs)
{
	const char *u = json_get_str(ev, key);

	/* sent before and no member changed since: nothing to ask */
	if (u == NULL || strv_has(rm->lazy_asked, u))
		return;
	if (strcmp(key, "state_key") == 0 &&
	    !(json_get_str(ev, "type") &&
	      strcmp(json_get_str(ev, "type"), "m.room.member") == 0))
		return;
	json_object_array_add(rm->lazy_asked, json_object_new_string(u));
	pg_arr_str(rooms, rm->id);
	pg_arr_str(users, u);
	pg_arr_i64(ubs, rm->ub);
}

static void
members_cb(PGresult *res, void *arg)
{
	struct sreq *r = arg;
	struct ss_req *s = step_ok(r, res);

	if (s == NULL)
		goto out;
	ss_hop(s, PROM_SS_MEMBERS);
	for (int i = 0; i < PQntuples(res); i++) {
		struct ss_room *rm = room_get(s, PQgetvalue(res, i, 0));
		const char *u = PQgetvalue(res, i, 1);
		if (rm->is_bare) {
			strv_push(&rm->st, &rm->nst,
			          xstrdup(PQgetvalue(res, i, 2)));
			continue;
		}
		/* already there by an explicit required_state entry */
		if (ss_rs_matches(&rm->cfg.rs, "m.room.member", u,
		                  s->r->user_id))
			continue;
		/* sent before, and this member event is no newer */
		if (lazy_sent_at(rm, u) >= i64_col(res, i, 3, 0))
			continue;
		strv_push(&rm->st, &rm->nst, xstrdup(PQgetvalue(res, i, 2)));
		lazy_sent(rm, u, i64_col(res, i, 3, 0));
	}
	ext_step(s);
out:
	sreq_unref(r);
}

/*
 * Step 4: $LAZY / lazy_members: the member events of the timeline's
 * senders and member targets this connection has not been sent (since
 * the room was last sent in full).
 */
static void
members_step(struct ss_req *s)
{
	struct pg_lit rooms = {0}, users = {0}, ubs = {0};
	struct json_object *ev;
	const char *p[3];

	for (int i = 0; i < s->nrooms; i++) {
		struct ss_room *rm = &s->rooms[i];
		if (rm->is_bare && rm->is_send) {
			/* her own member event: her leave, which she saw */
			pg_arr_str(&rooms, rm->id);
			pg_arr_str(&users, s->r->user_id);
			pg_arr_i64(&ubs, rm->ub);
			continue;
		}
		if (!wants_detail(rm) || !rm->cfg.rs.lazy_members)
			continue;
		for (int j = 0; j < rm->ntl; j++) {
			ev = json_parse_bounded(rm->tl[j], strlen(rm->tl[j]),
			                        NULL);
			lazy_want(rm, ev, "sender", &rooms, &users, &ubs);
			lazy_want(rm, ev, "state_key", &rooms, &users, &ubs);
			json_object_put(ev);
		}
	}
	if (rooms.count == 0) {
		pg_lit_free(&rooms);
		ext_step(s);
		return;
	}
	p[0] = pg_arr_end(&rooms);
	p[1] = pg_arr_end(&users);
	p[2] = pg_arr_end(&ubs);
	sreq_ref(s->r);
	sql_query(s->api, Q_SS_MEMBERS, p, members_cb, s->r);
	pg_lit_free(&rooms);
	pg_lit_free(&users);
	pg_lit_free(&ubs);
}

/* Field f of the content of the (type, "") event in stripped state st. */
static const char *
stripped_field(struct json_object *st, const char *type, const char *f)
{
	for (size_t i = 0; i < json_object_array_length(st); i++) {
		struct json_object *ev = json_object_array_get_idx(st, i);
		const char *t = json_get_str(ev, "type");
		const char *sk = json_get_str(ev, "state_key");
		if (t != NULL && strcmp(t, type) == 0 && sk != NULL &&
		    *sk == '\0')
			return json_get_str(json_get_obj(ev, "content"), f);
	}
	return NULL;
}

/*
 * An invite's name and avatar, from its stripped state (what the invitee
 * may see), as Synapse sends them.
 */
static void
invite_meta(struct ss_room_result *rr, const char *invite_state)
{
	struct json_object *st;
	const char *v;

	if (invite_state == NULL)
		return;
	st = json_parse_bounded(invite_state, strlen(invite_state), NULL);
	if (!json_object_is_type(st, json_type_array))
		goto out;
	if ((v = stripped_field(st, "m.room.name", "name")) != NULL &&
	    *v != '\0') {
		rr->has_name = true;
		rr->name = xstrdup(v);
	}
	if ((v = stripped_field(st, "m.room.avatar", "url")) != NULL &&
	    *v != '\0') {
		rr->has_avatar = true;
		rr->avatar = xstrdup(v);
	}
out:
	json_object_put(st);
}

/* The room's required_state moves into its result. */
static void
state_take(struct ss_room_result *rr, struct ss_room *rm)
{
	rr->required_state = rm->st;
	rr->nrequired_state = rm->nst;
	rm->st = NULL;
	rm->nst = 0;
}

static void
result_fill(struct ss_req *s, struct ss_room *rm)
{
	struct ss_room_result *rr = ss_response_room(&s->resp, rm->id);

	rr->is_initial = rm->is_initial;
	rr->is_expanded = rm->is_expanded;
	rr->membership = xstrdup(rm->membership);
	if (rm->nlists > 0) {
		rr->lists = xcalloc((size_t)rm->nlists, sizeof(int));
		memcpy(rr->lists, rm->lists, sizeof(int) * (size_t)rm->nlists);
		rr->nlists = rm->nlists;
	}
	/* incremental: only what changed (the MSC) */
	if (rm->is_initial || rm->is_bump_changed || !is_joined(rm))
		rr->bump_stamp = rm->bump;
	if (rm->is_bare) {
		/* only her membership: a client drops the invite it had */
		state_take(rr, rm);
		return;
	}
	if (is_invited(rm)) {
		rr->stripped_state =
		    xstrdup(rm->invite_state != NULL ? rm->invite_state : "[]");
		invite_meta(rr, rm->invite_state);
		return;
	}
	if (rm->is_initial || rm->is_name_changed) {
		rr->has_name = rm->name != NULL && *rm->name != '\0';
		rr->name = rr->has_name ? xstrdup(rm->name) : NULL;
		rr->has_avatar = rm->avatar != NULL && *rm->avatar != '\0';
		rr->avatar = rr->has_avatar ? xstrdup(rm->avatar) : NULL;
		/* a name removed is null in the merged dialect */
		if (!rm->is_initial && !rr->has_name && s->q.dialect == SS_V4)
			rr->has_name = true;
	}
	if ((rm->is_initial || rm->is_members_changed || rm->is_name_changed) &&
	    (rm->name == NULL || *rm->name == '\0') && rm->heroes != NULL)
		rr->heroes = xstrdup(rm->heroes);
	rr->is_dm = rm->is_initial && rm->is_dm ? SS_YES : SS_UNSET;
	state_take(rr, rm);
	rr->has_timeline = rm->is_initial || rm->ntl > 0;
	rr->is_limited = rm->is_limited || is_history_before(rm);
	rr->timeline = rm->tl;
	rr->ntimeline = rm->ntl;
	rm->tl = NULL;
	rm->ntl = 0;
	rr->prev_batch = rm->prev_batch != NULL && rr->ntimeline > 0
	                     ? xstrdup(rm->prev_batch)
	                     : NULL;
	rr->num_live = rm->num_live;
	/* counts of a room left would tell what happened after the leave */
	if (!is_joined(rm))
		return;
	if (rm->is_initial || rm->is_members_changed) {
		rr->joined_count = rm->joined;
		rr->invited_count = rm->invited;
	}
	rr->notification_count = rm->notif;
	rr->highlight_count = rm->highlight;
}

static void
ext_done_cb(void *arg, int status, const char *errcode, const char *msg)
{
	struct sreq *r = arg;
	struct ss_req *s = r->ss;

	if (!sreq_replied(r) && s != NULL) {
		ss_hop(s, PROM_SS_EXT);
		if (status == 0)
			s->has_data = s->resp.nrooms > 0 || s->ext_ctx.has_data;
		round_end(s, status, errcode, msg);
	}
	sreq_unref(r);
}

/* The extensions' scope: every visible room of the windows and subs. */
static void
ext_scope(struct ss_req *s)
{
	struct ss_ctx *c = &s->ext_ctx;
	int n = 0;

	s->ext_rooms = xcalloc((size_t)s->nrooms + 1, sizeof(*s->ext_rooms));
	for (int i = 0; i < s->nrooms; i++) {
		struct ss_room *rm = &s->rooms[i];
		struct ss_ext_room *x = &s->ext_rooms[n];
		if (!rm->is_visible)
			continue;
		n++;
		x->room_id = rm->id;
		x->lists = rm->lists;
		x->nlists = rm->nlists;
		x->is_sub = rm->is_sub;
		x->is_initial = rm->is_send && rm->is_initial;
		x->is_expanded = rm->is_send && rm->is_expanded;
		x->event_ids = (const char *const *)rm->event_ids;
		x->nevents = rm->nevent_ids;
		x->membership = rm->membership;
	}
	s->list_keys = xcalloc((size_t)s->q.nlists + 1, sizeof(char *));
	for (int i = 0; i < s->q.nlists; i++)
		s->list_keys[i] = s->q.lists[i].key;
	c->rooms = s->ext_rooms;
	c->nrooms = n;
	c->list_keys = s->list_keys;
	c->nlists = s->q.nlists;
}

/*
 * A joined room that looked changed (its summary row moved, its config
 * grew) but has no new event or state: nothing to send after all. The
 * user's own row moved alone means its unread counts changed (a read
 * receipt; its other fields move with events or members): sent, as
 * Synapse does, with only the counts.
 */
static bool
is_empty_change(const struct ss_room *rm)
{
	return !rm->is_initial && is_joined(rm) && rm->ntl == 0 &&
	       rm->nst == 0 && !rm->is_name_changed &&
	       !rm->is_members_changed && rm->ur_upos <= rm->s_state_pos &&
	       strcmp(rm->s_membership, rm->membership) == 0;
}

/* Step 5: the results, then the extensions. */
static void
ext_step(struct ss_req *s)
{
	struct ss_ctx *c = &s->ext_ctx;

	for (int i = 0; i < s->nrooms; i++) {
		struct ss_room *rm = &s->rooms[i];
		if (rm->is_visible && rm->is_send && is_empty_change(rm))
			rm->is_send = false;
		if (rm->is_visible && rm->is_send)
			result_fill(s, rm);
	}
	memset(c, 0, sizeof(*c));
	c->r = s->r;
	c->user_id = s->r->user_id;
	c->device_id = s->r->device_id;
	c->conn_id = s->q.conn_id;
	c->conn = s->conn.id;
	c->dialect = s->q.dialect;
	c->is_new_conn = s->conn.is_new;
	c->from_pos = s->conn.pos;
	c->to_pos = s->at;
	c->cfg = s->ext;
	c->state = s->conn.ext_state;
	c->out = evbuffer_new();
	ext_scope(s);
	sreq_ref(s->r);
	ss_ext_run(s->api, c, ext_done_cb, s->r);
}

static void
room_free(struct ss_room *rm)
{
	free(rm->id);
	ss_room_config_free(&rm->cfg);
	free(rm->lists);
	free(rm->membership);
	free(rm->name);
	free(rm->avatar);
	free(rm->heroes);
	free(rm->invite_state);
	free(rm->prev_batch);
	free(rm->s_rs);
	free(rm->s_membership);
	free(rm->rs_canon);
	json_object_put(rm->lazy);
	json_object_put(rm->lazy_asked);
	ss_rs_free(&rm->s_cfg);
	for (int i = 0; i < rm->ntl; i++)
		free(rm->tl[i]);
	free(rm->tl);
	for (int i = 0; i < rm->nst; i++)
		free(rm->st[i]);
	free(rm->st);
	for (int i = 0; i < rm->nevent_ids; i++)
		free(rm->event_ids[i]);
	free(rm->event_ids);
}

/* Drops the round's rooms and response (a long-poll starts another). */
void
ss_rooms_clear(struct ss_req *s)
{
	for (int i = 0; i < s->nrooms; i++)
		room_free(&s->rooms[i]);
	free(s->rooms);
	s->rooms = NULL;
	s->nrooms = s->caprooms = 0;
	ss_response_free(&s->resp);
	if (s->ext_ctx.out != NULL)
		evbuffer_free(s->ext_ctx.out);
	free(s->ext_ctx.new_state);
	memset(&s->ext_ctx, 0, sizeof(s->ext_ctx));
	free(s->ext_rooms);
	s->ext_rooms = NULL;
	free(s->list_keys);
	s->list_keys = NULL;
	for (int i = 0; i < s->nlist_canon; i++)
		free(s->list_canon[i]);
	free(s->list_canon);
	s->list_canon = NULL;
	s->nlist_canon = 0;
	s->pending = 0;
	s->is_rooms_read = false;
	s->is_failed = false;
	s->has_data = false;
	s->is_window_short = false;
}
