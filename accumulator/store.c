/*
 * The writer connection: one blocking libpq connection, which is fine here
 * because this process does one thing and a single writer is what makes
 * positions commit in order (contract 2). Owns the transaction around a
 * batch, compare-and-set on the device's since (contract 1), position
 * allocation, the non-room tables (typing, receipts, account data,
 * to-device, device lists and keys) and cleanup. Room events and state
 * are applied by rooms.c.
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
#include "pg.h"
#include "sqlarr.h"
#include "store_int.h"
#include "util.h"

/* Distinct from pg.c's migration lock ("syncv3" in hex). */
#define WRITER_LOCK_KEY "7370796e63763301"
#define POS_BLOCK 4096

static const struct stmt {
	const char *name, *sql;
} stmts[] = {
	[S_CAS] = {"acc_cas", "SELECT k.i, d.since, d.is_initial_done FROM "
	    "unnest($1::text[], $2::text[]) WITH ORDINALITY AS k(u, dv, i) "
	    "JOIN syncv3_devices d ON d.user_id = k.u AND d.device_id = k.dv "
	    "ORDER BY d.user_id, d.device_id FOR UPDATE OF d"},
	[S_SINCE] = {"acc_since", "UPDATE syncv3_devices d SET since = k.s, "
	    "is_initial_done = true FROM unnest($1::text[], $2::text[], "
	    "$3::text[]) AS k(u, dv, s) WHERE d.user_id = k.u AND "
	    "d.device_id = k.dv"},
	[S_RESERVE] = {"acc_reserve", "SELECT setval('syncv3_pos_seq', "
	    "nextval('syncv3_pos_seq') + $1::bigint - 1)"},
	[S_POSITION] = {"acc_position", "UPDATE syncv3_position SET pos = "
	    "$1::bigint WHERE id = 1 AND pos < $1::bigint"},
	[S_KNOWN] = {"acc_known", "SELECT event_id, nid FROM syncv3_events "
	    "WHERE event_id = ANY($1::text[])"},
	[S_CUR] = {"acc_cur", "SELECT k.i, s.nid, s.membership FROM "
	    "unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY "
	    "AS k(r, t, sk, i) JOIN syncv3_state s ON s.room_id = k.r AND "
	    "s.type = k.t AND s.state_key = k.sk AND s.to_pos IS NULL"},
	[S_ST_CLOSE] = {"acc_st_close", "UPDATE syncv3_state s SET to_pos = "
	    "k.p FROM unnest($1::text[], $2::text[], $3::text[], "
	    "$4::bigint[]) AS k(r, t, sk, p) WHERE s.room_id = k.r AND "
	    "s.type = k.t AND s.state_key = k.sk AND s.to_pos IS NULL"},
	[S_ROOMS_GET] = {"acc_rooms_get", "SELECT room_id, last_nid, last_ts,"
	    " name, canonical_alias, topic, avatar, room_type, is_encrypted, "
	    "joined_count, invited_count FROM syncv3_rooms "
	    "WHERE room_id = ANY($1::text[])"},
	[S_ROOMS_PUT] = {"acc_rooms_put", "INSERT INTO syncv3_rooms (room_id,"
	    " last_nid, last_ts, name, canonical_alias, topic, avatar, "
	    "room_type, is_encrypted, joined_count, invited_count, "
	    "updated_pos) SELECT * FROM unnest($1::text[], $2::bigint[], "
	    "$3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[], "
	    "$8::text[], $9::bool[], $10::int[], $11::int[], $12::bigint[]) "
	    "ON CONFLICT (room_id) DO UPDATE SET last_nid = excluded.last_nid,"
	    " last_ts = excluded.last_ts, name = excluded.name, "
	    "canonical_alias = excluded.canonical_alias, topic = "
	    "excluded.topic, avatar = excluded.avatar, room_type = "
	    "excluded.room_type, is_encrypted = excluded.is_encrypted, "
	    "joined_count = excluded.joined_count, invited_count = "
	    "excluded.invited_count, updated_pos = excluded.updated_pos"},
	[S_UR_GET] = {"acc_ur_get", "SELECT k.i, u.membership, u.pos, "
	    "u.invite_state, u.heroes, u.notification_count, "
	    "u.highlight_count, u.prev_batch FROM unnest($1::text[], "
	    "$2::text[]) WITH ORDINALITY AS k(us, r, i) JOIN "
	    "syncv3_user_rooms u ON u.user_id = k.us AND u.room_id = k.r"},
	[S_UR_PUT] = {"acc_ur_put", "INSERT INTO syncv3_user_rooms (user_id,"
	    " room_id, membership, pos, invite_state, heroes, "
	    "notification_count, highlight_count, updated_pos, prev_batch) "
	    "SELECT * FROM unnest($1::text[], $2::text[], $3::text[], "
	    "$4::bigint[], $5::text[], $6::text[], $7::bigint[], "
	    "$8::bigint[], $9::bigint[], $10::text[]) "
	    "ON CONFLICT (user_id, room_id) DO UPDATE SET membership = "
	    "excluded.membership, pos = excluded.pos, invite_state = "
	    "excluded.invite_state, heroes = excluded.heroes, "
	    "notification_count = excluded.notification_count, "
	    "highlight_count = excluded.highlight_count, updated_pos = "
	    "excluded.updated_pos, prev_batch = excluded.prev_batch"},
	[S_TYPING] = {"acc_typing", "INSERT INTO syncv3_typing AS t (room_id,"
	    " user_ids, pos) SELECT * FROM unnest($1::text[], $2::text[], "
	    "$3::bigint[]) AS k(r, u, p) WHERE k.u <> '[]' OR EXISTS (SELECT"
	    " 1 FROM syncv3_typing x WHERE x.room_id = k.r) "
	    "ON CONFLICT (room_id) DO UPDATE SET user_ids = excluded.user_ids,"
	    " pos = excluded.pos WHERE t.user_ids <> excluded.user_ids "
	    "RETURNING room_id, pos"},
	[S_RECEIPTS] = {"acc_receipts", "INSERT INTO syncv3_receipts AS x "
	    "(room_id, user_id, receipt_type, thread_id, event_id, ts, pos) "
	    "SELECT * FROM unnest($1::text[], $2::text[], $3::text[], "
	    "$4::text[], $5::text[], $6::bigint[], $7::bigint[]) "
	    "ON CONFLICT (room_id, user_id, receipt_type, thread_id) DO "
	    "UPDATE SET event_id = excluded.event_id, ts = excluded.ts, pos ="
	    " excluded.pos WHERE x.event_id <> excluded.event_id"},
	[S_ADATA] = {"acc_adata", "INSERT INTO syncv3_account_data AS a "
	    "(user_id, room_id, type, json, pos) SELECT * FROM "
	    "unnest($1::text[], $2::text[], $3::text[], $4::text[], "
	    "$5::bigint[]) ON CONFLICT (user_id, room_id, type) DO UPDATE SET "
	    "json = excluded.json, pos = excluded.pos WHERE a.json <> "
	    "excluded.json RETURNING pos"},
	[S_DKEYS] = {"acc_dkeys", "INSERT INTO syncv3_device_keys AS d "
	    "(user_id, device_id, otk_counts, fallback_types, pos) VALUES "
	    "($1, $2, coalesce($3::text, '{}'), coalesce($4::text, '[]'), "
	    "$5::bigint) ON CONFLICT (user_id, device_id) DO UPDATE SET "
	    "otk_counts = coalesce($3::text, d.otk_counts), fallback_types = "
	    "coalesce($4::text, d.fallback_types), pos = $5::bigint WHERE "
	    "d.otk_counts <> coalesce($3::text, d.otk_counts) OR "
	    "d.fallback_types <> coalesce($4::text, d.fallback_types) "
	    "RETURNING pos"},
	[S_POLL] = {"acc_poll", "UPDATE syncv3_devices SET poll_state = $3, "
	    "poll_error = $4, poll_updated = now() WHERE user_id = $1 AND "
	    "device_id = $2"},
	[S_MARK] = {"acc_mark", "INSERT INTO syncv3_pos_marks (at, pos) "
	    "VALUES (now(), $1::bigint)"},
	[S_CLEAN_HORIZON] = {"acc_clean_horizon", "SELECT coalesce(max(pos), "
	    "0) FROM syncv3_pos_marks WHERE at < now() - make_interval(secs "
	    "=> $1::bigint)"},
	[S_CLEAN_STATE] = {"acc_clean_state", "DELETE FROM syncv3_state WHERE"
	    " ctid = ANY(ARRAY(SELECT ctid FROM syncv3_state WHERE to_pos IS "
	    "NOT NULL AND to_pos <= $1::bigint LIMIT 10000))"},
	[S_CLEAN_DL] = {"acc_clean_dl", "DELETE FROM syncv3_device_lists "
	    "WHERE pos <= $1::bigint"},
	[S_CLEAN_MARKS] = {"acc_clean_marks", "DELETE FROM syncv3_pos_marks "
	    "WHERE pos < $1::bigint"},
};

