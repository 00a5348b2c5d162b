/*
 * The store's public face and the batch. ingest.c (and the tests) open
 * the store, then per batch: store_batch_begin, store_apply for each
 * message, store_batch_commit; this file is the one place a batch is
 * assembled. It owns the transaction around the batch, the
 * compare-and-set on each device's since (contract 1) and the committed
 * since itself; the rows are written by rooms.c and apply.c, positions
 * come from pos.c and every statement runs through db.c.
 *
 * Messages of a batch are applied as one group: one statement per table
 * for the whole group (the per-statement cost in Postgres, planning and
 * round trips, was most of the ingest cost when it was paid per message).
 * The group runs in a savepoint; if any statement fails, the savepoint is
 * rolled back and each message is applied again as a group of one in its
 * own savepoint, so a message Postgres rejects fails alone.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "accumulator.h"
#include "map.h"
#include "pg.h"
#include "pg_lit.h"
#include "sqlarr.h"
#include "store_int.h"
#include "util.h"

/* Reconnects after the connection broke (the batch is lost anyway) and
 * starts again from the committed position, if still the writer. */
static int
store_connect(struct store *st)
{
	if (db_connect(st, 3600) == -1 || pos_load(st) == -1)
		return -1;
	return 0;
}

/*
 * Connects and migrates the schema; the store is a standby's until
 * store_take_writer succeeds. owner names this accumulator in the
 * liveness row; takeover_ms is how long that row lives unrenewed.
 */
struct store *
store_new(const char *conninfo, const char *owner, long long takeover_ms)
{
	struct store *st = xcalloc(1, sizeof(*st));

	st->conninfo = xstrdup(conninfo);
	st->owner = xstrdup(owner);
	st->takeover_ms = takeover_ms;
	if (db_connect(st, 3600) == -1) {
		store_free(st);
		return NULL;
	}
	return st;
}

int
store_take_writer(struct store *st)
{
	int rc = db_take_writer(st);

	if (rc == 1 && pos_load(st) == -1)
		rc = -1;
	if (rc == 1)
		log_info("store: writer (generation %" PRId64
		         ") at position %" PRId64,
		         st->generation, st->pos_committed);
	return rc;
}

int64_t
store_generation(const struct store *st)
{
	return st->generation;
}

bool
store_is_demoted(const struct store *st)
{
	return st->is_demoted;
}

int64_t
store_lsn(const struct store *st)
{
	return st->lsn;
}

void
store_free(struct store *st)
{
	if (st == NULL)
		return;
	if (st->c != NULL)
		PQfinish(st->c);
	free(st->pend);
	map_free(&st->chunk_rooms, NULL);
	free(st->owner);
	free(st->conninfo);
	free(st);
}

int64_t
store_pos(const struct store *st)
{
	return st->pos_committed;
}

const struct store_stats *
store_stats(const struct store *st)
{
	return &st->stats;
}

/* Reconnects when the connection broke (the batch is lost anyway). */
static int
store_ready(struct store *st)
{
	if (st->is_demoted)
		return -1;
	if (st->c != NULL && PQstatus(st->c) == CONNECTION_OK)
		return 0;
	log_warnx("store: connection lost, reconnecting");
	return store_connect(st);
}

void
store_msg_reset(struct store_msg *m)
{
	free(m->since);
	m->since = NULL;
	m->ok = false;
	m->is_replay = false;
	m->nstate_rows = 0;
	m->error = NULL;
	notice_clear(&m->notices);
}

/* store_window's part of a body: rooms only, no since (docs/DESIGN.md). */
static bool
is_window(const struct store_msg *m)
{
	return m->first != NULL && strcmp(m->first, "window") == 0;
}

/*
 * Contract 1 for a group of messages of distinct devices: locks their
 * device rows and sets go[i] for the messages to apply; the others are
 * answered (a resend of what is committed, or a nack).
 */
