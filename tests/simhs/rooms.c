/*
 * rooms.c: the room model. A room is an append-only timeline; the state
 * events in it are also kept in their own list so that "state at index i"
 * is a backwards walk over state events only. Membership is just state
 * (m.room.member), so who was in the room at any point is derived, never
 * stored twice. Typing and receipts hang off the room with their own
 * stream positions.
 */
#include <stdlib.h>
#include <string.h>

#include "redact.h"
#include "simhs.h"

static char *
state_key_of(const char *type, const char *state_key)
{
	return xasprintf("%s\x1f%s", type, state_key);
}

struct room *
room_get(struct simhs *ctx, const char *room_id)
{
	return map_get(&ctx->rooms, room_id);
}

/* A NULL room_id makes a random one; the caller checks for duplicates. */
struct room *
room_new(struct simhs *ctx, const char *room_id)
{
	struct room *r;
	char local[19];

	r = xcalloc(1, sizeof(*r));
	if (room_id == NULL) {
		random_letters(local, 18);
		r->room_id = xasprintf("!%s:%s", local, ctx->server_name);
	} else
		r->room_id = xstrdup(room_id);
	map_init(&r->state);
	map_put(&ctx->rooms, r->room_id, r);
	vec_push(&ctx->room_list, r);
	return r;
}

/* Who may be woken by a change in this room: everyone with a membership. */
void
room_notify(struct simhs *ctx, struct room *r)
{
	size_t i;

	for (i = 0; i < r->users.n; i++)
		longpoll_touch(ctx, r->users.v[i]);
}

static void
room_track_member(struct simhs *ctx, struct room *r, const char *user_id)
{
	struct user *u;

	if (room_state_get(r, "m.room.member", user_id) != NULL)
		return;
	if (user_id[0] != '@' || strchr(user_id, ':') == NULL)
		return;
	u = user_get_or_create(ctx, user_id);
	vec_push(&r->users, u);
	vec_push(&u->rooms, r);
}

static void
room_apply_state(struct simhs *ctx, struct room *r, struct revent *e)
{
	struct revent *prev;
	char *key;

	if (strcmp(e->type, "m.room.member") == 0)
		room_track_member(ctx, r, e->state_key);
	key = state_key_of(e->type, e->state_key);
	if ((prev = map_get(&r->state, key)) != NULL) {
		e->replaces_state = xstrdup(prev->event_id);
		e->prev_content = json_object_get(prev->content);
		e->prev_sender = xstrdup(prev->sender);
	}
	map_put(&r->state, key, e);
	free(key);
	vec_push(&r->state_events, e);
}

/*
 * Like Synapse, a redaction prunes its target in this room for every
 * later /sync and /messages, by the room version's rules (redact.h). The
 * content object is pruned in place, so the prev_content of the event
 * that replaced a redacted state event is pruned too.
 */
static void
room_redact(struct room *r, struct revent *red)
{
	struct revent *t, *create;
	struct json_object *ev, *out, *c;
	const char *id = redact_target(red->content), *ver = NULL;

	if (id == NULL || (t = room_find_event(r, id)) == NULL ||
	    t->redacted_because != NULL || t == red)
		return;
	if ((create = room_state_get(r, "m.room.create", "")) != NULL &&
	    json_object_object_get_ex(create->content, "room_version", &c))
		ver = json_object_get_string(c);
	ev = event_to_json(t, 0, true);
	out = redact_prune(ev, ver, NULL);
	if (out != NULL && json_object_object_get_ex(out, "content", &c)) {
		size_t n = 0, len = json_object_object_length(t->content);
		char **ks = xcalloc(len + 1, sizeof(*ks));
		json_object_object_foreach(t->content, k, v)
		{
			(void)v;
			ks[n++] = xstrdup(k);
		}
		for (size_t i = 0; i < n; i++) {
			if (!json_object_object_get_ex(c, ks[i], NULL))
				json_object_object_del(t->content, ks[i]);
			free(ks[i]);
		}
		free(ks);
		/* v11's third_party_invite keeps only its signed key */
		json_object_object_foreach(c, kk, kv)
		    json_object_object_add(t->content, kk, json_object_get(kv));
	}
	t->redacted_because = event_to_json(red, 0, false);
	json_object_put(out);
	json_object_put(ev);
}