PGresult *
store_q(struct store *st, int id, int nparams, const char *const *params)
{
	PGresult *r;
	ExecStatusType s;

	r = PQexecPrepared(st->c, stmts[id].name, nparams, params, NULL, NULL,
	    0);
	s = PQresultStatus(r);
	if (s == PGRES_TUPLES_OK || s == PGRES_COMMAND_OK)
		return r;
	log_warnx_rl("store: %s: %s", stmts[id].name,
	    r ? PQresultErrorMessage(r) : PQerrorMessage(st->c));
	PQclear(r);
	return NULL;
}

int
store_q0(struct store *st, int id, int nparams, const char *const *params)
{
	PGresult *r = store_q(st, id, nparams, params);

	PQclear(r);
	return r ? 0 : -1;
}

/* COPY ... FROM STDIN of ready rows (sqlarr.c cp_*): 0 or -1. */
int
store_copy(struct store *st, const char *sql, const char *data, size_t len)
{
	PGresult *r = PQexec(st->c, sql);
	int rc = 0;

	if (PQresultStatus(r) != PGRES_COPY_IN) {
		log_warnx_rl("store: %s: %s", sql,
		    r ? PQresultErrorMessage(r) : PQerrorMessage(st->c));
		PQclear(r);
		return -1;
	}
	PQclear(r);
	for (size_t off = 0; rc == 0 && off < len;) {
		size_t n = len - off > (1 << 20) ? (1 << 20) : len - off;
		if (PQputCopyData(st->c, data + off, (int)n) != 1)
			rc = -1;
		off += n;
	}
	if (PQputCopyEnd(st->c, rc == 0 ? NULL : "send failed") != 1)
		rc = -1;
	while ((r = PQgetResult(st->c)) != NULL) {
		if (PQresultStatus(r) != PGRES_COMMAND_OK) {
			log_warnx_rl("store: %s: %s", sql,
			    PQresultErrorMessage(r));
			rc = -1;
		}
		PQclear(r);
	}
	return rc;
}

