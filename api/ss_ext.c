/*
 * ss_ext.c: the sliding sync extensions (MSC3885 to_device, MSC3884
 * e2ee, MSC3963 account_data, MSC3961 typing, MSC3960 receipts), run by
 * the core through ss_ext_run() once per round of a request (again on
 * each long-poll wake-up, from the same confirmed state). One statement
 * (sql.c Q_SS_EXT) reads everything and records the to-device ack; the
 * callback writes the members and the next state blob (ss_ext_cfg.c).
 *
 * to_device: delivered after the connection's ack (its newest since)
 * until a later since acknowledges them, so a retried pos, which comes
 * with the old since, gets them again. A message is deleted only once
 * every live v3 session and every live connection of the device has
 * acknowledged it (sql.c SS_ACKED).
 * e2ee: key counts always; device_lists only with a pos (the changes
 * after it), as Synapse.
 * account_data, typing, receipts: see ss_ext_sort for which rooms get
 * everything and which only changes.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_util.h"
#include "pg.h"
#include "pg_lit.h"
#include "ss_ext.h"
#include "util.h"

/* ss_ext_run's job, in ss_ctx.priv until done is called. */
struct ext_job {
	struct api *api;
	struct ss_ctx *c;
	api_done_fn done;
	void *arg;
	struct ss_ext_cfg cfg;
	struct ss_ext_state prev;
	struct ss_ext_state now;
	struct ss_ext_rooms sel[SX_COUNT];
	int64_t td_ack; /* the since this round acknowledges, -1: none */
};

/* The statement's rows of one kind, in order (sql.c SS_EXT). */
struct rows {
	PGresult *res;
	int lo, hi;
};

static const char *
col(const struct rows *r, int i, int c)
{
	return PQgetisnull(r->res, i, c) ? NULL : PQgetvalue(r->res, i, c);
}

static void
rows_of(PGresult *res, char kind, struct rows *out)
{
	int n = PQntuples(res), i = 0;

	out->res = res;
	while (i < n && PQgetvalue(res, i, 0)[0] != kind)
		i++;
	out->lo = i;
	while (i < n && PQgetvalue(res, i, 0)[0] == kind)
		i++;
	out->hi = i;
}

static void
member_open(struct evbuffer *b, const char *name)
{
	if (evbuffer_get_length(b) > 0)
		evbuffer_add(b, ",", 1);
	jstr(b, name);
	evbuffer_add(b, ":", 1);
}

/* A JSON array of column c of rows r: stored event bytes, as they are. */
static void
raw_list(struct evbuffer *b, const struct rows *r, int c)
{
	evbuffer_add(b, "[", 1);
	for (int i = r->lo; i < r->hi; i++) {
		if (i > r->lo)
			evbuffer_add(b, ",", 1);
		evbuffer_add(b, col(r, i, c), strlen(col(r, i, c)));
	}
	evbuffer_add(b, "]", 1);
}

static void
to_device_write(struct ext_job *j, PGresult *res, struct evbuffer *b)
{
	struct rows r;
	int64_t next = j->c->to_pos;
	int n;

	rows_of(res, 'd', &r);
	n = r.hi - r.lo;
	member_open(b, "to_device");
	evbuffer_add_printf(b, "{\"events\":");
	raw_list(b, &r, 2);
	/* a full page stops at its last message: the next one pages on */
	if (n > 0 && n == j->cfg.td_limit)
		next = strtoll(col(&r, r.hi - 1, 6), NULL, 10);
	evbuffer_add_printf(b, ",\"next_batch\":\"%" PRId64 "\"}", next);
	j->c->has_data |= n > 0;
	j->c->td_next = next;
	j->c->is_td_full = n > 0 && n == j->cfg.td_limit;
}

/* The key counts always name signed_curve25519 (Synapse, for old apps). */
static void
otk_write(struct evbuffer *b, const char *counts)
{
	struct json_object *o = NULL;

	if (counts != NULL)
		o = json_parse_bounded(counts, strlen(counts), NULL);
	if (o == NULL || !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		o = json_object_new_object();
	}
	if (!json_object_object_get_ex(o, "signed_curve25519", NULL))
		json_object_object_add(o, "signed_curve25519",
		                       json_object_new_int(0));
	evbuffer_add_printf(b, "%s", json_plain(o, NULL));
	json_object_put(o);
}

/*
 * device_lists: the changes after the connection's pos, the last one of
 * a user winning (a user who left and came back is "changed").
 */