/*
 * Append an event at the next stream position. content is borrowed (we
 * take our own reference). state_key NULL makes a message event.
 */
struct revent *
room_append(struct simhs *ctx, struct room *r, const char *sender,
            const char *type, const char *state_key,
            struct json_object *content)
{
	struct revent *e;
	char id[44];

	e = xcalloc(1, sizeof(*e));
	random_b64url(id, 43);
	e->event_id = xasprintf("$%s", id);
	e->type = xstrdup(type);
	e->sender = xstrdup(sender);
	e->content = json_object_get(content);
	e->ts = now_ms();
	e->pos = ++ctx->pos;
	e->idx = r->events.n;
	e->room = r;
	vec_push(&r->events, e);
	if (state_key != NULL) {
		e->state_key = xstrdup(state_key);
		room_apply_state(ctx, r, e);
	}
	if (strcmp(type, "m.room.redaction") == 0)
		room_redact(r, e);
	r->max_pos = e->pos;
	ctx->nevents++;
	room_notify(ctx, r);
	return e;
}

struct revent *
room_state_get(struct room *r, const char *type, const char *state_key)
{
	struct revent *e;
	char *key;

	key = state_key_of(type, state_key);
	e = map_get(&r->state, key);
	free(key);
	return e;
}

/* The user's latest membership event among timeline entries [0, idx). */
struct revent *
room_member_at(struct room *r, const char *user_id, size_t idx)
{
	struct revent *e;
	size_t i;

	for (i = r->state_events.n; i > 0; i--) {
		e = r->state_events.v[i - 1];
		if (e->idx >= idx)
			continue;
		if (strcmp(e->type, "m.room.member") == 0 &&
		    strcmp(e->state_key, user_id) == 0)
			return e;
	}
	return NULL;
}

/* "join", "invite", "leave", "ban", "knock"; "leave" for no event. */
const char *
event_membership(const struct revent *e)
{
	const char *m;

	if (e == NULL)
		return "leave";
	if ((m = json_str(e->content, "membership")) == NULL)
		return "leave";
	return m;
}

