/*
 * The writer connection: one blocking libpq connection, which is fine here
 * because this process does one thing and a single writer is what makes
 * positions commit in order (contract 2). Owns the transaction around a
 * batch, the per-message savepoint and compare-and-set on the device's
 * since (contract 1), position allocation, the non-room tables (typing,
 * receipts, account data, to-device, device lists and keys) and cleanup.
 * Room events and state are applied by rooms.c.
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
	[S_CAS] = {"acc_cas", "SELECT since, is_initial_done FROM "
	    "syncv3_devices WHERE user_id = $1 AND device_id = $2 FOR UPDATE"},
	[S_SINCE] = {"acc_since", "UPDATE syncv3_devices SET since = $3, "
	    "is_initial_done = true WHERE user_id = $1 AND device_id = $2"},
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
	/* No ON CONFLICT: rooms.c looked the ids up in this transaction and
	 * this is the only writer; speculative insertion costs ~30%. */
	[S_EV_INS] = {"acc_ev_ins", "INSERT INTO syncv3_events (nid, "
	    "event_id, room_id, type, state_key, sender, membership, "
	    "origin_ts, is_timeline, json) SELECT * FROM unnest($1::bigint[],"
	    " $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], "
	    "$7::text[], $8::bigint[], $9::bool[], $10::text[])"},
	[S_ST_CLOSE] = {"acc_st_close", "UPDATE syncv3_state s SET to_pos = "
	    "k.p FROM unnest($1::text[], $2::text[], $3::text[], "
	    "$4::bigint[]) AS k(r, t, sk, p) WHERE s.room_id = k.r AND "
	    "s.type = k.t AND s.state_key = k.sk AND s.to_pos IS NULL"},
	[S_ST_INS] = {"acc_st_ins", "INSERT INTO syncv3_state (room_id, type,"
	    " state_key, nid, from_pos, to_pos, membership) SELECT * FROM "
	    "unnest($1::text[], $2::text[], $3::text[], $4::bigint[], "
	    "$5::bigint[], $6::bigint[], $7::text[])"},
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
	[S_UR_GET] = {"acc_ur_get", "SELECT room_id, membership, pos, "
	    "invite_state, heroes, notification_count, highlight_count, "
	    "prev_batch FROM syncv3_user_rooms WHERE user_id = $1 AND "
	    "room_id = ANY($2::text[])"},
	[S_UR_PUT] = {"acc_ur_put", "INSERT INTO syncv3_user_rooms (user_id,"
	    " room_id, membership, pos, invite_state, heroes, "
	    "notification_count, highlight_count, updated_pos, prev_batch) "
	    "SELECT $1::text, * FROM unnest($2::text[], $3::text[], "
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
	    "(user_id, room_id, type, json, pos) SELECT $1::text, * FROM "
	    "unnest($2::text[], $3::text[], $4::text[], $5::bigint[]) "
	    "ON CONFLICT (user_id, room_id, type) DO UPDATE SET json = "
	    "excluded.json, pos = excluded.pos WHERE a.json <> excluded.json "
	    "RETURNING room_id, pos"},
	[S_TODEV] = {"acc_todev", "INSERT INTO syncv3_to_device (pos, "
	    "user_id, device_id, json) SELECT k.p, $1::text, $2::text, k.j "
	    "FROM unnest($3::bigint[], $4::text[]) AS k(p, j)"},
	[S_DL] = {"acc_dl", "INSERT INTO syncv3_device_lists (pos, user_id, "
	    "device_id, target_user, change) SELECT k.p, $1::text, $2::text, "
	    "k.u, k.c FROM unnest($3::bigint[], $4::text[], $5::text[]) "
	    "AS k(p, u, c)"},
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
	free(st->conninfo);
	free(st);
}

