/*
 * Positions (contract 2): one counter for every stream, handed out only
 * by this single writer. Positions are reserved from syncv3_pos_seq in
 * blocks (one round trip per POS_BLOCK positions), handed out in order
 * while a batch is applied, and the highest one used is written to
 * syncv3_position in the batch's own transaction. Owns the pos_* fields
 * of struct store; store.c reloads them after a reconnect.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "accumulator.h"
#include "pg_lit.h"
#include "pg.h"
#include "store_int.h"

#define POS_BLOCK 4096

/* Starts from what is committed; a reservation does not survive a
 * reconnect (its positions are simply never used). */
int
pos_load(struct store *st)
{
	PGresult *r = pg_query(st->c, "position",
	    "SELECT pos FROM syncv3_position WHERE id = 1", 0, NULL);

	if (r == NULL || PQntuples(r) != 1) {
		PQclear(r);
		return -1;
	}
	st->pos_committed = st->pos_used = strtoll(PQgetvalue(r, 0, 0), NULL,
	    10);
	st->td_committed = st->pos_committed;
	st->pos_next = st->pos_end = 0;
	PQclear(r);
	return 0;
}

/* Makes sure n positions can be handed out without a round trip. */
int
pos_reserve(struct store *st, int64_t n)
{
	char buf[PG_I64_LEN];
	const char *p[1];
	PGresult *r;
	int64_t want = n > POS_BLOCK ? n : POS_BLOCK, last;

	if (st->pos_end - st->pos_next + 1 >= n && st->pos_next > 0)
		return 0;
	p[0] = pg_i64(buf, want);
	if ((r = db_q(st, S_RESERVE, 1, p)) == NULL)
		return -1;
	last = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	st->pos_next = last - want + 1;
	st->pos_end = last;
	return 0;
}

int64_t
pos_next(struct store *st)
{
	if (st->pos_next == 0 || st->pos_next > st->pos_end)
		fatalx("store: position taken beyond the reservation");
	st->pos_used = st->pos_next;
	return st->pos_next++;
}

/* Commits the batch; positions up to pos_used are taken, written with
 * the COMMIT (db_commit: one round trip). */
int
pos_commit(struct store *st)
{
	char buf[PG_I64_LEN];
	const char *p[1] = {pg_i64(buf, st->pos_used)};

	return db_commit(st, st->pos_used > st->pos_committed ? p : NULL);
}
