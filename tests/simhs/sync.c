/*
 * sync.c: builds v3 /sync responses the way Synapse shapes them (empty
 * sections omitted, joined rooms always carrying every key) and parses
 * the request. Long-polling itself lives in longpoll.c; this file only
 * answers "what does this device get for this since, right now".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>

#include "simhs.h"

struct sync_ctx {
	struct simhs *ctx;
	struct user *user;
	struct device *dev;
	const struct sync_params *p;
	int64_t now;
	bool has_data;
	/* the sections of rooms, serialised room by room (sync_rooms) */
	struct evbuffer *join;
	struct evbuffer *invite;
	struct evbuffer *leave;
};

#define SYNC_JSON_FLAGS                                                        \
	(JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

struct evbuffer *
xevbuffer_new(void)
{
	struct evbuffer *b;

	if ((b = evbuffer_new()) == NULL) {
		fprintf(stderr, "simhs: out of memory\n");
		exit(1);
	}
	return b;
}

/* Appends o as json-c serialises it inside the tree the reply used to be. */
static void
json_append(struct evbuffer *out, struct json_object *o)
{
	const char *t;
	size_t len;

	t = json_object_to_json_string_length(o, SYNC_JSON_FLAGS, &len);
	evbuffer_add(out, t, len);
}

static struct json_object *
events_obj(struct json_object *arr)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "events", arr);
	return o;
}

/*
 * Synapse puts unsigned.transaction_id only in the sync of the device
 * that sent the event with that txn id; everyone else gets the event
 * without it.
 */
static bool
is_sending_device(const struct sync_ctx *s, const struct revent *e)
{
	return s->dev != NULL && e->txn_device != NULL &&
	       strcmp(e->sender, s->user->user_id) == 0 &&
	       strcmp(e->txn_device, s->dev->device_id) == 0;
}

static struct json_object *
events_json(struct sync_ctx *s, struct ptrvec *v)
{
	struct json_object *arr = json_object_new_array(), *o, *uns;
	struct revent *e;
	size_t i;

	for (i = 0; i < v->n; i++) {
		e = v->v[i];
		o = event_to_json(e, s->now, false);
		if (e->txn_id != NULL && is_sending_device(s, e) &&
		    json_object_object_get_ex(o, "unsigned", &uns))
			json_add_str(uns, "transaction_id", e->txn_id);
		json_object_array_add(arr, o);
	}
	return arr;
}

/* prev_batch points just before the first timeline event, Synapse-style. */
static void
prev_batch_format(char *buf, size_t len, struct room *r, size_t start,
                  uint64_t pos)
{
	uint64_t before = 0;
	struct revent *e;

	if (start > 0) {
		e = r->events.v[start - 1];
		before = e->pos;
	} else if (start < r->events.n) {
		e = r->events.v[start];
		before = e->pos - 1;
	}
	messages_token_format(buf, len, start + 1, before, pos);
}

static struct json_object *
room_typing_json(struct room *r)
{
	struct json_object *ev, *content, *ids;
	size_t i;

	ids = json_object_new_array();
	for (i = 0; i < r->typing.n; i++)
		json_object_array_add(ids,
		                      json_object_new_string(r->typing.v[i]));
	content = json_object_new_object();
	json_object_object_add(content, "user_ids", ids);
	ev = json_object_new_object();
	json_object_object_add(ev, "content", content);
	json_add_str(ev, "type", "m.typing");
	return ev;
}

static struct json_object *
room_ephemeral(struct sync_ctx *s, struct room *r)
{
	struct json_object *arr = json_object_new_array(), *rc;
	struct json_object *sec = filter_section(s->p->filter, "ephemeral");

	if ((s->p->has_since ? r->typing_pos > s->p->since_pos
	                     : r->typing.n > 0) &&
	    filter_allows(sec, "m.typing", NULL, r->room_id))
		json_object_array_add(arr, room_typing_json(r));
	if (filter_allows(sec, "m.receipt", NULL, r->room_id) &&
	    (rc = receipts_json(r, s->user, s->p->has_since,
	                        s->p->since_pos)) != NULL)
		json_object_array_add(arr, rc);
	return arr;
}