static int
prepare_all(struct store *st)
{
	for (size_t i = 0; i < sizeof(stmts) / sizeof(stmts[0]); i++) {
		PGresult *r = PQprepare(st->c, stmts[i].name, stmts[i].sql, 0,
		    NULL);
		if (PQresultStatus(r) != PGRES_COMMAND_OK) {
			log_warnx("store: prepare %s: %s", stmts[i].name,
			    PQresultErrorMessage(r));
			PQclear(r);
			return -1;
		}
		PQclear(r);
	}
	return 0;
}

/* Session-level lock: a second accumulator waits here (single writer). */
static int
writer_lock(struct store *st)
{
	PGresult *r;
	bool got;

	r = pg_query(st->c, "writer lock", "SELECT pg_try_advisory_lock(x'"
	    WRITER_LOCK_KEY "'::bigint)", 0, NULL);
	if (r == NULL)
		return -1;
	got = PQgetvalue(r, 0, 0)[0] == 't';
	PQclear(r);
	if (got)
		return 0;
	log_warnx("store: another accumulator holds the writer lock; "
	    "waiting for it");
	if (pg_exec(st->c, "writer lock", "SELECT pg_advisory_lock(x'"
	    WRITER_LOCK_KEY "'::bigint)") == -1)
		return -1;
	log_info("store: writer lock acquired");
	return 0;
}

static int
load_pos(struct store *st)
{
	PGresult *r = pg_query(st->c, "position",
	    "SELECT pos FROM syncv3_position WHERE id = 1", 0, NULL);

	if (r == NULL || PQntuples(r) != 1) {
		PQclear(r);
		return -1;
	}
	st->pos_committed = st->pos_used = strtoll(PQgetvalue(r, 0, 0), NULL,
	    10);
	st->pos_next = st->pos_end = 0;
	PQclear(r);
	return 0;
}

