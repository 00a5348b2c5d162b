/*
 * Reader-side queries over what the accumulator's store writes: state at
 * a position, joined rooms at a position and the visible ranges of
 * SEED-SPEC §7.8. The accumulator itself does not need them, so they live
 * with the tests (test_store.c): they pin down the meaning of the tables,
 * and the api may copy the SQL.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acc_query.h"
#include "pg.h"
#include "util.h"

/* State of room at pos: nids in (type, state_key) order. */
int
query_state_at(PGconn *c, const char *room, int64_t pos, int64_t **nids,
    size_t *n)
{
	char pb[24];
	const char *p[2] = {room, pb};
	PGresult *r;

	snprintf(pb, sizeof(pb), "%lld", (long long)pos);
	r = pg_query(c, "state at", "SELECT nid FROM syncv3_state WHERE "
	    "room_id = $1 AND from_pos <= $2::bigint AND (to_pos IS NULL OR "
	    "to_pos > $2::bigint) ORDER BY type, state_key", 2, p);
	if (r == NULL)
		return -1;
	*n = (size_t)PQntuples(r);
	*nids = xcalloc(*n + 1, sizeof(**nids));
	for (size_t i = 0; i < *n; i++)
		(*nids)[i] = strtoll(PQgetvalue(r, (int)i, 0), NULL, 10);
	PQclear(r);
	return 0;
}

/* Rooms where user is joined at pos, sorted. */
int
query_joined_at(PGconn *c, const char *user, int64_t pos, char ***rooms,
    size_t *n)
{
	char pb[24];
	const char *p[2] = {user, pb};
	PGresult *r;

	snprintf(pb, sizeof(pb), "%lld", (long long)pos);
	r = pg_query(c, "joined at", "SELECT room_id FROM syncv3_state WHERE "
	    "type = 'm.room.member' AND state_key = $1 AND membership = 'join' "
	    "AND from_pos <= $2::bigint AND (to_pos IS NULL OR to_pos > "
	    "$2::bigint) ORDER BY room_id", 2, p);
	if (r == NULL)
		return -1;
	*n = (size_t)PQntuples(r);
	*rooms = xcalloc(*n + 1, sizeof(**rooms));
	for (size_t i = 0; i < *n; i++)
		(*rooms)[i] = xstrdup(PQgetvalue(r, (int)i, 0));
	PQclear(r);
	return 0;
}

/*
 * SEED-SPEC §7.8 VisibleEventNIDsBetween for one room: logs are the
 * user's membership changes in (from, to] in position order; joined says
 * whether they were joined at from. Writes [start, end] pairs to out
 * (room for n + 1) and returns how many.
 */
size_t
query_visible_ranges(const struct vlog *logs, size_t n, bool joined,
    int64_t from, int64_t to, struct vrange *out)
{
	int64_t start = joined ? from : -1;
	size_t k = 0;

	if (n == 0) {
		out[k++] = (struct vrange){from, to};
		return k;
	}
	for (size_t i = 0; i < n; i++) {
		const char *m = logs[i].membership;
		if (joined && (strcmp(m, "leave") == 0 ||
		    strcmp(m, "ban") == 0)) {
			out[k++] = (struct vrange){start, logs[i].pos};
			joined = false;
		} else if (!joined && strcmp(m, "join") == 0) {
			start = logs[i].pos;
			joined = true;
		} else if (!joined && strcmp(m, "invite") == 0)
			out[k++] = (struct vrange){logs[i].pos, logs[i].pos};
	}
	if (joined)
		out[k++] = (struct vrange){start, to};
	return k;
}

/* The same from the tables: membership changes of user in room. */
int
query_visible_db(PGconn *c, const char *user, const char *room, int64_t from,
    int64_t to, struct vrange *out, size_t max, size_t *n)
{
	char fb[24], tb[24];
	const char *p[4] = {user, room, fb, tb};
	struct vlog *logs;
	PGresult *r;
	char **rooms;
	size_t nj;
	bool joined = false;

	if (query_joined_at(c, user, from, &rooms, &nj) == -1)
		return -1;
	for (size_t i = 0; i < nj; i++) {
		joined |= strcmp(rooms[i], room) == 0;
		free(rooms[i]);
	}
	free(rooms);
	snprintf(fb, sizeof(fb), "%lld", (long long)from);
	snprintf(tb, sizeof(tb), "%lld", (long long)to);
	r = pg_query(c, "visible", "SELECT from_pos, coalesce(membership, "
	    "'leave') FROM syncv3_state WHERE type = 'm.room.member' AND "
	    "state_key = $1 AND room_id = $2 AND from_pos > $3::bigint AND "
	    "from_pos <= $4::bigint ORDER BY from_pos", 4, p);
	if (r == NULL)
		return -1;
	logs = xcalloc((size_t)PQntuples(r) + 1, sizeof(*logs));
	for (int i = 0; i < PQntuples(r); i++)
		logs[i] = (struct vlog){strtoll(PQgetvalue(r, i, 0), NULL, 10),
		    PQgetvalue(r, i, 1)};
	if ((size_t)PQntuples(r) + 1 > max) {
		free(logs);
		PQclear(r);
		return -1;
	}
	*n = query_visible_ranges(logs, (size_t)PQntuples(r), joined, from, to,
	    out);
	free(logs);
	PQclear(r);
	return 0;
}