static struct json_object *
acct_json(struct sync_ctx *s, const char *room_id)
{
	struct json_object *arr = json_object_new_array(), *ev, *sec;
	struct acct_data *a;
	size_t i;

	sec = room_id != NULL ? filter_section(s->p->filter, "account_data")
	                      : filter_top(s->p->filter, "account_data");
	for (i = 0; i < s->user->account_data.n; i++) {
		a = s->user->account_data.v[i];
		if ((a->room_id == NULL) != (room_id == NULL))
			continue;
		if (room_id != NULL && strcmp(a->room_id, room_id) != 0)
			continue;
		if (s->p->has_since && a->pos <= s->p->since_pos)
			continue;
		if (!filter_allows(sec, a->type, NULL, room_id))
			continue;
		ev = json_object_new_object();
		json_add_str(ev, "type", a->type);
		json_object_object_add(ev, "content",
		                       json_object_get(a->content));
		json_object_array_add(arr, ev);
	}
	return arr;
}

/* Messages from others after our read receipt (and after our join). */
static struct json_object *
room_unread(struct sync_ctx *s, struct room *r, struct revent *member)
{
	const char *uid = s->user->user_id, *body;
	size_t i, start = member ? member->idx + 1 : 0;
	int64_t notes = 0, highlights = 0;
	struct json_object *o;
	struct revent *e;

	if (receipt_read_upto(r, s->user) > start)
		start = receipt_read_upto(r, s->user);
	for (i = start; i < r->events.n; i++) {
		e = r->events.v[i];
		if (e->state_key != NULL || strcmp(e->sender, uid) == 0)
			continue;
		if (strcmp(e->type, "m.room.message") != 0 &&
		    strcmp(e->type, "m.room.encrypted") != 0)
			continue;
		notes++;
		body = json_str(e->content, "body");
		if (body != NULL && strstr(body, uid) != NULL)
			highlights++;
	}
	o = json_object_new_object();
	json_add_int(o, "highlight_count", highlights);
	json_add_int(o, "notification_count", notes);
	return o;
}

/*
 * The timeline: the newest `limit` events of [from, end) that the
 * filter lets through; limited when an older one was left out.
 */
static void
timeline_pick(struct sync_ctx *s, struct room *r, struct sync_batch *b)
{
	struct json_object *sec = filter_section(s->p->filter, "timeline");
	size_t i, j, limit = (size_t)s->p->limit;
	struct revent *e;
	void *tmp;

	for (i = b->end; i > b->from; i--) {
		e = r->events.v[i - 1];
		if (e->is_sync_hidden ||
		    !filter_allows(sec, e->type, e->sender, r->room_id) ||
		    (e->state_key == NULL &&
		     account_data_ignores(s->user, e->sender)))
			continue;
		if (b->events.n == limit) {
			b->is_limited = true;
			break;
		}
		vec_push(&b->events, e);
		map_put(&b->in_tl, e->event_id, e);
	}
	for (i = 0, j = b->events.n; j > 0 && i < j - 1; i++, j--) {
		tmp = b->events.v[i];
		b->events.v[i] = b->events.v[j - 1];
		b->events.v[j - 1] = tmp;
	}
}

static void
room_entry_fill(struct sync_ctx *s, struct room *r, struct sync_batch *b,
                struct json_object *o, bool is_join)
{
	struct ptrvec stv = {0};
	struct json_object *tl, *sum = NULL;
	size_t start;
	char prev[200];

	sync_state(r, b, s->dev, s->p->filter, &stv);
	if (is_join)
		sum = sync_summary(r, b, s->dev, s->p->filter, &stv);
	tl = events_obj(events_json(s, &b->events));
	json_object_object_add(tl, "limited",
	                       json_object_new_boolean(b->is_limited));
	start =
	    b->events.n > 0 ? ((struct revent *)b->events.v[0])->idx : b->end;
	prev_batch_format(prev, sizeof(prev), r, start, s->ctx->pos);
	json_add_str(tl, "prev_batch", prev);
	json_object_object_add(o, "timeline", tl);
	json_object_object_add(o, "state", events_obj(events_json(s, &stv)));
	if (sum != NULL)
		json_object_object_add(o, "summary", sum);
	vec_free(&stv, NULL);
}

