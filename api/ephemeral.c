/*
 * ephemeral.c: the api's typing table (issue #13, item 2; contract 3's
 * ephemeral data). Per room: the typing list as stored at its row's
 * position, and which users Postgres has confirmed as joined. Typing
 * notices carry the whole list (proto.h), so a long-poll woken by one is
 * answered from here with no Postgres round trip; a room or a member the
 * table does not know is read from Postgres (s_typing.c), and that answer
 * fills the table, which is how it rebuilds after a restart.
 *
 * Why it is never staler than Postgres: every typing change is a notice in
 * seq order; a lost one shows as a sequence gap, a new epoch or silence,
 * and notices.c then calls eph_forget_all(), so every room is read from
 * Postgres again. A membership notice of a room drops the user's
 * confirmation, and a confirmation expires after EPH_MEMBER_TTL_MS anyway.
 * A Postgres answer fills the table only if no membership notice, forget
 * or eviction happened while it was in flight (eph->seq unchanged), so an
 * old answer never overwrites what a notice said since. Bounded: at most
 * EPH_ROOMS_MAX rooms, rooms nobody asked about for EPH_IDLE_MS go. The
 * rooms are kept in the order they were last used (a request read or
 * filled one), least recent first, so a full table evicts, and the sweep
 * finds the idle ones, from the head without scanning the rest.
 */
#include <sys/queue.h>

#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "map.h"
#include "proto.h"
#include "util.h"

#define EPH_IDLE_MS (120 * 1000)
#define EPH_MEMBER_TTL_MS (30 * 1000)
#define EPH_SWEEP_SECS 30

struct eph_room {
	char *room_id;             /* its key in rooms */
	TAILQ_ENTRY(eph_room) lru; /* in ephemeral.lru, by used_ms */
	bool has_typing;
	int64_t pos;        /* the typing row's position (0: no row) */
	int64_t early;      /* an early list: its notice's seq, else 0 */
	int64_t early_seen; /* the room's last early notice (seq) */
	int64_t stored;     /* an early list: the position it is stored at */
	char *user_ids;     /* JSON array text */
	uint64_t changes;   /* eph->changes when the list last changed */
	struct map members; /* user_id -> confirmed until (now_ms) */
	long long used_ms;  /* a request last read or filled it */
};

/* the rooms, least recently used first */
TAILQ_HEAD(eph_lru, eph_room);

/* ephemeral.c's part of struct api */
struct ephemeral {
	struct map rooms;   /* room_id -> struct eph_room */
	struct eph_lru lru; /* the same rooms by used_ms */
	uint64_t seq;       /* membership notices, forgets, evictions */
	uint64_t changes;   /* typing lists applied */
	struct event *sweep;
	unsigned long long hits, misses;
};

static void
room_free(void *arg)
{
	struct eph_room *e = arg;

	map_free(&e->members, NULL);
	free(e->user_ids);
	free(e->room_id);
	free(e);
}

/* A request read or filled the room: it moves to the lru's tail. */
static void
room_touch(struct ephemeral *eph, struct eph_room *e)
{
	e->used_ms = now_ms();
	TAILQ_REMOVE(&eph->lru, e, lru);
	TAILQ_INSERT_TAIL(&eph->lru, e, lru);
}

static void
room_drop(struct ephemeral *eph, struct eph_room *e)
{
	TAILQ_REMOVE(&eph->lru, e, lru);
	map_del(&eph->rooms, e->room_id);
	room_free(e);
}

/*
 * Drops the rooms idle for EPH_IDLE_MS; with is_full, at least one (the
 * least recently used) so a new room fits. An eviction bumps seq: a
 * Postgres answer in flight for an evicted room must not bring it back.
 */
static void
eph_sweep(struct ephemeral *eph, bool is_full)
{
	long long before = now_ms() - EPH_IDLE_MS;
	struct eph_room *e;
	bool is_dropped = false;

	while ((e = TAILQ_FIRST(&eph->lru)) != NULL &&
	       (e->used_ms < before || (is_full && !is_dropped))) {
		room_drop(eph, e);
		is_dropped = true;
	}
	if (is_dropped)
		eph->seq++;
}

static void
sweep_cb(evutil_socket_t fd, short what, void *arg)
{
	struct api *api = arg;

	(void)fd;
	(void)what;
	eph_sweep(api->eph, false);
}

