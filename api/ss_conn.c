/*
 * ss_conn.c: sliding sync connections in Postgres (syncv3_ss_conns and
 * syncv3_ss_rooms, 006_sliding_sync.sql), so any api instance continues
 * any connection. A request without pos starts its conn_id afresh; a pos
 * loads the connection only for its own device, conn_id and while not
 * idle, and either confirms the response it names or drops the one after
 * it (the client lost it). A response is saved as the unconfirmed one,
 * compare-and-set on the row's ver, so of two requests racing on one
 * connection only one saves. A timer deletes idle connections. Each
 * saved response keeps the upstream token its pos stands for in /messages
 * (021_pos_token.sql, ss_pos.c).
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "json_util.h"
#include "map.h"
#include "pg.h"
#include "pg_lit.h"
#include "ss.h"
#include "ss_ext.h"
#include "util.h"

struct conn_op {
	struct ss_req *s;
	api_done_fn done;
	void *arg;
};

static struct conn_op *
op_new(struct ss_req *s, api_done_fn done, void *arg)
{
	struct conn_op *op = xcalloc(1, sizeof(*op));

	op->s = s;
	op->done = done;
	op->arg = arg;
	sreq_ref(s->r);
	return op;
}

/* Ends an operation; the request may have been answered meanwhile. */
static void
op_end(struct conn_op *op, int status, const char *errcode, const char *msg)
{
	struct sreq *r = op->s->r;

	if (!sreq_replied(r))
		op->done(op->arg, status, errcode, msg);
	sreq_unref(r);
	free(op);
}

/* The token is no longer the device's (contract 5): 401, forget it. */
static void
token_gone(struct conn_op *op)
{
	log_info("ss: %s/%s: token no longer current", op->s->r->user_id,
	         op->s->r->device_id);
	auth_token_superseded(op->s->api, op->s->r->token_hash);
	op_end(op, 401, "M_UNKNOWN_TOKEN",
	       "this token was replaced or revoked");
}

static struct json_object *
obj_or_empty(const char *text)
{
	struct json_object *o = json_parse_bounded(text, strlen(text), NULL);

	if (o == NULL || !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		o = json_object_new_object();
	}
	return o;
}

/* SS_SINCE's two columns from col: the since and its snapshot's position. */
static void
tok_take(struct ss_conn *c, PGresult *res, int col)
{
	free(c->tok);
	c->tok =
	    PQgetisnull(res, 0, col) ? NULL : xstrdup(PQgetvalue(res, 0, col));
	c->tok_at = strtoll(PQgetvalue(res, 0, col + 1), NULL, 10);
}

static void
loaded_cb(PGresult *res, void *arg)
{
	struct conn_op *op = arg;
	struct ss_conn *c = &op->s->conn;

	if (sreq_replied(op->s->r)) {
		op_end(op, 0, NULL, NULL);
		return;
	}
	if (res == NULL) {
		op_end(op, 503, "M_UNKNOWN", "database unavailable");
		return;
	}
	if (PQntuples(res) == 1 && PQgetvalue(res, 0, 8)[0] != 't') {
		token_gone(op);
		return;
	}
	if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0) ||
	    strcmp(PQgetvalue(res, 0, 7), ss_dialect_name(op->s->q.dialect)) !=
	        0) {
		op_end(op, 400, "M_UNKNOWN_POS",
		       "unknown or expired pos: start a new connection");
		return;
	}
	c->id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	c->gen = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
	c->pos = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
	c->subs = obj_or_empty(PQgetvalue(res, 0, 3));
	c->ext = obj_or_empty(PQgetvalue(res, 0, 4));
	c->ext_state =
	    PQgetisnull(res, 0, 5) ? NULL : xstrdup(PQgetvalue(res, 0, 5));
	c->ver = strtoll(PQgetvalue(res, 0, 6), NULL, 10);
	tok_take(c, res, 9);
	op_end(op, 0, NULL, NULL);
}

/* A connection was created: dropped of the device's went with it. */
static void
created_end(struct conn_op *op, long long dropped)
{
	if (dropped > 0)
		log_debug("ss: %s/%s: %lld least recently used connections "
		          "expired",
		          op->s->r->user_id, op->s->r->device_id, dropped);
	op_end(op, 0, NULL, NULL);
}