static int
cas(struct store *st, struct msgctx *xs, size_t n, bool *go)
{
	struct cols c;
	const char *p[2];
	PGresult *r;
	bool *found = xcalloc(n, sizeof(*found));

	cols_init(&c, 2);
	for (size_t i = 0; i < n; i++) {
		pg_arr_str(&c.c[0], xs[i].m->user_id);
		pg_arr_str(&c.c[1], xs[i].m->device_id);
	}
	cols_params(&c, p);
	r = db_q(st, S_CAS, 2, p);
	cols_free(&c);
	if (r == NULL) {
		free(found);
		return -1;
	}
	for (int row = 0; row < PQntuples(r); row++) {
		int64_t i = strtoll(PQgetvalue(r, row, 0), NULL, 10) - 1;
		struct store_msg *m;
		if (i < 0 || (size_t)i >= n || found[i])
			continue;
		found[i] = true;
		m = xs[i].m;
		m->since = xstrdup(PQgetvalue(r, row, 1));
		xs[i].was_initial = PQgetvalue(r, row, 2)[0] == 't';
		xs[i].was_waiting = PQgetvalue(r, row, 3)[0] == 't';
		if (strcmp(m->since, m->since_in) == 0 && is_window(m) &&
		    xs[i].was_initial)
			m->error = "synced"; /* nothing to hurry */
		else if (strcmp(m->since, m->since_in) == 0)
			go[i] = true;
		else if (strcmp(m->since, m->next_batch) == 0) {
			/* a resend of what is committed */
			m->ok = m->is_replay = true;
		} else
			m->error = "since mismatch";
	}
	PQclear(r);
	for (size_t i = 0; i < n; i++) {
		if (found[i])
			continue;
		xs[i].m->since = xstrdup("");
		xs[i].m->error = "unknown device";
	}
	free(found);
	return 0;
}

/* Upper bound of the positions one message can take. */
static int64_t
positions_needed(const struct acc_changes *ch)
{
	int64_t n = 8 + (int64_t)(ch->nadata + ch->nto_device +
	    ch->ndl_changed + ch->ndl_left);

	for (size_t i = 0; i < ch->nrooms; i++) {
		const struct acc_room *r = &ch->rooms[i];
		n += 4 + (int64_t)(2 * r->state.n + 2 * r->timeline.n +
		    r->nreceipts + r->nadata);
	}
	return n;
}

/*
 * A first sync asked without rooms because a sibling device is stored
 * (PROTO_SYNC_RAW first "sibling"): only an initial one counts as such.
 */
static bool
is_sibling_first(const struct store_msg *m)
{
	return m->first != NULL && strcmp(m->first, "sibling") == 0 &&
	       m->since_in[0] == '\0';
}

/* A full initial sync stored beside the device's since (first "refill"). */
static bool
is_refill(const struct store_msg *m)
{
	return m->first != NULL && strcmp(m->first, "refill") == 0;
}

/*
 * Pending sibling-first devices of the group's catch-up bodies are synced
 * now: each such body's request started after their first commit, so it
 * carried everything upstream had when their first next_batch was made
 * (docs/DESIGN.md, "Sibling devices"). Their device notices go with the
 * body that covered them.
 */
static int
cover_siblings(struct store *st, struct msgctx *xs, size_t n)
{
	struct cols c;
	const char *p[3];
	PGresult *r;

	cols_init(&c, 3);
	for (size_t i = 0; i < n; i++) {
		if (xs[i].ch == NULL || xs[i].m->catchup <= 0)
			continue;
		pg_arr_str(&c.c[0], xs[i].m->user_id);
		pg_arr_str(&c.c[1], xs[i].m->device_id);
		pg_arr_i64(&c.c[2], xs[i].m->catchup);
		c.rows++;
	}
	if (c.rows == 0) {
		cols_free(&c);
		return 0;
	}
	cols_params(&c, p);
	r = db_q(st, S_COVER, 3, p);
	cols_free(&c);
	if (r == NULL)
		return -1;
	for (int row = 0; row < PQntuples(r); row++) {
		const char *u = PQgetvalue(r, row, 0);
		for (size_t i = 0; i < n; i++) {
			struct store_msg *m = xs[i].m;
			if (xs[i].ch == NULL || m->catchup <= 0 ||
			    strcmp(m->user_id, u) != 0)
				continue;
			notice_add(
			    &m->notices,
			    &(struct proto_notice){
			        .type = PROTO_NOTICE_DEVICE,
			        .pos = st->pos_used,
			        .user_id = u,
			        .device_id = PQgetvalue(r, row, 1),
			        .state = dev_state_name(DEV_STATE_SYNCED)});
			st->stats.covered++;
			break;
		}
	}
	PQclear(r);
	return 0;
}