static bool
device_lists_write(struct evbuffer *b, PGresult *res)
{
	struct json_object *last = json_object_new_object();
	struct json_object *ch = json_object_new_array();
	struct json_object *left = json_object_new_array();
	struct rows r;
	bool any;

	rows_of(res, 'l', &r);
	for (int i = r.lo; i < r.hi; i++)
		json_object_object_add(last, col(&r, i, 2),
		                       json_object_new_string(col(&r, i, 3)));
	json_object_object_foreach(last, user, v)
	{
		bool is_left = strcmp(json_object_get_string(v), "left") == 0;
		json_object_array_add(is_left ? left : ch,
		                      json_object_new_string(user));
	}
	any = r.hi > r.lo;
	evbuffer_add_printf(b, "\"device_lists\":{\"changed\":%s,",
	                    json_plain(ch, NULL));
	evbuffer_add_printf(b, "\"left\":%s},", json_plain(left, NULL));
	json_object_put(last);
	json_object_put(ch);
	json_object_put(left);
	return any;
}

static void
e2ee_write(struct ext_job *j, PGresult *res, struct evbuffer *b)
{
	struct rows r;
	const char *fb;
	int64_t kpos;

	member_open(b, "e2ee");
	evbuffer_add(b, "{", 1);
	if (!j->c->is_new_conn && j->c->from_pos > 0)
		j->c->has_data |= device_lists_write(b, res);
	rows_of(res, 'k', &r);
	evbuffer_add_printf(b, "\"device_one_time_keys_count\":");
	otk_write(b, r.hi > r.lo ? col(&r, r.lo, 2) : NULL);
	/* as the homeserver said it: absent (NULL) stays absent (035) */
	fb = r.hi > r.lo ? col(&r, r.lo, 3) : NULL;
	if (fb != NULL)
		evbuffer_add_printf(b,
		    ",\"device_unused_fallback_key_types\":%s", fb);
	evbuffer_add(b, "}", 1);
	/* new counts since the pos are news (the client tops keys up) */
	kpos = r.hi > r.lo ? strtoll(col(&r, r.lo, 6), NULL, 10) : 0;
	if (j->c->from_pos > 0 && kpos > j->c->from_pos)
		j->c->has_data = true;
}

/*
 * account_data: global events, then per room; the rows come ordered by
 * kind and room, so each room's events are together.
 */
static void
account_data_write(struct ext_job *j, PGresult *res, struct evbuffer *b)
{
	struct rows g, a;
	const char *room = NULL;

	rows_of(res, 'g', &g);
	rows_of(res, 'a', &a);
	member_open(b, "account_data");
	evbuffer_add_printf(b, "{\"global\":");
	raw_list(b, &g, 3);
	evbuffer_add_printf(b, ",\"rooms\":{");
	for (int i = a.lo; i < a.hi; i++) {
		const char *id = col(&a, i, 1);
		if (room == NULL || strcmp(room, id) != 0) {
			if (room != NULL)
				evbuffer_add(b, "],", 2);
			jstr(b, id);
			evbuffer_add(b, ":[", 2);
			room = id;
		} else
			evbuffer_add(b, ",", 1);
		evbuffer_add(b, col(&a, i, 3), strlen(col(&a, i, 3)));
	}
	evbuffer_add_printf(b, "%s}}", room != NULL ? "]" : "");
	j->c->has_data |= g.hi > g.lo || a.hi > a.lo;
}

static void
typing_write(struct ext_job *j, PGresult *res, struct evbuffer *b)
{
	struct rows t;

	rows_of(res, 't', &t);
	member_open(b, "typing");
	evbuffer_add_printf(b, "{\"rooms\":{");
	for (int i = t.lo; i < t.hi; i++) {
		/* The statement builds user_ids as a JSON array; never print a
		 * NULL as "(null)" into the response if a row ever lacks it. */
		const char *ids = col(&t, i, 2);

		if (i > t.lo)
			evbuffer_add(b, ",", 1);
		jstr(b, col(&t, i, 1));
		evbuffer_add_printf(b,
		                    ":{\"type\":\"m.typing\",\"content\":{"
		                    "\"user_ids\":%s}}",
		                    ids != NULL ? ids : "[]");
	}
	evbuffer_add_printf(b, "}}");
	j->c->has_data |= t.hi > t.lo;
}

/*
 * One receipt into a room's m.receipt content:
 * {event_id: {receipt_type: {user_id: {ts, thread_id?}}}}.
 */
