/*
 * s_room_member.c: the room_member stream {room_id, limit, sort,
 * next_page}. Pagination mode (first request, or next_page given): the
 * member events of the room's state at the pinned position P (the since
 * token's member position, or the current one), sorted by_pl (power level
 * descending, then name) or by_name (case-folded display name, else the
 * user id without "@"), one page of `limit`. Streaming mode: member events
 * after the since position, in position order. Only for a room the user
 * is in, or was in up to the moment they left (then state and events stop
 * at their leave; after a rejoin, events resume from it), never for an
 * invitee (visible.h).
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


struct member {
	int64_t nid;
	long pl;
	char *key;
	const char *json;
	int len;
};

static int sort_mode;

static int
member_cmp(const void *a, const void *b)
{
	const struct member *x = a, *y = b;
	int c;

	if (sort_mode == SORT_BY_PL && x->pl != y->pl)
		return x->pl > y->pl ? -1 : 1;
	if ((c = strcmp(x->key, y->key)) != 0)
		return c;
	return x->nid < y->nid ? -1 : x->nid > y->nid;
}

static void
member_head(struct sreq *r, struct evbuffer *b)
{
	evbuffer_add(b, "{\"room_id\":", 11);
	jstr(b, r->p.m_room);
	evbuffer_add_printf(b, ",\"limit\":%" PRId64 ",\"sort\":\"%s\","
	    "\"events\":[", r->p.m_limit, sort_name(r->p.m_sort));
}

static void
forbid(struct sreq *r)
{
	r->err_status = 403;
	r->err_code = "M_FORBIDDEN";
	free(r->err_msg);
	r->err_msg = xasprintf("room_member: you are not in room %s",
	    r->p.m_room);
}

/* Sort key and power level of each member; PL from the state's event. */
static int
members_collect(PGresult *res, struct member *m)
{
	struct json_object *pl = NULL, *users = NULL;
	int64_t def = 0, v;
	int n = 0;

	for (int i = 0; i < PQntuples(res); i++)
		if (PQgetvalue(res, i, 0)[0] == '0' &&
		    strcmp(PQgetvalue(res, i, 2), "m.room.power_levels") == 0) {
			pl = json_parse_bounded(PQgetvalue(res, i, 3),
			    (size_t)PQgetlength(res, i, 3), NULL);
			json_get_int(json_get_obj(pl, "content"),
			    "users_default", &def);
			users = json_get_obj(json_get_obj(pl, "content"),
			    "users");
		}
	for (int i = 0; i < PQntuples(res); i++) {
		struct json_object *ev;
		const char *sk, *dn;

		if (PQgetvalue(res, i, 0)[0] != '0' ||
		    strcmp(PQgetvalue(res, i, 2), "m.room.member") != 0)
			continue;
		ev = json_parse_bounded(PQgetvalue(res, i, 3),
		    (size_t)PQgetlength(res, i, 3), NULL);
		sk = json_get_str(ev, "state_key");
		dn = json_get_str(json_get_obj(ev, "content"), "displayname");
		if (sk == NULL)
			sk = "";
		m[n].nid = strtoll(PQgetvalue(res, i, 1), NULL, 10);
		m[n].key = casefold(dn != NULL && *dn != '\0' ? dn :
		    sk[0] == '@' ? sk + 1 : sk);
		m[n].pl = json_get_int(users, sk, &v) ? (long)v : (long)def;
		m[n].json = PQgetvalue(res, i, 3);
		m[n].len = PQgetlength(res, i, 3);
		n++;
		json_object_put(ev);
	}
	json_object_put(pl);
	return n;
}

/*
 * The room's member and power-level state at the pinned position: sorted
 * by power level or name, one page of limit with next_page.
 */