PGconn *
store_conn(struct store *st)
{
	return st->c;
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

int
store_batch_begin(struct store *st)
{
	if (check_conn(st) == -1)
		return -1;
	if (pg_exec(st->c, "batch", "BEGIN") == -1) {
		if (check_conn(st) == -1 || pg_exec(st->c, "batch",
		    "BEGIN") == -1)
			return -1;
	}
	st->batch_start_pos = st->pos_used;
	st->stats.batches++;
	return 0;
}

int
store_batch_commit(struct store *st)
{
	char buf[24];
	const char *p[1] = {buf};

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
	notice_list_clear(&m->notices);
}

/* Contract 1: 1 = apply, 0 = answered (ok or nack), -1 = db error. */
static int
cas(struct store *st, struct store_msg *m, bool *was_initial)
{
	const char *p[2] = {m->user_id, m->device_id};
	PGresult *r;
	const char *since;

	if ((r = store_q(st, S_CAS, 2, p)) == NULL)
		return -1;
	if (PQntuples(r) != 1) {
		PQclear(r);
		m->since = xstrdup("");
		m->error = "unknown device";
		return 0;
	}
	since = PQgetvalue(r, 0, 0);
	*was_initial = PQgetvalue(r, 0, 1)[0] == 't';
	m->since = xstrdup(since);
	PQclear(r);
	if (strcmp(m->since, m->since_in) == 0)
		return 1;
	if (strcmp(m->since, m->next_batch) == 0) {
		m->ok = true;	/* a resend of what is committed */
		return 0;
	}
	m->error = "since mismatch";
	return 0;
}

static int
apply_typing(struct msgctx *x)
{
	struct cols c;
	const char *p[3];
	PGresult *r = NULL;
	struct smap seen;
	int rc = -1;

	cols_init(&c, 3);
	smap_init(&seen);
	for (size_t i = x->ch->nrooms; i-- > 0;) {
		struct acc_room *rm = &x->ch->rooms[i];
		if (rm->typing == NULL || smap_get(&seen, rm->room_id, NULL))
			continue;
		smap_put(&seen, rm->room_id, 1);
		ab_str(&c.c[0], rm->room_id);
		ab_str(&c.c[1], rm->typing);
		ab_i64(&c.c[2], store_pos_next(x->st));
		c.rows++;
	}
	if (c.rows == 0) {
		rc = 0;
		goto out;
	}
	cols_params(&c, p);
	if ((r = store_q(x->st, S_TYPING, 3, p)) == NULL)
		goto out;
	for (int i = 0; i < PQntuples(r); i++)
		notice_add(&x->m->notices, PROTO_NOTICE_TYPING,
		    strtoll(PQgetvalue(r, i, 1), NULL, 10), PQgetvalue(r, i, 0),
		    NULL, NULL, NULL, NULL);
	rc = 0;
out:
	PQclear(r);
	smap_free(&seen);
	cols_free(&c);
	return rc;
}

static int
apply_receipts(struct msgctx *x)
{
	struct cols c;
	const char *p[7];
	struct smap seen;
	int rc = 0;

	cols_init(&c, 7);
	smap_init(&seen);
	/* Last one wins for a key: walk backwards, skip seen keys. */
	for (size_t i = x->ch->nrooms; i-- > 0;) {
		struct acc_room *rm = &x->ch->rooms[i];
		for (size_t j = rm->nreceipts; j-- > 0;) {
			struct acc_receipt *rc_ = &rm->receipts[j];
			char *k = xasprintf("%zu:%s%zu:%s%zu:%s%s",
			    strlen(rm->room_id), rm->room_id,
			    strlen(rc_->user_id), rc_->user_id,
			    strlen(rc_->rtype), rc_->rtype, rc_->thread_id);
			bool dup = smap_get(&seen, k, NULL);
			if (!dup)
				smap_put(&seen, k, 1);
			free(k);
			if (dup)
				continue;
			ab_str(&c.c[0], rm->room_id);
			ab_str(&c.c[1], rc_->user_id);
			ab_str(&c.c[2], rc_->rtype);
			ab_str(&c.c[3], rc_->thread_id);
			ab_str(&c.c[4], rc_->event_id);
			ab_i64(&c.c[5], rc_->ts);
			ab_i64(&c.c[6], store_pos_next(x->st));
			c.rows++;
		}
	}
	if (c.rows > 0) {
		cols_params(&c, p);
		rc = store_q0(x->st, S_RECEIPTS, 7, p);
	}
	smap_free(&seen);
	cols_free(&c);
	return rc;
}

static void
adata_add(struct msgctx *x, struct cols *c, struct smap *seen,
    const char *room, const struct acc_adata *a)
{
	char *k = smap_key3(room, a->type, "");

	if (!smap_get(seen, k, NULL)) {
		smap_put(seen, k, 1);
		ab_str(&c->c[0], room);
		ab_str(&c->c[1], a->type);
		ab_str(&c->c[2], a->json);
		ab_i64(&c->c[3], store_pos_next(x->st));
		c->rows++;
	}
	free(k);
}

static int
apply_adata(struct msgctx *x)
{
	struct cols c;
	const char *p[5];
	struct smap seen;
	PGresult *r = NULL;
	int rc = 0;

	cols_init(&c, 4);
	smap_init(&seen);
	for (size_t i = x->ch->nadata; i-- > 0;)
		adata_add(x, &c, &seen, "", &x->ch->adata[i]);
	for (size_t i = x->ch->nrooms; i-- > 0;) {
		struct acc_room *rm = &x->ch->rooms[i];
		for (size_t j = rm->nadata; j-- > 0;)
			adata_add(x, &c, &seen, rm->room_id, &rm->adata[j]);
	}
	if (c.rows > 0) {
		p[0] = x->m->user_id;
		cols_params(&c, p + 1);
		if ((r = store_q(x->st, S_ADATA, 5, p)) == NULL)
			rc = -1;
		for (int i = 0; r != NULL && i < PQntuples(r); i++)
			notice_add(&x->m->notices, PROTO_NOTICE_ACCOUNT_DATA,
			    strtoll(PQgetvalue(r, i, 1), NULL, 10),
			    PQgetvalue(r, i, 0), x->m->user_id, NULL, NULL,
			    NULL);
		PQclear(r);
	}
	smap_free(&seen);
	cols_free(&c);
	return rc;
}

static int
apply_to_device(struct msgctx *x)
{
	struct cols c;
	const char *p[4];
	int64_t pos = 0;
	int rc = 0;

	if (x->ch->nto_device == 0)
		return 0;
	cols_init(&c, 2);
	for (size_t i = 0; i < x->ch->nto_device; i++) {
		ab_i64(&c.c[0], pos = store_pos_next(x->st));
		ab_str(&c.c[1], x->ch->to_device[i]);
	}
	p[0] = x->m->user_id;
	p[1] = x->m->device_id;
	cols_params(&c, p + 2);
	if ((rc = store_q0(x->st, S_TODEV, 4, p)) == 0)
		notice_add(&x->m->notices, PROTO_NOTICE_TO_DEVICE, pos, NULL,
		    x->m->user_id, x->m->device_id, NULL, NULL);
	cols_free(&c);
	return rc;
}

/* Device list changes and key counts also wake the device's sessions. */
static int
apply_device(struct msgctx *x)
{
	struct acc_changes *ch = x->ch;
	struct cols c;
	const char *p[5];
	char buf[24];
	PGresult *r;
	int64_t pos = 0;
	int rc = 0;

	if (ch->ndl_changed + ch->ndl_left > 0) {
		cols_init(&c, 3);
		for (int left = 0; left < 2; left++) {
			char **v = left ? ch->dl_left : ch->dl_changed;
			size_t n = left ? ch->ndl_left : ch->ndl_changed;
			for (size_t i = 0; i < n; i++) {
				ab_i64(&c.c[0], pos = store_pos_next(x->st));
				ab_str(&c.c[1], v[i]);
				ab_str(&c.c[2], left ? "left" : "changed");
			}
		}
		p[0] = x->m->user_id;
		p[1] = x->m->device_id;
		cols_params(&c, p + 2);
		rc = store_q0(x->st, S_DL, 5, p);
		cols_free(&c);
		if (rc == -1)
			return -1;
	}
	if (ch->otk_counts != NULL || ch->fallback_types != NULL) {
		snprintf(buf, sizeof(buf), "%" PRId64, store_pos_next(x->st));
		p[0] = x->m->user_id;
		p[1] = x->m->device_id;
		p[2] = ch->otk_counts;
		p[3] = ch->fallback_types;
		p[4] = buf;
		if ((r = store_q(x->st, S_DKEYS, 5, p)) == NULL)
			return -1;
		if (PQntuples(r) > 0)
			pos = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
		PQclear(r);
	}
	if (pos > 0)
		notice_add(&x->m->notices, PROTO_NOTICE_TO_DEVICE, pos, NULL,
		    x->m->user_id, x->m->device_id, NULL, NULL);
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

static int
apply_changes(struct store *st, struct store_msg *m, struct acc_changes *ch)
{
	struct msgctx x = {st, m, ch};

	if (store_reserve(st, positions_needed(ch)) == -1 ||
	    rooms_apply(&x) == -1 || apply_typing(&x) == -1 ||
	    apply_receipts(&x) == -1 || apply_adata(&x) == -1 ||
	    apply_to_device(&x) == -1 || apply_device(&x) == -1)
		return -1;
	return 0;
}

void
store_apply(struct store *st, struct store_msg *m)
{
	struct acc_changes ch;
	const char *err = NULL, *p[3];
	bool was_initial = false, parsed = false;
	int rc;

	store_msg_reset(m);
	st->stats.msgs++;
	if (pg_exec(st->c, "savepoint", "SAVEPOINT acc_msg") == -1)
		goto dberr;
	if ((rc = cas(st, m, &was_initial)) != 1) {
		if (rc == -1)
			goto dberr;
		goto release;
	}
	if (normalise(m->body, m->body_len, m->user_id, &ch, &err) == -1) {
		log_warnx_rl("store: %s/%s: bad body: %s", m->user_id,
		    m->device_id, err ? err : "?");
		st->stats.bad_bodies++;
		m->error = "bad body";
		goto release;
	}
	parsed = true;
	m->nevents = ch.nevents;
	m->nbad = ch.nbad;
	if (apply_changes(st, m, &ch) == -1)
		goto dberr;
	p[0] = m->user_id;
	p[1] = m->device_id;
	p[2] = m->next_batch;
	if (store_q0(st, S_SINCE, 3, p) == -1)
		goto dberr;
	if (!was_initial)
		notice_add(&m->notices, PROTO_NOTICE_DEVICE, st->pos_used, NULL,
		    m->user_id, m->device_id, NULL, "synced");
	free(m->since);
	m->since = xstrdup(m->next_batch);
	m->ok = true;
	st->stats.events += ch.nevents;
	st->stats.bad_events += ch.nbad;
release:
	if (parsed)
		normalise_free(&ch);
	if (pg_exec(st->c, "savepoint", "RELEASE SAVEPOINT acc_msg") == -1) {
		m->ok = false;
		m->error = "db error";
	}
	return;
dberr:
	if (parsed)
		normalise_free(&ch);
	notice_list_clear(&m->notices);
	m->ok = false;
	m->error = "db error";
	if (PQstatus(st->c) == CONNECTION_OK &&
	    (pg_exec(st->c, "savepoint", "ROLLBACK TO SAVEPOINT acc_msg") == -1 ||
		pg_exec(st->c, "savepoint", "RELEASE SAVEPOINT acc_msg") == -1))
		log_warnx("store: cannot roll back the message");
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

void
notice_add(struct notice_list *l, int type, int64_t pos, const char *room,
    const char *user, const char *device, const char *membership,
    const char *state)
{
	struct notice *n;

	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 16;
		l->v = xrealloc(l->v, l->cap * sizeof(*l->v));
	}
	n = &l->v[l->n++];
	n->type = type;
	n->pos = pos;
	n->room = room ? xstrdup(room) : NULL;
	n->user = user ? xstrdup(user) : NULL;
	n->device = device ? xstrdup(device) : NULL;
	n->membership = membership ? xstrdup(membership) : NULL;
	n->state = state ? xstrdup(state) : NULL;
}

void
notice_list_clear(struct notice_list *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->v[i].room);
		free(l->v[i].user);
		free(l->v[i].device);
		free(l->v[i].membership);
		free(l->v[i].state);
	}
	free(l->v);
	memset(l, 0, sizeof(*l));
}