/*
 * Stores each applied message's next_batch. A sibling-first device is not
 * synced yet: it takes a position of this commit as its cover_pos, and
 * the pollers are told (NOTIFY, delivered on COMMIT) so that one holding
 * a sibling polls again at once.
 */
static int
set_sinces(struct store *st, struct msgctx *xs, size_t n)
{
	struct cols c, w;
	const char *p[5];
	int rc = 0;

	cols_init(&c, 5);
	cols_init(&w, 2);
	for (size_t i = 0; i < n; i++) {
		bool is_sib;
		if (xs[i].ch == NULL || is_window(xs[i].m))
			continue;
		is_sib = is_sibling_first(xs[i].m);
		xs[i].cover = is_sib ? pos_next(st) : 0;
		pg_arr_str(&c.c[0], xs[i].m->user_id);
		pg_arr_str(&c.c[1], xs[i].m->device_id);
		pg_arr_str(&c.c[2], xs[i].m->next_batch);
		pg_arr_bool(&c.c[3], is_refill(xs[i].m));
		pg_arr_i64(&c.c[4], xs[i].cover);
		c.rows++;
		if (!is_sib)
			continue;
		pg_arr_str(&w.c[0], xs[i].m->user_id);
		pg_arr_i64(&w.c[1], xs[i].cover);
		w.rows++;
	}
	if (c.rows > 0) {
		cols_params(&c, p);
		rc = db_q0(st, S_SINCE, 5, p);
	}
	if (rc == 0 && w.rows > 0) {
		cols_params(&w, p);
		rc = db_q0(st, S_CATCHUP, 2, p);
	}
	cols_free(&c);
	cols_free(&w);
	return rc;
}

/*
 * Where the first window first stands: a window message records the
 * position the api may answer its window at (this commit's) and the k of
 * its split (a first page of up to k rooms by recency is whole, see
 * docs/DESIGN.md); a fill message the positions its rooms took, lo up to
 * the last one used (it is alone in its group, store_apply).
 */
static int
set_windows(struct store *st, struct msgctx *xs, size_t n, int64_t lo)
{
	char a[PG_I64_LEN], b[PG_I64_LEN], c[PG_I64_LEN], d[PG_I64_LEN];
	const char *p[6] = {NULL, NULL, a, b, c, d};

	for (size_t i = 0; i < n; i++) {
		struct store_msg *m = xs[i].m;
		bool is_win = is_window(m);
		if (xs[i].ch == NULL || !(is_win || m->is_fill))
			continue;
		p[0] = m->user_id;
		p[1] = m->device_id;
		pg_i64(a, is_win ? st->pos_used : lo);
		pg_i64(b, is_win ? m->window_k : st->pos_used);
		pg_i64(c, m->window_cut);
		pg_i64(d, m->window_more);
		if (db_q0(st, is_win ? S_WINDOW : S_FILL, is_win ? 6 : 4, p) ==
		    -1)
			return -1;
	}
	return 0;
}

/* Parses the bodies of the messages that passed the CAS, or takes the
 * change sets their caller parsed beforehand. */
static int64_t
parse_group(struct store *st, struct msgctx *xs, size_t n, const bool *go,
    struct acc_changes *chs)
{
	int64_t need = 0;

	for (size_t i = 0; i < n; i++) {
		struct store_msg *m = xs[i].m;
		const char *err = m->pre_err;
		struct acc_changes *ch = m->pre != NULL ? m->pre : &chs[i];
		if (!go[i])
			continue;
		if (m->pre != NULL ? m->pre_rc == -1 : normalise(m->body,
		    m->body_len, m->user_id, ch, &err) == -1) {
			log_warnx_rl("store: %s/%s: bad body: %s", m->user_id,
			    m->device_id, err ? err : "?");
			st->stats.bad_bodies++;
			m->error = "bad body";
			continue;
		}
		if (is_refill(m)) {
			/* they come again with the device's next poll */
			for (size_t k = 0; k < ch->nto_device; k++)
				free(ch->to_device[k]);
			free(ch->to_device);
			ch->to_device = NULL;
			ch->nto_device = 0;
		}
		xs[i].ch = ch;
		m->nevents = ch->nevents;
		m->nbad = ch->nbad;
		need += positions_needed(ch);
	}
	return need;
}