static void
created_cb(PGresult *res, void *arg)
{
	struct conn_op *op = arg;
	struct ss_conn *c = &op->s->conn;

	if (sreq_replied(op->s->r)) {
		op_end(op, 0, NULL, NULL);
		return;
	}
	if (res == NULL || PQntuples(res) != 1) {
		op_end(op, 503, "M_UNKNOWN", "cannot create the connection");
		return;
	}
	if (PQgetvalue(res, 0, 4)[0] != 't') {
		token_gone(op);
		return;
	}
	c->is_new = true;
	c->id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	c->gen = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
	c->ver = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
	c->pos = 0;
	/* set already when the round started alongside (ss_rooms_run) */
	if (c->subs == NULL)
		c->subs = json_object_new_object();
	if (c->ext == NULL)
		c->ext = json_object_new_object();
	tok_take(c, res, 5);
	created_end(op, strtoll(PQgetvalue(res, 0, 3), NULL, 10));
}

/*
 * A request without pos whose round runs at once: its connection is
 * created by the save (ss_conn_save, SS_CREATE_SAVE), not before the
 * round. Until then it is conn 0, new, with nothing sticky: what it
 * would be just created, without the statement (and nothing is created
 * for a request that fails or is gone before its answer).
 */
void
ss_conn_defer(struct ss_req *s)
{
	struct ss_conn *c = &s->conn;

	c->is_new = true;
	c->is_deferred = true;
	c->id = c->gen = c->pos = c->ver = 0;
	if (c->subs == NULL)
		c->subs = json_object_new_object();
	if (c->ext == NULL)
		c->ext = json_object_new_object();
}

/*
 * Loads the connection s->pos names, or (no pos) starts s->q.conn_id
 * afresh; done(arg, 0) with s->conn set, or 400 M_UNKNOWN_POS.
 */
void
ss_conn_open(struct ss_req *s, api_done_fn done, void *arg)
{
	struct api *api = s->api;
	char a[PG_I64_LEN], b[PG_I64_LEN], c[PG_I64_LEN];
	const char *p[7];

	if (s->q.pos == NULL) {
		p[0] = s->r->user_id;
		p[1] = s->r->device_id;
		p[2] = s->q.conn_id;
		p[3] = ss_dialect_name(s->q.dialect);
		p[4] = pg_i64(a, api->cfg.ss_conns_per_device);
		p[5] = s->r->token_hash;
		sql_query(api, Q_SS_CREATE, p, created_cb,
		          op_new(s, done, arg));
		return;
	}
	p[0] = pg_i64(a, s->pos.conn);
	p[1] = s->r->user_id;
	p[2] = s->r->device_id;
	p[3] = pg_i64(b, s->pos.gen);
	p[4] = pg_i64(c, api->cfg.ss_conn_idle_s);
	p[5] = s->q.conn_id;
	p[6] = s->r->token_hash;
	sql_query(api, Q_SS_LOAD, p, loaded_cb, op_new(s, done, arg));
}

static const char race_msg[] = "this connection was continued by another "
                               "request: start a new connection";

static void
saved_cb(PGresult *res, void *arg)
{
	struct conn_op *op = arg;

	if (res == NULL)
		op_end(op, 503, "M_UNKNOWN", "cannot store the connection");
	else if (PQntuples(res) != 1)
		/* another request of this connection wrote it meanwhile */
		op_end(op, 400, "M_UNKNOWN_POS", race_msg);
	else {
		op->s->conn.saved_gen =
		    strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		op_end(op, 0, NULL, NULL);
	}
}

static void
created_saved_cb(PGresult *res, void *arg)
{
	struct conn_op *op = arg;
	struct ss_conn *c = &op->s->conn;

	if (res == NULL || PQntuples(res) != 1) {
		op_end(op, 503, "M_UNKNOWN", "cannot store the connection");
		return;
	}
	if (PQgetvalue(res, 0, 3)[0] != 't' || PQgetisnull(res, 0, 0)) {
		token_gone(op);
		return;
	}
	c->is_deferred = false;
	c->id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	c->saved_gen = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
	created_end(op, strtoll(PQgetvalue(res, 0, 2), NULL, 10));
}