/*
 * One joined or left room: the timeline from [from, end), the state
 * block that goes with it (sync_state.c), and for joined rooms the
 * ephemeral events, unread counts and summary. Returns NULL when there
 * is nothing to say (no events, account data or ephemeral, not full),
 * which is Synapse's rule for leaving a room out.
 */
static struct json_object *
room_entry(struct sync_ctx *s, struct room *r, size_t from, size_t end,
           bool is_full, bool is_join)
{
	struct json_object *o = NULL, *eph = NULL, *acct;
	struct sync_batch b = {0};

	b.from = from;
	b.end = end;
	b.is_full = is_full;
	b.has_since = s->p->has_since;
	map_init(&b.in_tl);
	timeline_pick(s, r, &b);
	if (is_join)
		eph = room_ephemeral(s, r);
	acct = acct_json(s, r->room_id);
	if (!is_full && b.events.n == 0 &&
	    json_object_array_length(acct) == 0 &&
	    (eph == NULL || json_object_array_length(eph) == 0)) {
		json_object_put(eph);
		json_object_put(acct);
		goto out;
	}
	o = json_object_new_object();
	room_entry_fill(s, r, &b, o, is_join);
	json_object_object_add(o, "account_data", events_obj(acct));
	if (is_join) {
		json_object_object_add(o, "ephemeral", events_obj(eph));
		json_object_object_add(
		    o, "unread_notifications",
		    room_unread(
		        s, r,
		        room_member_at(r, s->user->user_id, r->events.n)));
	}
out:
	vec_free(&b.events, NULL);
	map_clear(&b.in_tl, NULL);
	return o;
}

static void room_add(struct sync_ctx *, struct evbuffer *, struct room *,
                     struct json_object *);

/*
 * invite_state as Synapse builds it at invite time: the stripped
 * room_prejoin_state events (create, join_rules, canonical_alias, avatar,
 * encryption, name, topic) and the inviter's own member event, then the
 * invite itself in full. Nothing of the timeline.
 */
static void
room_invite(struct sync_ctx *s, struct room *r, struct revent *inv)
{
	static const char *types[] = {
	    "m.room.create",     "m.room.join_rules",
	    "m.room.avatar",     "m.room.canonical_alias",
	    "m.room.encryption", "m.room.name",
	    "m.room.topic"};
	struct json_object *arr, *o;
	struct ptrvec st = {0};
	struct revent *e;
	size_t i, j;

	/* Synapse sends no invite from a user the invitee ignores */
	if (account_data_ignores(s->user, inv->sender))
		return;
	arr = json_object_new_array();

	room_state_between(r, 0, inv->idx, &st);
	for (i = 0; i < st.n; i++) {
		e = st.v[i];
		for (j = 0; j < sizeof(types) / sizeof(types[0]); j++)
			if (strcmp(e->type, types[j]) == 0 &&
			    e->state_key[0] == '\0')
				break;
		if (j < sizeof(types) / sizeof(types[0]) ||
		    (strcmp(e->type, "m.room.member") == 0 &&
		     strcmp(e->state_key, inv->sender) == 0))
			json_object_array_add(arr, event_to_stripped(e));
	}
	vec_free(&st, NULL);
	json_object_array_add(arr, event_to_json(inv, s->now, false));
	o = json_object_new_object();
	json_object_object_add(o, "invite_state", events_obj(arr));
	room_add(s, s->invite, r, o);
}

/*
 * Appends "room_id":entry to a section and frees entry: each room's tree
 * lives only while it is serialised, so a 10,000-room initial sync never
 * holds the whole answer as a tree (issue #13). The key goes through
 * json-c as a string, escaped as an object key would be.
 */
static void
room_add(struct sync_ctx *s, struct evbuffer *where, struct room *r,
         struct json_object *entry)
{
	struct json_object *key;

	if (entry == NULL)
		return;
	if (evbuffer_get_length(where) > 0)
		evbuffer_add(where, ",", 1);
	key = json_object_new_string(r->room_id);
	json_append(where, key);
	json_object_put(key);
	evbuffer_add(where, ":", 1);
	json_append(where, entry);
	json_object_put(entry);
	s->has_data = true;
}

