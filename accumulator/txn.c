/*
 * Transaction ids (014_txn.sql). normalise.c cuts unsigned.transaction_id
 * from every event it stores; here the group's ids are written, after
 * rooms.c has written the events, so each row finds its event's nid.
 * Only the sender's own sync carries the id, so a row is kept only when
 * the message's user sent the event; it is keyed to that message's
 * device, the one the api gives it back to.
 */
#include <string.h>

#include "accumulator.h"
#include "sqlarr.h"
#include "store_int.h"

static void
txn_add(struct cols *c, const struct store_msg *m, const struct acc_evlist *l)
{
	for (size_t i = 0; i < l->n; i++) {
		const struct acc_event *ev = &l->v[i];
		if (ev->txn_id == NULL || strcmp(ev->sender, m->user_id) != 0)
			continue;
		pg_arr_str(&c->c[0], ev->event_id);
		pg_arr_str(&c->c[1], m->user_id);
		pg_arr_str(&c->c[2], m->device_id);
		pg_arr_str(&c->c[3], ev->txn_id);
		c->rows++;
	}
}

int
txn_write(struct store *st, struct msgctx *xs, size_t n)
{
	struct cols c;
	const char *p[4];
	int rc = 0;

	cols_init(&c, 4);
	for (size_t k = 0; k < n; k++) {
		const struct store_msg *m = xs[k].m;
		if (xs[k].ch == NULL || m->device_id == NULL ||
		    m->device_id[0] == '\0')
			continue;
		for (size_t i = 0; i < xs[k].ch->nrooms; i++) {
			txn_add(&c, m, &xs[k].ch->rooms[i].state);
			txn_add(&c, m, &xs[k].ch->rooms[i].timeline);
		}
	}
	if (c.rows > 0) {
		cols_params(&c, p);
		rc = db_q0(st, S_TXN, 4, p);
	}
	cols_free(&c);
	return rc;
}
