/*
 * sync_state.c: the `state` block and the `summary` of one room in a
 * /sync response, computed the way Synapse's compute_state_delta and
 * compute_summary do, lazy-loaded members included. The timeline batch
 * is chosen by sync.c; this file only answers "which state goes with it".
 * The per-device cache of members already sent (include_redundant_members
 * false) lives on the device and is only touched for rooms that are
 * actually in the response.
 */
#include <stdlib.h>
#include <string.h>

#include "simhs.h"

static char *
skey(const struct revent *e)
{
	return xasprintf("%s\x1f%s", e->type, e->state_key);
}

static bool
is_member(const struct revent *e)
{
	return strcmp(e->type, "m.room.member") == 0;
}

/*
 * The device's lazy-loading cache, an LRU like Synapse's: its
 * LruCache(LAZY_LOADED_MEMBERS_CACHE_MAX_SIZE = 100) times the default
 * cache factor 0.5 holds 50 members; older ones are sent again.
 */
#define LL_CACHE_MAX 50

struct ll_ent {
	struct revent *event;
	uint64_t used;
};

static bool
ll_has(struct device *d, struct revent *e)
{
	struct ll_ent *le = map_get(&d->ll_cache, e->state_key);

	if (le == NULL || le->event != e)
		return false;
	le->used = ++d->ll_clock;
	return true;
}

/* Forget the least recently used entry (the map has no delete). */
static void
ll_evict(struct device *d)
{
	struct map keep, *m = &d->ll_cache;
	struct map_entry *me, *old = NULL;
	size_t i;

	for (i = 0; i < m->nbuckets; i++)
		for (me = m->buckets[i]; me != NULL; me = me->next)
			if (old == NULL ||
			    ((struct ll_ent *)me->val)->used <
			        ((struct ll_ent *)old->val)->used)
				old = me;
	map_init(&keep);
	for (i = 0; i < m->nbuckets; i++)
		for (me = m->buckets[i]; me != NULL; me = me->next)
			if (me != old)
				map_put(&keep, me->key, me->val);
	free(old->val);
	map_clear(m, NULL);
	*m = keep;
}

static void
ll_set(struct device *d, struct revent *e)
{
	struct ll_ent *le = map_get(&d->ll_cache, e->state_key);

	if (le == NULL) {
		le = xcalloc(1, sizeof(*le));
		map_put(&d->ll_cache, e->state_key, le);
	}
	le->event = e;
	le->used = ++d->ll_clock;
	if (d->ll_cache.count > LL_CACHE_MAX)
		ll_evict(d);
}

/*
 * The state after timeline index n - 1 (n events applied) into m, keyed
 * by type and state key. With lazy loading, members not in fetch are
 * left out, as Synapse's StateFilter.from_lazy_load_member_list does.
 */
static void
state_after(struct room *r, size_t n, struct map *fetch, struct map *m)
{
	struct ptrvec v = {0};
	struct revent *e;
	size_t i;
	char *k;

	room_state_between(r, 0, n, &v);
	for (i = 0; i < v.n; i++) {
		e = v.v[i];
		if (fetch != NULL && is_member(e) &&
		    map_get(fetch, e->state_key) == NULL)
			continue;
		k = skey(e);
		map_put(m, k, e);
		free(k);
	}
	vec_free(&v, NULL);
}

static bool
map_holds(struct map *m, const struct revent *e)
{
	char *k = skey(e);
	bool is_in = map_get(m, k) == e;

	free(k);
	return is_in;
}

