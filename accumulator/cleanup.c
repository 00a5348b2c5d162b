/*
 * Cleanup of superseded rows, run by ingest's timer between batches
 * (through store_cleanup, which makes sure the connection is up). It
 * leaves a mark of the committed position each time, so it knows which
 * position was current horizon_secs ago.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "accumulator.h"
#include "pg_lit.h"
#include "store_int.h"

/* Runs a DELETE of at most 10000 rows until it deletes fewer. */
static long long
clean_slices(struct store *st, int id, const char *const *p)
{
	PGresult *r;
	long long total = 0, n;

	do {
		if ((r = db_q(st, id, 1, p)) == NULL)
			return -1;
		n = strtoll(PQcmdTuples(r), NULL, 10);
		PQclear(r);
		total += n;
	} while (n == 10000);
	return total;
}

/* Runs a DELETE of one bigint parameter; returns its rows or -1. */
static long long
clean_one(struct store *st, int id, int64_t v)
{
	char b[PG_I64_LEN];
	const char *p[1] = {pg_i64(b, v)};
	PGresult *r;
	long long n;

	if ((r = db_q(st, id, 1, p)) == NULL)
		return -1;
	n = strtoll(PQcmdTuples(r), NULL, 10);
	PQclear(r);
	return n;
}

struct chunk_slice {
	struct store *st;
	struct pg_lit ids;
	size_t n;
	long long total; /* -1 after an error */
};

static void
chunk_slice_run(struct chunk_slice *cs)
{
	char kb[PG_I64_LEN];
	const char *p[2];
	PGresult *r;

	if (cs->n == 0 || cs->total == -1)
		return;
	p[0] = pg_arr_end(&cs->ids);
	p[1] = pg_i64(kb, ACC_CHUNKS_KEEP);
	if ((r = db_q(cs->st, S_CLEAN_CHUNKS, 2, p)) == NULL)
		cs->total = -1;
	else
		cs->total += strtoll(PQcmdTuples(r), NULL, 10);
	PQclear(r);
	pg_lit_free(&cs->ids);
	cs->n = 0;
}

static void
chunk_room_cb(const char *room, void *val, void *arg)
{
	struct chunk_slice *cs = arg;

	(void)val;
	pg_arr_str(&cs->ids, room);
	if (++cs->n == 200)
		chunk_slice_run(cs);
}

/*
 * Chunk boundaries beyond the newest ACC_CHUNKS_KEEP of their room
 * (015_chunks.sql): events are never deleted, so without this a busy
 * room would keep two rows per sync forever. Only the rooms that were
 * given boundaries since the last pass are looked at, 200 a statement
 * (an index walk of at most ACC_CHUNKS_KEEP rows each: 100 ms for 200
 * full rooms, a room with few rows costs next to nothing); a window over
 * the whole table each pass took 1.2 s at 1M rows with nothing to trim.
 * A timeline older than what is kept is answered with a later boundary:
 * more events the client already has, never a gap (docs/INTERNALS.md,
 * "prev_batch"). Not tied to the horizon.
 */
static long long
cleanup_chunks(struct store *st)
{
	struct chunk_slice cs = {.st = st};

	map_each(&st->chunk_rooms, chunk_room_cb, &cs);
	chunk_slice_run(&cs);
	pg_lit_free(&cs.ids);
	if (cs.total != -1) {
		map_free(&st->chunk_rooms, NULL);
		map_init(&st->chunk_rooms);
	}
	return cs.total;
}

/*
 * Gap rows of late placements (031_order.sql) that no live v3 session or
 * sliding sync connection can be inside any more (S_CLEAN_GAPS): one
 * statement, which touches nothing while the table is empty. A client
 * that comes back after its session or connection expired starts afresh
 * (M_UNKNOWN_SYNC_SESSION, M_UNKNOWN_POS), with the room in order.
 */
static long long
cleanup_gaps(struct store *st)
{
	return clean_one(st, S_CLEAN_GAPS, ACC_GAP_MARGIN_SECS);
}

/*
 * Redactions still waiting for their target (018_redact.sql) once they
 * have waited longer than the horizon (034_rdx_wait.sql). Until then a
 * target that arrives is stored pruned (redaction.c). Later it can only
 * come from a sync answered after the redaction existed upstream, which
 * the homeserver serves pruned already (redacted_because, as Synapse
 * does), or from a body answered before it and held that long by a
 * poller, which never happens: a poller holds one body per device until
 * its ack. A target that never arrives (outside every user's history)
 * no longer makes every batch look its events up for ever (rdx_pending).
 * By time, not by the redaction's nid: the json need not parse as
 * Postgres's json (a lone surrogate escape), and one row must not stop
 * the cleanup.
 */
static long long
cleanup_rdx(struct store *st, long long horizon_secs)
{
	long long n = clean_one(st, S_CLEAN_RDX, horizon_secs);

	if (n > 0)
		st->rdx_checked = false; /* whether any still waits */
	return n;
}

/*
 * Growth: closed state ranges that end at or before the position the
 * store had `horizon_secs` ago cannot be asked for by any session that
 * is allowed to resume (older sinces must restart), so they go; the
 * device list log goes with them, and redactions that waited as long.
 * Events and current state stay (chunk boundaries are bounded by count
 * first, cleanup_chunks; gap rows by the sessions, cleanup_gaps). Runs
 * outside batches, in slices, each its own transaction.
 */
long long
cleanup_run(struct store *st, long long horizon_secs)
{
	char hb[PG_I64_LEN], pb[PG_I64_LEN];
	const char *p[1];
	PGresult *r;
	long long total = 0, n;
	int64_t h;

	p[0] = pg_i64(pb, st->pos_committed);
	if (db_q0(st, S_MARK, 1, p) == -1)
		return -1;
	if ((total = cleanup_chunks(st)) == -1 ||
	    (n = cleanup_gaps(st)) == -1)
		return -1;
	total += n;
	if ((n = cleanup_rdx(st, horizon_secs)) == -1)
		return -1;
	total += n;
	p[0] = pg_i64(hb, horizon_secs);
	if ((r = db_q(st, S_CLEAN_HORIZON, 1, p)) == NULL)
		return -1;
	h = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	if (h <= 0)
		return total;
	p[0] = pg_i64(pb, h);
	if ((n = clean_slices(st, S_CLEAN_STATE, p)) == -1)
		return -1;
	total += n;
	if ((n = clean_one(st, S_CLEAN_DL, h)) == -1)
		return -1;
	total += n;
	if (db_q0(st, S_CLEAN_MARKS, 1, p) == -1)
		return -1;
	if (total > 0)
		log_info("store: cleanup removed %lld superseded rows below "
		    "position %" PRId64, total, h);
	return total;
}
