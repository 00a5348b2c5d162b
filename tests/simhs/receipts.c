/*
 * receipts.c: read receipts as Synapse keeps them: one per user, type
 * (m.read, m.read.private) and thread, never moving back to an older
 * event; m.fully_read is room account data instead. /sync serves them
 * as one m.receipt event per room, {event_id: {type: {user: {ts}}}},
 * with private receipts only in their owner's copy. Both the admin call
 * and POST /rooms/{roomId}/receipt/{type}/{eventId} end up here.
 */
#include <stdlib.h>
#include <string.h>

#include "simhs.h"

static bool
thread_eq(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

/* The m.fully_read marker: room account data, forward only. */
static int
fully_read_set(struct simhs *ctx, struct room *r, struct user *u,
               struct revent *e)
{
	struct json_object *c;
	struct acct_data *a;
	struct revent *old;
	size_t i;

	for (i = 0; i < u->account_data.n; i++) {
		a = u->account_data.v[i];
		if (a->room_id == NULL || strcmp(a->room_id, r->room_id) != 0 ||
		    strcmp(a->type, "m.fully_read") != 0)
			continue;
		old = room_find_event(r, json_str(a->content, "event_id")
		                             ? json_str(a->content, "event_id")
		                             : "");
		if (old != NULL && old->idx >= e->idx)
			return 0;
	}
	c = json_object_new_object();
	json_add_str(c, "event_id", e->event_id);
	acct_set(ctx, u, r->room_id, "m.fully_read", c);
	json_object_put(c);
	return 0;
}

/*
 * Move u's receipt of this type (and thread) to event_id. Returns -1 if
 * the event is not in the room. An older event than the current receipt
 * is accepted and ignored, as Synapse does.
 */
int
receipt_set(struct simhs *ctx, struct room *r, struct user *u, const char *type,
            const char *event_id, const char *thread_id)
{
	struct receipt *rc = NULL;
	struct revent *e;
	size_t i;

	if ((e = room_find_event(r, event_id)) == NULL)
		return -1;
	if (strcmp(type, "m.fully_read") == 0)
		return fully_read_set(ctx, r, u, e);
	for (i = 0; i < r->receipts.n; i++) {
		rc = r->receipts.v[i];
		if (rc->user == u && strcmp(rc->type, type) == 0 &&
		    thread_eq(rc->thread_id, thread_id))
			break;
		rc = NULL;
	}
	if (rc != NULL && rc->event->idx > e->idx)
		return 0;
	if (rc == NULL) {
		rc = xcalloc(1, sizeof(*rc));
		rc->user = u;
		rc->type = xstrdup(type);
		rc->thread_id = thread_id ? xstrdup(thread_id) : NULL;
		vec_push(&r->receipts, rc);
	}
	rc->event = e;
	rc->ts = now_ms();
	rc->pos = r->max_pos = ++ctx->pos;
	room_notify(ctx, r);
	return 0;
}

void
receipt_free(void *p)
{
	struct receipt *rc = p;

	free(rc->type);
	free(rc->thread_id);
	free(rc);
}

/* Index after u's newest receipt of either read type (0 if none). */
size_t
receipt_read_upto(struct room *r, struct user *u)
{
	struct receipt *rc;
	size_t i, upto = 0;

	for (i = 0; i < r->receipts.n; i++) {
		rc = r->receipts.v[i];
		if (rc->user == u && rc->thread_id == NULL &&
		    rc->event->idx + 1 > upto)
			upto = rc->event->idx + 1;
	}
	return upto;
}

static void
receipt_add(struct json_object *content, struct receipt *rc)
{
	struct json_object *byev, *bytype, *who;

	if (!json_object_object_get_ex(content, rc->event->event_id, &byev)) {
		byev = json_object_new_object();
		json_object_object_add(content, rc->event->event_id, byev);
	}
	if (!json_object_object_get_ex(byev, rc->type, &bytype)) {
		bytype = json_object_new_object();
		json_object_object_add(byev, rc->type, bytype);
	}
	who = json_object_new_object();
	json_add_int(who, "ts", rc->ts);
	if (rc->thread_id != NULL)
		json_add_str(who, "thread_id", rc->thread_id);
	json_object_object_add(bytype, rc->user->user_id, who);
}

/*
 * The m.receipt event viewer sees for receipts after since (all when
 * !has_since), or NULL when there are none.
 */
struct json_object *
receipts_json(struct room *r, struct user *viewer, bool has_since,
              uint64_t since)
{
	struct json_object *content = NULL, *ev;
	struct receipt *rc;
	size_t i;

	for (i = 0; i < r->receipts.n; i++) {
		rc = r->receipts.v[i];
		if (has_since && rc->pos <= since)
			continue;
		if (strcmp(rc->type, "m.read.private") == 0 &&
		    rc->user != viewer)
			continue;
		if (content == NULL)
			content = json_object_new_object();
		receipt_add(content, rc);
	}
	if (content == NULL)
		return NULL;
	ev = json_object_new_object();
	json_object_object_add(ev, "content", content);
	json_add_str(ev, "type", "m.receipt");
	return ev;
}

static bool
receipt_type_known(const char *t)
{
	return strcmp(t, "m.read") == 0 || strcmp(t, "m.read.private") == 0 ||
	       strcmp(t, "m.fully_read") == 0;
}

/* The room if the caller is joined to it; else NULL after a 403. */
static struct room *
joined_room(struct creq *c, const char *room_id)
{
	const char *uid = c->tok->device->user->user_id;
	struct room *r = room_get(c->ctx, room_id);

	if (r != NULL &&
	    strcmp(event_membership(room_state_get(r, "m.room.member", uid)),
	           "join") == 0)
		return r;
	creq_error(c, 403, "M_FORBIDDEN", "User not in room");
	return NULL;
}

/* Split "rooms/<room>/receipt/<type>/<event>" into its three parts. */
static int
receipt_path(const char *path, char **room, char **type, char **event)
{
	const char *p = path + strlen("rooms/"), *q, *t;

	q = strchr(p, '/');
	t = q != NULL ? strchr(q + strlen("/receipt/"), '/') : NULL;
	if (q == NULL || t == NULL)
		return -1;
	*room = xasprintf("%.*s", (int)(q - p), p);
	q += strlen("/receipt/");
	*type = xasprintf("%.*s", (int)(t - q), q);
	*event = xstrdup(t + 1);
	return 0;
}

/* Checks the body; NULL when fine, else the message (errcode via *ec). */
static const char *
receipt_body_check(struct json_object *body, const char *type,
                   const char **thread, const char **ec)
{
	struct json_object *v;

	*ec = "M_UNKNOWN";
	*thread = NULL;
	if (body == NULL || !json_object_is_type(body, json_type_object)) {
		*ec = "M_NOT_JSON";
		return "Content not JSON.";
	}
	if (json_object_object_get_ex(body, "thread_id", &v)) {
		if (!json_object_is_type(v, json_type_string) ||
		    json_object_get_string_len(v) == 0)
			return "thread_id field must be a non-empty string";
		if (strcmp(type, "m.fully_read") == 0)
			return "thread_id is not compatible with m.fully_read "
			       "receipts.";
		*thread = json_object_get_string(v);
	}
	if (!receipt_type_known(type))
		return "Receipt type must be m.read, m.read.private, "
		       "m.fully_read";
	return NULL;
}

/* POST /rooms/{roomId}/receipt/{receiptType}/{eventId} -> {} */
void
receipts_handle(struct creq *c)
{
	struct user *u = c->tok->device->user;
	char *room_id = NULL, *type = NULL, *event_id = NULL;
	const char *thread, *err, *ec;
	struct json_object *body;
	struct room *r;

	body = creq_body_parse(c);
	if (receipt_path(c->path, &room_id, &type, &event_id) < 0 ||
	    room_id[0] != '!' || event_id[0] != '$') {
		creq_error(c, 400, "M_INVALID_PARAM",
		           "A valid room ID and event ID must be specified");
		goto out;
	}
	if ((err = receipt_body_check(body, type, &thread, &ec)) != NULL) {
		creq_error(c, 400, ec, err);
		goto out;
	}
	if ((r = joined_room(c, room_id)) == NULL)
		goto out;
	if (receipt_set(c->ctx, r, u, type, event_id, thread) < 0) {
		creq_error(c, 404, "M_NOT_FOUND", "Event not found");
		goto out;
	}
	creq_reply(c, 200, json_object_new_object());
out:
	json_object_put(body);
	free(room_id);
	free(type);
	free(event_id);
}

/*
 * POST /rooms/{roomId}/read_markers {"m.fully_read"?, "m.read"?,
 * "m.read.private"?} -> {}. Unknown keys are ignored, as in Synapse.
 */
void
receipts_markers_handle(struct creq *c)
{
	static const char *types[] = {"m.fully_read", "m.read",
	                              "m.read.private"};
	const char *p = c->path + strlen("rooms/"), *eid;
	struct user *u = c->tok->device->user;
	struct json_object *body;
	struct room *r;
	char *room_id;
	size_t i;

	room_id = xasprintf("%.*s", (int)strcspn(p, "/"), p);
	if ((body = creq_body_object(c)) == NULL)
		goto out;
	if ((r = joined_room(c, room_id)) == NULL)
		goto out;
	for (i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if ((eid = json_str(body, types[i])) != NULL &&
		    room_find_event(r, eid) == NULL) {
			creq_error(c, 404, "M_NOT_FOUND", "Event not found");
			goto out;
		}
	for (i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if ((eid = json_str(body, types[i])) != NULL &&
		    eid[0] != '\0' &&
		    receipt_set(c->ctx, r, u, types[i], eid, NULL) < 0)
			break;
	creq_reply(c, 200, json_object_new_object());
out:
	json_object_put(body);
	free(room_id);
}