static int
store_connect(struct store *st)
{
	if (st->c != NULL)
		PQfinish(st->c);
	if ((st->c = pg_connect_wait(st->conninfo, 3600)) == NULL)
		return -1;
	if (pg_exec(st->c, "session", "SET plan_cache_mode = force_custom_plan") == -1 ||
	    pg_migrate(st->c) == -1 ||
	    writer_lock(st) == -1 ||
	    prepare_all(st) == -1 || load_pos(st) == -1)
		return -1;
	return 0;
}

struct store *
store_new(const char *conninfo)
{
	struct store *st = xcalloc(1, sizeof(*st));

	st->conninfo = xstrdup(conninfo);
	if (store_connect(st) == -1) {
		store_free(st);
		return NULL;
	}
	log_info("store: ready at position %" PRId64, st->pos_committed);
	return st;
}

void
store_free(struct store *st)
{
	if (st == NULL)
		return;
	if (st->c != NULL)
		PQfinish(st->c);
	free(st->pend);
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

/* Makes sure n positions can be handed out without a round trip. */
int
store_reserve(struct store *st, int64_t n)
{
	char buf[24];
	const char *p[1] = {buf};
	PGresult *r;
	int64_t want = n > POS_BLOCK ? n : POS_BLOCK, last;

	if (st->pos_end - st->pos_next + 1 >= n && st->pos_next > 0)
		return 0;
	snprintf(buf, sizeof(buf), "%" PRId64, want);
	if ((r = store_q(st, S_RESERVE, 1, p)) == NULL)
		return -1;
	last = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	st->pos_next = last - want + 1;
	st->pos_end = last;
	return 0;
}

int64_t
store_pos_next(struct store *st)
{
	if (st->pos_next == 0 || st->pos_next > st->pos_end)
		fatalx("store: position taken beyond the reservation");
	st->pos_used = st->pos_next;
	return st->pos_next++;
}

/* Reconnects when the connection broke (the batch is lost anyway). */
static int
check_conn(struct store *st)
{
	if (PQstatus(st->c) == CONNECTION_OK)
		return 0;
	log_warnx("store: connection lost, reconnecting");
	return store_connect(st);
}

/*
 * A batch's statements are prepared once but Postgres re-planned them on
 * every call (a custom plan for the arrays at hand always looked cheaper
 * than the generic one): under steady load more planning than execution.
 * Their plans do not depend on the values, so batches use generic plans;
 * cleanup and the rest keep the default (SET LOCAL ends with the batch).
 */
#define SQL_BEGIN "BEGIN; SET LOCAL plan_cache_mode = force_generic_plan"

int
store_batch_begin(struct store *st)
{
	st->npend = 0;
	if (check_conn(st) == -1)
		return -1;
	if (pg_exec(st->c, "batch", SQL_BEGIN) == -1) {
		if (check_conn(st) == -1 || pg_exec(st->c, "batch",
		    SQL_BEGIN) == -1)
			return -1;
	}
	st->batch_start_pos = st->pos_used;
	st->stats.batches++;
	return 0;
}

static int store_flush(struct store *st);

int
store_batch_commit(struct store *st)
{
	char buf[24];
	const char *p[1] = {buf};

	if (store_flush(st) == -1)
		goto fail;
	snprintf(buf, sizeof(buf), "%" PRId64, st->pos_used);
	if (st->pos_used > st->pos_committed &&
	    store_q0(st, S_POSITION, 1, p) == -1)
		goto fail;
	if (pg_exec(st->c, "batch", "COMMIT") == -1)
		goto fail;
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
	if (PQstatus(st->c) == CONNECTION_OK &&
	    PQtransactionStatus(st->c) != PQTRANS_IDLE &&
	    pg_exec(st->c, "batch", "ROLLBACK") == -1)
		log_warnx("store: rollback failed");
	/* Positions handed out in the lost batch are never reused. */
}

void
store_msg_reset(struct store_msg *m)
{
	free(m->since);
	m->since = NULL;
	m->ok = false;
	m->error = NULL;
	notice_clear(&m->notices);
}

/* A row written for a group, and the message its notice goes to. */
struct prow {
	int64_t pos;
	struct store_msg *m;
	const char *room;
};

struct prows {
	struct prow *v;
	size_t n, cap;
};

static void
prow_add(struct prows *l, int64_t pos, struct store_msg *m, const char *room)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 16;
		l->v = xrealloc(l->v, l->cap * sizeof(*l->v));
	}
	l->v[l->n++] = (struct prow){pos, m, room};
}

