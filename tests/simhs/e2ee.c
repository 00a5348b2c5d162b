/*
 * e2ee.c: what /sync tells a device about end-to-end encryption, the way
 * Synapse works it out. A user's device list change (a new device, new
 * device keys, or the admin call) goes on one global stream; at sync time
 * a viewer gets it in device_lists.changed if it shares a joined room
 * with that user (or is that user). Joins and leaves in the viewer's
 * rooms add users to changed and left, and left keeps only users no
 * longer sharing any room. Key counts per device come from /keys/upload
 * or the admin call.
 */
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "simhs.h"

static bool
is_joined(struct room *r, const char *user_id)
{
	return strcmp(event_membership(
	                  room_state_get(r, "m.room.member", user_id)),
	              "join") == 0;
}

/* Does viewer share a room it is joined to with user_id (now)? */
static bool
shares_room(struct user *viewer, const char *user_id)
{
	struct room *r;
	size_t i;

	if (strcmp(viewer->user_id, user_id) == 0)
		return true;
	for (i = 0; i < viewer->rooms.n; i++) {
		r = viewer->rooms.v[i];
		if (is_joined(r, viewer->user_id) && is_joined(r, user_id))
			return true;
	}
	return false;
}

/*
 * user_id's device list changed: record it and wake everyone who shares
 * a room with it, as Synapse's notify_device_update does.
 */
void
e2ee_device_changed(struct simhs *ctx, struct user *u)
{
	struct devlist_change *c;
	struct room *r;
	size_t i, j;

	c = xcalloc(1, sizeof(*c));
	c->user_id = xstrdup(u->user_id);
	c->pos = ++ctx->pos;
	vec_push(&ctx->devchanges, c);
	longpoll_touch(ctx, u);
	for (i = 0; i < u->rooms.n; i++) {
		r = u->rooms.v[i];
		for (j = 0; j < r->users.n; j++)
			longpoll_touch(ctx, r->users.v[j]);
	}
}

static void
set_add(struct json_object *set, const char *user_id)
{
	if (!json_object_object_get_ex(set, user_id, NULL))
		json_object_object_add(set, user_id, NULL);
}

/* Everyone joined to r now goes into set. */
static void
room_joined_into(struct room *r, struct json_object *set)
{
	struct user *m;
	size_t i;

	for (i = 0; i < r->users.n; i++) {
		m = r->users.v[i];
		if (is_joined(r, m->user_id))
			set_add(set, m->user_id);
	}
}

/* Membership changes in r after since_idx, sorted into the two sets. */
static void
room_member_changes(struct room *r, size_t since_idx, struct json_object *ch,
                    struct json_object *left)
{
	struct revent *e;
	const char *m;
	size_t i;

	for (i = 0; i < r->state_events.n; i++) {
		e = r->state_events.v[i];
		if (e->idx < since_idx || strcmp(e->type, "m.room.member") != 0)
			continue;
		m = event_membership(e);
		if (strcmp(m, "join") == 0 || strcmp(m, "invite") == 0 ||
		    strcmp(m, "knock") == 0)
			set_add(ch, e->state_key);
		else
			set_add(left, e->state_key);
	}
}

static void
rooms_changes(struct user *u, uint64_t since, struct json_object *ch,
              struct json_object *left)
{
	bool was, is_now;
	struct room *r;
	size_t i, si;

	for (i = 0; i < u->rooms.n; i++) {
		r = u->rooms.v[i];
		if (r->max_pos <= since)
			continue; /* nothing happened there at all */
		si = room_first_after(r, since);
		was =
		    strcmp(event_membership(room_member_at(r, u->user_id, si)),
		           "join") == 0;
		is_now = is_joined(r, u->user_id);
		if (is_now && !was)
			room_joined_into(r, ch);
		else if (is_now)
			room_member_changes(r, si, ch, left);
		else if (was)
			room_joined_into(r, left);
	}
}

static struct json_object *
set_to_array(struct json_object *set)
{
	struct json_object *arr = json_object_new_array();

	json_object_object_foreach(set, k, v)
	{
		(void)v;
		json_object_array_add(arr, json_object_new_string(k));
	}
	json_object_put(set);
	return arr;
}

/*
 * device_lists for u since `since`, or NULL when both lists are empty
 * (Synapse then leaves the key out, and an empty list within it). Explicit
 * entries queued with the admin device_lists call come first.
 */