static int
by_idx(const void *a, const void *b)
{
	const struct revent *x = *(const struct revent *const *)a;
	const struct revent *y = *(const struct revent *const *)b;

	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Every value of m not in the timeline, not in prev, not yet in out. */
static void
collect(struct map *m, const struct sync_batch *b, struct map *prev,
        struct map *seen, struct ptrvec *out)
{
	struct map_entry *me;
	struct revent *e;
	size_t i;

	for (i = 0; i < m->nbuckets; i++)
		for (me = m->buckets[i]; me != NULL; me = me->next) {
			e = me->val;
			if (map_get(seen, e->event_id) != NULL)
				continue;
			if (map_get(&b->in_tl, e->event_id) != NULL)
				continue;
			if (prev != NULL && map_holds(prev, e))
				continue;
			map_put(seen, e->event_id, e);
			vec_push(out, e);
		}
}

/* Synapse's members_to_fetch: timeline senders, and us on full state. */
static void
fetch_set(const struct sync_batch *b, struct user *self, struct map *fetch)
{
	struct revent *e;
	size_t i;

	for (i = 0; i < b->events.n; i++) {
		e = b->events.v[i];
		map_put(fetch, e->sender, e);
	}
	if (b->is_full)
		map_put(fetch, self->user_id, self);
}

/* Is there a state event in [lo, hi), filtered out of the timeline or not? */
static bool
has_state_in(struct room *r, size_t lo, size_t hi)
{
	size_t i;

	for (i = lo; i < hi; i++)
		if (((struct revent *)r->events.v[i])->state_key != NULL)
			return true;
	return false;
}

/*
 * Synapse's _calculate_state: (start | end) - previous - timeline. The
 * start and end are the state *after* the first and last timeline
 * events (a state event opening the timeline hides what it replaced).
 */
static void
state_delta(struct room *r, const struct sync_batch *b, struct map *fetch,
            struct ptrvec *out)
{
	struct map start, end, prev, seen;
	size_t lo, hi;

	map_init(&start);
	map_init(&end);
	map_init(&prev);
	map_init(&seen);
	lo = b->events.n > 0 ? ((struct revent *)b->events.v[0])->idx + 1
	                     : b->end;
	hi = b->events.n > 0
	         ? ((struct revent *)b->events.v[b->events.n - 1])->idx + 1
	         : b->end;
	state_after(r, lo, fetch, &start);
	/* No state event between the two: the end is the start. */
	if (!has_state_in(r, lo, hi))
		hi = lo;
	if (hi != lo)
		state_after(r, hi, fetch, &end);
	if (!b->is_full) {
		struct map_entry *me;
		size_t i;

		state_after(r, b->from, NULL, &prev);
		/* Lazy members at the timeline start are sent regardless. */
		for (i = 0; fetch != NULL && i < start.nbuckets; i++)
			for (me = start.buckets[i]; me != NULL; me = me->next)
				if (is_member(me->val) &&
				    map_holds(&prev, me->val))
					map_put(&prev, me->key, NULL);
	}
	collect(&start, b, b->is_full ? NULL : &prev, &seen, out);
	collect(&end, b, b->is_full ? NULL : &prev, &seen, out);
	map_clear(&start, NULL);
	map_clear(&end, NULL);
	map_clear(&prev, NULL);
	map_clear(&seen, NULL);
}

/* No gap, lazy loading: the senders' members at the timeline start. */
static void
state_senders(struct room *r, const struct sync_batch *b, struct map *fetch,
              struct ptrvec *out)
{
	struct ptrvec v = {0};
	struct revent *e;
	size_t i;

	if (b->events.n == 0)
		return;
	room_state_between(r, 0, ((struct revent *)b->events.v[0])->idx + 1,
	                   &v);
	for (i = 0; i < v.n; i++) {
		e = v.v[i];
		if (is_member(e) && map_get(fetch, e->state_key) != NULL)
			vec_push(out, e);
	}
	vec_free(&v, NULL);
}

/* Drop members this device already has; remember what it gets now. */
static void
lazy_dedupe(struct device *d, const struct sync_batch *b, struct ptrvec *st)
{
	struct revent *e;
	size_t i;

	for (i = st->n; i > 0; i--) {
		e = st->v[i - 1];
		if (is_member(e) && ll_has(d, e))
			vec_remove(st, i - 1);
	}
	for (i = 0; i < st->n + b->events.n; i++) {
		e = i < st->n ? st->v[i] : b->events.v[i - st->n];
		if (e->state_key != NULL && is_member(e))
			ll_set(d, e);
	}
}

/*
 * The state block for batch b into out, in timeline order. With a gap
 * (or on full state) it is the delta; without one it is empty, except
 * for lazy-loaded senders. m.room.aliases never goes out, as in Synapse.
 */
void
sync_state(struct room *r, const struct sync_batch *b, struct device *d,
           struct json_object *filter, struct ptrvec *out)
{
	bool is_lazy = filter_lazy_members(filter);
	struct json_object *sec = filter_section(filter, "state");
	struct map fetch;
	struct revent *e;
	size_t i;

	map_init(&fetch);
	if (is_lazy)
		fetch_set(b, d->user, &fetch);
	if (b->is_full || b->is_limited)
		state_delta(r, b, is_lazy ? &fetch : NULL, out);
	else if (is_lazy)
		state_senders(r, b, &fetch, out);
	map_clear(&fetch, NULL);
	/* Timeline order, so that the cache's LRU order is the room's. */
	if (out->n > 1)
		qsort(out->v, out->n, sizeof(*out->v), by_idx);
	if (is_lazy && !filter_redundant_members(filter))
		lazy_dedupe(d, b, out);
	for (i = out->n; i > 0; i--) {
		e = out->v[i - 1];
		if (strcmp(e->type, "m.room.aliases") == 0 ||
		    !filter_allows(sec, e->type, e->sender, r->room_id))
			vec_remove(out, i - 1);
	}
}

static int
by_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static bool
has_content(struct room *r, const char *type, const char *key)
{
	struct revent *e = room_state_get(r, type, "");
	const char *v = e != NULL ? json_str(e->content, key) : NULL;

	return v != NULL && v[0] != '\0';
}

/*
 * Synapse's heroes: the first six members by membership (joined, then
 * invited, then left or banned) and age, without us; joined and invited
 * ones if any, else the departed; sorted; five at most.
 */
static void
heroes_pick(struct room *r, const char *self, struct ptrvec *out)
{
	static const char *order[] = {"join", "invite", "leave", "ban"};
	struct ptrvec st = {0}, gone = {0};
	struct revent *e;
	size_t i, j, taken = 0;

	room_state_between(r, 0, r->events.n, &st);
	for (j = 0; j < 4 && taken < 6; j++)
		for (i = 0; i < st.n && taken < 6; i++) {
			e = st.v[i];
			if (!is_member(e) ||
			    strcmp(event_membership(e), order[j]) != 0)
				continue;
			taken++;
			if (strcmp(e->state_key, self) == 0)
				continue;
			vec_push(j < 2 ? out : &gone, e->state_key);
		}
	if (out->n == 0) {
		vec_free(out, NULL);
		*out = gone;
	} else
		vec_free(&gone, NULL);
	if (out->n > 1)
		qsort(out->v, out->n, sizeof(*out->v), by_str);
	if (out->n > 5)
		out->n = 5;
	vec_free(&st, NULL);
}

static bool
has_member_type(const struct ptrvec *v)
{
	size_t i;

	for (i = 0; i < v->n; i++)
		if (is_member(v->v[i]))
			return true;
	return false;
}

/* Heroes the client cannot resolve yet join the state block. */
static void
heroes_hydrate(struct room *r, const struct sync_batch *b, struct device *d,
               struct ptrvec *heroes, struct ptrvec *st)
{
	struct map known;
	struct revent *e;
	size_t i;

	map_init(&known);
	for (i = 0; i < st->n + b->events.n; i++) {
		e = i < st->n ? st->v[i] : b->events.v[i - st->n];
		if (e->state_key != NULL && is_member(e))
			map_put(&known, e->state_key, e);
	}
	for (i = 0; i < heroes->n; i++) {
		e = room_state_get(r, "m.room.member", heroes->v[i]);
		if (e == NULL || map_get(&known, e->state_key) != NULL ||
		    ll_has(d, e))
			continue;
		ll_set(d, e);
		vec_push(st, e);
	}
	map_clear(&known, NULL);
	if (st->n > 1)
		qsort(st->v, st->n, sizeof(*st->v), by_idx);
}

/*
 * The summary: {} unless the filter lazy-loads members and this is an
 * initial sync, the timeline has a member event, or a gap put members in
 * state (Synapse's rule). A named or aliased room gets counts only.
 */
struct json_object *
sync_summary(struct room *r, const struct sync_batch *b, struct device *d,
             struct json_object *filter, struct ptrvec *st)
{
	struct json_object *o = json_object_new_object(), *arr;
	struct ptrvec heroes = {0};
	int64_t joined = 0, invited = 0;
	struct ptrvec all = {0};
	size_t i;

	if (!filter_lazy_members(filter) ||
	    !(!b->has_since || has_member_type(&b->events) ||
	      (b->is_limited && has_member_type(st))))
		return o;
	room_state_between(r, 0, r->events.n, &all);
	for (i = 0; i < all.n; i++)
		if (is_member(all.v[i])) {
			joined +=
			    strcmp(event_membership(all.v[i]), "join") == 0;
			invited +=
			    strcmp(event_membership(all.v[i]), "invite") == 0;
		}
	vec_free(&all, NULL);
	json_add_int(o, "m.joined_member_count", joined);
	json_add_int(o, "m.invited_member_count", invited);
	if (has_content(r, "m.room.name", "name") ||
	    has_content(r, "m.room.canonical_alias", "alias"))
		return o;
	heroes_pick(r, d->user->user_id, &heroes);
	arr = json_object_new_array();
	for (i = 0; i < heroes.n; i++)
		json_object_array_add(arr, json_object_new_string(heroes.v[i]));
	json_object_object_add(o, "m.heroes", arr);
	heroes_hydrate(r, b, d, &heroes, st);
	vec_free(&heroes, NULL);
	return o;
}