static void
receipt_add(struct json_object *content, const struct rows *r, int i)
{
	struct json_object *ev, *ty, *u;
	const char *thread = col(r, i, 5);

	if (!json_object_object_get_ex(content, col(r, i, 2), &ev)) {
		ev = json_object_new_object();
		json_object_object_add(content, col(r, i, 2), ev);
	}
	if (!json_object_object_get_ex(ev, col(r, i, 3), &ty)) {
		ty = json_object_new_object();
		json_object_object_add(ev, col(r, i, 3), ty);
	}
	u = json_object_new_object();
	json_object_object_add(
	    u, "ts", json_object_new_int64(strtoll(col(r, i, 6), NULL, 10)));
	if (thread != NULL && *thread != '\0')
		json_object_object_add(u, "thread_id",
		                       json_object_new_string(thread));
	json_object_object_add(ty, col(r, i, 4), u);
}

static void
receipts_write(struct ext_job *j, PGresult *res, struct evbuffer *b)
{
	struct json_object *rooms = json_object_new_object();
	struct json_object *room = NULL;
	const char *id = NULL;
	struct rows r;

	rows_of(res, 'r', &r);
	for (int i = r.lo; i < r.hi; i++) {
		if (id == NULL || strcmp(id, col(&r, i, 1)) != 0) {
			struct json_object *e = json_object_new_object();
			id = col(&r, i, 1);
			room = json_object_new_object();
			json_object_object_add(
			    e, "type", json_object_new_string("m.receipt"));
			json_object_object_add(e, "content", room);
			json_object_object_add(rooms, id, e);
		}
		receipt_add(room, &r, i);
	}
	member_open(b, "receipts");
	evbuffer_add_printf(b, "{\"rooms\":%s}", json_plain(rooms, NULL));
	json_object_put(rooms);
	j->c->has_data |= r.hi > r.lo;
}

static void
job_free(struct ext_job *j)
{
	if (j == NULL)
		return;
	for (int k = 0; k < SX_COUNT; k++)
		ss_ext_rooms_free(&j->sel[k]);
	ss_ext_state_free(&j->prev);
	ss_ext_state_free(&j->now);
	free(j);
}

/* Hands the round back to the core; j is gone afterwards. */
static void
job_done(struct ext_job *j, int status, const char *errcode, const char *msg)
{
	api_done_fn done = j->done;
	void *arg = j->arg;

	if (status == 0)
		j->c->new_state = ss_ext_state_text(&j->now);
	j->c->priv = NULL;
	job_free(j);
	done(arg, status, errcode, msg);
}

static void
ext_cb(PGresult *res, void *arg)
{
	struct ext_job *j = arg;
	struct evbuffer *b = j->c->out;

	if (res == NULL) {
		job_done(j, 503, "M_UNKNOWN", "database unavailable");
		return;
	}
	if (j->cfg.x[SX_TO_DEVICE].is_on)
		to_device_write(j, res, b);
	if (j->cfg.x[SX_E2EE].is_on)
		e2ee_write(j, res, b);
	if (j->cfg.x[SX_ACCOUNT_DATA].is_on)
		account_data_write(j, res, b);
	if (j->cfg.x[SX_TYPING].is_on)
		typing_write(j, res, b);
	if (j->cfg.x[SX_RECEIPTS].is_on)
		receipts_write(j, res, b);
	job_done(j, 0, NULL, NULL);
}

/* The (room, event) pairs of the timelines sent in rc's fresh rooms. */
static void
receipt_events(const struct ss_ctx *c, const struct ss_ext_rooms *rc,
               struct pg_lit *rooms, struct pg_lit *events)
{
	struct map fresh;

	map_init(&fresh);
	for (int i = 0; i < rc->nfresh; i++)
		map_put(&fresh, rc->fresh[i], (void *)1);
	for (int i = 0; i < c->nrooms; i++) {
		const struct ss_ext_room *room = &c->rooms[i];
		if (!map_get(&fresh, room->room_id))
			continue;
		for (int e = 0; e < room->nevents; e++) {
			pg_arr_str(rooms, room->room_id);
			pg_arr_str(events, room->event_ids[e]);
		}
	}
	map_free(&fresh, NULL);
}

static void
arr_of(struct pg_lit *l, const char **v, int n)
{
	for (int i = 0; i < n; i++)
		pg_arr_str(l, v[i]);
	pg_arr_end(l);
}

/* Global account data: all of it once, then what changed (0/1/2). */
static int
global_mode(const struct ext_job *j)
{
	if (!j->cfg.x[SX_ACCOUNT_DATA].is_on)
		return 0;
	if (j->c->is_new_conn || !j->prev.was_on[SX_ACCOUNT_DATA])
		return 1;
	return 2;
}