static bool
acct_pending(struct sync_ctx *s, struct room *r)
{
	struct acct_data *a;
	size_t i;

	for (i = 0; i < s->user->account_data.n; i++) {
		a = s->user->account_data.v[i];
		if (a->room_id != NULL && a->pos > s->p->since_pos &&
		    strcmp(a->room_id, r->room_id) == 0)
			return true;
	}
	return false;
}

/*
 * A room we left (or were kicked or banned from) goes under rooms.leave,
 * its timeline ending with that event, like Synapse's "archived" rooms.
 * On an initial sync (include_leave), or having joined after since, it
 * gets the room's last events and full state; otherwise the events after
 * since, which under shared history a rejected invite sees too.
 */
static void
sync_room_left(struct sync_ctx *s, struct room *r, struct revent *leave,
               size_t since_idx, bool is_initial)
{
	const char *uid = s->user->user_id;
	bool is_full = is_initial;
	struct json_object *o, *tl;

	if (!is_initial &&
	    strcmp(event_membership(room_member_at(r, uid, since_idx)),
	           "join") != 0 &&
	    strcmp(event_membership(room_member_at(r, uid, leave->idx)),
	           "join") == 0)
		is_full = true;
	o = room_entry(s, r, is_full ? 0 : since_idx, leave->idx + 1, is_full,
	               false);
	if (o == NULL && leave->is_sync_hidden) {
		/* the leave without its event: an empty timeline */
		o = json_object_new_object();
		tl = events_obj(json_object_new_array());
		json_object_object_add(tl, "limited",
		                       json_object_new_boolean(0));
		json_object_object_add(o, "timeline", tl);
		json_object_object_add(o, "state",
		                       events_obj(json_object_new_array()));
	}
	room_add(s, s->leave, r, o);
}

/* Decide how this room appears, from our membership at since and now. */
static void
sync_room(struct sync_ctx *s, struct room *r)
{
	const char *uid = s->user->user_id, *cur, *old;
	const struct sync_params *p = s->p;
	struct revent *cur_ev, *old_ev;
	size_t since_idx;

	if (!filter_room_allowed(p->filter, r->room_id))
		return;
	cur_ev = room_member_at(r, uid, r->events.n);
	cur = event_membership(cur_ev);
	if (!p->has_since) {
		if (strcmp(cur, "join") == 0)
			room_add(s, s->join, r,
			         room_entry(s, r, 0, r->events.n, true, true));
		else if (strcmp(cur, "invite") == 0)
			room_invite(s, r, cur_ev);
		else if (cur_ev != NULL && filter_include_leave(p->filter))
			sync_room_left(s, r, cur_ev, 0, true);
		return;
	}
	if (r->max_pos <= p->since_pos && !p->is_full_state &&
	    !acct_pending(s, r))
		return;
	since_idx = room_first_after(r, p->since_pos);
	old_ev = room_member_at(r, uid, since_idx);
	old = event_membership(old_ev);
	if (strcmp(cur, "join") == 0) {
		if (strcmp(old, "join") != 0)
			room_add(s, s->join, r,
			         room_entry(s, r, 0, r->events.n, true, true));
		else
			room_add(s, s->join, r,
			         room_entry(s, r, since_idx, r->events.n,
			                    p->is_full_state, true));
	} else if (strcmp(cur, "invite") == 0) {
		if (cur_ev->pos > p->since_pos || p->is_full_state)
			room_invite(s, r, cur_ev);
	} else if (cur_ev != NULL && cur_ev->pos > p->since_pos)
		sync_room_left(s, r, cur_ev, since_idx, false);
}

/* Up to SIMHS_TODEVICE_LIMIT messages; returns the to-device position. */
static uint64_t
sync_todevice(struct sync_ctx *s, struct json_object *resp)
{
	struct json_object *arr = json_object_new_array();
	uint64_t td = s->ctx->pos;
	struct todevice *m;
	size_t n = 0;

	TAILQ_FOREACH(m, &s->dev->todevice, entry)
	{
		if (s->p->has_since && m->pos <= s->p->since_td)
			continue;
		if (n == SIMHS_TODEVICE_LIMIT) {
			td = TAILQ_PREV(m, todevice_q, entry)->pos;
			break;
		}
		json_object_array_add(arr, json_object_get(m->msg));
		n++;
	}
	if (n > 0) {
		json_object_object_add(resp, "to_device", events_obj(arr));
		s->has_data = true;
	} else
		json_object_put(arr);
	return td;
}