/* Rows are added in position order, so a returned pos finds its row. */
static const struct prow *
prow_find(const struct prows *l, int64_t pos)
{
	size_t lo = 0, hi = l->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (l->v[mid].pos == pos)
			return &l->v[mid];
		if (l->v[mid].pos < pos)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
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
		ab_str(&c.c[0], xs[i].m->user_id);
		ab_str(&c.c[1], xs[i].m->device_id);
	}
	cols_params(&c, p);
	r = store_q(st, S_CAS, 2, p);
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
		if (strcmp(m->since, m->since_in) == 0)
			go[i] = true;
		else if (strcmp(m->since, m->next_batch) == 0)
			m->ok = true;	/* a resend of what is committed */
		else
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

/* Typing: the last message of the group that reports a room wins. */
static int
apply_typing(struct store *st, struct msgctx *xs, size_t n)
{
	struct cols c;
	struct prows pr = {0};
	const char *p[3];
	PGresult *r = NULL;
	struct smap seen;
	int rc = -1;

	cols_init(&c, 3);
	smap_init(&seen);
	for (size_t k = n; k-- > 0;) {
		struct acc_changes *ch = xs[k].ch;
		for (size_t i = ch ? ch->nrooms : 0; i-- > 0;) {
			struct acc_room *rm = &ch->rooms[i];
			int64_t pos;
			if (rm->typing == NULL ||
			    smap_get(&seen, rm->room_id, NULL))
				continue;
			smap_put(&seen, rm->room_id, 1);
			ab_str(&c.c[0], rm->room_id);
			ab_str(&c.c[1], rm->typing);
			ab_i64(&c.c[2], pos = store_pos_next(st));
			prow_add(&pr, pos, xs[k].m, rm->room_id);
			c.rows++;
		}
	}
	if (c.rows == 0) {
		rc = 0;
		goto out;
	}
	cols_params(&c, p);
	if ((r = store_q(st, S_TYPING, 3, p)) == NULL)
		goto out;
	for (int i = 0; i < PQntuples(r); i++) {
		int64_t pos = strtoll(PQgetvalue(r, i, 1), NULL, 10);
		const struct prow *w = prow_find(&pr, pos);
		if (w != NULL)
			notice_add(&w->m->notices, &(struct proto_notice){
			    .type = PROTO_NOTICE_TYPING, .pos = pos,
			    .room_id = w->room});
	}
	rc = 0;
out:
	PQclear(r);
	free(pr.v);
	smap_free(&seen);
	cols_free(&c);
	return rc;
}

static void
receipts_add(struct store *st, struct cols *c, struct smap *seen,
    const struct acc_room *rm)
{
	/* Last one wins for a key: walk backwards, skip seen keys. */
	for (size_t j = rm->nreceipts; j-- > 0;) {
		const struct acc_receipt *rc_ = &rm->receipts[j];
		char *k = xasprintf("%zu:%s%zu:%s%zu:%s%s",
		    strlen(rm->room_id), rm->room_id, strlen(rc_->user_id),
		    rc_->user_id, strlen(rc_->rtype), rc_->rtype,
		    rc_->thread_id);
		bool dup = smap_get(seen, k, NULL);
		if (!dup)
			smap_put(seen, k, 1);
		free(k);
		if (dup)
			continue;
		ab_str(&c->c[0], rm->room_id);
		ab_str(&c->c[1], rc_->user_id);
		ab_str(&c->c[2], rc_->rtype);
		ab_str(&c->c[3], rc_->thread_id);
		ab_str(&c->c[4], rc_->event_id);
		ab_i64(&c->c[5], rc_->ts);
		ab_i64(&c->c[6], store_pos_next(st));
		c->rows++;
	}
}

static int
apply_receipts(struct store *st, struct msgctx *xs, size_t n)
{
	struct cols c;
	const char *p[7];
	struct smap seen;
	int rc = 0;

	cols_init(&c, 7);
	smap_init(&seen);
	for (size_t k = n; k-- > 0;) {
		struct acc_changes *ch = xs[k].ch;
		for (size_t i = ch ? ch->nrooms : 0; i-- > 0;)
			receipts_add(st, &c, &seen, &ch->rooms[i]);
	}
	if (c.rows > 0) {
		cols_params(&c, p);
		rc = store_q0(st, S_RECEIPTS, 7, p);
	}
	smap_free(&seen);
	cols_free(&c);
	return rc;
}