/* Index of the first timeline event with a position above pos. */
size_t
room_first_after(struct room *r, uint64_t pos)
{
	size_t lo = 0, hi = r->events.n, mid;
	struct revent *e;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		e = r->events.v[mid];
		if (e->pos <= pos)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/*
 * The state set by events in timeline range [from, to): for each
 * (type, state_key) the last event there, in timeline order. With from 0
 * this is the full state before index `to`; otherwise it is the delta
 * between the state at `from` and the state at `to` (state only grows by
 * replacement, so a touched key always differs).
 */
void
room_state_between(struct room *r, size_t from, size_t to, struct ptrvec *out)
{
	struct map seen;
	struct revent *e;
	size_t i, j, first = out->n;
	char *key;
	void *tmp;

	map_init(&seen);
	for (i = r->state_events.n; i > 0; i--) {
		e = r->state_events.v[i - 1];
		if (e->idx >= to)
			continue;
		if (e->idx < from)
			break;
		key = state_key_of(e->type, e->state_key);
		if (map_get(&seen, key) == NULL) {
			map_put(&seen, key, e);
			vec_push(out, e);
		}
		free(key);
	}
	map_clear(&seen, NULL);
	for (i = first, j = out->n; j > 0 && i < j - 1; i++, j--) {
		tmp = out->v[i];
		out->v[i] = out->v[j - 1];
		out->v[j - 1] = tmp;
	}
}

struct revent *
room_find_event(struct room *r, const char *event_id)
{
	struct revent *e;
	size_t i;

	for (i = r->events.n; i > 0; i--) {
		e = r->events.v[i - 1];
		if (strcmp(e->event_id, event_id) == 0)
			return e;
	}
	return NULL;
}

/* Replace the typing list with the JSON array of user ids given. */
void
room_set_typing(struct simhs *ctx, struct room *r, struct json_object *ids)
{
	struct json_object *v;
	size_t i;

	vec_free(&r->typing, free);
	for (i = 0; i < json_object_array_length(ids); i++) {
		v = json_object_array_get_idx(ids, i);
		if (json_object_is_type(v, json_type_string))
			vec_push(&r->typing,
			         xstrdup(json_object_get_string(v)));
	}
	r->typing_pos = r->max_pos = ++ctx->pos;
	room_notify(ctx, r);
}

/* The user's m.read receipt moves to event_id (receipts.c has the rest). */
int
room_set_receipt(struct simhs *ctx, struct room *r, struct user *u,
                 const char *event_id)
{
	return receipt_set(ctx, r, u, "m.read", event_id, NULL);
}

/* Client-format event, as /sync serves it (room_id only for admin). */
struct json_object *
event_to_json(const struct revent *e, int64_t now, bool with_room_id)
{
	struct json_object *o, *uns;

	o = json_object_new_object();
	json_object_object_add(o, "content", json_object_get(e->content));
	json_add_str(o, "event_id", e->event_id);
	json_add_int(o, "origin_server_ts", e->ts);
	json_add_str(o, "sender", e->sender);
	if (e->state_key != NULL)
		json_add_str(o, "state_key", e->state_key);
	json_add_str(o, "type", e->type);
	if (with_room_id)
		json_add_str(o, "room_id", e->room->room_id);
	uns = json_object_new_object();
	json_add_int(uns, "age", now > e->ts ? now - e->ts : 0);
	if (e->redacted_because != NULL) {
		/* Synapse keeps none of unsigned's content after pruning */
		json_object_object_add(uns, "redacted_because",
		                       json_object_get(e->redacted_because));
		if (e->replaces_state != NULL)
			json_add_str(uns, "replaces_state", e->replaces_state);
	} else if (e->replaces_state != NULL) {
		json_add_str(uns, "replaces_state", e->replaces_state);
		json_object_object_add(uns, "prev_content",
		                       json_object_get(e->prev_content));
		json_add_str(uns, "prev_sender", e->prev_sender);
	}
	json_object_object_add(o, "unsigned", uns);
	return o;
}

/* Stripped state, as in invite_state. */
struct json_object *
event_to_stripped(const struct revent *e)
{
	struct json_object *o;

	o = json_object_new_object();
	json_object_object_add(o, "content", json_object_get(e->content));
	json_add_str(o, "sender", e->sender);
	json_add_str(o, "state_key", e->state_key ? e->state_key : "");
	json_add_str(o, "type", e->type);
	return o;
}

static void
revent_free(void *p)
{
	struct revent *e = p;

	free(e->event_id);
	free(e->type);
	free(e->sender);
	free(e->state_key);
	free(e->replaces_state);
	free(e->prev_sender);
	free(e->txn_id);
	free(e->txn_device);
	json_object_put(e->content);
	json_object_put(e->prev_content);
	json_object_put(e->redacted_because);
	free(e);
}

static void
room_free(void *p)
{
	struct room *r = p;

	vec_free(&r->events, revent_free);
	vec_free(&r->state_events, NULL);
	map_clear(&r->state, NULL);
	vec_free(&r->users, NULL);
	vec_free(&r->typing, free);
	vec_free(&r->receipts, receipt_free);
	free(r->room_id);
	free(r);
}

void
rooms_free(struct simhs *ctx)
{
	map_clear(&ctx->rooms, NULL);
	vec_free(&ctx->room_list, room_free);
}