static void
sync_device_lists(struct sync_ctx *s, struct json_object *resp)
{
	struct json_object *o;

	if (!s->p->has_since ||
	    (o = e2ee_device_lists(s->ctx, s->user, s->p->since_pos)) == NULL)
		return;
	json_object_object_add(resp, "device_lists", o);
	s->has_data = true;
}

/* Appends ,"name":{section} (no comma first) when the section has rooms. */
static void
section_add(struct evbuffer *out, const char *name, struct evbuffer *sec)
{
	if (evbuffer_get_length(sec) == 0)
		return;
	if (evbuffer_get_length(out) > 0)
		evbuffer_add(out, ",", 1);
	evbuffer_add_printf(out, "\"%s\":{", name);
	evbuffer_add_buffer(out, sec);
	evbuffer_add(out, "}", 1);
}

/*
 * The rooms object's members (join, invite, leave; each only when it has
 * a room) into out, which stays empty when no room has anything to say.
 */
static void
sync_rooms(struct sync_ctx *s, struct evbuffer *out)
{
	size_t i;

	s->join = xevbuffer_new();
	s->invite = xevbuffer_new();
	s->leave = xevbuffer_new();
	for (i = 0; i < s->user->rooms.n; i++)
		sync_room(s, s->user->rooms.v[i]);
	section_add(out, "join", s->join);
	section_add(out, "invite", s->invite);
	section_add(out, "leave", s->leave);
	evbuffer_free(s->join);
	evbuffer_free(s->invite);
	evbuffer_free(s->leave);
}

/*
 * The response for dev at this instant, serialised. *has_data tells the
 * caller whether a long-poll should answer now. Sections Synapse omits
 * when empty are omitted here too, so clients must cope with missing keys.
 * The bytes are the ones json-c gave for the whole tree this used to
 * build, rooms first: the rooms are serialised one by one (room_add) and
 * the rest, a few small keys, as a tree of its own spliced in after them.
 */
struct evbuffer *
sync_build(struct simhs *ctx, struct device *dev, const struct sync_params *p,
           bool *has_data)
{
	struct sync_ctx s = {ctx,   dev->user, dev,  p,   now_ms(),
	                     false, NULL,      NULL, NULL};
	struct json_object *resp = json_object_new_object(), *acct;
	struct evbuffer *out, *rooms;
	const char *rest;
	char next[200];
	size_t len;
	uint64_t td;

	out = xevbuffer_new();
	rooms = xevbuffer_new();
	/* A new sync sequence: Synapse assumes the client forgot members. */
	if (!p->has_since && filter_lazy_members(p->filter) &&
	    !filter_redundant_members(p->filter)) {
		map_clear(&dev->ll_cache, free);
		map_init(&dev->ll_cache);
	}
	sync_rooms(&s, rooms);
	acct = acct_json(&s, NULL);
	if (json_object_array_length(acct) > 0) {
		json_object_object_add(resp, "account_data", events_obj(acct));
		s.has_data = true;
	} else
		json_object_put(acct);
	td = sync_todevice(&s, resp);
	sync_device_lists(&s, resp);
	json_object_object_add(resp, "device_one_time_keys_count",
	                       json_object_get(dev->otk_count));
	/* under the names the device's knob says (Synapse: both) */
	if (strcmp(dev->fallback_names, "both") == 0 ||
	    strcmp(dev->fallback_names, "unstable") == 0)
		json_object_object_add(
		    resp, "org.matrix.msc2732.device_unused_fallback_key_types",
		    json_object_get(dev->fallback_types));
	if (strcmp(dev->fallback_names, "both") == 0 ||
	    strcmp(dev->fallback_names, "stable") == 0)
		json_object_object_add(resp, "device_unused_fallback_key_types",
		                       json_object_get(dev->fallback_types));
	token_format(next, sizeof(next), ctx->pos, td);
	json_add_str(resp, "next_batch", next);
	rest = json_object_to_json_string_length(resp, SYNC_JSON_FLAGS, &len);
	if (evbuffer_get_length(rooms) == 0)
		evbuffer_add(out, rest, len);
	else {
		evbuffer_add(out, "{\"rooms\":{", 10);
		evbuffer_add_buffer(out, rooms);
		evbuffer_add(out, "}", 1);
		/* rest is never "{}": next_batch is always there */
		evbuffer_add(out, ",", 1);
		evbuffer_add(out, rest + 1, len - 1);
	}
	json_object_put(resp);
	evbuffer_free(rooms);
	*has_data = s.has_data;
	return out;
}

