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
 * EPH_ROOMS_MAX rooms, rooms nobody asked about for EPH_IDLE_MS go.
 */
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
	bool has_typing;
	int64_t pos;        /* the typing row's position (0: no row) */
	char *user_ids;     /* JSON array text */
	uint64_t changes;   /* eph->changes when the list last changed */
	struct map members; /* user_id -> confirmed until (now_ms) */
	long long used_ms;  /* a request last read or filled it */
};

/* ephemeral.c's part of struct api */
struct ephemeral {
	struct map rooms; /* room_id -> struct eph_room */
	uint64_t seq;     /* membership notices, forgets, evictions */
	uint64_t changes; /* typing lists applied */
	struct event *sweep;
	unsigned long long hits, misses;
};

static void
room_free(void *arg)
{
	struct eph_room *e = arg;

	map_free(&e->members, NULL);
	free(e->user_ids);
	free(e);
}

struct sweep_ctx {
	long long before; /* drop rooms used before this */
	const char **keys;
	size_t n, cap;
	const char *lru; /* the least recently used room */
	long long lru_ms;
};

static void
sweep_one(const char *key, void *val, void *arg)
{
	struct sweep_ctx *c = arg;
	struct eph_room *e = val;

	if (c->lru == NULL || e->used_ms < c->lru_ms) {
		c->lru = key;
		c->lru_ms = e->used_ms;
	}
	if (e->used_ms >= c->before)
		return;
	if (c->n == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 64;
		c->keys = xrealloc(c->keys, c->cap * sizeof(*c->keys));
	}
	c->keys[c->n++] = key;
}

/*
 * Drops the rooms idle for EPH_IDLE_MS; with is_full, at least one (the
 * least recently used) so a new room fits. An eviction bumps seq: a
 * Postgres answer in flight for an evicted room must not bring it back.
 */
static void
eph_sweep(struct ephemeral *eph, bool is_full)
{
	struct sweep_ctx c = {.before = now_ms() - EPH_IDLE_MS};
	char *lru = NULL;

	map_each(&eph->rooms, sweep_one, &c);
	if (c.n == 0 && is_full && c.lru != NULL)
		lru = xstrdup(c.lru);
	for (size_t i = 0; i < c.n; i++)
		room_free(map_del(&eph->rooms, c.keys[i]));
	if (lru != NULL)
		room_free(map_del(&eph->rooms, lru));
	if (c.n > 0 || lru != NULL)
		eph->seq++;
	free(lru);
	free(c.keys);
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
	map_init(&e->members);
	e->used_ms = now_ms();
	map_put(&eph->rooms, room_id, e);
	return e;
}

/* The room's list is the one stored at pos, unless it knows a later one. */
static void
room_set_typing(struct ephemeral *eph, struct eph_room *e, int64_t pos,
                const char *user_ids)
{
	if (e->has_typing && e->pos >= pos)
		return;
	free(e->user_ids);
	e->user_ids = xstrdup(user_ids);
	e->pos = pos;
	e->has_typing = true;
	e->changes = ++eph->changes;
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
			room_set_typing(eph, room_get(eph, n->room_id, true),
			                n->pos, n->user_ids);
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
	api->eph->seq++;
}

/*
 * The room's typing list for a user the table knows is joined: returns
 * true with *pos, *user_ids (borrowed until the next notice) and *mark
 * (for eph_typing_changed), false when Postgres must answer.
 */
bool
eph_typing_get(struct api *api, const char *room_id, const char *user_id,
               int64_t *pos, const char **user_ids, uint64_t *mark)
{
	struct eph_room *e = room_get(api->eph, room_id, false);
	int64_t until;

	if (e == NULL || !e->has_typing ||
	    !map_get_i64(&e->members, user_id, &until) || until < now_ms()) {
		api->eph->misses++;
		return false;
	}
	e->used_ms = now_ms();
	*pos = e->pos;
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
	e->used_ms = now_ms();
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
