/*
 * Room events and state for a group of messages (called by store.c inside
 * the group's savepoint; runs its statements through db.c and takes
 * positions from pos.c). Events are stored once by event_id; state is
 * kept as validity ranges in syncv3_state, one row per change, so a member
 * event in a huge room costs one row. Everything is decided in memory from
 * four lookups for the whole group (known events, the current entries of
 * the keys it touches, the room rows, the user-room rows), then written
 * with one set-based statement per table. Messages are decided one after
 * the other, each seeing what the ones before it did (an event inserted by
 * an earlier message counts as known, a state row it opened is closed in
 * memory), so the result is the same as applying them one by one.
 *
 * Rules (why: pollers of different users lag each other and v2 repeats
 * events in state and timeline):
 * - a known event is never inserted or applied again;
 * - a state-block event that is also in the timeline is applied from the
 *   timeline, at its place;
 * - for each (type, state_key) only the last event of the message decides
 *   the final state: if that one is already known, earlier new events for
 *   the key are stored but do not touch state (a lagging poller);
 * - a known state-block event replaces the current entry only if it
 *   arrived after it (a higher nid): a state block from a lagging poller
 *   must not roll state back;
 * - new state-block events take their nid as position, known ones a fresh
 *   position; both come before the timeline's positions.
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

struct ent {
	const char *room, *type, *sk;
	bool has;		/* a current entry exists */
	int64_t nid;
	char *membership;
	ssize_t pending;	/* our newest row in srows, -1: the db row */
};

struct srow {
	const char *room, *type, *sk, *membership;
	int64_t nid, from, to;
};

struct evrow {
	const struct acc_event *ev;
	const char *room;
	int64_t nid;
	bool tl;
};

struct sclose {
	const char *room, *type, *sk;
	int64_t pos;
};

/*
 * New timeline events lo..hi (consecutive nids) of a chunk that came
 * right before the stored event anchor in it (031_order.sql).
 */
struct late {
	const char *room;
	int64_t anchor, lo, hi;
};

/* A boundary of an upstream timeline chunk and its token (015_chunks). */
struct chunk {
	const char *room, *token;
	int64_t nid;
	bool is_end, limited;
};

struct rstate {
	const char *room;
	bool loaded, changed, has_summary;
	int64_t last_nid, last_ts, jc, ic, upos;
	const char *name, *alias, *topic, *avatar, *rtype;
	bool enc;
	struct store_msg *nm;	/* the last message that changed it */
	int64_t bump_ts, bump_nid;	/* newest bump event of the group */
};

/* A syncing user's row of a room. */
struct urstate {
	const char *user, *room;
	struct store_msg *m;	/* the last message that touched it */
	bool ur_loaded, ur_touched;
	const char *ur_membership, *ur_invite, *ur_heroes, *ur_prev;
	int64_t ur_pos, ur_nc, ur_hc, my_pos;
	const char *new_membership, *new_invite, *new_heroes, *new_prev;
	bool new_has_unread;
	int64_t new_nc, new_hc;
};

struct rctx {
	struct store *st;
	struct msgctx *x;	/* the message being decided */
	struct urstate *u;	/* its user's row of the room being decided */
	struct map known, keys, roomidx, uridx;
	struct ent *ents;
	size_t nents, capents;
	struct srow *srows;
	size_t nsrows, capsrows;
	struct evrow *evrows;
	size_t nevrows, capevrows;
	struct sclose *closes;
	size_t ncloses, capcloses;
	struct chunk *chunks;
	size_t nchunks, capchunks;
	struct map chunkidx; /* room + first nid -> index in chunks */
	struct late *lates;
	size_t nlates, caplates;
	struct rstate *rs;
	size_t nrs;
	struct urstate *urs;
	size_t nurs;
	PGresult *res_rooms, *res_ur;
};

#define PUSH(arr, n, cap)                                                      \
	do {                                                                   \
		if ((n) == (cap)) {                                            \
			(cap) = (cap) ? (cap) * 2 : 16;                        \
			(arr) = xrealloc((arr), (cap) * sizeof(*(arr)));       \
		}                                                              \
	} while (0)