static int
sync_int_param(struct creq *c, const char *name, const char *v, long max,
               long *out)
{
	char *end;

	*out = strtol(v, &end, 10);
	if (*v == '\0' || *end != '\0' || *out < 0) {
		char msg[128];

		snprintf(msg, sizeof(msg),
		         "Query parameter '%s' must be an integer", name);
		creq_error(c, 400, "M_INVALID_PARAM", msg);
		return -1;
	}
	if (*out > max)
		*out = max;
	return 0;
}

static int
sync_params_parse(struct creq *c, struct evkeyvalq *q, struct sync_params *p)
{
	const char *since, *v;
	long timeout = 0;

	p->limit = SIMHS_DEFAULT_LIMIT;
	if ((v = evhttp_find_header(q, "timeout")) != NULL &&
	    sync_int_param(c, "timeout", v, SIMHS_MAX_TIMEOUT_MS, &timeout) < 0)
		return -1;
	p->timeout_ms = (int)timeout;
	if ((v = evhttp_find_header(q, "full_state")) != NULL) {
		if (strcmp(v, "true") != 0 && strcmp(v, "false") != 0) {
			creq_error(
			    c, 400, "M_INVALID_PARAM",
			    "Boolean query parameter 'full_state' must be one "
			    "of ['true', 'false']");
			return -1;
		}
		p->is_full_state = strcmp(v, "true") == 0;
	}
	if ((v = evhttp_find_header(q, "set_presence")) != NULL &&
	    strcmp(v, "online") != 0 && strcmp(v, "offline") != 0 &&
	    strcmp(v, "unavailable") != 0) {
		creq_error(c, 400, "M_INVALID_PARAM",
		           "Query parameter 'set_presence' must be one of "
		           "['offline', 'online', 'unavailable']");
		return -1;
	}
	if ((v = evhttp_find_header(q, "filter")) != NULL &&
	    filter_resolve(c, v, &p->filter) < 0)
		return -1;
	p->limit = filter_timeline_limit(p->filter);
	if ((since = evhttp_find_header(q, "since")) == NULL)
		return 0;
	if (token_parse(since, &p->since_pos, &p->since_td) < 0 ||
	    p->since_pos > c->ctx->pos || p->since_td > c->ctx->pos) {
		creq_error(c, 400, "M_UNKNOWN", "Invalid stream token");
		return -1;
	}
	p->has_since = true;
	return 0;
}

/*
 * GET /sync. Like Synapse: an initial sync, a zero timeout or full_state
 * answer at once; otherwise, with nothing new, the request waits.
 */
void
sync_handle(struct creq *c)
{
	struct device *dev = c->tok->device;
	struct sync_params p = {0};
	struct evbuffer *resp;
	struct evkeyvalq q;
	bool has_data;

	TAILQ_INIT(&q);
	if (c->query != NULL && evhttp_parse_query_str(c->query, &q) < 0) {
		creq_error(c, 400, "M_INVALID_PARAM", "Malformed query string");
		goto out;
	}
	if (sync_params_parse(c, &q, &p) < 0)
		goto out;
	if (p.has_since)
		todevice_ack(dev, p.since_td);
	resp = sync_build(c->ctx, dev, &p, &has_data);
	if (has_data || !p.has_since || p.timeout_ms == 0 || p.is_full_state) {
		creq_reply_buf(c, 200, resp);
		goto out;
	}
	evbuffer_free(resp);
	longpoll_add(c, &p);
	p.filter = NULL; /* the waiter has it now */
out:
	json_object_put(p.filter);
	evhttp_clear_headers(&q);
}