static void
group_done(struct store *st, struct msgctx *xs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct store_msg *m = xs[i].m;
		if (xs[i].ch == NULL)
			continue;
		if (!xs[i].was_initial && xs[i].cover == 0 &&
		    (!xs[i].was_waiting || is_refill(m)))
			notice_add(&m->notices, &(struct proto_notice){
			    .type = PROTO_NOTICE_DEVICE, .pos = st->pos_used,
			    .user_id = m->user_id, .device_id = m->device_id,
			    .state = dev_state_name(DEV_STATE_SYNCED)});
		free(m->since);
		m->since = xstrdup(m->next_batch);
		m->ok = true;
		st->stats.events += xs[i].ch->nevents;
		st->stats.bad_events += xs[i].ch->nbad;
	}
}

/*
 * Applies messages of distinct devices with one statement per table: the
 * CAS first, then the bodies of those that passed are parsed (the change
 * sets live only as long as this call), positions reserved for all of
 * them, and each step runs once for the group in a fixed order (rooms
 * before the rest, so events take the lowest positions). The outcome is
 * written into each store_msg, which stays the caller's.
 */
static int
group_apply(struct store *st, struct store_msg **ms, size_t n)
{
	struct msgctx *xs = xcalloc(n, sizeof(*xs));
	struct acc_changes *chs = xcalloc(n, sizeof(*chs));
	bool *go = xcalloc(n, sizeof(*go));
	int64_t lo;
	int rc = -1;

	st->grp_state_rows = 0;
	for (size_t i = 0; i < n; i++) {
		store_msg_reset(ms[i]);
		xs[i] = (struct msgctx){st, ms[i], NULL, false, false, 0};
	}
	if (cas(st, xs, n, go) == -1)
		goto out;
	if (pos_reserve(st, parse_group(st, xs, n, go, chs)) == -1)
		goto out;
	lo = st->pos_used + 1;
	if (rooms_apply(st, xs, n) == -1 ||
	    redaction_apply(st, xs, n) == -1 || apply_typing(st, xs, n) == -1 ||
	    apply_receipts(st, xs, n) == -1 || apply_adata(st, xs, n) == -1 ||
	    apply_device(st, xs, n) == -1 || set_sinces(st, xs, n) == -1 ||
	    set_windows(st, xs, n, lo) == -1 || cover_siblings(st, xs, n) == -1)
		goto out;
	group_done(st, xs, n);
	/* the group's rows go with its first applied message: they are
	 * counted when it is acked as committed (ingest), like its events */
	for (size_t i = 0; i < n; i++) {
		if (xs[i].ch != NULL) {
			ms[i]->nstate_rows = st->grp_state_rows;
			break;
		}
	}
	rc = 0;
out:
	for (size_t i = 0; i < n; i++) {
		if (xs[i].ch != NULL && xs[i].ch != ms[i]->pre)
			normalise_free(xs[i].ch);
		if (rc == -1) {
			store_msg_reset(ms[i]);
			ms[i]->error = "db error";
		}
	}
	free(xs);
	free(chs);
	free(go);
	return rc;
}

#define SQL_SP "SAVEPOINT acc_grp"

/*
 * Enters a group's savepoint: the one its batch's BEGIN opened, or a new
 * one sent with the RELEASE of the group before (COMMIT releases the
 * last): one round trip per group, not two (issue #13).
 */
static int
sp_enter(struct store *st)
{
	enum sp_state was = st->sp;

	st->sp = SP_NONE;
	if (was == SP_FRESH)
		return 0;
	return db_exec(st, "savepoint",
	               was == SP_HELD ? "RELEASE SAVEPOINT acc_grp; " SQL_SP
	                              : SQL_SP);
}

/*
 * A group inside its own savepoint; on failure nothing of it stays. Its
 * writes go out in pipelines (db_q0), checked at its end; a group that
 * of one message and the batch's only one (may_defer: the commit is
 * next) leaves them to the commit's pipeline: if one fails the batch
 * does, which is this message alone, as before (issue #13: a lone body's since
 * and rows cost no round trip of their own).
 */