static void
ext_query(struct ext_job *j)
{
	enum { NP = 22 };
	struct ss_ctx *c = j->c;
	char n[6][PG_I64_LEN], mode[4];
	struct pg_lit l[10] = {{0}};
	const char *p[NP];
	const struct ss_ext_rooms *ad = &j->sel[SX_ACCOUNT_DATA];
	const struct ss_ext_rooms *ty = &j->sel[SX_TYPING];
	const struct ss_ext_rooms *rc = &j->sel[SX_RECEIPTS];

	p[0] = c->user_id;
	p[1] = c->device_id;
	p[2] = pg_i64(n[0], c->conn);
	p[3] = pg_i64(n[1], c->from_pos);
	p[4] = pg_i64(n[2], c->to_pos);
	p[5] = j->cfg.x[SX_TO_DEVICE].is_on ? "t" : "f";
	p[6] = pg_i64(n[3], j->td_ack);
	p[7] = pg_i64(n[4], j->cfg.td_limit);
	p[8] = pg_i64(n[5], j->api->cfg.session_idle_s);
	p[9] = j->cfg.x[SX_E2EE].is_on ? "t" : "f";
	snprintf(mode, sizeof(mode), "%d", global_mode(j));
	p[10] = mode;
	arr_of(&l[0], ad->fresh, ad->nfresh);
	arr_of(&l[1], ad->live, ad->nlive);
	arr_of(&l[2], ty->fresh, ty->nfresh);
	arr_of(&l[3], ty->live, ty->nlive);
	arr_of(&l[4], rc->fresh, rc->nfresh);
	receipt_events(c, rc, &l[5], &l[6]);
	pg_arr_end(&l[5]);
	pg_arr_end(&l[6]);
	arr_of(&l[7], rc->live, rc->nlive);
	arr_of(&l[8], rc->back, rc->nback);
	for (int i = 0; i < rc->nback; i++)
		pg_arr_i64(&l[9], rc->back_since[i]);
	pg_arr_end(&l[9]);
	for (int i = 0; i < 8; i++)
		p[11 + i] = l[i].p;
	p[19] = j->prev.was_on[SX_TO_DEVICE] ? "t" : "f";
	p[20] = l[8].p;
	p[21] = l[9].p;
	sql_query(j->api, Q_SS_EXT, p, ext_cb, j);
	for (int i = 0; i < 10; i++)
		pg_lit_free(&l[i]);
}

static bool
any_on(const struct ss_ext_cfg *cfg)
{
	for (int k = 0; k < SX_COUNT; k++)
		if (cfg->x[k].is_on)
			return true;
	return false;
}

void
ss_ext_run(struct api *api, struct ss_ctx *c, api_done_fn done, void *arg)
{
	struct ext_job *j = xcalloc(1, sizeof(*j));
	struct ss_parse_err err;

	j->api = api;
	j->c = c;
	j->done = done;
	j->arg = arg;
	c->priv = j;
	c->has_data = false;
	c->new_state = NULL;
	c->td_next = -1;
	c->is_td_full = false;
	ss_ext_cfg_load(c->cfg, &j->cfg);
	ss_ext_state_parse(c->is_new_conn ? NULL : c->state, &j->prev);
	ss_ext_state_parse(NULL, &j->now);
	for (int k = 0; k < SX_COUNT; k++) {
		j->now.was_on[k] = j->cfg.x[k].is_on;
		if (k == SX_ACCOUNT_DATA || k == SX_TYPING || k == SX_RECEIPTS)
			ss_ext_sort(k, &j->cfg, c, &j->prev, &j->sel[k],
			            &j->now.scope[k]);
	}
	ss_ext_rc_out(c, &j->prev, &j->now);
	/* the core checks the request; a stored config is checked again */
	if (ss_ext_check(c->cfg, &err) == -1) {
		job_done(j, err.status, err.errcode, err.msg);
		return;
	}
	/* a since from the future acknowledges no more than exists */
	j->td_ack = j->cfg.td_since > c->to_pos ? c->to_pos : j->cfg.td_since;
	/* to_device just turned off still has its ack row to drop */
	if (!any_on(&j->cfg) && !j->prev.was_on[SX_TO_DEVICE]) {
		job_done(j, 0, NULL, NULL);
		return;
	}
	ext_query(j);
}

unsigned
ss_ext_wake(struct json_object *cfg)
{
	struct ss_ext_cfg x;
	unsigned w = 0;

	ss_ext_cfg_load(cfg, &x);
	if (x.x[SX_TO_DEVICE].is_on || x.x[SX_E2EE].is_on)
		w |= SS_WAKE_TO_DEVICE;
	if (x.x[SX_ACCOUNT_DATA].is_on)
		w |= SS_WAKE_ACCOUNT_DATA;
	if (x.x[SX_TYPING].is_on)
		w |= SS_WAKE_TYPING;
	if (x.x[SX_RECEIPTS].is_on)
		w |= SS_WAKE_RECEIPTS;
	return w;
}
