/*
 * longpoll.c: requests waiting for a change. Each waiter is indexed under
 * the keys of what it asked for (typing room, to-device device, member
 * room, room-list user, or its device's initial sync), so a notice wakes
 * only the requests it concerns. A ring of recent notices closes the race
 * between "query ran at position P" and "registered as waiting": a waiter
 * registering after notices above P checks them first. Room-list, member
 * and typing waiters are matched against the set of rooms the user is
 * joined to (visible.h: a room they left, were kicked or banned from, or
 * are only invited to wakes nothing), loaded on demand and reloaded after
 * each of the user's membership notices (their own leave still wakes
 * them: the set is unknown until reloaded). Every waiter is also indexed
 * under its device, so a device notice saying upstream rejected the token
 * answers all of the device's waiting requests with 401 at once.
 */
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "pg.h"
#include "proto.h"
#include "util.h"

struct lp_list {
	struct sreq **v;
	int n, cap;
};

struct lp_urooms {
	struct api *api;
	char *user_id;
	struct map rooms;	/* room_id -> (void *)1 */
	bool is_loaded;
	bool is_loading;
	unsigned gen;
	long long used_ms;
};

#define KEY_MAX 600


static void
list_add(struct api *api, const char *key, struct sreq *r)
{
	struct lp_list *l = map_get(&api->idx, key);

	if (l == NULL) {
		l = xcalloc(1, sizeof(*l));
		map_put(&api->idx, key, l);
	}
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 4;
		l->v = xrealloc(l->v, sizeof(*l->v) * (size_t)l->cap);
	}
	l->v[l->n++] = r;
}

static void
list_del(struct api *api, const char *key, struct sreq *r)
{
	struct lp_list *l = map_get(&api->idx, key);

	if (l == NULL)
		return;
	for (int i = 0; i < l->n; i++)
		if (l->v[i] == r) {
			l->v[i] = l->v[--l->n];
			break;
		}
	if (l->n == 0) {
		map_del(&api->idx, key);
		free(l->v);
		free(l);
	}
}

/* Calls fn for each interest key of r. */
static void
each_key(struct api *api, struct sreq *r,
    void (*fn)(struct api *, const char *, struct sreq *))
{
	char k[KEY_MAX];

	if (r->is_initial_wait) {
		snprintf(k, sizeof(k), "i\x1f%s\x1f%s", r->user_id,
		    r->device_id);
		fn(api, k, r);
		return;
	}
	snprintf(k, sizeof(k), "v\x1f%s\x1f%s", r->user_id, r->device_id);
	fn(api, k, r);
	if (r->p.has_typing && *r->p.typing_room != '\0') {
		snprintf(k, sizeof(k), "t\x1f%s", r->p.typing_room);
		fn(api, k, r);
	}
	if (r->p.has_to_device) {
		snprintf(k, sizeof(k), "d\x1f%s\x1f%s", r->user_id,
		    r->device_id);
		fn(api, k, r);
	}
	if (r->p.has_member && *r->p.m_room != '\0') {
		snprintf(k, sizeof(k), "m\x1f%s", r->p.m_room);
		fn(api, k, r);
	}
	if (r->p.has_list) {
		snprintf(k, sizeof(k), "l\x1f%s", r->user_id);
		fn(api, k, r);
		fn(api, "L", r);
	}
}

static void
urooms_load_cb(PGresult *res, void *arg)
{
	struct lp_urooms *u = arg;

	u->is_loading = false;
	if (res == NULL)
		return;
	map_free(&u->rooms, NULL);
	map_init(&u->rooms);
	for (int i = 0; i < PQntuples(res) - 1; i++)
		map_put(&u->rooms, PQgetvalue(res, i, 0), (void *)1);
	/* the last row carries the generation the query was sent in */
	if (PQntuples(res) > 0 && (unsigned)strtoul(PQgetvalue(res,
	    PQntuples(res) - 1, 0), NULL, 10) == u->gen)
		u->is_loaded = true;
}

static struct lp_urooms *
urooms_get(struct api *api, const char *user_id)
{
	struct lp_urooms *u = map_get(&api->urooms, user_id);
	const char *params[2];
	char gen[16];

	if (u == NULL) {
		u = xcalloc(1, sizeof(*u));
		u->api = api;
		u->user_id = xstrdup(user_id);
		map_init(&u->rooms);
		map_put(&api->urooms, user_id, u);
	}
	u->used_ms = now_ms();
	if (!u->is_loaded && !u->is_loading) {
		u->is_loading = true;
		snprintf(gen, sizeof(gen), "%u", u->gen);
		params[0] = user_id;
		params[1] = gen;
		sql_query(api, Q_USER_ROOMS, params, urooms_load_cb, u);
	}
	return u;
}

