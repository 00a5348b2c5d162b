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
#include "ss.h"
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

struct lp_ring_ent {
	int64_t pos;
	int type;	/* 0 = wildcard (resync) */
	bool is_expired;	/* PROTO_NOTICE_DEVICE: the token was rejected */
	/* PROTO_NOTICE_MEMBERSHIP: still joined, their row changed alone
	 * (unread counts): it concerns only requests that show the room */
	bool is_row;
	char *a;	/* room_id or user_id */
	char *b;	/* device_id or NULL */
	/* PROTO_NOTICE_TO_DEVICE: its messages while it wakes (lp_notice),
	 * never kept in the ring */
	struct td_hint *td;
};

/* longpoll.c's part of struct api */
struct longpoll {
	struct sreq **waiters;
	int nwaiters, capwaiters;
	struct map idx;		/* interest key -> struct lp_list */
	struct map urooms;	/* user -> struct lp_urooms (room_list) */
	struct lp_ring_ent ring[LP_RING];
	int ring_head;		/* next slot */
	int64_t ring_min;	/* oldest position the ring still covers */
};

/*
 * The interest keys, built here only: a waiter is indexed under the keys
 * of what it asked for (each_key), a notice wakes the waiters under the
 * keys it concerns (lp_notice). K_LIST_ANY has no argument.
 */
enum lp_key {
	K_INITIAL = 'i',	/* user, device: its initial sync is stored */
	K_DEVICE = 'v',		/* user, device: its token was rejected */
	K_TYPING = 't',		/* room */
	K_TO_DEVICE = 'd',	/* user, device */
	K_MEMBER = 'm',		/* room */
	K_LIST = 'l',		/* user: a membership of theirs changed */
	K_LIST_ANY = 'L',	/* any room changed */
	K_TYPING_ANY = 'T',	/* sliding sync: typing in any room */
	K_ACCOUNT_DATA = 'a',	/* sliding sync: the user's account data */
};

static const char *
lp_key(char k[KEY_MAX], enum lp_key kind, const char *a, const char *b)
{
	if (a == NULL)
		snprintf(k, KEY_MAX, "%c", kind);
	else if (b == NULL)
		snprintf(k, KEY_MAX, "%c\x1f%s", kind, a);
	else
		snprintf(k, KEY_MAX, "%c\x1f%s\x1f%s", kind, a, b);
	return k;
}