static struct eph_room *
room_get(struct ephemeral *eph, const char *room_id, bool is_create)
{
	struct eph_room *e = map_get(&eph->rooms, room_id);

	if (e != NULL || !is_create)
		return e;
	if (map_count(&eph->rooms) >= EPH_ROOMS_MAX)
		eph_sweep(eph, true);
	e = xcalloc(1, sizeof(*e));
	e->room_id = xstrdup(room_id);
	map_init(&e->members);
	e->used_ms = now_ms();
	map_put(&eph->rooms, room_id, e);
	TAILQ_INSERT_TAIL(&eph->lru, e, lru);
	return e;
}

/* The room's list is now user_ids, at (pos, early). */
static void
room_list(struct ephemeral *eph, struct eph_room *e, int64_t pos, int64_t early,
          const char *user_ids)
{
	free(e->user_ids);
	e->user_ids = xstrdup(user_ids);
	e->pos = pos;
	e->early = early;
	e->stored = early != 0 ? 0 : pos;
	e->has_typing = true;
	e->changes = ++eph->changes;
}

/*
 * The room's list is the one stored at pos, unless it knows a later one.
 * A list sent early is later than any row but its own (a newer list
 * would have sent its own early notice): the row of the same list only
 * tells where it is stored.
 */
static void
room_set_typing(struct ephemeral *eph, struct eph_room *e, int64_t pos,
                const char *user_ids)
{
	if (e->has_typing && e->early != 0) {
		if (strcmp(e->user_ids, user_ids) == 0 && e->stored < pos)
			e->stored = pos;
		return;
	}
	if (e->has_typing && e->pos >= pos)
		return;
	room_list(eph, e, pos, 0, user_ids);
}

/*
 * A list sent before its commit (PROTO_NOTICE_TYPING_EARLY): the newest
 * the room has, as notices come in seq order. It sits at the last
 * committed position and, within it, at its seq (s_typing.c answers
 * (pos, early) pairs), so each early list is news to every client, and
 * one already shown stays shown. The same list again changes nothing.
 */
static void
room_early(struct ephemeral *eph, struct eph_room *e,
           const struct proto_notice *n)
{
	e->early_seen = (int64_t)n->seq;
	if (e->has_typing && strcmp(e->user_ids, n->user_ids) == 0)
		return;
	room_list(eph, e, e->pos > n->pos ? e->pos : n->pos, (int64_t)n->seq,
	          n->user_ids);
}

/*
 * A stored list (PROTO_NOTICE_TYPING): older than an early list the
 * room has seen after the one it stores (n->early below early_seen),
 * or the list the room already shows (the early one it stores): either
 * way the list stays where it was shown, so no waiter is woken twice
 * for one change; the early one learns its stored position, which a
 * token that has seen the list moves to (s_typing.c), so Postgres's row
 * is no news to it after a restart either.
 */
static void
room_stored(struct ephemeral *eph, struct eph_room *e,
            const struct proto_notice *n)
{
	if (n->early != 0 && e->early_seen > n->early)
		return;
	if (e->has_typing && strcmp(e->user_ids, n->user_ids) == 0) {
		if (e->early != 0 && e->stored < n->pos)
			e->stored = n->pos;
		return;
	}
	if (e->early == 0)
		room_set_typing(eph, e, n->pos, n->user_ids);
	else
		room_list(eph, e, n->pos, 0, n->user_ids);
}

/*
 * A notice: a typing list replaces the room's (it is the whole list), a
 * membership change drops that user's confirmation. Called before
 * longpoll sees the notice, so the requests it wakes read the new list.
 */
void
eph_notice(struct api *api, const struct proto_notice *n)
{
	struct ephemeral *eph = api->eph;
	struct eph_room *e;

	switch (n->type) {
	case PROTO_NOTICE_TYPING:
		if (n->room_id != NULL && n->user_ids != NULL)
			room_stored(eph, room_get(eph, n->room_id, true), n);
		break;
	case PROTO_NOTICE_TYPING_EARLY:
		if (n->room_id != NULL && n->user_ids != NULL)
			room_early(eph, room_get(eph, n->room_id, true), n);
		break;
	case PROTO_NOTICE_MEMBERSHIP:
		eph->seq++;
		if (n->room_id != NULL && n->user_id != NULL &&
		    (e = room_get(eph, n->room_id, false)) != NULL)
			map_del(&e->members, n->user_id);
		break;
	default:
		break;
	}
}