static int
group_run(struct store *st, struct store_msg **ms, size_t n, bool may_defer)
{
	bool is_alone = may_defer && n == 1 && st->sp == SP_FRESH;
	int rc;

	if (sp_enter(st) == 0) {
		st->is_later = true;
		rc = group_apply(st, ms, n);
		st->is_later = false;
		if (rc == 0 && (is_alone || db_sync(st) == 0)) {
			st->sp = SP_HELD;
			return 0;
		}
		(void)db_sync(st); /* its failure is known */
		if (PQstatus(st->c) == CONNECTION_OK &&
		    db_exec(st, "savepoint",
		            "ROLLBACK TO SAVEPOINT acc_grp; "
		            "RELEASE SAVEPOINT acc_grp") == -1)
			log_warnx("store: cannot roll back the group");
	}
	for (size_t i = 0; i < n; i++) {
		store_msg_reset(ms[i]);
		ms[i]->error = "db error";
	}
	return -1;
}

/*
 * Applies the pending messages. When the group fails, each message is
 * tried alone, so one message Postgres rejects (per-message failure
 * isolation) costs the others only a second try. -1: the connection is
 * gone and the batch with it.
 */
static int
store_flush(struct store *st, bool is_last)
{
	size_t n = st->npend;

	st->npend = 0;
	if (n == 0 || group_run(st, st->pend, n, is_last) == 0)
		return 0;
	if (PQstatus(st->c) != CONNECTION_OK)
		return -1;
	if (n > 1) {
		log_warnx_rl("store: a group of %zu messages failed; applying "
		    "them one by one", n);
		for (size_t i = 0; i < n; i++)
			(void)group_run(st, &st->pend[i], 1, false);
	}
	return PQstatus(st->c) == CONNECTION_OK ? 0 : -1;
}

/*
 * Takes m into the batch; it is applied at the latest by
 * store_batch_commit, which fills in its outcome. A second message of a
 * device already pending first flushes the group, so its CAS sees the
 * since the first one set: a group must hold distinct devices (the same
 * device twice would pass the CAS twice and store a resend's to-device
 * messages twice). This is the only place that checks; callers hand over
 * messages in arrival order. A flush that loses the connection needs no
 * answer here: the commit then fails and nacks the whole batch.
 */
void
store_apply(struct store *st, struct store_msg *m)
{
	store_msg_reset(m);
	st->stats.msgs++;
	/* a fill's positions are its own (set_windows): a group of one */
	if (m->is_fill && st->npend > 0)
		(void)store_flush(st, false);
	for (size_t i = 0; i < st->npend; i++) {
		if (strcmp(st->pend[i]->user_id, m->user_id) == 0 &&
		    strcmp(st->pend[i]->device_id, m->device_id) == 0) {
			(void)store_flush(st, false);
			break;
		}
	}
	if (st->npend == st->cappend) {
		st->cappend = st->cappend ? st->cappend * 2 : 64;
		st->pend = xrealloc(st->pend, st->cappend * sizeof(*st->pend));
	}
	st->pend[st->npend++] = m;
	if (m->is_fill)
		(void)store_flush(st, false);
}

/* Recency as the api sorts rooms: the last timeline event's ts. */
static int64_t
room_ts(const struct acc_room *r)
{
	return r->timeline.n > 0 ? r->timeline.v[r->timeline.n - 1].ts : 0;
}

static int
ts_desc(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? 1 : x > y ? -1 : 0;
}

/*
 * Sliding sync's sort key as the body sets it: the ts of the room's
 * newest timeline event of a bump type, or -1 when it has none (the room
 * then sorts by its last event's ts, 016_cold.sql).
 */
static int64_t
room_bump_ts(const struct acc_room *r)
{
	int64_t b = -1;

	for (size_t i = 0; i < r->timeline.n; i++)
		if (rooms_is_bump_type(r->timeline.v[i].type) &&
		    r->timeline.v[i].ts > b)
			b = r->timeline.v[i].ts;
	return b;
}

/*
 * Whether joined room x of the body may be left to the fill: older than
 * the cut by its last event and its newest bump event. A room with an
 * empty timeline may not: with nothing stored either, it would sort by
 * the time its row is written.
 */