static void
list_add(struct api *api, const char *key, struct sreq *r)
{
	struct lp_list *l = map_get(&api->lp->idx, key);

	if (l == NULL) {
		l = xcalloc(1, sizeof(*l));
		map_put(&api->lp->idx, key, l);
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
	struct lp_list *l = map_get(&api->lp->idx, key);

	if (l == NULL)
		return;
	for (int i = 0; i < l->n; i++)
		if (l->v[i] == r) {
			l->v[i] = l->v[--l->n];
			break;
		}
	if (l->n == 0) {
		map_del(&api->lp->idx, key);
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
		fn(api, lp_key(k, K_INITIAL, r->user_id, r->device_id), r);
		return;
	}
	fn(api, lp_key(k, K_DEVICE, r->user_id, r->device_id), r);
	if (r->p.has_typing && *r->p.typing_room != '\0')
		fn(api, lp_key(k, K_TYPING, r->p.typing_room, NULL), r);
	if (r->p.has_to_device)
		fn(api, lp_key(k, K_TO_DEVICE, r->user_id, r->device_id), r);
	if (r->p.has_member && *r->p.m_room != '\0')
		fn(api, lp_key(k, K_MEMBER, r->p.m_room, NULL), r);
	if (r->p.has_list) {
		fn(api, lp_key(k, K_LIST, r->user_id, NULL), r);
		fn(api, lp_key(k, K_LIST_ANY, NULL, NULL), r);
	}
	/* sliding sync's extensions (ss.h enum ss_wake) */
	if (r->ss_wake & SS_WAKE_TYPING)
		fn(api, lp_key(k, K_TYPING_ANY, NULL, NULL), r);
	if (r->ss_wake & SS_WAKE_ACCOUNT_DATA)
		fn(api, lp_key(k, K_ACCOUNT_DATA, r->user_id, NULL), r);
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
	struct lp_urooms *u = map_get(&api->lp->urooms, user_id);
	const char *params[2];
	char gen[16];

	if (u == NULL) {
		u = xcalloc(1, sizeof(*u));
		u->api = api;
		u->user_id = xstrdup(user_id);
		map_init(&u->rooms);
		map_put(&api->lp->urooms, user_id, u);
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
	struct lp_urooms *u = map_get(&api->lp->urooms, user_id);

	if (u != NULL) {
		u->gen++;
		u->is_loaded = false;
	}
}

static bool
same(const char *a, const char *b)
{
	return a != NULL && b != NULL && strcmp(a, b) == 0;
}

/* Is the user known (the set is loaded) to be joined to the room? */
static bool
is_known_in_room(struct api *api, const char *user_id, const char *room_id)
{
	struct lp_urooms *u = map_get(&api->lp->urooms, user_id);

	return u != NULL && u->is_loaded && map_get(&u->rooms, room_id) != NULL;
}

static bool
user_in_room(struct api *api, const char *user_id, const char *room_id)
{
	struct lp_urooms *u = map_get(&api->lp->urooms, user_id);

	if (u == NULL || !u->is_loaded)
		return true; /* unknown: wake, the query decides */
	return map_get(&u->rooms, room_id) != NULL;
}

/*
 * Does a v3 room_list waiter still need the change committed at pos? Its
 * last round (or its since token, when it waited first) read the list in
 * a snapshot at r->next.l, which holds every commit up to there: the
 * notices of one batch arrive one by one after that snapshot may already
 * have shown the whole batch, and each woke the client for an empty
 * round (issue #13). Sliding sync keeps its own positions.
 */
static bool
list_wants(const struct sreq *r, int64_t pos)
{
	return r->p.has_list && (r->ss != NULL || pos > r->next.l);
}

/*
 * The user's own row of a room they stay joined to changed (unread
 * counts): their room list, and of a sliding sync connection only one
 * whose last round had the room in a window or subscription (its scope,
 * kept by ss_req.c); a room's members did not change.
 */
static bool
row_match(struct sreq *r, const struct lp_ring_ent *n)
{
	if (!list_wants(r, n->pos) || !same(n->b, r->user_id))
		return false;
	return r->ss == NULL || map_get_i64(&r->ss->scope, n->a, NULL);
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
		return (n->is_expired || (r->ss_wake & SS_WAKE_RECEIPTS)) &&
		    same(n->a, r->user_id) && same(n->b, r->device_id);
	case PROTO_NOTICE_TYPING:
		return ((r->p.has_typing && same(n->a, r->p.typing_room)) ||
		        (r->ss_wake & SS_WAKE_TYPING)) &&
		       !eph_typing_seen(api, r, n->a) &&
		       user_in_room(api, r->user_id, n->a);
	case PROTO_NOTICE_ACCOUNT_DATA:
		return (r->ss_wake & SS_WAKE_ACCOUNT_DATA) &&
		    same(n->a, r->user_id);
	case PROTO_NOTICE_TO_DEVICE:
		return r->p.has_to_device && same(n->a, r->user_id) &&
		    same(n->b, r->device_id);
	case PROTO_NOTICE_ROOM:
		if (!user_in_room(api, r->user_id, n->a))
			return false;
		return list_wants(r, n->pos) ||
		       (r->p.has_member && same(n->a, r->p.m_room));
	case PROTO_NOTICE_MEMBERSHIP:
		if (n->is_row)
			return row_match(r, n);
		return (r->p.has_member && same(n->a, r->p.m_room) &&
		        user_in_room(api, r->user_id, n->a)) ||
		       (list_wants(r, n->pos) && same(n->b, r->user_id));
	}
	return false;
}

static void
waiters_add(struct api *api, struct sreq *r)
{
	if (api->lp->nwaiters == api->lp->capwaiters) {
		api->lp->capwaiters = api->lp->capwaiters ? api->lp->capwaiters * 2 : 64;
		api->lp->waiters = xrealloc(api->lp->waiters,
		    sizeof(*api->lp->waiters) * (size_t)api->lp->capwaiters);
	}
	r->widx = api->lp->nwaiters;
	api->lp->waiters[api->lp->nwaiters++] = r;
}

void
lp_unwait(struct api *api, struct sreq *r)
{
	if (!r->is_waiting)
		return;
	r->is_waiting = false;
	each_key(api, r, list_del);
	api->lp->waiters[r->widx] = api->lp->waiters[--api->lp->nwaiters];
	api->lp->waiters[r->widx]->widx = r->widx;
	sreq_unref(r);
}

static void
wake_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sreq *r = arg;

	(void)fd;
	(void)what;
	if (!r->is_gone)
		r->lp_wake(r->lp_arg);
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
	r->woken_us = now_us();
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
	if (n->td != NULL && r->ss == NULL)
		td_hint_give(r, n->td);
	lp_wake(api, r);
}