static void
adata_add(struct store *st, struct msgctx *x, struct cols *c,
    struct smap *seen, struct prows *pr, const char *room,
    const struct acc_adata *a)
{
	char *k = smap_key3(x->m->user_id, room, a->type);
	int64_t pos;

	if (!smap_get(seen, k, NULL)) {
		smap_put(seen, k, 1);
		ab_str(&c->c[0], x->m->user_id);
		ab_str(&c->c[1], room);
		ab_str(&c->c[2], a->type);
		ab_str(&c->c[3], a->json);
		ab_i64(&c->c[4], pos = store_pos_next(st));
		prow_add(pr, pos, x->m, room);
		c->rows++;
	}
	free(k);
}

static int
apply_adata(struct store *st, struct msgctx *xs, size_t n)
{
	struct cols c;
	struct prows pr = {0};
	const char *p[5];
	struct smap seen;
	PGresult *r = NULL;
	int rc = 0;

	cols_init(&c, 5);
	smap_init(&seen);
	for (size_t k = n; k-- > 0;) {
		struct acc_changes *ch = xs[k].ch;
		if (ch == NULL)
			continue;
		for (size_t i = ch->nadata; i-- > 0;)
			adata_add(st, &xs[k], &c, &seen, &pr, "",
			    &ch->adata[i]);
		for (size_t i = ch->nrooms; i-- > 0;) {
			struct acc_room *rm = &ch->rooms[i];
			for (size_t j = rm->nadata; j-- > 0;)
				adata_add(st, &xs[k], &c, &seen, &pr,
				    rm->room_id, &rm->adata[j]);
		}
	}
	if (c.rows > 0) {
		cols_params(&c, p);
		if ((r = store_q(st, S_ADATA, 5, p)) == NULL)
			rc = -1;
		for (int i = 0; r != NULL && i < PQntuples(r); i++) {
			int64_t pos = strtoll(PQgetvalue(r, i, 0), NULL, 10);
			const struct prow *w = prow_find(&pr, pos);
			if (w != NULL)
				notice_add(&w->m->notices, &(struct proto_notice){
				    .type = PROTO_NOTICE_ACCOUNT_DATA,
				    .pos = pos, .room_id = w->room,
				    .user_id = w->m->user_id});
		}
		PQclear(r);
	}
	free(pr.v);
	smap_free(&seen);
	cols_free(&c);
	return rc;
}

/* A wake-up for the sessions of m's device. */
static void
device_notice(struct store_msg *m, int64_t pos)
{
	notice_add(&m->notices, &(struct proto_notice){
	    .type = PROTO_NOTICE_TO_DEVICE, .pos = pos, .user_id = m->user_id,
	    .device_id = m->device_id});
}

/* To-device messages and device list changes: logs, in message order. */
static int
apply_logs(struct store *st, struct msgctx *xs, size_t n, int64_t *dpos)
{
	struct abuf td = {0}, dl = {0};
	int rc = 0;

	for (size_t k = 0; k < n; k++) {
		struct acc_changes *ch = xs[k].ch;
		struct store_msg *m = xs[k].m;
		int64_t pos = 0;
		if (ch == NULL)
			continue;
		for (size_t i = 0; i < ch->nto_device; i++) {
			cp_i64(&td, pos = store_pos_next(st));
			cp_str(&td, m->user_id);
			cp_str(&td, m->device_id);
			cp_str(&td, ch->to_device[i]);
			cp_row_end(&td);
		}
		if (pos > 0)
			device_notice(m, pos);
		for (int left = 0; left < 2; left++) {
			char **v = left ? ch->dl_left : ch->dl_changed;
			size_t nv = left ? ch->ndl_left : ch->ndl_changed;
			for (size_t i = 0; i < nv; i++) {
				cp_i64(&dl, dpos[k] = store_pos_next(st));
				cp_str(&dl, m->user_id);
				cp_str(&dl, m->device_id);
				cp_str(&dl, v[i]);
				cp_str(&dl, left ? "left" : "changed");
				cp_row_end(&dl);
			}
		}
	}
	if (td.n > 0)
		rc = store_copy(st, "COPY syncv3_to_device (pos, user_id, "
		    "device_id, json) FROM STDIN", td.p, td.n);
	if (rc == 0 && dl.n > 0)
		rc = store_copy(st, "COPY syncv3_device_lists (pos, user_id, "
		    "device_id, target_user, change) FROM STDIN", dl.p, dl.n);
	ab_free(&td);
	ab_free(&dl);
	return rc;
}

