/*
 * The per-table steps of a group apart from rooms (rooms.c): typing,
 * receipts, account data, to-device messages, device list changes and key
 * counts. store.c calls each once per group, inside the group's
 * savepoint, after rooms_apply and in this order, so positions keep the
 * order they always had. Each step builds one statement (or one COPY)
 * for the whole group and adds the notices its rows deserve to the
 * message that wrote them.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "accumulator.h"
#include "map.h"
#include "sqlarr.h"
#include "store_int.h"
#include "util.h"

/* A row written for a group, and the message its notice goes to. */
struct prow {
	int64_t pos;
	struct store_msg *m;
	const char *room;
	int64_t early; /* typing: the list's early notice (acc_room) */
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
	l->v[l->n++] = (struct prow){pos, m, room, 0};
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
 * Typing: the last message of the group that reports a room wins. Its
 * notice carries the list as stored, so the api needs no read, and the
 * seq of the early notice that sent the same list (proto.h).
 */
int
apply_typing(struct store *st, struct msgctx *xs, size_t n)
{
	struct cols c;
	struct prows pr = {0};
	const char *p[3];
	PGresult *r = NULL;
	struct map seen;
	int rc = -1;

	cols_init(&c, 3);
	map_init(&seen);
	for (size_t k = n; k-- > 0;) {
		struct acc_changes *ch = xs[k].ch;
		for (size_t i = ch ? ch->nrooms : 0; i-- > 0;) {
			struct acc_room *rm = &ch->rooms[i];
			int64_t pos;
			if (rm->typing == NULL ||
			    map_get_i64(&seen, rm->room_id, NULL))
				continue;
			map_put_i64(&seen, rm->room_id, 1);
			pg_arr_str(&c.c[0], rm->room_id);
			pg_arr_str(&c.c[1], rm->typing);
			pg_arr_i64(&c.c[2], pos = pos_next(st));
			prow_add(&pr, pos, xs[k].m, rm->room_id);
			pr.v[pr.n - 1].early = rm->typing_early;
			c.rows++;
		}
	}
	if (c.rows == 0) {
		rc = 0;
		goto out;
	}
	cols_params(&c, p);
	if ((r = db_q(st, S_TYPING, 3, p)) == NULL)
		goto out;
	for (int i = 0; i < PQntuples(r); i++) {
		int64_t pos = strtoll(PQgetvalue(r, i, 1), NULL, 10);
		const struct prow *w = prow_find(&pr, pos);
		if (w != NULL)
			notice_add(&w->m->notices,
			           &(struct proto_notice){
			               .type = PROTO_NOTICE_TYPING,
			               .pos = pos,
			               .room_id = w->room,
			               .user_ids = PQgetvalue(r, i, 2),
			               .early = w->early});
	}
	rc = 0;
out:
	PQclear(r);
	free(pr.v);
	map_free(&seen, NULL);
	cols_free(&c);
	return rc;
}

/*
 * A room's receipts, the last one of the group for a (room, user, type,
 * thread) winning; seen is shared by the whole group, which is walked
 * from its last message back.
 */
static int64_t
receipts_add(struct store *st, struct cols *c, struct map *seen,
    const struct acc_room *rm)
{
	int64_t pos = 0;

	/* Last one wins for a key: walk backwards, skip seen keys. */
	for (size_t j = rm->nreceipts; j-- > 0;) {
		const struct acc_receipt *rp = &rm->receipts[j];
		char *k = xasprintf("%zu:%s%zu:%s%zu:%s%s",
		    strlen(rm->room_id), rm->room_id, strlen(rp->user_id),
		    rp->user_id, strlen(rp->rtype), rp->rtype,
		    rp->thread_id);
		bool dup = map_get_i64(seen, k, NULL);
		if (!dup)
			map_put_i64(seen, k, 1);
		free(k);
		if (dup)
			continue;
		pg_arr_str(&c->c[0], rm->room_id);
		pg_arr_str(&c->c[1], rp->user_id);
		pg_arr_str(&c->c[2], rp->rtype);
		pg_arr_str(&c->c[3], rp->thread_id);
		pg_arr_str(&c->c[4], rp->event_id);
		pg_arr_i64(&c->c[5], rp->ts);
		pg_arr_i64(&c->c[6], pos = pos_next(st));
		c->rows++;
	}
	return pos;
}

/*
 * Receipts: the last one of the group for a key wins. Receipts have no
 * notice of their own: the device whose response carried them gets a
 * PROTO_NOTICE_DEVICE "synced" (what a sliding sync connection with the
 * receipts extension waits for; nothing else waits on it once the
 * device's initial sync is stored).
 */
int
apply_receipts(struct store *st, struct msgctx *xs, size_t n)
{
	struct cols c;
	const char *p[7];
	struct map seen;
	int64_t *last = xcalloc(n + 1, sizeof(*last));
	int rc = 0;

	cols_init(&c, 7);
	map_init(&seen);
	for (size_t k = n; k-- > 0;) {
		struct acc_changes *ch = xs[k].ch;
		for (size_t i = ch ? ch->nrooms : 0; i-- > 0;) {
			int64_t pos = receipts_add(st, &c, &seen, &ch->rooms[i]);
			if (pos > last[k])
				last[k] = pos;
		}
	}
	if (c.rows > 0) {
		cols_params(&c, p);
		rc = db_q0(st, S_RECEIPTS, 7, p);
	}
	for (size_t k = 0; rc == 0 && k < n; k++)
		if (last[k] > 0)
			notice_add(&xs[k].m->notices, &(struct proto_notice){
			    .type = PROTO_NOTICE_DEVICE, .pos = last[k],
			    .user_id = xs[k].m->user_id,
			    .device_id = xs[k].m->device_id,
			    .state = dev_state_name(DEV_STATE_SYNCED)});
	free(last);
	map_free(&seen, NULL);
	cols_free(&c);
	return rc;
}

static void
adata_add(struct store *st, struct msgctx *x, struct cols *c,
    struct map *seen, struct prows *pr, const char *room,
    const struct acc_adata *a)
{
	char *k = map_key3(x->m->user_id, room, a->type);
	int64_t pos;

	if (!map_get_i64(seen, k, NULL)) {
		map_put_i64(seen, k, 1);
		pg_arr_str(&c->c[0], x->m->user_id);
		pg_arr_str(&c->c[1], room);
		pg_arr_str(&c->c[2], a->type);
		pg_arr_str(&c->c[3], a->json);
		pg_arr_i64(&c->c[4], pos = pos_next(st));
		prow_add(pr, pos, x->m, room);
		c->rows++;
	}
	free(k);
}

/*
 * Account data, global ("" room) and per room: the last message of the
 * group that sets a (user, room, type) wins; only rows whose JSON changed
 * come back from the upsert, and only those get a notice.
 */
int
apply_adata(struct store *st, struct msgctx *xs, size_t n)
{
	struct cols c;
	struct prows pr = {0};
	const char *p[5];
	struct map seen;
	PGresult *r = NULL;
	int rc = 0;

	cols_init(&c, 5);
	map_init(&seen);
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
		if ((r = db_q(st, S_ADATA, 5, p)) == NULL)
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
	map_free(&seen, NULL);
	cols_free(&c);
	return rc;
}

/* A wake-up for the sessions of m's device (it carries no messages). */
static void
device_notice(struct store_msg *m, int64_t pos)
{
	notice_add(&m->notices, &(struct proto_notice){
	    .type = PROTO_NOTICE_TO_DEVICE, .pos = pos, .after = pos,
	    .user_id = m->user_id, .device_id = m->device_id});
}

/*
 * The wake-up for m's to-device messages, just given the positions up to
 * last, carrying them (proto.h) when they fit: the api then answers a
 * waiting client without reading them back. They are all the device's
 * messages after st->td_after, the last to-device position before them,
 * committed or in this transaction (store_int.h; a rolled-back group's
 * are gone, and the positions between hold other rows: key counts take
 * one for each body).
 */
static void
to_device_notice(struct store *st, struct store_msg *m,
                 const struct acc_changes *ch, int64_t last)
{
	struct proto_notice pn = {.type = PROTO_NOTICE_TO_DEVICE,
	                          .pos = last, .after = last,
	                          .user_id = m->user_id,
	                          .device_id = m->device_id};
	size_t len = 0, off = 0, k;
	char *buf = NULL;

	for (size_t i = 0; i < ch->nto_device; i++)
		len += strlen(ch->to_device[i]) + 1;
	if (len <= PROTO_TD_BYTES) {
		buf = xmalloc(len);
		for (size_t i = 0; i < ch->nto_device; i++, off += k) {
			k = strlen(ch->to_device[i]) + 1;
			memcpy(buf + off, ch->to_device[i], k);
		}
		pn.after = st->td_after;
		pn.td = buf;
		pn.td_len = len;
	}
	st->td_after = last;
	notice_add(&m->notices, &pn);
	free(buf);
}

/* To-device messages and device list changes: logs, in message order,
 * each one INSERT of arrays (the to-device one is on the message's way
 * to the client: t_acc_round_trips.sh counts its batch). */
static int
apply_logs(struct store *st, struct msgctx *xs, size_t n, int64_t *dpos)
{
	struct cols td, dl;
	const char *p[5];
	int rc = 0;

	cols_init(&td, 4);
	cols_init(&dl, 5);
	for (size_t k = 0; k < n; k++) {
		struct acc_changes *ch = xs[k].ch;
		struct store_msg *m = xs[k].m;
		int64_t pos = 0;
		if (ch == NULL)
			continue;
		for (size_t i = 0; i < ch->nto_device; i++, td.rows++) {
			pg_arr_i64(&td.c[0], pos = pos_next(st));
			pg_arr_str(&td.c[1], m->user_id);
			pg_arr_str(&td.c[2], m->device_id);
			pg_arr_str(&td.c[3], ch->to_device[i]);
		}
		if (pos > 0)
			to_device_notice(st, m, ch, pos);
		for (int left = 0; left < 2; left++) {
			char **v = left ? ch->dl_left : ch->dl_changed;
			size_t nv = left ? ch->ndl_left : ch->ndl_changed;
			for (size_t i = 0; i < nv; i++, dl.rows++) {
				pg_arr_i64(&dl.c[0], dpos[k] = pos_next(st));
				pg_arr_str(&dl.c[1], m->user_id);
				pg_arr_str(&dl.c[2], m->device_id);
				pg_arr_str(&dl.c[3], v[i]);
				pg_arr_str(&dl.c[4], left ? "left" : "changed");
			}
		}
	}
	if (td.rows > 0) {
		cols_params(&td, p);
		rc = db_q0(st, S_TO_DEVICE, 4, p);
	}
	if (rc == 0 && dl.rows > 0) {
		cols_params(&dl, p);
		rc = db_q0(st, S_DEVICE_LISTS, 5, p);
	}
	cols_free(&td);
	cols_free(&dl);
	return rc;
}

/* Key counts (one statement per message that has them, whose result
 * is read with the group's: db_q_later). Device list changes and key
 * counts that changed also wake the device's sessions. */
int
apply_device(struct store *st, struct msgctx *xs, size_t n)
{
	int64_t *dpos = xcalloc(n + 1, sizeof(*dpos));
	int rc = -1;

	if (apply_logs(st, xs, n, dpos) == -1)
		goto out;
	for (size_t k = 0; k < n; k++) {
		struct acc_changes *ch = xs[k].ch;
		struct store_msg *m = xs[k].m;
		char buf[PG_I64_LEN];
		const char *p[5] = {m->user_id, m->device_id, NULL, NULL, buf};
		if (dpos[k] > 0)
			device_notice(m, dpos[k]);
		if (ch != NULL &&
		    (ch->otk_counts != NULL || ch->fallback_types != NULL)) {
			pg_i64(buf, pos_next(st));
			p[2] = ch->otk_counts;
			p[3] = ch->fallback_types;
			/* its row, if the counts changed: apply_finish */
			if (db_q_later(st, m, S_DKEYS, 5, p) == -1)
				goto out;
		}
	}
	rc = 0;
out:
	free(dpos);
	return rc;
}

/*
 * The group succeeded: what its db_q_later statements returned (key
 * counts that changed) wakes the sessions of their devices.
 */
void
apply_finish(struct store *st)
{
	for (size_t i = 0; i < st->nlres; i++) {
		PGresult *r = st->lres[i].r;
		if (r != NULL && PQntuples(r) > 0)
			device_notice(st->lres[i].m,
			              strtoll(PQgetvalue(r, 0, 0), NULL, 10));
	}
	db_later_clear(st);
}