static bool
is_below_cut(const struct acc_room *x, int64_t cut)
{
	return x->section == ACC_JOIN && x->timeline.n > 0 &&
	       room_ts(x) < cut && room_bump_ts(x) < cut;
}

/*
 * The rooms of the window: every room not joined (invites: a few, and
 * the api sorts them by what is stored), the k joined ones most recently
 * active by their last timeline event and every room as recent (ties
 * included), every room whose newest bump event is as recent (sliding
 * sync's key) or whose timeline is empty, and every other room Postgres
 * already holds with a
 * last or bump event as recent (another user's poller stored it: the api
 * sorts by that). The others are the rest; -1 when there would be none.
 * *cutp is the cut: each room of the rest is older on both keys.
 */
static int
window_split(struct store *st, const struct acc_changes *all, size_t k,
             bool *in, int64_t *cutp)
{
	int64_t *ts = xcalloc(all->nrooms + 1, sizeof(*ts)), cut;
	struct pg_lit ids = {0};
	char cbuf[PG_I64_LEN];
	const char *p[2] = {NULL, cbuf};
	size_t nj = 0, nout = 0;
	PGresult *r = NULL;
	struct map idx;
	int rc = -1;

	map_init(&idx);
	for (size_t i = 0; i < all->nrooms; i++)
		if (all->rooms[i].section == ACC_JOIN)
			ts[nj++] = room_ts(&all->rooms[i]);
	if (nj <= k)
		goto out;
	qsort(ts, nj, sizeof(*ts), ts_desc);
	*cutp = cut = ts[k - 1];
	for (size_t i = 0; i < all->nrooms; i++) {
		const struct acc_room *x = &all->rooms[i];
		in[i] = !is_below_cut(x, cut);
		if (in[i])
			continue;
		pg_arr_str(&ids, x->room_id);
		map_put_i64(&idx, x->room_id, (int64_t)i);
		nout++;
	}
	if (nout == 0)
		goto out;
	pg_i64(cbuf, cut);
	p[0] = pg_arr_end(&ids);
	if ((r = db_q(st, S_WIN_STORED, 2, p)) == NULL)
		goto out;
	for (int row = 0; row < PQntuples(r); row++) {
		int64_t i;
		if (map_get_i64(&idx, PQgetvalue(r, row, 0), &i) && !in[i]) {
			in[i] = true;
			nout--;
		}
	}
	rc = nout > 0 ? 0 : -1;
out:
	PQclear(r);
	pg_lit_free(&ids);
	map_free(&idx, NULL);
	free(ts);
	return rc;
}

/*
 * How many rooms of the rest (not in) the user has no row for that a
 * sliding sync list counts yet: what the rest adds to a list's count
 * (docs/DESIGN.md, "The first window first").
 */
static int
window_more(struct store *st, const char *user_id,
            const struct acc_changes *all, const bool *in, int64_t *more)
{
	struct pg_lit ids = {0};
	const char *p[2] = {NULL, user_id};
	PGresult *r;

	for (size_t i = 0; i < all->nrooms; i++)
		if (!in[i])
			pg_arr_str(&ids, all->rooms[i].room_id);
	p[0] = pg_arr_end(&ids);
	r = db_q(st, S_WIN_MORE, 2, p);
	pg_lit_free(&ids);
	if (r == NULL)
		return -1;
	*more = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	return 0;
}

void
store_view_free(struct acc_changes *v)
{
	if (v->is_picked)
		normalise_free(v); /* its adata is the light set's */
	free(v->rooms);
	memset(v, 0, sizeof(*v));
}

int
store_window(struct store *st, struct store_msg *wm,
             const struct acc_changes *all, struct acc_changes *win,
             struct acc_changes *rest, size_t k)
{
	bool *in = xcalloc(all->nrooms, sizeof(*in));
	int64_t cut = 0;
	int rc = 0;