/* The columns of the rooms this response sent, as array literals. */
struct room_cols {
	struct pg_lit id, nid, lim, rs, lazy, m;
};

static void
room_cols_fill(struct ss_req *s, struct room_cols *k)
{
	for (int i = 0; i < s->nrooms; i++) {
		struct ss_room *rm = &s->rooms[i];
		if (!rm->is_send)
			continue;
		pg_arr_str(&k->id, rm->id);
		pg_arr_i64(&k->nid, rm->max_nid);
		pg_arr_i64(&k->lim, rm->cfg.timeline_limit);
		pg_arr_str(&k->rs, rm->rs_canon != NULL ? rm->rs_canon : "");
		pg_arr_str(&k->lazy, rm->lazy != NULL
		                         ? json_plain(rm->lazy, NULL)
		                         : "{}");
		pg_arr_str(&k->m, rm->membership);
	}
}

static void
room_cols_free(struct room_cols *k)
{
	pg_lit_free(&k->id);
	pg_lit_free(&k->nid);
	pg_lit_free(&k->lim);
	pg_lit_free(&k->rs);
	pg_lit_free(&k->lazy);
	pg_lit_free(&k->m);
}

/*
 * SS_SAVE_CTES' parameters from conn to ext_state, in its order:
 * p[0..6]; n holds the numbers.
 */
static void
save_params(struct ss_req *s, const char **p, char n[4][PG_I64_LEN],
            const char *state)
{
	p[0] = pg_i64(n[0], s->conn.id);
	p[1] = pg_i64(n[1], s->conn.ver);
	p[2] = pg_i64(n[2], s->conn.gen);
	p[3] = pg_i64(n[3], s->at);
	p[4] = json_plain(s->subs, NULL);
	p[5] = json_plain(s->ext, NULL);
	p[6] = state;
}

/*
 * SS_SAVE_CTES' since and drop: p[0..1]; e holds the number. The since
 * read before the round is committed at or below the position answered;
 * one read alongside it (a new connection created during the round's
 * first step) may be past it: no token. drop: a folded save of this
 * request's that this one replaces.
 */
static void
save_tail(struct ss_req *s, const char **p, char e[PG_I64_LEN])
{
	p[0] = s->conn.tok_at <= s->at ? s->conn.tok : NULL;
	p[1] = s->conn.drop_gen != 0 ? pg_i64(e, s->conn.drop_gen) : NULL;
}

/*
 * SS_CREATE_SAVE_CTES's parameters from conn_id to ext_state, in its
 * order: p[0..7]; a and b hold the numbers.
 */
static void
create_params(struct ss_req *s, const char **p, char *a, char *b,
              const char *state)
{
	p[0] = s->q.conn_id;
	p[1] = ss_dialect_name(s->q.dialect);
	p[2] = pg_i64(a, s->api->cfg.ss_conns_per_device);
	p[3] = s->r->token_hash;
	p[4] = pg_i64(b, s->at);
	p[5] = json_plain(s->subs, NULL);
	p[6] = json_plain(s->ext, NULL);
	p[7] = state;
}

/*
 * ss_conn_save of a deferred connection: created with this response as
 * its unconfirmed one, and its to-device ack (the round's SS_EXT ran
 * for conn 0 and recorded none) the since this request acknowledges.
 */
static void
create_save(struct ss_req *s, struct room_cols *k, const char *state,
            api_done_fn done, void *arg)
{
	struct ss_ext_cfg x;
	char a[PG_I64_LEN], b[PG_I64_LEN], c[PG_I64_LEN];
	const char *p[19];

	ss_ext_cfg_load(s->ext, &x);
	p[0] = s->r->user_id;
	p[1] = s->r->device_id;
	create_params(s, &p[2], a, b, state);
	p[10] = pg_arr_end(&k->id);
	p[11] = pg_arr_end(&k->nid);
	p[12] = pg_arr_end(&k->lim);
	p[13] = pg_arr_end(&k->rs);
	p[14] = pg_arr_end(&k->lazy);
	p[15] = pg_arr_end(&k->m);
	p[16] = x.x[SX_TO_DEVICE].is_on ? "t" : "f";
	/* a since from the future acknowledges no more than exists (ss_ext) */
	p[17] = pg_i64(c, x.td_since > s->at ? s->at : x.td_since);
	p[18] = s->conn.tok_at <= s->at ? s->conn.tok : NULL;
	sql_query(s->api, Q_SS_CREATE_SAVE, p, created_saved_cb,
	          op_new(s, done, arg));
}