static bool
streq(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

static int64_t
i64(PGresult *r, int row, int col)
{
	return strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static const char *
optstr(PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

static size_t
ent_of(struct rctx *rc, const char *room, const struct acc_event *ev)
{
	char *k = map_key3(room, ev->type, ev->state_key);
	int64_t i;

	if (!map_get_i64(&rc->keys, k, &i)) {
		PUSH(rc->ents, rc->nents, rc->capents);
		i = (int64_t)rc->nents++;
		memset(&rc->ents[i], 0, sizeof(rc->ents[i]));
		rc->ents[i].room = room;
		rc->ents[i].type = ev->type;
		rc->ents[i].sk = ev->state_key;
		rc->ents[i].pending = -1;
		map_put_i64(&rc->keys, k, i);
	}
	free(k);
	return (size_t)i;
}

static void
collect_key(struct rctx *rc, const char *room, const struct acc_event *ev,
            struct cols *keys)
{
	size_t before = rc->nents;

	(void)ent_of(rc, room, ev);
	if (rc->nents > before) {
		pg_arr_str(&keys->c[0], room);
		pg_arr_str(&keys->c[1], ev->type);
		pg_arr_str(&keys->c[2], ev->state_key);
		keys->rows++;
	}
}

/*
 * Known events and the current state of every key the message touches,
 * including its user's own member key in the rooms it left (own_leave).
 */
static void
collect_keys(struct rctx *rc, struct acc_changes *ch, const char *user,
             struct pg_lit *ids, struct cols *keys)
{
	for (size_t i = 0; i < ch->nrooms; i++) {
		struct acc_room *rm = &ch->rooms[i];
		for (int pass = 0; pass < 2; pass++) {
			struct acc_evlist *l = pass ? &rm->timeline : &rm->state;
			for (size_t j = 0; j < l->n; j++) {
				pg_arr_str(ids, l->v[j].event_id);
				if (l->v[j].state_key != NULL)
					collect_key(rc, rm->room_id, &l->v[j],
					            keys);
			}
		}
		if (rm->section == ACC_LEAVE && user != NULL)
			collect_key(rc, rm->room_id,
			            &(struct acc_event){.type = "m.room.member",
			                                .state_key = user},
			            keys);
	}
}

/* The group's known events (rc->known: nid > 0), from S_KNOWN. */
static void
known_read(struct rctx *rc, PGresult *r)
{
	for (int i = 0; i < PQntuples(r); i++)
		map_put_i64(&rc->known, PQgetvalue(r, i, 0), i64(r, i, 1));
}

/* The current state entry of every key the group touches, from S_CUR. */
static void
cur_read(struct rctx *rc, PGresult *r)
{
	for (int i = 0; i < PQntuples(r); i++) {
		int64_t k = i64(r, i, 0) - 1;
		if (k < 0 || (size_t)k >= rc->nents)
			continue;
		rc->ents[k].has = true;
		rc->ents[k].nid = i64(r, i, 1);
		free(rc->ents[k].membership);
		rc->ents[k].membership = PQgetisnull(r, i, 2) ? NULL :
		    xstrdup(PQgetvalue(r, i, 2));
	}
}

/* Indexes the rooms and (user, room) pairs of one message. */
static void
index_rooms(struct rctx *rc, struct msgctx *x, struct pg_lit *ids,
    struct cols *urk)
{
	struct acc_changes *ch = x->ch;

	for (size_t i = 0; i < ch->nrooms; i++) {
		const char *room = ch->rooms[i].room_id;
		char *k;

		if (!map_get_i64(&rc->roomidx, room, NULL)) {
			map_put_i64(&rc->roomidx, room, (int64_t)rc->nrs);
			rc->rs[rc->nrs++].room = room;
			pg_arr_str(ids, room);
		}
		k = map_key3(x->m->user_id, room, "");
		if (!map_get_i64(&rc->uridx, k, NULL)) {
			map_put_i64(&rc->uridx, k, (int64_t)rc->nurs);
			rc->urs[rc->nurs].user = x->m->user_id;
			rc->urs[rc->nurs++].room = room;
			pg_arr_str(&urk->c[0], x->m->user_id);
			pg_arr_str(&urk->c[1], room);
			urk->rows++;
		}
		free(k);
	}
}

static void
rooms_row(struct rstate *s, PGresult *r, int i)
{
	s->loaded = true;
	s->last_nid = i64(r, i, 1);
	s->last_ts = i64(r, i, 2);
	s->name = optstr(r, i, 3);
	s->alias = optstr(r, i, 4);
	s->topic = optstr(r, i, 5);
	s->avatar = optstr(r, i, 6);
	s->rtype = optstr(r, i, 7);
	s->enc = PQgetvalue(r, i, 8)[0] == 't';
	s->jc = i64(r, i, 9);
	s->ic = i64(r, i, 10);
}

static void
ur_load_row(struct urstate *s, PGresult *r, int i)
{
	s->ur_loaded = true;
	s->ur_membership = PQgetvalue(r, i, 1);
	s->ur_pos = i64(r, i, 2);
	s->ur_invite = optstr(r, i, 3);
	s->ur_heroes = optstr(r, i, 4);
	s->ur_nc = i64(r, i, 5);
	s->ur_hc = i64(r, i, 6);
	s->ur_prev = optstr(r, i, 7);
}

/* The rooms rows and the syncing users' rows, kept for the group. */
static void
rooms_read(struct rctx *rc)
{
	PGresult *r = rc->res_rooms;
	int64_t k;

	for (int i = 0; i < PQntuples(r); i++)
		if (map_get_i64(&rc->roomidx, PQgetvalue(r, i, 0), &k))
			rooms_row(&rc->rs[k], r, i);
	r = rc->res_ur;
	for (int i = 0; i < PQntuples(r); i++) {
		k = i64(r, i, 0) - 1;
		if (k >= 0 && (size_t)k < rc->nurs)
			ur_load_row(&rc->urs[k], r, i);
	}
}

/*
 * The group's four lookups, in one pipeline (they do not depend on each
 * other): which of its events are stored (S_KNOWN), the current state
 * entry of every (room, type, state_key) it touches (S_CUR, rc->ents,
 * found by ent_of), and the room rows and the syncing users' rows of
 * every room met. All of it then changes only in memory while the
 * messages are decided. One wait for Postgres, not four, per group.
 */
static int
load_group(struct rctx *rc, struct msgctx *xs, size_t n)
{
	struct pg_lit ids = {0}, rids = {0};
	struct cols keys, urk;
	const char *pk[1], *pc[3], *pr[1], *pu[2];
	struct db_call calls[4];
	PGresult *res[4];
	size_t total = 0, nc = 0, i = 0;
	int ret = -1;

	for (size_t j = 0; j < n; j++)
		total += xs[j].ch ? xs[j].ch->nrooms : 0;
	rc->rs = xcalloc(total + 1, sizeof(*rc->rs));
	rc->urs = xcalloc(total + 1, sizeof(*rc->urs));
	cols_init(&keys, 3);
	cols_init(&urk, 2);
	for (size_t j = 0; j < n; j++) {
		if (xs[j].ch == NULL)
			continue;
		collect_keys(rc, xs[j].ch, xs[j].m->user_id, &ids, &keys);
		index_rooms(rc, &xs[j], &rids, &urk);
	}
	/* a group without events (typing, receipts, counts) knows none */
	if (ids.count > 0) {
		pk[0] = pg_arr_end(&ids);
		calls[nc++] = (struct db_call){S_KNOWN, 1, pk};
	}
	if (keys.rows > 0) {
		cols_params(&keys, pc);
		calls[nc++] = (struct db_call){S_CUR, 3, pc};
	}
	pr[0] = pg_arr_end(&rids);
	calls[nc++] = (struct db_call){S_ROOMS_GET, 1, pr};
	cols_params(&urk, pu);
	calls[nc++] = (struct db_call){S_UR_GET, 2, pu};
	if (db_qv(rc->st, calls, nc, res) == -1)
		goto out;
	if (ids.count > 0)
		known_read(rc, res[i++]);
	if (keys.rows > 0)
		cur_read(rc, res[i++]);
	rc->res_rooms = res[i++];
	rc->res_ur = res[i];
	rooms_read(rc);
	for (size_t j = 0; j < nc - 2; j++)
		PQclear(res[j]);
	ret = 0;
out:
	pg_lit_free(&ids);
	pg_lit_free(&rids);
	cols_free(&keys);
	cols_free(&urk);
	return ret;
}

static void
summary_set(struct rstate *s, const struct acc_event *ev)
{
	const char *t = ev->type;

	if (ev->state_key[0] != '\0' || strncmp(t, "m.room.", 7) != 0)
		return;
	t += 7;
	if (strcmp(t, "name") == 0)
		s->name = ev->summary;
	else if (strcmp(t, "canonical_alias") == 0)
		s->alias = ev->summary;
	else if (strcmp(t, "topic") == 0)
		s->topic = ev->summary;
	else if (strcmp(t, "avatar") == 0)
		s->avatar = ev->summary;
	else if (strcmp(t, "create") == 0)
		s->rtype = ev->summary;
	else if (strcmp(t, "encryption") == 0)
		s->enc = true;
}

static void
member_change(struct rctx *rc, struct rstate *s, const struct acc_event *ev,
    const char *old, int64_t pos)
{
	const char *m = ev->membership;

	if (rc->x->m->user_id != NULL &&
	    strcmp(ev->state_key, rc->x->m->user_id) == 0)
		rc->u->my_pos = pos;
	if (streq(old, m))
		return;
	s->jc += (streq(m, "join") ? 1 : 0) - (streq(old, "join") ? 1 : 0);
	s->ic += (streq(m, "invite") ? 1 : 0) - (streq(old, "invite") ? 1 : 0);
	if (s->jc < 0)
		s->jc = 0;
	if (s->ic < 0)
		s->ic = 0;
	notice_add(&rc->x->m->notices, &(struct proto_notice){
	    .type = PROTO_NOTICE_MEMBERSHIP, .pos = pos, .room_id = s->room,
	    .user_id = ev->state_key, .membership = m ? m : "leave"});
}

/* Ends the current range of e's key at pos (in memory or in the db). */
static void
ent_close(struct rctx *rc, struct ent *e, int64_t pos)
{
	if (e->pending >= 0)
		rc->srows[e->pending].to = pos;
	else if (e->has) {
		PUSH(rc->closes, rc->ncloses, rc->capcloses);
		rc->closes[rc->ncloses++] = (struct sclose){e->room, e->type,
		    e->sk, pos};
	}
}

/* Makes ev (nid) the current entry of its key from pos on. */
static void
state_set(struct rctx *rc, struct rstate *s, size_t ei,
          const struct acc_event *ev, int64_t nid, int64_t pos)
{
	struct ent *e = &rc->ents[ei];
	struct srow *row;

	ent_close(rc, e, pos);
	PUSH(rc->srows, rc->nsrows, rc->capsrows);
	row = &rc->srows[rc->nsrows];
	*row = (struct srow){e->room, e->type, e->sk, ev->membership, nid, pos,
	    0};
	e->pending = (ssize_t)rc->nsrows++;
	if (strcmp(ev->type, "m.room.member") == 0)
		member_change(rc, s, ev, e->has ? e->membership : NULL, pos);
	e->has = true;
	e->nid = nid;
	free(e->membership);
	e->membership = ev->membership ? xstrdup(ev->membership) : NULL;
	s->changed = true;
	if (pos > s->upos)
		s->upos = pos;
	summary_set(s, ev);
}

static int64_t
evrow_add(struct rctx *rc, const char *room, const struct acc_event *ev,
    bool tl)
{
	int64_t nid = pos_next(rc->st);

	PUSH(rc->evrows, rc->nevrows, rc->capevrows);
	rc->evrows[rc->nevrows++] = (struct evrow){ev, room, nid, tl};
	map_put_i64(&rc->known, ev->event_id, -nid);
	return nid;
}

static bool
known_db(struct rctx *rc, const struct acc_event *ev)
{
	int64_t v;

	return map_get_i64(&rc->known, ev->event_id, &v) && v > 0;
}

/* Is the last event of the message for this key one we already had? */
static bool
final_known(struct rctx *rc, struct map *last, const struct acc_room *r,
    const char *key)
{
	int64_t seq;

	if (!map_get_i64(last, key, &seq))
		return false;
	if ((size_t)seq < r->state.n)
		return known_db(rc, &r->state.v[seq]);
	return known_db(rc, &r->timeline.v[(size_t)seq - r->state.n]);
}

/*
 * A room's state block. An event also in the timeline is skipped (it is
 * applied at its place there); a known event may move state forward but
 * never back (its nid must be above the current entry's, and it must be
 * the message's last word on its key) and never reopens a key without a
 * current entry (one own_leave closed: an old join from a lagging poller
 * must not undo the leave); a new one is stored and applies unless the
 * message's last event for its key is one we already had.
 */
static void
state_block(struct rctx *rc, struct acc_room *r, struct rstate *s,
    struct map *tl, struct map *last)
{
	for (size_t i = 0; i < r->state.n; i++) {
		const struct acc_event *ev = &r->state.v[i];
		char *k;
		int64_t v, seq = -1, nid;
		size_t ei;

		if (map_get_i64(tl, ev->event_id, NULL))
			continue;	/* applied from the timeline */
		k = map_key3(r->room_id, ev->type, ev->state_key);
		ei = ent_of(rc, r->room_id, ev);
		map_get_i64(last, k, &seq);
		if (map_get_i64(&rc->known, ev->event_id, &v)) {
			struct ent *e = &rc->ents[ei];
			if (v > 0 && seq == (int64_t)i && e->has && e->nid < v)
				state_set(rc, s, ei, ev, v,
				    pos_next(rc->st));
		} else {
			nid = evrow_add(rc, r->room_id, ev, false);
			if (!final_known(rc, last, r, k))
				state_set(rc, s, ei, ev, nid, nid);
		}
		free(k);
	}
}

/*
 * A boundary of the room's timeline in this message (015_chunks.sql):
 * before its first event (upstream's prev_batch) or after its last (the
 * response's next_batch), by the nid of that event, new or known. Two
 * syncs with the same boundary say the same about it, so the group keeps
 * one row per (room, nid, is_end): one statement may not upsert a row
 * twice. limited if either said so.
 */
static void
chunk_add(struct rctx *rc, const struct acc_room *r, int64_t nid, bool is_end)
{
	const char *tok = is_end ? rc->x->m->next_batch : r->prev_batch;
	char nb[32], *k;
	int64_t i;

	if (tok == NULL || *tok == '\0')
		return;
	snprintf(nb, sizeof(nb), "%" PRId64 "%c", nid, is_end ? 'e' : 's');
	k = map_key3(r->room_id, nb, "");
	if (map_get_i64(&rc->chunkidx, k, &i))
		rc->chunks[i].limited |= r->limited && !is_end;
	else {
		PUSH(rc->chunks, rc->nchunks, rc->capchunks);
		map_put_i64(&rc->chunkidx, k, (int64_t)rc->nchunks);
		rc->chunks[rc->nchunks++] = (struct chunk){
		    r->room_id, tok, nid, is_end, r->limited && !is_end};
	}
	free(k);
}

/* The boundaries of the chunk at timeline event i of nid. */
static void
chunk_ends(struct rctx *rc, const struct acc_room *r, size_t i, int64_t nid)
{
	if (i == 0)
		chunk_add(rc, r, nid, false);
	if (i + 1 == r->timeline.n)
		chunk_add(rc, r, nid, true);
}

/*
 * The stored event (nid > 0) that follows timeline event i in the chunk
 * when every event between them is new too, 0 if none: a chunk is in
 * upstream's order, so new events followed by a stored one came before
 * it (they arrived late, through a lagging poller).
 */
static int64_t
anchor_after(struct rctx *rc, const struct acc_room *r, size_t i)
{
	int64_t nid;

	for (size_t j = i + 1; j < r->timeline.n; j++)
		if (map_get_i64(&rc->known, r->timeline.v[j].event_id, &nid))
			return nid > 0 ? nid : -nid;
	return 0;
}

/* New event nid of the room placed before anchor: extends the last run. */
static void
late_add(struct rctx *rc, const char *room, int64_t anchor, int64_t nid)
{
	struct late *l = rc->nlates > 0 ? &rc->lates[rc->nlates - 1] : NULL;

	if (l != NULL && l->anchor == anchor && l->hi + 1 == nid &&
	    streq(l->room, room)) {
		l->hi = nid;
		return;
	}
	PUSH(rc->lates, rc->nlates, rc->caplates);
	rc->lates[rc->nlates++] = (struct late){room, anchor, nid, nid};
}

/*
 * A room's timeline: every new event is stored and moves the room's
 * last event; a state event among them becomes the current entry unless
 * the message ends its key with an event we already had (a lagging
 * poller). Known events are never applied twice. A new event with a
 * stored one after it in the chunk is placed before that one (late_add,
 * 031_order.sql): it is not the room's last event and bumps nothing,
 * though its nid still says the room changed (upos).
 */
static void
timeline(struct rctx *rc, struct acc_room *r, struct rstate *s,
    struct map *last)
{
	int64_t anchor = -1;

	for (size_t i = 0; i < r->timeline.n; i++) {
		const struct acc_event *ev = &r->timeline.v[i];
		int64_t nid;
		char *k;

		if (map_get_i64(&rc->known, ev->event_id, &nid)) {
			chunk_ends(rc, r, i, nid > 0 ? nid : -nid);
			anchor = -1;
			continue;	/* never applied twice */
		}
		if (anchor == -1)
			anchor = anchor_after(rc, r, i);
		nid = evrow_add(rc, r->room_id, ev, true);
		chunk_ends(rc, r, i, nid);
		s->changed = true;
		if (nid > s->upos)
			s->upos = nid;
		if (anchor > 0)
			late_add(rc, r->room_id, anchor, nid);
		else if (nid > s->last_nid) {
			s->last_nid = nid;
			s->last_ts = ev->ts;
		}
		if (anchor <= 0 && rooms_is_bump_type(ev->type) &&
		    (ev->ts > s->bump_ts ||
		     (ev->ts == s->bump_ts && nid > s->bump_nid))) {
			s->bump_ts = ev->ts;
			s->bump_nid = nid;
		}
		if (ev->state_key == NULL)
			continue;
		k = map_key3(r->room_id, ev->type, ev->state_key);
		if (!final_known(rc, last, r, k))
			state_set(rc, s, ent_of(rc, r->room_id, ev), ev, nid,
			    nid);
		free(k);
	}
}

/*
 * What the message says about its own user's row of the room: the
 * membership of its section, the invite state, heroes and prev_batch
 * (kept from before when absent), unread counts, and the room summary's
 * member counts, which the room row takes from it. The prev_batch of an
 * empty timeline (a room sent for its typing or receipts alone) names
 * the current position, not one before any event: it is taken only when
 * none is kept, else every typing change rewrote the row (a write on the
 * quiet path, and a room_list update with nothing new in it).
 */
static void
user_room(struct rctx *rc, struct acc_room *r, struct rstate *rs,
    struct urstate *s)
{
	const char *prev;

	s->ur_touched = true;
	s->m = rc->x->m;
	s->new_membership = r->my_membership;
	s->new_invite = (r->section == ACC_INVITE || r->section == ACC_KNOCK) ?
	    r->invite_state : NULL;
	s->new_heroes = r->heroes ? r->heroes :
	    (s->new_heroes ? s->new_heroes : s->ur_heroes);
	prev = s->new_prev ? s->new_prev : s->ur_prev;
	if (r->prev_batch != NULL &&
	    (r->timeline.n > 0 || prev == NULL || *prev == '\0'))
		prev = r->prev_batch;
	s->new_prev = prev;
	if (r->has_unread) {
		s->new_has_unread = true;
		s->new_nc = r->notif;
		s->new_hc = r->highlight;
	}
	if (r->joined_count >= 0) {
		rs->jc = r->joined_count;
		rs->has_summary = true;
	}
	if (r->invited_count >= 0) {
		rs->ic = r->invited_count;
		rs->has_summary = true;
	}
}

/* Does the room's part of the message carry a member event of user? */
static bool
has_member_event(const struct acc_room *r, const char *user)
{
	for (size_t i = 0; i < r->state.n + r->timeline.n; i++) {
		const struct acc_event *ev =
		    i < r->state.n ? &r->state.v[i]
		                   : &r->timeline.v[i - r->state.n];
		if (ev->state_key != NULL && strcmp(ev->state_key, user) == 0 &&
		    strcmp(ev->type, "m.room.member") == 0)
			return true;
	}
	return false;
}

/*
 * The message's own sync says its user left the room (rooms.leave) but
 * brought no member event of theirs (a homeserver may send a leave older
 * than the timeline window with an empty timeline) and no poller stored
 * one: their join range in the room's state is ended here, at a fresh
 * position, as the leave event would have ended it. Otherwise a rejoin
 * would close that range only at the rejoin, and the visibility rule
 * (api/visible.h), which trusts these ranges, would show the user
 * everything other pollers stored while they were away. The key is left
 * without a current entry until a real member event arrives.
 */
static void
own_leave(struct rctx *rc, struct acc_room *r, struct rstate *s)
{
	struct acc_event ev = {.type = "m.room.member",
	                       .state_key = rc->x->m->user_id,
	                       .membership = r->my_membership};
	struct ent *e;
	int64_t pos;

	if (r->section != ACC_LEAVE || ev.state_key == NULL ||
	    has_member_event(r, ev.state_key))
		return;
	e = &rc->ents[ent_of(rc, r->room_id, &ev)];
	if (!e->has || !streq(e->membership, "join"))
		return;
	pos = pos_next(rc->st);
	ent_close(rc, e, pos);
	member_change(rc, s, &ev, e->membership, pos);
	e->has = false;
	e->pending = -1;
	free(e->membership);
	e->membership = NULL;
	s->changed = true;
	if (pos > s->upos)
		s->upos = pos;
}

/*
 * One room of the message being decided (rc->x): builds the index of the
 * timeline's event ids and of each key's last event in the message, then
 * the state block, the timeline and the user's row. s->changed is kept
 * per message so the room notice goes to the last message that changed it.
 */
static void
room_process(struct rctx *rc, struct acc_room *r)
{
	struct map tl, last;
	int64_t k;
	struct rstate *s;
	char *key;
	bool was_changed;

	map_get_i64(&rc->roomidx, r->room_id, &k);
	s = &rc->rs[k];
	key = map_key3(rc->x->m->user_id, r->room_id, "");
	map_get_i64(&rc->uridx, key, &k);
	free(key);
	rc->u = &rc->urs[k];
	was_changed = s->changed;
	s->changed = false;
	map_init(&tl);
	map_init(&last);
	for (size_t i = 0; i < r->timeline.n; i++)
		map_put_i64(&tl, r->timeline.v[i].event_id, 1);
	for (size_t i = 0; i < r->state.n + r->timeline.n; i++) {
		const struct acc_event *ev = i < r->state.n ? &r->state.v[i] :
		    &r->timeline.v[i - r->state.n];
		if (ev->state_key == NULL || (i < r->state.n &&
		    map_get_i64(&tl, ev->event_id, NULL)))
			continue;
		key = map_key3(r->room_id, ev->type, ev->state_key);
		map_put_i64(&last, key, (int64_t)i);
		free(key);
	}
	state_block(rc, r, s, &tl, &last);
	timeline(rc, r, s, &last);
	own_leave(rc, r, s);
	user_room(rc, r, s, rc->u);
	if (s->changed)
		s->nm = rc->x->m;
	s->changed |= was_changed;
	map_free(&tl, NULL);
	map_free(&last, NULL);
}

/* New events and state rows are only ever inserted (struct rows). */
static int
write_events(struct rctx *rc)
{
	struct rows w;
	int ret;

	rows_init(&w, 10, rc->nevrows);
	for (size_t i = 0; i < rc->nevrows; i++) {
		const struct evrow *e = &rc->evrows[i];
		rows_i64(&w, e->nid);
		rows_str(&w, e->ev->event_id);
		rows_str(&w, e->room);
		rows_str(&w, e->ev->type);
		rows_str(&w, e->ev->state_key);
		rows_str(&w, e->ev->sender);
		rows_str(&w, e->ev->membership);
		rows_i64(&w, e->ev->ts);
		rows_bool(&w, e->tl);
		rows_strn(&w, e->ev->raw, e->ev->raw_len);
		rows_end(&w);
	}
	ret = db_rows(rc->st, &w, "COPY syncv3_events (nid, event_id, room_id, "
	    "type, state_key, sender, membership, origin_ts, is_timeline, json)"
	    " FROM STDIN", S_EV_INS);
	rows_free(&w);
	return ret;
}

/*
 * The state rows of the group: first the current entries that were in
 * the database and are closed now (one UPDATE), then every new range with
 * COPY, including ranges opened and closed within the group.
 */
static int
write_state(struct rctx *rc)
{
	struct cols c;
	struct rows w;
	const char *p[4];
	int ret = 0;

	if (rc->ncloses > 0) {
		cols_init(&c, 4);
		for (size_t i = 0; i < rc->ncloses; i++) {
			pg_arr_str(&c.c[0], rc->closes[i].room);
			pg_arr_str(&c.c[1], rc->closes[i].type);
			pg_arr_str(&c.c[2], rc->closes[i].sk);
			pg_arr_i64(&c.c[3], rc->closes[i].pos);
		}
		cols_params(&c, p);
		ret = db_q0(rc->st, S_ST_CLOSE, 4, p);
		cols_free(&c);
	}
	if (ret == -1 || rc->nsrows == 0)
		return ret;
	rows_init(&w, 7, rc->nsrows);
	for (size_t i = 0; i < rc->nsrows; i++) {
		const struct srow *s = &rc->srows[i];
		rows_str(&w, s->room);
		rows_str(&w, s->type);
		rows_str(&w, s->sk);
		rows_i64(&w, s->nid);
		rows_i64(&w, s->from);
		if (s->to > 0)
			rows_i64(&w, s->to);
		else
			rows_str(&w, NULL);
		rows_str(&w, s->membership);
		rows_end(&w);
	}
	ret = db_rows(rc->st, &w, "COPY syncv3_state (room_id, type, state_key,"
	    " nid, from_pos, to_pos, membership) FROM STDIN", S_ST_INS);
	if (ret == 0)
		rc->st->grp_state_rows += rc->nsrows;
	rows_free(&w);
	return ret;
}

/*
 * The room rows the group changed (or whose summary counts it reported),
 * as the columns of one upsert; the notice of a changed room goes to the
 * last message that changed it, at the room's highest new position. A
 * row also carries the group's newest bump event (0 if none; a bump is a
 * new event, so its room is changed): the rows of the room's members
 * follow in the same statement (022_ingest.sql).
 */
static void
rooms_cols(struct rctx *rc, struct cols *c)
{
	for (size_t i = 0; i < rc->nrs; i++) {
		struct rstate *s = &rc->rs[i];
		if (!s->changed && !s->has_summary)
			continue;
		if (s->changed)
			notice_add(&s->nm->notices, &(struct proto_notice){
			    .type = PROTO_NOTICE_ROOM, .pos = s->upos,
			    .room_id = s->room});
		if (s->upos == 0)
			s->upos = pos_next(rc->st);
		pg_arr_str(&c->c[0], s->room);
		pg_arr_i64(&c->c[1], s->last_nid);
		pg_arr_i64(&c->c[2], s->last_ts);
		pg_arr_str(&c->c[3], s->name);
		pg_arr_str(&c->c[4], s->alias);
		pg_arr_str(&c->c[5], s->topic);
		pg_arr_str(&c->c[6], s->avatar);
		pg_arr_str(&c->c[7], s->rtype);
		pg_arr_bool(&c->c[8], s->enc);
		pg_arr_i64(&c->c[9], s->jc);
		pg_arr_i64(&c->c[10], s->ic);
		pg_arr_i64(&c->c[11], s->upos);
		pg_arr_i64(&c->c[12], s->bump_ts);
		pg_arr_i64(&c->c[13], s->bump_nid);
		c->rows++;
	}
}

/*
 * Sliding sync's sort key: the newest event (by ts, then nid) of a type
 * the MSC counts as activity (bump_stamp).
 */
bool
rooms_is_bump_type(const char *type)
{
	static const char *const bump[] = {
	    "m.room.create", "m.room.message", "m.room.encrypted", "m.sticker",
	    "m.call.invite", "m.poll.start",   "m.beacon_info"};

	for (size_t i = 0; i < sizeof(bump) / sizeof(bump[0]); i++)
		if (strcmp(type, bump[i]) == 0)
			return true;
	return false;
}

/*
 * The user's own row of the room changed: their membership, or their
 * unread counts alone (a read receipt from another device brings no
 * event). Both go out as the user's membership notice, which is what
 * wakes their waiting requests for that room (api/longpoll.c); for the
 * counts it carries the unchanged membership.
 */
static void
ur_notice(struct urstate *s, int64_t pos)
{
	notice_add(&s->m->notices,
	           &(struct proto_notice){.type = PROTO_NOTICE_MEMBERSHIP,
	                                  .pos = pos,
	                                  .room_id = s->room,
	                                  .user_id = s->user,
	                                  .membership = s->new_membership});
}

/*
 * The syncing user's own row per room; skipped when nothing differs. A
 * new prev_batch alone (upstream sends one with every joined room, typing
 * or a receipt included) is written without moving updated_pos (0 keeps
 * it, S_UR_PUT): readers take a moved row for changed counts or invite
 * and would send the room again with nothing new in it, and prev_batch
 * only matters with the events that move the room's own row.
 */
static bool
ur_row(struct rctx *rc, struct urstate *s, struct cols *c)
{
	bool changed = !s->ur_loaded ||
	    !streq(s->ur_membership, s->new_membership);
	int64_t nc = s->new_has_unread ? s->new_nc : s->ur_nc;
	int64_t hc = s->new_has_unread ? s->new_hc : s->ur_hc;
	int64_t pos = s->ur_pos, upos;
	bool is_same = !changed && streq(s->ur_invite, s->new_invite) &&
	               streq(s->ur_heroes, s->new_heroes) && nc == s->ur_nc &&
	               hc == s->ur_hc;

	if (is_same && streq(s->ur_prev, s->new_prev))
		return false;
	upos = is_same ? 0 : pos_next(rc->st);
	if (changed) {
		pos = s->my_pos > 0 ? s->my_pos : upos;
		if (s->my_pos == 0)
			ur_notice(s, pos);
	} else if (nc != s->ur_nc || hc != s->ur_hc)
		ur_notice(s, upos);
	pg_arr_str(&c->c[0], s->user);
	pg_arr_str(&c->c[1], s->room);
	pg_arr_str(&c->c[2], s->new_membership);
	pg_arr_i64(&c->c[3], pos);
	pg_arr_str(&c->c[4], s->new_invite);
	pg_arr_str(&c->c[5], s->new_heroes);
	pg_arr_i64(&c->c[6], nc);
	pg_arr_i64(&c->c[7], hc);
	pg_arr_i64(&c->c[8], upos);
	pg_arr_str(&c->c[9], s->new_prev);
	return true;
}

/* One of the user-row statements of write_rooms, if it has rows. */
static int
ur_put(struct rctx *rc, int id, struct cols *c)
{
	const char *p[SQLARR_COLS_MAX];

	if (c->rows == 0)
		return 0;
	cols_params(c, p);
	return db_q0(rc->st, id, c->ncols, p);
}

/*
 * What the room upsert will write of a user row's room, for S_UR_KEYS:
 * whether it writes the room, its last_ts and the group's bump event.
 */
static void
ur_keys(struct rctx *rc, const struct urstate *s, struct cols *c)
{
	const struct rstate *r = NULL;
	int64_t k;

	if (map_get_i64(&rc->roomidx, s->room, &k) &&
	    (rc->rs[k].changed || rc->rs[k].has_summary))
		r = &rc->rs[k];
	pg_arr_bool(&c->c[10], r != NULL);
	pg_arr_i64(&c->c[11], r ? r->last_ts : 0);
	pg_arr_i64(&c->c[12], r ? r->bump_ts : 0);
	pg_arr_i64(&c->c[13], r ? r->bump_nid : 0);
}

/*
 * The rows loaded (S_UR_GET) are updated, the others inserted: this
 * group is the only writer, so a row is new exactly when it was not
 * loaded, and only new rows run the triggers that compute a row's keys
 * from scratch (an upsert runs them for each row given). A loaded row
 * whose membership stays keeps its pos too (ur_row) and goes to keys.
 */
static void
ur_cols(struct rctx *rc, struct cols *keys, struct cols *upd,
    struct cols *ins)
{
	for (size_t i = 0; i < rc->nurs; i++) {
		struct urstate *s = &rc->urs[i];
		bool is_kept = s->ur_loaded &&
		    streq(s->ur_membership, s->new_membership);
		struct cols *c = !s->ur_loaded ? ins : is_kept ? keys : upd;

		if (!s->ur_touched || !ur_row(rc, s, c))
			continue;
		if (is_kept)
			ur_keys(rc, s, c);
		c->rows++;
	}
}

/*
 * The room upsert and the syncing users' rows, decided in that order (it
 * is the order of their positions and notices) and written as: the
 * stored user rows whose membership stays, with the keys the upsert is
 * about to give them (S_UR_KEYS, 032_ur_keys.sql), so its key update
 * passes over them and each gets one row version per batch, not two;
 * the upsert; then the rows whose membership moves and the new rows,
 * whose triggers read the room's key as it now is.
 */
static int
write_rooms(struct rctx *rc)
{
	struct cols rooms, keys, upd, ins;
	const char *p[14];
	int ret;

	cols_init(&rooms, 14);
	cols_init(&keys, 14);
	cols_init(&upd, 10);
	cols_init(&ins, 10);
	rooms_cols(rc, &rooms);
	ur_cols(rc, &keys, &upd, &ins);
	ret = ur_put(rc, S_UR_KEYS, &keys);
	if (ret == 0 && rooms.rows > 0) {
		cols_params(&rooms, p);
		ret = db_q0(rc->st, S_ROOMS_PUT, 14, p);
	}
	if (ret == 0)
		ret = ur_put(rc, S_UR_UPD, &upd);
	if (ret == 0)
		ret = ur_put(rc, S_UR_PUT, &ins);
	cols_free(&rooms);
	cols_free(&keys);
	cols_free(&upd);
	cols_free(&ins);
	return ret;
}

/* The group's chunk boundaries (015_chunks.sql), one upsert. */
static int
write_chunks(struct rctx *rc)
{
	struct cols c;
	const char *p[5];
	int ret;

	if (rc->nchunks == 0)
		return 0;
	cols_init(&c, 5);
	for (size_t i = 0; i < rc->nchunks; i++) {
		pg_arr_str(&c.c[0], rc->chunks[i].room);
		pg_arr_i64(&c.c[1], rc->chunks[i].nid);
		pg_arr_bool(&c.c[2], rc->chunks[i].is_end);
		pg_arr_str(&c.c[3], rc->chunks[i].token);
		pg_arr_bool(&c.c[4], rc->chunks[i].limited);
		c.rows++;
	}
	cols_params(&c, p);
	ret = db_q0(rc->st, S_CHUNKS, 5, p);
	cols_free(&c);
	/* a rolled back group only makes the cleanup look at a room */
	for (size_t i = 0; ret == 0 && i < rc->nchunks; i++)
		map_put_i64(&rc->st->chunk_rooms, rc->chunks[i].room, 1);
	return ret;
}

/*
 * Places the group's late runs (S_LATE), one statement each and in
 * order, after the events are written, so a run may anchor on an event
 * of the group and each sees where the ones before it went. Each waits
 * for its answer (late runs are rare: a lagging poller's chunk), which
 * says whether float8 had no room left at the place, so the placed rows
 * around it were given keys again (counted, logged).
 */
static int
write_lates(struct rctx *rc)
{
	for (size_t i = 0; i < rc->nlates; i++) {
		const struct late *l = &rc->lates[i];
		char a[24], lo[24], hi[24];
		const char *p[4] = {l->room, a, lo, hi};
		PGresult *r;
		long long n;

		snprintf(a, sizeof(a), "%" PRId64, l->anchor);
		snprintf(lo, sizeof(lo), "%" PRId64, l->lo);
		snprintf(hi, sizeof(hi), "%" PRId64, l->hi);
		if ((r = db_q(rc->st, S_LATE, 4, p)) == NULL)
			return -1;
		n = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
		PQclear(r);
		if (n == 0)
			continue;
		rc->st->stats.order_renumbered++;
		log_warnx_rl("store: %s: no order key left before nid %" PRId64
		    ", %lld rows given keys again", l->room, l->anchor, n);
	}
	return 0;
}

/* What a message inserted is known to the messages after it. */
static void
known_commit(struct rctx *rc, size_t from)
{
	for (size_t i = from; i < rc->nevrows; i++)
		map_put_i64(&rc->known, rc->evrows[i].ev->event_id,
		    rc->evrows[i].nid);
}

/*
 * The room parts of a group, called by store.c inside the group's
 * savepoint after positions are reserved: four lookups, then the
 * messages decided in order in memory, then one write per table. Rows
 * and notices point into the messages' change sets, which store.c owns
 * and frees after this returns.
 */
int
rooms_apply(struct store *st, struct msgctx *xs, size_t n)
{
	struct rctx rc = {.st = st};
	size_t total = 0;
	int ret = -1;

	for (size_t i = 0; i < n; i++)
		total += xs[i].ch ? xs[i].ch->nrooms : 0;
	if (total == 0)
		return 0;
	map_init(&rc.known);
	map_init(&rc.keys);
	map_init(&rc.roomidx);
	map_init(&rc.uridx);
	map_init(&rc.chunkidx);
	if (load_group(&rc, xs, n) == -1)
		goto out;
	for (size_t i = 0; i < n; i++) {
		size_t from = rc.nevrows;
		if (xs[i].ch == NULL)
			continue;
		rc.x = &xs[i];
		for (size_t j = 0; j < xs[i].ch->nrooms; j++)
			room_process(&rc, &xs[i].ch->rooms[j]);
		known_commit(&rc, from);
	}
	if (write_events(&rc) == -1 || write_lates(&rc) == -1 ||
	    write_state(&rc) == -1 || write_rooms(&rc) == -1 ||
	    txn_write(st, xs, n) == -1 || write_chunks(&rc) == -1)
		goto out;
	ret = 0;
out:
	for (size_t i = 0; i < rc.nents; i++)
		free(rc.ents[i].membership);
	free(rc.ents);
	free(rc.srows);
	free(rc.evrows);
	free(rc.closes);
	free(rc.chunks);
	free(rc.lates);
	free(rc.rs);
	free(rc.urs);
	PQclear(rc.res_rooms);
	PQclear(rc.res_ur);
	map_free(&rc.known, NULL);
	map_free(&rc.keys, NULL);
	map_free(&rc.roomidx, NULL);
	map_free(&rc.uridx, NULL);
	map_free(&rc.chunkidx, NULL);
	return ret;
}