/* Notices may have been lost: nothing here is trusted any more. */
void
eph_forget_all(struct api *api)
{
	map_free(&api->eph->rooms, room_free);
	map_init(&api->eph->rooms);
	TAILQ_INIT(&api->eph->lru);
	api->eph->seq++;
}

/*
 * The room's typing list for a user the table knows is joined: returns
 * true with *pos and *early (its place: s_typing.c), *stored (where it
 * is stored, 0 while it is not), *user_ids (borrowed until the next
 * notice) and *mark (for eph_typing_changed), false when Postgres must
 * answer.
 */
bool
eph_typing_get(struct api *api, const char *room_id, const char *user_id,
               int64_t *pos, int64_t *early, int64_t *stored,
               const char **user_ids, uint64_t *mark)
{
	struct eph_room *e = room_get(api->eph, room_id, false);
	int64_t until;

	if (e == NULL || !e->has_typing ||
	    !map_get_i64(&e->members, user_id, &until) || until < now_ms()) {
		api->eph->misses++;
		return false;
	}
	room_touch(api->eph, e);
	*pos = e->pos;
	*early = e->early;
	*stored = e->stored;
	*user_ids = e->user_ids;
	*mark = e->changes;
	api->eph->hits++;
	return true;
}

/* Taken before a Postgres read that may fill the table. */
uint64_t
eph_fill_mark(struct api *api)
{
	return api->eph->seq;
}

/*
 * What Postgres answered for (room, user): the typing row (pos 0 and "[]"
 * when there is none) and whether the user is joined. Dropped when the
 * table changed under the query (mark is stale).
 */
void
eph_typing_fill(struct api *api, const char *room_id, const char *user_id,
                uint64_t mark, int64_t pos, const char *user_ids,
                bool is_member)
{
	struct eph_room *e;

	if (mark != api->eph->seq)
		return;
	e = room_get(api->eph, room_id, true);
	room_touch(api->eph, e);
	room_set_typing(api->eph, e, pos, user_ids);
	if (is_member)
		map_put_i64(&e->members, user_id, now_ms() + EPH_MEMBER_TTL_MS);
}

/*
 * For lp_wait: r read the room's list from the table (mark != 0) and the
 * list changed since (a notice arrived while r's other streams were
 * querying): wake it, the ring would not, as that notice's position may
 * be below the one r's round answered at.
 */
bool
eph_typing_changed(struct api *api, const struct sreq *r)
{
	struct eph_room *e;

	if (r->typing_mark == 0 || !r->p.has_typing)
		return false;
	e = room_get(api->eph, r->p.typing_room, false);
	return e == NULL || e->changes != r->typing_mark;
}

/*
 * For longpoll's matching: r read room's list from the table and it has
 * not changed since, so a typing notice of that room (the commit of the
 * early list r showed, or one older than it) is no news to r.
 */
bool
eph_typing_seen(struct api *api, const struct sreq *r, const char *room_id)
{
	return r->typing_mark != 0 && r->p.has_typing &&
	       strcmp(r->p.typing_room, room_id) == 0 &&
	       !eph_typing_changed(api, r);
}

void
eph_counts(const struct api *api, unsigned long long *hits,
           unsigned long long *misses, size_t *rooms)
{
	*hits = api->eph->hits;
	*misses = api->eph->misses;
	*rooms = map_count(&api->eph->rooms);
}

void
eph_init(struct api *api)
{
	struct timeval tv = {EPH_SWEEP_SECS, 0};

	api->eph = xcalloc(1, sizeof(*api->eph));
	map_init(&api->eph->rooms);
	TAILQ_INIT(&api->eph->lru);
	api->eph->sweep = event_new(api->base, -1, EV_PERSIST, sweep_cb, api);
	event_add(api->eph->sweep, &tv);
}

void
eph_shutdown(struct api *api)
{
	if (api->eph == NULL)
		return;
	if (api->eph->sweep != NULL)
		event_free(api->eph->sweep);
	map_free(&api->eph->rooms, room_free);
	free(api->eph);
	api->eph = NULL;
}