/* The ext_state a folded save stores: what no extension leaves. */
static const char fold_state[] = "{}";

/* A room config whose state rows may count as members sent ($LAZY). */
static bool
is_member_cfg(const struct ss_required_state *rs)
{
	if (rs->lazy_members)
		return true;
	for (int i = 0; i < rs->ninclude; i++)
		if (rs->include[i].type == NULL ||
		    strcmp(rs->include[i].type, "m.room.member") == 0)
			return true;
	return false;
}

/*
 * Whether a round's save follows from its SS_DETAIL alone, so the same
 * statement saves it: a new connection created by its save
 * (SS_DETAIL_SAVE) or one that continues (SS_DETAIL_SAVE_CONT), no
 * extension configured or on before (their round comes after and
 * writes a blob and an ack), and no room whose members sent are
 * recorded (lazy, a member pattern, members sent before: the members
 * step and the caller's exact matching decide those). Each room's row is
 * then its sent timeline's newest event, which SQL knows as well as we
 * do.
 */
bool
ss_conn_may_fold(const struct ss_req *s)
{
	const struct ss_conn *c = &s->conn;

	if (json_object_object_length(s->ext) != 0)
		return false;
	if (c->is_deferred ? c->ext_state != NULL
	                   : c->id == 0 || (c->ext_state != NULL &&
	                                    strcmp(c->ext_state, "{}") != 0))
		return false;
	for (int i = 0; i < s->nrooms; i++) {
		const struct ss_room *rm = &s->rooms[i];
		if (rm->is_send && (is_member_cfg(&rm->cfg.rs) ||
		                    (rm->lazy != NULL &&
		                     json_object_object_length(rm->lazy) != 0)))
			return false;
	}
	return true;
}

/*
 * SS_DETAIL_SAVE_CONT: the rooms sent as the round stands, each up to
 * the nid it was sent up to (what SS_SAVE's would be if its timeline
 * turns out empty; lazy is none). p holds SS_DETAIL's ten parameters.
 */
static void
cont_fold_query(struct ss_req *s, const char **p, pg_cb cb, void *arg)
{
	struct room_cols k;
	char n[4][PG_I64_LEN], e[PG_I64_LEN];

	memset(&k, 0, sizeof(k));
	room_cols_fill(s, &k);
	s->conn.nfolded = (int)k.id.count;
	save_params(s, &p[10], n, fold_state);
	p[17] = pg_arr_end(&k.id);
	p[18] = pg_arr_end(&k.nid);
	p[19] = pg_arr_end(&k.lim);
	p[20] = pg_arr_end(&k.rs);
	p[21] = pg_arr_end(&k.m);
	save_tail(s, &p[22], e);
	sql_query(s->api, Q_SS_DETAIL_SAVE_CONT, p, cb, arg);
	room_cols_free(&k);
}

/*
 * Sends SS_DETAIL_SAVE: detail_p holds SS_DETAIL's ten parameters; the
 * rooms are those the round sends as it stands (ss_conn_save checks that
 * it still does).
 */