static void
urooms_invalidate(struct api *api, const char *user_id)
{
	struct lp_urooms *u = map_get(&api->urooms, user_id);

	if (u != NULL) {
		u->gen++;
		u->is_loaded = false;
	}
}

static bool
user_in_room(struct api *api, const char *user_id, const char *room_id)
{
	struct lp_urooms *u = map_get(&api->urooms, user_id);

	if (u == NULL || !u->is_loaded)
		return true; /* unknown: wake, the query decides */
	return map_get(&u->rooms, room_id) != NULL;
}

static bool
same(const char *a, const char *b)
{
	return a != NULL && b != NULL && strcmp(a, b) == 0;
}

/* Does a notice (as stored in the ring) concern r? */
static bool
lp_match(struct api *api, struct sreq *r, const struct lp_ring_ent *n)
{
	if (n->type == 0)
		return true;
	if (r->is_initial_wait)
		return n->type == PROTO_NOTICE_DEVICE && same(n->a,
		    r->user_id) && same(n->b, r->device_id);
	switch (n->type) {
	case PROTO_NOTICE_DEVICE:
		return n->is_expired && same(n->a, r->user_id) &&
		    same(n->b, r->device_id);
	case PROTO_NOTICE_TYPING:
		return r->p.has_typing && same(n->a, r->p.typing_room) &&
		       user_in_room(api, r->user_id, n->a);
	case PROTO_NOTICE_TO_DEVICE:
		return r->p.has_to_device && same(n->a, r->user_id) &&
		    same(n->b, r->device_id);
	case PROTO_NOTICE_ROOM:
		if (!user_in_room(api, r->user_id, n->a))
			return false;
		return r->p.has_list ||
		       (r->p.has_member && same(n->a, r->p.m_room));
	case PROTO_NOTICE_MEMBERSHIP:
		return (r->p.has_member && same(n->a, r->p.m_room) &&
		        user_in_room(api, r->user_id, n->a)) ||
		       (r->p.has_list && same(n->b, r->user_id));
	}
	return false;
}

static void
waiters_add(struct api *api, struct sreq *r)
{
	if (api->nwaiters == api->capwaiters) {
		api->capwaiters = api->capwaiters ? api->capwaiters * 2 : 64;
		api->waiters = xrealloc(api->waiters,
		    sizeof(*api->waiters) * (size_t)api->capwaiters);
	}
	r->widx = api->nwaiters;
	api->waiters[api->nwaiters++] = r;
}

void
lp_unwait(struct api *api, struct sreq *r)
{
	if (!r->is_waiting)
		return;
	r->is_waiting = false;
	each_key(api, r, list_del);
	api->waiters[r->widx] = api->waiters[--api->nwaiters];
	api->waiters[r->widx]->widx = r->widx;
	sreq_unref(r);
}

static void
wake_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sreq *r = arg;

	(void)fd;
	(void)what;
	if (!r->is_gone)
		sync_wake(r);
	sreq_unref(r);
}

/* Wakes r from the loop (never from inside a notice walk). */
static void
lp_wake(struct api *api, struct sreq *r)
{
	if (!r->is_waiting)
		return;
	sreq_ref(r);
	lp_unwait(api, r);
	r->woken_ms = now_ms();
	api->stats.wakeups++;
	event_base_once(api->base, -1, EV_TIMEOUT, wake_cb, r, NULL);
}

/* Wakes r for notice n, which matched it. */
static void
lp_hit(struct api *api, struct sreq *r, const struct lp_ring_ent *n)
{
	if (n->type == PROTO_NOTICE_DEVICE && n->is_expired &&
	    !r->is_initial_wait)
		r->is_revoked = true;
	lp_wake(api, r);
}

int
lp_wait(struct api *api, struct sreq *r)
{
	const struct lp_ring_ent *hit = NULL;
	bool is_hit = false;

	if (api->nwaiters >= api->cfg.max_waiters)
		return -1;
	sreq_ref(r);
	r->is_waiting = true;
	waiters_add(api, r);
	each_key(api, r, list_add);
	if ((r->p.has_list || r->p.has_member || r->p.has_typing) &&
	    !r->is_initial_wait)
		urooms_get(api, r->user_id);
	if (api->cur_pos > r->wait_from) {
		if (api->ring_min > r->wait_from)
			is_hit = true;	/* the ring lost notices: re-query */
		for (int i = 0; i < LP_RING; i++) {
			const struct lp_ring_ent *n = &api->ring[i];
			if (n->pos <= r->wait_from || !lp_match(api, r, n))
				continue;
			is_hit = true;
			/* a device notice (expiry) decides how r wakes */
			if (n->type == PROTO_NOTICE_DEVICE) {
				hit = n;
				break;
			}
		}
	}
	if (hit != NULL)
		lp_hit(api, r, hit);
	else if (is_hit)
		lp_wake(api, r);
	return 0;
}