static void
page_cb(PGresult *res, void *arg)
{
	struct sreq *r = arg;
	struct evbuffer *b = r->out[ST_MEMBER];
	struct member *m = NULL;
	int n = 0;
	int64_t lo, hi;

	if (sreq_replied(r))
		goto out;
	if (res == NULL) {
		stream_fail_db(r);
		goto out;
	}
	if (PQntuples(res) == 0 || PQgetvalue(res, 0, 0)[0] != '1') {
		forbid(r);
		goto out;
	}
	m = xcalloc((size_t)PQntuples(res) + 1, sizeof(*m));
	n = members_collect(res, m);
	sort_mode = r->p.m_sort;
	qsort(m, (size_t)n, sizeof(*m), member_cmp);
	lo = (r->p.m_page < 0 ? 0 : r->p.m_page) * r->p.m_limit;
	if (lo > n) {
		r->err_status = 400;
		r->err_code = "M_INVALID_PARAM";
		free(r->err_msg);
		r->err_msg = xstrdup("room_member.next_page is past the end");
		goto out;
	}
	hi = lo + r->p.m_limit < n ? lo + r->p.m_limit : n;
	member_head(r, b);
	for (int64_t i = lo; i < hi; i++) {
		if (i > lo)
			evbuffer_add(b, ",", 1);
		evbuffer_add(b, m[i].json, (size_t)m[i].len);
	}
	evbuffer_add(b, "]", 1);
	if (hi < n)
		evbuffer_add_printf(b, ",\"next_page\":\"%" PRId64 "\"",
		    (r->p.m_page < 0 ? 0 : r->p.m_page) + 1);
	evbuffer_add(b, "}", 1);
	r->is_pagination = true;
out:
	for (int i = 0; i < n; i++)
		free(m[i].key);
	free(m);
	stream_done(r);
}

/*
 * Member events after the since position up to the position the user may
 * see; the first row says whether they may see the room at all.
 */
static void
stream_cb(PGresult *res, void *arg)
{
	struct sreq *r = arg;
	struct evbuffer *b = r->out[ST_MEMBER];
	int n = 0;
	int64_t last = 0;

	if (sreq_replied(r))
		goto out;
	if (res == NULL) {
		stream_fail_db(r);
		goto out;
	}
	if (PQntuples(res) == 0 || PQgetvalue(res, 0, 0)[0] != '1') {
		forbid(r);
		goto out;
	}
	member_head(r, b);
	for (int i = 1; i < PQntuples(res); i++) {
		if (n++ > 0)
			evbuffer_add(b, ",", 1);
		evbuffer_add(b, PQgetvalue(res, i, 3),
		    (size_t)PQgetlength(res, i, 3));
		last = strtoll(PQgetvalue(res, i, 1), NULL, 10);
	}
	evbuffer_add(b, "]}", 2);
	r->has_data |= n > 0;
	r->next.m = n > 0 && n == r->p.m_limit ? last : r->to;
out:
	stream_done(r);
}

/*
 * Pagination (first request or next_page) at the pinned position, or
 * streaming from the since position; room_id is required.
 */
void
s_room_member_run(struct api *api, struct sreq *r)
{
	char pin[PG_I64_LEN], from[PG_I64_LEN], limit[PG_I64_LEN];
	const char *params[5];
	int64_t p;

	if (*r->p.m_room == '\0') {
		r->err_status = 400;
		r->err_code = "M_INVALID_PARAM";
		free(r->err_msg);
		r->err_msg = xstrdup("room_member.room_id is required");
		stream_done(r);
		return;
	}
	params[0] = r->p.m_room;
	params[1] = r->user_id;
	if (r->from.m == 0 || r->p.m_page >= 0) {
		p = r->from.m != 0 ? r->from.m : r->to;
		r->next.m = p;
		pg_i64(pin, p);
		params[2] = pin;
		sql_query_at(api, Q_MEMBER_PAGE, p, params, page_cb, r);
		return;
	}
	pg_i64(pin, r->to);
	pg_i64(from, r->from.m);
	pg_i64(limit, r->p.m_limit);
	params[2] = pin;
	params[3] = from;
	params[4] = limit;
	sql_query_at(api, Q_MEMBER_STREAM, r->to, params, stream_cb, r);
}