struct json_object *
e2ee_device_lists(struct simhs *ctx, struct user *u, uint64_t since)
{
	struct json_object *ch = json_object_new_object(), *o;
	struct json_object *left = json_object_new_object(), *gone;
	struct devlist_change *c;
	size_t i;

	for (i = 0; i < u->devlists.n; i++) {
		c = u->devlists.v[i];
		if (c->pos > since)
			set_add(c->is_left ? left : ch, c->user_id);
	}
	for (i = 0; i < ctx->devchanges.n; i++) {
		c = ctx->devchanges.v[i];
		if (c->pos > since && shares_room(u, c->user_id))
			set_add(ch, c->user_id);
	}
	rooms_changes(u, since, ch, left);
	gone = json_object_new_object();
	json_object_object_foreach(left, k, v)
	{
		(void)v;
		if (!shares_room(u, k))
			set_add(gone, k);
	}
	json_object_put(left);
	if (json_object_object_length(ch) == 0 &&
	    json_object_object_length(gone) == 0) {
		json_object_put(ch);
		json_object_put(gone);
		return NULL;
	}
	/* Synapse leaves out whichever of the two is empty. */
	o = json_object_new_object();
	if (json_object_object_length(ch) > 0)
		json_object_object_add(o, "changed", set_to_array(ch));
	else
		json_object_put(ch);
	if (json_object_object_length(gone) > 0)
		json_object_object_add(o, "left", set_to_array(gone));
	else
		json_object_put(gone);
	return o;
}

/*
 * "signed_curve25519:AAAAHQ" -> counts["signed_curve25519"] += 1, once
 * per key id: Synapse stores a key id once, so a re-upload is not counted.
 */
static void
otk_count(struct device *d, struct json_object *keys)
{
	struct json_object *n;
	char *alg;

	if (d->otk_ids == NULL)
		d->otk_ids = json_object_new_object();
	json_object_object_foreach(keys, k, v)
	{
		(void)v;
		if (json_object_object_get_ex(d->otk_ids, k, NULL))
			continue;
		json_object_object_add(d->otk_ids, k, NULL);
		alg = xasprintf("%.*s", (int)strcspn(k, ":"), k);
		n = json_get(d->otk_count, alg, json_type_int);
		json_add_int(d->otk_count, alg,
		             (n ? json_object_get_int64(n) : 0) + 1);
		free(alg);
	}
}

/* New device keys are a device list change; the same ones again are not. */
static void
device_keys_set(struct simhs *ctx, struct device *d, struct json_object *dk)
{
	if (d->device_keys != NULL && json_object_equal(d->device_keys, dk))
		return;
	json_object_put(d->device_keys);
	d->device_keys = json_object_get(dk);
	e2ee_device_changed(ctx, d->user);
}

/* Fallback keys replace the unused set: one type per key uploaded. */
static void
fallback_set(struct device *d, struct json_object *keys)
{
	struct json_object *types = json_object_new_object();
	char *alg;

	json_object_object_foreach(keys, k, v)
	{
		(void)v;
		alg = xasprintf("%.*s", (int)strcspn(k, ":"), k);
		set_add(types, alg);
		free(alg);
	}
	json_object_put(d->fallback_types);
	d->fallback_types = set_to_array(types);
}

static void
keys_reply(struct creq *c, struct device *d)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "one_time_key_counts",
	                       json_object_get(d->otk_count));
	creq_reply(c, 200, o);
}

/* POST /keys/upload: count one-time keys, note fallback keys. */
void
e2ee_keys_upload_handle(struct creq *c)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(c->req);
	struct device *d = c->tok->device;
	size_t len = evbuffer_get_length(in);
	struct json_object *body, *otk, *fb, *dk;

	body = len == 0
	           ? NULL
	           : json_parse((const char *)evbuffer_pullup(in, -1), len);
	if (body == NULL || !json_object_is_type(body, json_type_object)) {
		json_object_put(body);
		creq_error(c, 400, "M_NOT_JSON", "Content not JSON.");
		return;
	}
	if ((otk = json_get(body, "one_time_keys", json_type_object)) != NULL)
		otk_count(d, otk);
	if ((fb = json_get(body, "fallback_keys", json_type_object)) != NULL ||
	    (fb = json_get(body, "org.matrix.msc2732.fallback_keys",
	                   json_type_object)) != NULL)
		fallback_set(d, fb);
	dk = json_get(body, "device_keys", json_type_object);
	if (dk != NULL && (json_str(dk, "user_id") == NULL ||
	                   strcmp(json_str(dk, "user_id"), d->user->user_id) ||
	                   json_str(dk, "device_id") == NULL ||
	                   strcmp(json_str(dk, "device_id"), d->device_id))) {
		json_object_put(body);
		creq_error(c, 400, "M_INVALID_PARAM",
		           "Provided device_id and user_id don't match the "
		           "device and user of the access token");
		return;
	}
	if (dk != NULL)
		device_keys_set(c->ctx, d, dk);
	json_object_put(body);
	keys_reply(c, d);
}