/* Key counts (rare: one statement per message that has them). Device
 * list changes and key counts also wake the device's sessions. */
static int
apply_device(struct store *st, struct msgctx *xs, size_t n)
{
	int64_t *dpos = xcalloc(n + 1, sizeof(*dpos));
	int rc = -1;

	if (apply_logs(st, xs, n, dpos) == -1)
		goto out;
	for (size_t k = 0; k < n; k++) {
		struct acc_changes *ch = xs[k].ch;
		struct store_msg *m = xs[k].m;
		char buf[24];
		const char *p[5] = {m->user_id, m->device_id, NULL, NULL, buf};
		PGresult *r;
		if (ch != NULL &&
		    (ch->otk_counts != NULL || ch->fallback_types != NULL)) {
			snprintf(buf, sizeof(buf), "%" PRId64,
			    store_pos_next(st));
			p[2] = ch->otk_counts;
			p[3] = ch->fallback_types;
			if ((r = store_q(st, S_DKEYS, 5, p)) == NULL)
				goto out;
			if (PQntuples(r) > 0)
				dpos[k] = strtoll(PQgetvalue(r, 0, 0), NULL,
				    10);
			PQclear(r);
		}
		if (dpos[k] > 0)
			device_notice(m, dpos[k]);
	}
	rc = 0;
out:
	free(dpos);
	return rc;
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

static int
set_sinces(struct store *st, struct msgctx *xs, size_t n)
{
	struct cols c;
	const char *p[3];
	int rc = 0;

	cols_init(&c, 3);
	for (size_t i = 0; i < n; i++) {
		if (xs[i].ch == NULL)
			continue;
		ab_str(&c.c[0], xs[i].m->user_id);
		ab_str(&c.c[1], xs[i].m->device_id);
		ab_str(&c.c[2], xs[i].m->next_batch);
		c.rows++;
	}
	if (c.rows > 0) {
		cols_params(&c, p);
		rc = store_q0(st, S_SINCE, 3, p);
	}
	cols_free(&c);
	return rc;
}

/* Parses the bodies of the messages that passed the CAS. */
static int64_t
parse_group(struct store *st, struct msgctx *xs, size_t n, const bool *go,
    struct acc_changes *chs)
{
	int64_t need = 0;

	for (size_t i = 0; i < n; i++) {
		struct store_msg *m = xs[i].m;
		const char *err = NULL;
		if (!go[i])
			continue;
		if (normalise(m->body, m->body_len, m->user_id, &chs[i],
		    &err) == -1) {
			log_warnx_rl("store: %s/%s: bad body: %s", m->user_id,
			    m->device_id, err ? err : "?");
			st->stats.bad_bodies++;
			m->error = "bad body";
			continue;
		}
		xs[i].ch = &chs[i];
		m->nevents = chs[i].nevents;
		m->nbad = chs[i].nbad;
		need += positions_needed(&chs[i]);
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
		if (!xs[i].was_initial)
			notice_add(&m->notices, &(struct proto_notice){
			    .type = PROTO_NOTICE_DEVICE, .pos = st->pos_used,
			    .user_id = m->user_id, .device_id = m->device_id,
			    .state = "synced"});
		free(m->since);
		m->since = xstrdup(m->next_batch);
		m->ok = true;
		st->stats.events += xs[i].ch->nevents;
		st->stats.bad_events += xs[i].ch->nbad;
	}
}

/* Applies messages of distinct devices with one statement per table. */
static int
group_apply(struct store *st, struct store_msg **ms, size_t n)
{
	struct msgctx *xs = xcalloc(n, sizeof(*xs));
	struct acc_changes *chs = xcalloc(n, sizeof(*chs));
	bool *go = xcalloc(n, sizeof(*go));
	int rc = -1;

	for (size_t i = 0; i < n; i++) {
		store_msg_reset(ms[i]);
		xs[i] = (struct msgctx){st, ms[i], NULL, false};
	}
	if (cas(st, xs, n, go) == -1)
		goto out;
	if (store_reserve(st, parse_group(st, xs, n, go, chs)) == -1 ||
	    rooms_apply(st, xs, n) == -1 || apply_typing(st, xs, n) == -1 ||
	    apply_receipts(st, xs, n) == -1 || apply_adata(st, xs, n) == -1 ||
	    apply_device(st, xs, n) == -1 || set_sinces(st, xs, n) == -1)
		goto out;
	group_done(st, xs, n);
	rc = 0;
out:
	for (size_t i = 0; i < n; i++) {
		if (xs[i].ch != NULL)
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

/* A group inside its own savepoint; on failure nothing of it stays. */
static int
group_run(struct store *st, struct store_msg **ms, size_t n)
{
	if (pg_exec(st->c, "savepoint", "SAVEPOINT acc_grp") == 0) {
		if (group_apply(st, ms, n) == 0 &&
		    pg_exec(st->c, "savepoint", "RELEASE SAVEPOINT acc_grp") ==
		    0)
			return 0;
		if (PQstatus(st->c) == CONNECTION_OK &&
		    (pg_exec(st->c, "savepoint",
		    "ROLLBACK TO SAVEPOINT acc_grp") == -1 ||
		    pg_exec(st->c, "savepoint",
		    "RELEASE SAVEPOINT acc_grp") == -1))
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
store_flush(struct store *st)
{
	size_t n = st->npend;

	st->npend = 0;
	if (n == 0 || group_run(st, st->pend, n) == 0)
		return 0;
	if (PQstatus(st->c) != CONNECTION_OK)
		return -1;
	if (n > 1) {
		log_warnx_rl("store: a group of %zu messages failed; applying "
		    "them one by one", n);
		for (size_t i = 0; i < n; i++)
			(void)group_run(st, &st->pend[i], 1);
	}
	return PQstatus(st->c) == CONNECTION_OK ? 0 : -1;
}

/*
 * Takes m into the batch; it is applied at the latest by
 * store_batch_commit, which fills in its outcome. A second message of a
 * device already pending first flushes the group, so its CAS sees the
 * since the first one set.
 */
void
store_apply(struct store *st, struct store_msg *m)
{
	store_msg_reset(m);
	st->stats.msgs++;
	for (size_t i = 0; i < st->npend; i++) {
		if (strcmp(st->pend[i]->user_id, m->user_id) == 0 &&
		    strcmp(st->pend[i]->device_id, m->device_id) == 0) {
			(void)store_flush(st);
			break;
		}
	}
	if (st->npend == st->cappend) {
		st->cappend = st->cappend ? st->cappend * 2 : 64;
		st->pend = xrealloc(st->pend, st->cappend * sizeof(*st->pend));
	}
	st->pend[st->npend++] = m;
}

int
store_poll_state(struct store *st, const struct proto_poll_state *ps)
{
	const char *p[4] = {ps->user_id, ps->device_id, ps->state, ps->error};

	if (check_conn(st) == -1)
		return -1;
	return store_q0(st, S_POLL, 4, p);
}

/*
 * Growth: closed state ranges that end at or before the position the
 * store had `horizon_secs` ago cannot be asked for by any session that
 * is allowed to resume (older sinces must restart), so they go; the
 * device list log goes with them. Events and current state stay. Runs
 * outside batches, in slices, each its own transaction.
 */
long long
store_cleanup(struct store *st, long long horizon_secs)
{
	char hb[24], pb[24];
	const char *p[1];
	PGresult *r;
	long long total = 0, n;
	int64_t h;

	if (check_conn(st) == -1)
		return -1;
	snprintf(pb, sizeof(pb), "%" PRId64, st->pos_committed);
	p[0] = pb;
	if (store_q0(st, S_MARK, 1, p) == -1)
		return -1;
	snprintf(hb, sizeof(hb), "%lld", horizon_secs);
	p[0] = hb;
	if ((r = store_q(st, S_CLEAN_HORIZON, 1, p)) == NULL)
		return -1;
	h = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	if (h <= 0)
		return 0;
	snprintf(pb, sizeof(pb), "%" PRId64, h);
	p[0] = pb;
	do {
		if ((r = store_q(st, S_CLEAN_STATE, 1, p)) == NULL)
			return -1;
		n = strtoll(PQcmdTuples(r), NULL, 10);
		PQclear(r);
		total += n;
	} while (n == 10000);
	if ((r = store_q(st, S_CLEAN_DL, 1, p)) == NULL)
		return -1;
	total += strtoll(PQcmdTuples(r), NULL, 10);
	PQclear(r);
	if (store_q0(st, S_CLEAN_MARKS, 1, p) == -1)
		return -1;
	if (total > 0)
		log_info("store: cleanup removed %lld superseded rows below "
		    "position %" PRId64, total, h);
	return total;
}
