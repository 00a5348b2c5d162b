/*
 * Redactions of a group's events (018_redact.sql), the step right after
 * rooms.c wrote them, inside the group's savepoint. Every m.room.redaction
 * of the group is kept as waiting for its target; each waiting redaction
 * whose target is stored (now, or by this group when it arrives after its
 * redaction from another user's poller) has the target's json replaced by
 * its pruned form (redact.c) with unsigned.redacted_because, as Synapse
 * serves it from then on. The target keeps its nid (contract 2) and no
 * notice is sent for it: clients learn of it from the redaction event in
 * the timeline. A redacted current state event also clears what the room
 * row derived from it (a redacted m.room.name means no name).
 */
#include <stdlib.h>
#include <string.h>

#include "accumulator.h"
#include "json_util.h"
#include "map.h"
#include "pg.h"
#include "pg_lit.h"
#include "store_int.h"
#include "util.h"

struct rdx_batch {
	struct pg_lit targets, rooms, jsons; /* the group's redactions */
	struct pg_lit ids;                   /* ids to look up */
	struct map mine;                     /* target + room -> 1 */
	size_t n;
};

static void
collect_list(struct rdx_batch *b, const char *room, const struct acc_evlist *l,
             bool all)
{
	for (size_t i = 0; i < l->n; i++) {
		const struct acc_event *ev = &l->v[i];
		const char *t;
		char *k;

		if (all)
			pg_arr_str(&b->ids, ev->event_id);
		if (strcmp(ev->type, "m.room.redaction") != 0 ||
		    (t = redact_target(ev->obj)) == NULL ||
		    strlen(t) > ACC_ID_MAX)
			continue;
		k = map_key3(t, room, "");
		if (!map_get_i64(&b->mine, k, NULL)) {
			map_put_i64(&b->mine, k, 1);
			pg_arr_str(&b->targets, t);
			pg_arr_str(&b->rooms, room);
			pg_arr_strn(&b->jsons, ev->raw, ev->raw_len);
			pg_arr_str(&b->ids, t);
			b->n++;
		}
		free(k);
	}
}

/*
 * The group's redactions, and the ids to look up: their targets, and
 * when redactions may be waiting, every event of the group.
 */
static void
collect(struct rdx_batch *b, struct msgctx *xs, size_t n, bool all)
{
	for (size_t i = 0; i < n; i++) {
		const struct acc_changes *ch = xs[i].ch;

		for (size_t j = 0; ch != NULL && j < ch->nrooms; j++) {
			const struct acc_room *r = &ch->rooms[j];

			collect_list(b, r->room_id, &r->state, all);
			collect_list(b, r->room_id, &r->timeline, all);
		}
	}
}

/* The room version of a create event's json; NULL means "1". */
static const char *
room_version(struct json_object *create)
{
	return json_get_str(json_get_obj(create, "content"), "room_version");
}

/*
 * Prunes one stored target (row i of S_RDX_GET) and, when it is current
 * state, updates the room's summary column from what is left of it.
 */
static int
prune_row(struct store *st, PGresult *r, int i)
{
	struct json_object *because, *ev, *create = NULL, *out = NULL;
	const char *type, *sk, *sum, *p[4];
	size_t len;
	int ret = -1;

	because = json_tokener_parse(PQgetvalue(r, i, 2));
	ev = json_tokener_parse(PQgetvalue(r, i, 4));
	if (!PQgetisnull(r, i, 5))
		create = json_tokener_parse(PQgetvalue(r, i, 5));
	p[0] = PQgetvalue(r, i, 3);
	p[2] = PQgetvalue(r, i, 0);
	p[3] = PQgetvalue(r, i, 1);
	/* already pruned (upstream served it redacted, or an earlier
	 * redaction): the first redaction stays its redacted_because */
	if (ev == NULL || because == NULL ||
	    json_get_obj(json_get_obj(ev, "unsigned"), "redacted_because")) {
		p[1] = PQgetvalue(r, i, 4);
		ret = db_q0(st, S_RDX_SET, 4, p);
		goto out;
	}
	out = redact_prune(ev, room_version(create), because);
	p[1] = json_plain(out, &len);
	if (db_q0(st, S_RDX_SET, 4, p) == -1)
		goto out;
	type = json_get_str(out, "type");
	sk = json_get_str(out, "state_key");
	ret = 0;
	if (strcmp(PQgetvalue(r, i, 6), "t") != 0 || type == NULL ||
	    sk == NULL || *sk != '\0' || acc_summary_key(type) == NULL)
		goto out;
	sum = json_get_str(json_get_obj(out, "content"), acc_summary_key(type));
	ret = db_q0(st, S_RDX_ROOM, 3,
	            (const char *[]){PQgetvalue(r, i, 1), type, sum});
out:
	json_object_put(out);
	json_object_put(create);
	json_object_put(ev);
	json_object_put(because);
	return ret;
}

int
redaction_apply(struct store *st, struct msgctx *xs, size_t n)
{
	struct rdx_batch b = {0};
	PGresult *r = NULL;
	const char *p[3];
	size_t left;
	int ret = -1;

	if (!st->rdx_checked || st->rdx_gen != st->generation) {
		if ((r = db_q(st, S_RDX_ANY, 0, NULL)) == NULL)
			goto out;
		st->rdx_pending = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
		st->rdx_checked = true;
		st->rdx_gen = st->generation;
		PQclear(r);
		r = NULL;
	}
	collect(&b, xs, n, st->rdx_pending);
	if (b.n > 0) {
		p[0] = pg_arr_end(&b.targets);
		p[1] = pg_arr_end(&b.rooms);
		p[2] = pg_arr_end(&b.jsons);
		if (db_q0(st, S_RDX_ADD, 3, p) == -1)
			goto out;
	}
	ret = 0;
	if (b.ids.count == 0)
		goto out;
	ret = -1;
	p[0] = pg_arr_end(&b.ids);
	if ((r = db_q(st, S_RDX_GET, 1, p)) == NULL)
		goto out;
	left = b.n;
	for (int i = 0; i < PQntuples(r); i++) {
		char *k =
		    map_key3(PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), "");
		if (map_get_i64(&b.mine, k, NULL))
			left--;
		free(k);
		if (prune_row(st, r, i) == -1)
			goto out;
	}
	/* a redaction of this group still waits for its target */
	if (left > 0)
		st->rdx_pending = true;
	ret = 0;
out:
	PQclear(r);
	pg_lit_free(&b.targets);
	pg_lit_free(&b.rooms);
	pg_lit_free(&b.jsons);
	pg_lit_free(&b.ids);
	map_free(&b.mine, NULL);
	return ret;
}