void
ss_conn_fold_query(struct ss_req *s, const char *const *detail_p, pg_cb cb,
                   void *arg)
{
	struct pg_lit id = {0}, lim = {0}, rs = {0}, m = {0};
	char a[PG_I64_LEN], b[PG_I64_LEN];
	const char *p[24];

	s->conn.is_folded = true;
	s->conn.is_fold_done = false;
	s->conn.nfolded = 0;
	if (!s->conn.is_deferred) {
		memcpy(p, detail_p, sizeof(*p) * 10);
		cont_fold_query(s, p, cb, arg);
		return;
	}
	for (int i = 0; i < s->nrooms; i++) {
		struct ss_room *rm = &s->rooms[i];
		if (!rm->is_send)
			continue;
		s->conn.nfolded++;
		pg_arr_str(&id, rm->id);
		pg_arr_i64(&lim, rm->cfg.timeline_limit);
		pg_arr_str(&rs, rm->rs_canon != NULL ? rm->rs_canon : "");
		pg_arr_str(&m, rm->membership);
	}
	memcpy(p, detail_p, sizeof(*p) * 10);
	create_params(s, &p[10], a, b, fold_state);
	p[18] = pg_arr_end(&id);
	p[19] = pg_arr_end(&lim);
	p[20] = pg_arr_end(&rs);
	p[21] = pg_arr_end(&m);
	p[22] = s->conn.tok_at <= s->at ? s->conn.tok : NULL;
	sql_query(s->api, Q_SS_DETAIL_SAVE, p, cb, arg);
	pg_lit_free(&id);
	pg_lit_free(&lim);
	pg_lit_free(&rs);
	pg_lit_free(&m);
}

/* SS_DETAIL_SAVE's 'z' row: what the save did. */
void
ss_conn_fold_row(struct ss_req *s, PGresult *res, int i)
{
	struct ss_conn *c = &s->conn;

	c->is_fold_done = true;
	c->is_fold_ok = !PQgetisnull(res, i, 2) &&
	                PQgetvalue(res, i, 8)[0] == 't';
	if (!c->is_fold_ok)
		return;
	if (!c->is_deferred) {
		/* saved: what the connection is now, whether or not used */
		c->fold_gen = c->drop_gen =
		    strtoll(PQgetvalue(res, i, 3), NULL, 10);
		c->ver = strtoll(PQgetvalue(res, i, 4), NULL, 10);
		return;
	}
	c->fold_id = strtoll(PQgetvalue(res, i, 2), NULL, 10);
	c->fold_gen = strtoll(PQgetvalue(res, i, 3), NULL, 10);
	c->fold_dropped = strtoll(PQgetvalue(res, i, 4), NULL, 10);
}

/*
 * Whether the folded save stored what this response sends: the same
 * rooms (every one sent then is sent now, none since: the count), none
 * with members recorded, and the blob the extensions left.
 */
static bool
fold_matches(const struct ss_req *s, const char *state)
{
	int n = 0;

	if (!s->conn.is_folded || !s->conn.is_fold_done ||
	    strcmp(state != NULL ? state : "", fold_state) != 0)
		return false;
	for (int i = 0; i < s->nrooms; i++) {
		if (!s->rooms[i].is_send)
			continue;
		n++;
		if (s->rooms[i].lazy != NULL &&
		    json_object_object_length(s->rooms[i].lazy) != 0)
			return false;
	}
	return n == s->conn.nfolded;
}

/* ss_conn_save of a connection its SS_DETAIL_SAVE created and saved. */
static void
fold_end(struct ss_req *s, api_done_fn done, void *arg)
{
	struct conn_op *op = op_new(s, done, arg);
	struct ss_conn *c = &s->conn;

	c->is_folded = false;
	if (!c->is_deferred) {
		if (!c->is_fold_ok) {
			op_end(op, 400, "M_UNKNOWN_POS", race_msg);
			return;
		}
		c->saved_gen = c->fold_gen;
		c->drop_gen = 0;
		op_end(op, 0, NULL, NULL);
		return;
	}
	if (!c->is_fold_ok) {
		token_gone(op);
		return;
	}
	c->is_deferred = false;
	c->id = c->fold_id;
	c->saved_gen = c->fold_gen;
	created_end(op, (long long)c->fold_dropped);
}

/*
 * Stores this response as the connection's unconfirmed one: its sticky
 * subscriptions and extension configs, the extensions' blob, and per
 * room sent what the next response builds on. 400 M_UNKNOWN_POS when
 * another request of the connection wrote it since this one loaded it.
 */