static void
ring_push(struct api *api, int type, int64_t pos, const char *a,
    const char *b, bool is_expired)
{
	struct lp_ring_ent *n = &api->ring[api->ring_head];

	if (n->pos > api->ring_min)
		api->ring_min = n->pos;
	free(n->a);
	free(n->b);
	n->pos = pos;
	n->type = type;
	n->is_expired = is_expired;
	n->a = a ? xstrdup(a) : NULL;
	n->b = b ? xstrdup(b) : NULL;
	api->ring_head = (api->ring_head + 1) % LP_RING;
}

/* Wakes the waiters under key that match n. */
static void
wake_key(struct api *api, const char *key, const struct lp_ring_ent *n)
{
	struct lp_list *l = map_get(&api->idx, key);
	struct sreq **v;
	int cnt;

	if (l == NULL)
		return;
	cnt = l->n;
	v = xmalloc(sizeof(*v) * (size_t)cnt);
	memcpy(v, l->v, sizeof(*v) * (size_t)cnt);
	for (int i = 0; i < cnt; i++)
		if (v[i]->is_waiting && lp_match(api, v[i], n))
			lp_hit(api, v[i], n);
	free(v);
}

void
lp_notice(struct api *api, int type, int64_t pos, const char *room_id,
    const char *user_id, const char *device_id, const char *state)
{
	char k[KEY_MAX];
	const struct lp_ring_ent *n;
	bool is_expired = type == PROTO_NOTICE_DEVICE && state != NULL &&
	    strcmp(state, "expired") == 0;

	if (pos > api->cur_pos)
		api->cur_pos = pos;
	switch (type) {
	case PROTO_NOTICE_TYPING:
	case PROTO_NOTICE_ROOM:
		ring_push(api, type, pos, room_id, NULL, false);
		break;
	case PROTO_NOTICE_TO_DEVICE:
	case PROTO_NOTICE_DEVICE:
		ring_push(api, type, pos, user_id, device_id, is_expired);
		break;
	case PROTO_NOTICE_MEMBERSHIP:
		urooms_invalidate(api, user_id);
		ring_push(api, type, pos, room_id, user_id, false);
		break;
	default:
		return;
	}
	n = &api->ring[(api->ring_head + LP_RING - 1) % LP_RING];
	switch (type) {
	case PROTO_NOTICE_TYPING:
		snprintf(k, sizeof(k), "t\x1f%s", room_id);
		wake_key(api, k, n);
		break;
	case PROTO_NOTICE_TO_DEVICE:
		snprintf(k, sizeof(k), "d\x1f%s\x1f%s", user_id, device_id);
		wake_key(api, k, n);
		break;
	case PROTO_NOTICE_ROOM:
		snprintf(k, sizeof(k), "m\x1f%s", room_id);
		wake_key(api, k, n);
		wake_key(api, "L", n);
		break;
	case PROTO_NOTICE_MEMBERSHIP:
		snprintf(k, sizeof(k), "m\x1f%s", room_id);
		wake_key(api, k, n);
		snprintf(k, sizeof(k), "l\x1f%s", user_id);
		wake_key(api, k, n);
		break;
	case PROTO_NOTICE_DEVICE:
		auth_forget(api, user_id, device_id, is_expired);
		snprintf(k, sizeof(k), "i\x1f%s\x1f%s", user_id, device_id);
		wake_key(api, k, n);
		if (is_expired) {
			snprintf(k, sizeof(k), "v\x1f%s\x1f%s", user_id,
			    device_id);
			wake_key(api, k, n);
		}
		break;
	}
}

static void
wake_all(struct api *api)
{
	while (api->nwaiters > 0)
		lp_wake(api, api->waiters[api->nwaiters - 1]);
}

void
lp_resync(struct api *api, int64_t pos)
{
	if (pos <= api->cur_pos && !api->is_stopping)
		return;
	if (pos > api->cur_pos)
		api->cur_pos = pos;
	ring_push(api, 0, api->cur_pos, NULL, NULL, false);
	wake_all(api);
}

int
lp_count(const struct api *api)
{
	return api->nwaiters;
}

static void
urooms_free(void *arg)
{
	struct lp_urooms *u = arg;

	map_free(&u->rooms, NULL);
	free(u->user_id);
	free(u);
}

void
lp_init(struct api *api)
{
	map_init(&api->idx);
	map_init(&api->urooms);
}

void
lp_shutdown(struct api *api)
{
	for (int i = 0; i < LP_RING; i++) {
		free(api->ring[i].a);
		free(api->ring[i].b);
	}
	map_free(&api->urooms, urooms_free);
	map_free(&api->idx, NULL);
	free(api->waiters);
}