	memset(win, 0, sizeof(*win));
	*rest = *all;
	rest->rooms = xcalloc(all->nrooms, sizeof(*rest->rooms));
	rest->nrooms = rest->caprooms = 0;
	win->rooms = xcalloc(all->nrooms, sizeof(*win->rooms));
	if (store_batch_begin(st) == -1)
		goto out;
	if (window_split(st, all, k, in, &cut) == -1 ||
	    window_more(st, wm->user_id, all, in, &wm->window_more) == -1) {
		store_batch_rollback(st);
		goto out;
	}
	for (size_t i = 0; i < all->nrooms; i++) {
		if (in[i])
			win->rooms[win->nrooms++] = all->rooms[i];
		else
			rest->rooms[rest->nrooms++] = all->rooms[i];
	}
	win->caprooms = win->nrooms;
	rest->caprooms = rest->nrooms;
	if (all->is_light) {
		/* the window's rooms alone are normalised in full */
		store_view_free(win);
		normalise_pick(all, in, wm->user_id, win);
	}
	/*
	 * Global account data (m.direct: is_dm) goes with the window too:
	 * the fill's upsert of the same JSON changes nothing.
	 */
	win->adata = all->adata;
	win->nadata = all->nadata;
	wm->pre = win;
	wm->pre_rc = 0;
	wm->first = "window";
	wm->window_k = (int64_t)k;
	wm->window_cut = cut;
	store_apply(st, wm);
	/* a resend of a body already stored is no window */
	rc = store_batch_commit(st) == 0 && wm->ok && !wm->is_replay;
out:
	if (!rc) {
		store_view_free(win);
		store_view_free(rest);
	}
	free(in);
	return rc;
}

/*
 * A batch's statements are prepared once but Postgres re-planned them on
 * every call (a custom plan for the arrays at hand always looked cheaper
 * than the generic one): under steady load more planning than execution.
 * Their plans do not depend on the values, so batches use generic plans;
 * cleanup and the rest keep the default (SET LOCAL ends with the batch).
 * The first group's savepoint comes with them (sp_enter), and the three
 * go in the pipeline of the first group's CAS (db_later): a lone body
 * waits for Postgres once less. A connection found lost here is opened
 * again and the batch goes on; one lost while they wait fails the batch,
 * which is nacked.
 */
static const char *const sql_begin[] = {
    "BEGIN", "SET LOCAL plan_cache_mode = force_generic_plan", SQL_SP};

int
store_batch_begin(struct store *st)
{
	size_t n = sizeof(sql_begin) / sizeof(sql_begin[0]);

	st->npend = 0;
	if (store_ready(st) == -1)
		return -1;
	if (db_later(st, sql_begin, n) == -1) {
		if (store_ready(st) == -1 || db_later(st, sql_begin, n) == -1)
			return -1;
	}
	st->sp = SP_FRESH; /* the first group's (sp_enter) */
	st->stats.batches++;
	return 0;
}

int
store_batch_commit(struct store *st)
{
	if (store_flush(st, true) == -1 || pos_commit(st) == -1)
		goto fail;
	st->sp = SP_NONE;
	st->pos_committed = st->pos_used;
	return 0;
fail:
	store_batch_rollback(st);
	return -1;
}

void
store_batch_rollback(struct store *st)
{
	st->npend = 0;
	st->sp = SP_NONE;
	if (st->c != NULL)
		(void)db_sync(st); /* what a failed commit left unread */
	if (st->c != NULL && PQstatus(st->c) == CONNECTION_OK &&
	    PQtransactionStatus(st->c) != PQTRANS_IDLE &&
	    db_exec(st, "batch", "ROLLBACK") == -1)
		log_warnx("store: rollback failed");
	/* Positions handed out in the lost batch are never reused. */
}

/*
 * Records a poller's view of a device: 1 if recorded, 0 if the device has
 * another token by now (the state was learnt with the old one, and a 401
 * for a replaced token must not expire the new one), -1 on error.
 */
int
store_poll_state(struct store *st, const struct proto_poll_state *ps)
{
	const char *p[5] = {ps->user_id, ps->device_id, ps->state, ps->error,
	    ps->token_fp};
	PGresult *r;
	int n;

	if (store_ready(st) == -1)
		return -1;
	if ((r = db_q(st, S_POLL, 5, p)) == NULL)
		return -1;
	n = PQntuples(r);
	PQclear(r);
	return n > 0;
}

long long
store_cleanup(struct store *st, long long horizon_secs)
{
	if (store_ready(st) == -1)
		return -1;
	return cleanup_run(st, horizon_secs);
}