void
ss_conn_save(struct ss_req *s, api_done_fn done, void *arg)
{
	struct room_cols k;
	char n[4][PG_I64_LEN], e[PG_I64_LEN];
	const char *p[15];
	const char *state = s->ext_ctx.new_state != NULL ? s->ext_ctx.new_state
	                                                 : s->conn.ext_state;

	if (fold_matches(s, state)) {
		fold_end(s, done, arg);
		return;
	}
	/* a deferred one saved with a different response is saved afresh */
	s->conn.is_folded = false;
	memset(&k, 0, sizeof(k));
	room_cols_fill(s, &k);
	if (s->conn.is_deferred) {
		create_save(s, &k, state, done, arg);
		goto out;
	}
	save_params(s, p, n, state);
	p[7] = pg_arr_end(&k.id);
	p[8] = pg_arr_end(&k.nid);
	p[9] = pg_arr_end(&k.lim);
	p[10] = pg_arr_end(&k.rs);
	p[11] = pg_arr_end(&k.lazy);
	p[12] = pg_arr_end(&k.m);
	save_tail(s, &p[13], e);
	sql_query(s->api, Q_SS_SAVE, p, saved_cb, op_new(s, done, arg));
out:
	room_cols_free(&k);
}

/*
 * What this api last saved on a connection (its row id -> struct
 * ss_last), for ss_req.c's wait_early: a request that names that
 * response's pos and is otherwise the same request need not read its
 * lists before it waits. A hint, bounded: at SS_LAST_MAX connections it
 * starts afresh.
 */
#define SS_LAST_MAX 4096
static struct map ss_lasts;

static void
last_free(void *arg)
{
	struct ss_last *l = arg;

	for (int i = 0; i < l->nrooms; i++)
		free(l->rooms[i]);
	free(l->rooms);
	free(l->counts);
	free(l->key);
	free(l);
}

static int64_t *
counts_copy(const int64_t *counts, int n)
{
	int64_t *c = xcalloc((size_t)n + 1, sizeof(*c));

	memcpy(c, counts, sizeof(*c) * (size_t)n);
	return c;
}

/*
 * The response just saved (s->q.key set), for the next request; is_ext:
 * extensions were on or had state (their to_device page is kept).
 */
void
ss_conn_keep(struct ss_req *s, bool is_ext)
{
	struct ss_last *l;
	char k[PG_I64_LEN];

	if (map_count(&ss_lasts) >= SS_LAST_MAX)
		map_free(&ss_lasts, last_free);
	l = xcalloc(1, sizeof(*l));
	l->gen = s->conn.saved_gen;
	l->at = s->at;
	l->key = xstrdup(s->q.key);
	l->rooms = xcalloc((size_t)s->nrooms + 1, sizeof(char *));
	for (int i = 0; i < s->nrooms; i++)
		l->rooms[l->nrooms++] = xstrdup(s->rooms[i].id);
	l->ncounts = s->resp.ncounts;
	l->counts = counts_copy(s->resp.counts, l->ncounts);
	l->is_ext = is_ext;
	l->td_next = is_ext ? s->ext_ctx.td_next : -1;
	l->is_td_full = is_ext && s->ext_ctx.is_td_full;
	if ((l = map_put(&ss_lasts, pg_i64(k, s->conn.id), l)) != NULL)
		last_free(l);
}

const struct ss_last *
ss_conn_last(int64_t conn)
{
	char k[PG_I64_LEN];

	return map_get(&ss_lasts, pg_i64(k, conn));
}

/* Its lists' counts, as a response's. */
void
ss_conn_last_counts(const struct ss_last *l, struct ss_response *resp)
{
	resp->ncounts = l->ncounts;
	resp->counts = counts_copy(l->counts, l->ncounts);
}

void
ss_conn_free(struct ss_conn *c)
{
	json_object_put(c->subs);
	json_object_put(c->ext);
	free(c->ext_state);
	free(c->tok);
	memset(c, 0, sizeof(*c));
}

void
ss_init(struct api *api)
{
	api->ss_expire_timer =
	    session_expiry_new(api, Q_SS_EXPIRE, api->cfg.ss_conn_idle_s);
}

void
ss_shutdown(struct api *api)
{
	session_expiry_free(api->ss_expire_timer);
	api->ss_expire_timer = NULL;
	map_free(&ss_lasts, last_free);
}