/*
 * Registers r under its interest keys, then checks the ring for notices
 * above the position r's last round covered (they arrived while it was
 * querying): one of them, or a ring that lost notices, wakes r at once.
 */
int
lp_wait(struct api *api, struct sreq *r, void (*wake)(void *), void *arg)
{
	const struct lp_ring_ent *hit = NULL;
	bool is_hit = false;

	if (api->lp->nwaiters >= api->cfg.max_waiters)
		return -1;
	sreq_ref(r);
	r->is_waiting = true;
	r->lp_wake = wake;
	r->lp_arg = arg;
	waiters_add(api, r);
	each_key(api, r, list_add);
	if ((r->p.has_list || r->p.has_member || r->p.has_typing) &&
	    !r->is_initial_wait)
		urooms_get(api, r->user_id);
	if (api->cur_pos > r->wait_from) {
		if (api->lp->ring_min > r->wait_from)
			is_hit = true;	/* the ring lost notices: re-query */
		for (int i = 0; i < LP_RING; i++) {
			const struct lp_ring_ent *n = &api->lp->ring[i];
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
	if (eph_typing_changed(api, r))
		is_hit = true;
	if (hit != NULL)
		lp_hit(api, r, hit);
	else if (is_hit)
		lp_wake(api, r);
	return 0;
}

static struct lp_ring_ent *
ring_push(struct api *api, int type, int64_t pos, const char *a, const char *b,
          bool is_expired)
{
	struct lp_ring_ent *n = &api->lp->ring[api->lp->ring_head];

	if (n->pos > api->lp->ring_min)
		api->lp->ring_min = n->pos;
	free(n->a);
	free(n->b);
	n->pos = pos;
	n->type = type;
	n->is_expired = is_expired;
	n->a = a ? xstrdup(a) : NULL;
	n->b = b ? xstrdup(b) : NULL;
	n->is_row = false;
	api->lp->ring_head = (api->lp->ring_head + 1) % LP_RING;
	return n;
}

/* Wakes the waiters under key that match n. */
static void
wake_key(struct api *api, const char *key, const struct lp_ring_ent *n)
{
	struct lp_list *l = map_get(&api->lp->idx, key);
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

/*
 * A typing list sent before its commit (contract 3's exception): its pos
 * is the last commit's, no change of its own, and the ring is for
 * changes above a position, so it only wakes
 * the room's v3 typing waiters, which answer from the table (sliding
 * sync reads typing from Postgres: its waiters wait for the commit). A
 * waiter that read the room's list while it came is told by lp_wait
 * (eph_typing_changed).
 */
static void
lp_typing_early(struct api *api, const struct proto_notice *pn)
{
	char k[KEY_MAX];
	struct lp_ring_ent n = {.pos = pn->pos, .type = PROTO_NOTICE_TYPING};

	if (pn->room_id == NULL)
		return;
	n.a = xstrdup(pn->room_id);
	wake_key(api, lp_key(k, K_TYPING, pn->room_id, NULL), &n);
	free(n.a);
}

/*
 * A device's to-device notice wakes its waiters; the messages it carries
 * go to the v3 ones, which answer from them (s_to_device.c).
 */
static void
lp_to_device(struct api *api, const struct proto_notice *pn, char k[KEY_MAX])
{
	struct lp_ring_ent *n =
	    &api->lp->ring[(api->lp->ring_head + LP_RING - 1) % LP_RING];

	n->td = td_hint_new(pn);
	wake_key(api, lp_key(k, K_TO_DEVICE, pn->user_id, pn->device_id), n);
	td_hint_unref(n->td);
	n->td = NULL;
}

/*
 * A notice: recorded in the ring (for waiters registering late), then the
 * waiters under the keys it concerns are checked against it. A device
 * notice also updates auth's cached tokens; a heartbeat only moves the
 * position, and a type the api has no waiter for is logged and ignored.
 */
void
lp_notice(struct api *api, const struct proto_notice *pn)
{
	char k[KEY_MAX];
	const struct lp_ring_ent *n;
	const char *room = pn->room_id, *user = pn->user_id;
	const char *dev = pn->device_id;
	bool is_expired = pn->type == PROTO_NOTICE_DEVICE &&
	    pn->state != NULL &&
	    dev_state_parse(pn->state) == DEV_STATE_EXPIRED;
	bool is_row;

	/* an early typing notice's pos is the last commit, as a heartbeat's */
	if (pn->pos > api->cur_pos)
		api->cur_pos = pn->pos;
	if (pn->type == PROTO_NOTICE_TYPING_EARLY) {
		lp_typing_early(api, pn);
		return;
	}
	switch (pn->type) {
	case PROTO_NOTICE_TYPING:
	case PROTO_NOTICE_ROOM:
		ring_push(api, pn->type, pn->pos, room, NULL, false);
		break;
	case PROTO_NOTICE_TO_DEVICE:
	case PROTO_NOTICE_DEVICE:
		ring_push(api, pn->type, pn->pos, user, dev, is_expired);
		break;
	case PROTO_NOTICE_ACCOUNT_DATA:
		ring_push(api, pn->type, pn->pos, user, NULL, false);
		break;
	case PROTO_NOTICE_MEMBERSHIP:
		/* a join we knew of teaches the room set nothing */
		is_row = same(pn->membership, "join") &&
		         is_known_in_room(api, user, room);
		if (!is_row)
			urooms_invalidate(api, user);
		ring_push(api, pn->type, pn->pos, room, user, false)->is_row =
		    is_row;
		break;
	case PROTO_NOTICE_HEARTBEAT:
		return;	/* it only moves the position */
	default:
		log_debug("longpoll: notice %s ignored",
		    proto_type_name(pn->type));
		return;
	}
	n = &api->lp->ring[(api->lp->ring_head + LP_RING - 1) % LP_RING];
	switch (pn->type) {
	case PROTO_NOTICE_TYPING:
		wake_key(api, lp_key(k, K_TYPING, room, NULL), n);
		wake_key(api, lp_key(k, K_TYPING_ANY, NULL, NULL), n);
		break;
	case PROTO_NOTICE_ACCOUNT_DATA:
		wake_key(api, lp_key(k, K_ACCOUNT_DATA, user, NULL), n);
		break;
	case PROTO_NOTICE_TO_DEVICE:
		lp_to_device(api, pn, k);
		break;
	case PROTO_NOTICE_ROOM:
		wake_key(api, lp_key(k, K_MEMBER, room, NULL), n);
		wake_key(api, lp_key(k, K_LIST_ANY, NULL, NULL), n);
		break;
	case PROTO_NOTICE_MEMBERSHIP:
		wake_key(api, lp_key(k, K_MEMBER, room, NULL), n);
		wake_key(api, lp_key(k, K_LIST, user, NULL), n);
		break;
	default:	/* PROTO_NOTICE_DEVICE */
		/*
		 * Only an expiry is news for auth's cache: a device notice
		 * also comes with a window or receipts before the initial
		 * sync is stored, so "synced" is learnt from the device row
		 * (the gates' device_cb), not from here.
		 */
		if (is_expired)
			auth_forget(api, user, dev, true);
		wake_key(api, lp_key(k, K_INITIAL, user, dev), n);
		/* expiry, or sliding sync's receipts (lp_match decides) */
		wake_key(api, lp_key(k, K_DEVICE, user, dev), n);
		break;
	}
}

static void
wake_all(struct api *api)
{
	while (api->lp->nwaiters > 0)
		lp_wake(api, api->lp->waiters[api->lp->nwaiters - 1]);
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
	return api->lp->nwaiters;
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
	api->lp = xcalloc(1, sizeof(*api->lp));
	/* notices before the api started were never in the ring */
	api->lp->ring_min = api->cur_pos;
	map_init(&api->lp->idx);
	map_init(&api->lp->urooms);
}

void
lp_shutdown(struct api *api)
{
	for (int i = 0; i < LP_RING; i++) {
		free(api->lp->ring[i].a);
		free(api->lp->ring[i].b);
	}
	map_free(&api->lp->urooms, urooms_free);
	map_free(&api->lp->idx, NULL);
	free(api->lp->waiters);
	free(api->lp);
	api->lp = NULL;
}
