/*
 * admin_rooms.c: /_simhs/rooms... — create rooms the way Synapse's
 * presets do, change memberships, send events (one or a batch), typing,
 * receipts, and read a room back for comparison. Membership rules are
 * the ones a client would hit (bans, not-in-room, sender must be
 * joined); join rules are not enforced, so tests may join directly.
 */
#include <stdlib.h>
#include <string.h>

#include "simhs.h"

static struct json_object *
content_membership(const char *membership, const char *displayname,
                   const char *reason)
{
	struct json_object *c = json_object_new_object();

	json_add_str(c, "membership", membership);
	if (displayname != NULL)
		json_add_str(c, "displayname", displayname);
	if (reason != NULL)
		json_add_str(c, "reason", reason);
	return c;
}

static char *
localpart(const char *user_id)
{
	char *s = xstrdup(user_id + 1);

	s[strcspn(s, ":")] = '\0';
	return s;
}

static void
append_owned(struct simhs *ctx, struct room *r, const char *sender,
             const char *type, const char *sk, struct json_object *content)
{
	room_append(ctx, r, sender, type, sk, content);
	json_object_put(content);
}

static struct json_object *
power_levels(const char *creator)
{
	static const char *ev100[] = {
	    "m.room.power_levels", "m.room.history_visibility",
	    "m.room.tombstone", "m.room.server_acl", "m.room.encryption"};
	struct json_object *c = json_object_new_object(), *users, *events;
	size_t i;

	users = json_object_new_object();
	json_add_int(users, creator, 100);
	events = json_object_new_object();
	for (i = 0; i < sizeof(ev100) / sizeof(ev100[0]); i++)
		json_add_int(events, ev100[i], 100);
	json_add_int(events, "m.room.name", 50);
	json_add_int(events, "m.room.avatar", 50);
	json_add_int(events, "m.room.canonical_alias", 50);
	json_object_object_add(c, "users", users);
	json_add_int(c, "users_default", 0);
	json_object_object_add(c, "events", events);
	json_add_int(c, "events_default", 0);
	json_add_int(c, "state_default", 50);
	json_add_int(c, "ban", 50);
	json_add_int(c, "kick", 50);
	json_add_int(c, "redact", 50);
	json_add_int(c, "invite", 0);
	json_add_int(c, "historical", 100);
	return c;
}

/* The events Synapse's createRoom makes for private_chat / public_chat. */
struct room *
admin_room_create(struct simhs *ctx, struct user *creator, const char *room_id,
                  const char *name, bool is_public, bool is_direct)
{
	const char *uid = creator->user_id;
	struct json_object *c;
	struct room *r;
	char *lp = localpart(uid);

	r = room_new(ctx, room_id);
	r->is_direct = is_direct;
	c = json_object_new_object();
	json_add_str(c, "creator", uid);
	json_add_str(c, "room_version", "10");
	append_owned(ctx, r, uid, "m.room.create", "", c);
	append_owned(ctx, r, uid, "m.room.member", uid,
	             content_membership("join", lp, NULL));
	append_owned(ctx, r, uid, "m.room.power_levels", "", power_levels(uid));
	c = json_object_new_object();
	json_add_str(c, "join_rule", is_public ? "public" : "invite");
	append_owned(ctx, r, uid, "m.room.join_rules", "", c);
	c = json_object_new_object();
	json_add_str(c, "history_visibility", "shared");
	append_owned(ctx, r, uid, "m.room.history_visibility", "", c);
	if (!is_public) {
		c = json_object_new_object();
		json_add_str(c, "guest_access", "can_join");
		append_owned(ctx, r, uid, "m.room.guest_access", "", c);
	}
	if (name != NULL) {
		c = json_object_new_object();
		json_add_str(c, "name", name);
		append_owned(ctx, r, uid, "m.room.name", "", c);
	}
	free(lp);
	return r;
}

static bool
is_member(struct room *r, struct user *u, const char *m)
{
	return strcmp(event_membership(
	                  room_state_get(r, "m.room.member", u->user_id)),
	              m) == 0;
}

/*
 * Apply a membership action; text is the displayname (join) or reason
 * (kick, ban). Returns the member event, or NULL with *err set.
 */
struct revent *
admin_membership(struct simhs *ctx, struct room *r, const char *action,
                 struct user *sender, struct user *target, const char *text,
                 const char **err)
{
	const char *cur = event_membership(
	    room_state_get(r, "m.room.member", target->user_id));
	const char *sid = sender->user_id, *tid = target->user_id;
	struct json_object *c;
	struct revent *e;
	char *lp = localpart(tid);

	*err = NULL;
	if (strcmp(action, "join") == 0) {
		if (strcmp(cur, "ban") == 0)
			*err = "User is banned from this room";
		else if (strcmp(cur, "join") == 0) {
			free(lp);
			return room_state_get(r, "m.room.member", tid);
		}
		c = content_membership("join", text ? text : lp, NULL);
	} else if (strcmp(action, "leave") == 0) {
		if (strcmp(cur, "join") != 0 && strcmp(cur, "invite") != 0 &&
		    strcmp(cur, "knock") != 0)
			*err = "User is not in the room";
		c = content_membership("leave", NULL, NULL);
	} else if (strcmp(action, "invite") == 0) {
		if (strcmp(cur, "join") == 0 || strcmp(cur, "ban") == 0)
			*err = "User is already joined or banned";
		c = content_membership("invite", lp, NULL);
		if (r->is_direct)
			json_object_object_add(c, "is_direct",
			                       json_object_new_boolean(1));
	} else if (strcmp(action, "kick") == 0) {
		if (strcmp(cur, "join") != 0 && strcmp(cur, "invite") != 0)
			*err = "The target user is not in the room";
		c = content_membership("leave", NULL, text);
	} else {
		c = content_membership("ban", NULL, text);
	}
	if (*err == NULL && strcmp(action, "join") != 0 &&
	    strcmp(action, "leave") != 0 && !is_member(r, sender, "join"))
		*err = "Sender is not in the room";
	e = NULL;
	if (*err == NULL)
		e = room_append(ctx, r,
		                strcmp(action, "join") == 0 ||
		                        strcmp(action, "leave") == 0
		                    ? tid
		                    : sid,
		                "m.room.member", tid, c);
	json_object_put(c);
	free(lp);
	return e;
}

static void
reply_event(struct evhttp_request *req, struct revent *e)
{
	struct json_object *o = json_object_new_object();

	json_add_str(o, "event_id", e->event_id);
	json_add_int(o, "pos", (int64_t)e->pos);
	http_reply_json(req, 200, o);
}

/*
 * The optional parts of createRoom: room_type goes into m.room.create
 * (spaces are "m.space"), encrypted adds m.room.encryption with
 * Synapse's default algorithm, topic adds m.room.topic. The create event
 * has just been appended in this same callback and nobody has seen it,
 * so setting its type here is as if createRoom had.
 */
static void
create_extras(struct simhs *ctx, struct room *r, struct user *u,
              struct json_object *b)
{
	struct json_object *enc = json_get(b, "encrypted", json_type_boolean);
	const char *type = json_str(b, "room_type"), *topic;
	struct revent *create = r->events.v[0];
	struct json_object *c;

	if (type != NULL)
		json_add_str(create->content, "type", type);
	if ((type = json_str(b, "room_version")) != NULL)
		json_add_str(create->content, "room_version", type);
	if (enc != NULL && json_object_get_boolean(enc)) {
		c = json_object_new_object();
		json_add_str(c, "algorithm", "m.megolm.v1.aes-sha2");
		append_owned(ctx, r, u->user_id, "m.room.encryption", "", c);
	}
	if ((topic = json_str(b, "topic")) != NULL) {
		c = json_object_new_object();
		json_add_str(c, "topic", topic);
		append_owned(ctx, r, u->user_id, "m.room.topic", "", c);
	}
}

static bool
create_extras_ok(struct json_object *b)
{
	struct json_object *v;

	if (json_object_object_get_ex(b, "room_type", &v) &&
	    !json_object_is_type(v, json_type_string))
		return false;
	if (json_object_object_get_ex(b, "topic", &v) &&
	    !json_object_is_type(v, json_type_string))
		return false;
	if (json_object_object_get_ex(b, "room_version", &v) &&
	    !json_object_is_type(v, json_type_string))
		return false;
	return !json_object_object_get_ex(b, "encrypted", &v) ||
	       json_object_is_type(v, json_type_boolean);
}

static void
ar_create(struct simhs *ctx, struct evhttp_request *req, struct json_object *b)
{
	const char *preset = json_str(b, "preset"),
	           *id = json_str(b, "room_id");
	struct json_object *dir = json_get(b, "is_direct", json_type_boolean);
	struct json_object *o;
	struct user *u;
	struct room *r;

	if (preset != NULL && strcmp(preset, "private_chat") != 0 &&
	    strcmp(preset, "public_chat") != 0 &&
	    strcmp(preset, "trusted_private_chat") != 0) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "unknown preset");
		return;
	}
	if (id != NULL && (id[0] != '!' || strchr(id, ':') == NULL ||
	                   strlen(id) > 255 || strchr(id, '/') != NULL)) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "bad room_id");
		return;
	}
	if (id != NULL && room_get(ctx, id) != NULL) {
		http_reply_error(req, 400, "M_ROOM_IN_USE", "room_id taken");
		return;
	}
	if (!create_extras_ok(b)) {
		http_reply_error(req, 400, "M_INVALID_PARAM",
		                 "room_type, topic and room_version are strings, "
		                 "encrypted a boolean");
		return;
	}
	if ((u = admin_user_arg(ctx, req, b, "creator", true)) == NULL)
		return;
	r = admin_room_create(ctx, u, id, json_str(b, "name"),
	                      preset != NULL &&
	                          strcmp(preset, "public_chat") == 0,
	                      dir != NULL && json_object_get_boolean(dir));
	create_extras(ctx, r, u, b);
	o = json_object_new_object();
	json_add_str(o, "room_id", r->room_id);
	http_reply_json(req, 200, o);
}

static void
ar_member(struct simhs *ctx, struct evhttp_request *req, struct room *r,
          const char *action, struct json_object *b)
{
	bool is_self =
	    strcmp(action, "join") == 0 || strcmp(action, "leave") == 0;
	struct user *target, *sender;
	const char *err;
	struct revent *e;
	struct json_object *hide;

	if ((target = admin_user_arg(ctx, req, b, "user_id", true)) == NULL)
		return;
	sender = target;
	if (!is_self &&
	    (sender = admin_user_arg(ctx, req, b, "sender", false)) == NULL)
		return;
	e = admin_membership(
	    ctx, r, action, sender, target,
	    json_str(b, strcmp(action, "join") == 0 ? "displayname" : "reason"),
	    &err);
	if (e == NULL) {
		http_reply_error(req, 403, "M_FORBIDDEN", err);
		return;
	}
	hide = json_get(b, "sync_without_event", json_type_boolean);
	if (strcmp(action, "leave") == 0 && hide != NULL)
		e->is_sync_hidden = json_object_get_boolean(hide);
	reply_event(req, e);
}

/*
 * Validate one {sender, type, content, state_key?}: NULL when fine, else
 * the error, with *code 400 (shape) or 403 (sender not joined).
 */
static const char *
send_check(struct simhs *ctx, struct room *r, struct json_object *ev, int *code)
{
	const char *sender = json_str(ev, "sender");
	struct json_object *sk;
	struct user *u;

	*code = 400;
	if (!json_object_is_type(ev, json_type_object) || sender == NULL ||
	    json_str(ev, "type") == NULL ||
	    json_get(ev, "content", json_type_object) == NULL)
		return "need sender, type and content (object)";
	if (json_object_object_get_ex(ev, "state_key", &sk) &&
	    !json_object_is_type(sk, json_type_string))
		return "state_key must be a string";
	if (json_str(ev, "state_key") != NULL &&
	    strcmp(json_str(ev, "type"), "m.room.member") == 0)
		return NULL;
	*code = 403;
	if ((u = user_get(ctx, sender)) == NULL || !is_member(r, u, "join"))
		return "sender is not joined to the room";
	return NULL;
}

static struct revent *
send_one(struct simhs *ctx, struct room *r, struct json_object *ev)
{
	return room_append(ctx, r, json_str(ev, "sender"), json_str(ev, "type"),
	                   json_str(ev, "state_key"),
	                   json_get(ev, "content", json_type_object));
}

static void
ar_send(struct simhs *ctx, struct evhttp_request *req, struct room *r,
        struct json_object *b)
{
	const char *err;
	int code;

	if ((err = send_check(ctx, r, b, &code)) != NULL) {
		http_reply_error(
		    req, code, code == 400 ? "M_BAD_JSON" : "M_FORBIDDEN", err);
		return;
	}
	reply_event(req, send_one(ctx, r, b));
}

/* Checked one by one as applied: a state event may change who can send. */
static void
ar_send_batch(struct simhs *ctx, struct evhttp_request *req, struct room *r,
              struct json_object *b)
{
	struct json_object *evs = json_get(b, "events", json_type_array);
	struct json_object *ids, *o;
	const char *err;
	struct revent *e;
	size_t i;
	int code;

	if (evs == NULL) {
		http_reply_error(req, 400, "M_MISSING_PARAM", "events");
		return;
	}
	ids = json_object_new_array();
	for (i = 0; i < json_object_array_length(evs); i++) {
		o = json_object_array_get_idx(evs, i);
		if ((err = send_check(ctx, r, o, &code)) != NULL) {
			json_object_put(ids);
			http_reply_error(
			    req, code,
			    code == 400 ? "M_BAD_JSON" : "M_FORBIDDEN", err);
			return;
		}
		e = send_one(ctx, r, o);
		json_object_array_add(ids, json_object_new_string(e->event_id));
	}
	o = json_object_new_object();
	json_object_object_add(o, "event_ids", ids);
	json_add_int(o, "pos", (int64_t)ctx->pos);
	http_reply_json(req, 200, o);
}

static void
ar_typing(struct simhs *ctx, struct evhttp_request *req, struct room *r,
          struct json_object *b)
{
	struct json_object *ids = json_get(b, "user_ids", json_type_array), *o;

	if (ids == NULL) {
		http_reply_error(req, 400, "M_MISSING_PARAM", "user_ids");
		return;
	}
	room_set_typing(ctx, r, ids);
	o = json_object_new_object();
	json_add_int(o, "pos", (int64_t)ctx->pos);
	http_reply_json(req, 200, o);
}

static void
ar_receipt(struct simhs *ctx, struct evhttp_request *req, struct room *r,
           struct json_object *b)
{
	const char *eid = json_str(b, "event_id");
	const char *type = json_str(b, "receipt_type");
	struct user *u;

	if (eid == NULL) {
		http_reply_error(req, 400, "M_MISSING_PARAM", "event_id");
		return;
	}
	if (type != NULL && strcmp(type, "m.read") != 0 &&
	    strcmp(type, "m.read.private") != 0 &&
	    strcmp(type, "m.fully_read") != 0) {
		http_reply_error(req, 400, "M_INVALID_PARAM",
		                 "receipt_type: m.read, m.read.private or "
		                 "m.fully_read");
		return;
	}
	if ((u = admin_user_arg(ctx, req, b, "user_id", false)) == NULL)
		return;
	if (receipt_set(ctx, r, u, type ? type : "m.read", eid,
	                json_str(b, "thread_id")) < 0) {
		http_reply_error(req, 404, "M_NOT_FOUND", "unknown event");
		return;
	}
	admin_reply_ok(req);
}

/* GET events: the whole timeline; GET state: the current state. */
static void
ar_read(struct simhs *ctx, struct evhttp_request *req, struct room *r,
        bool is_state)
{
	struct json_object *o = json_object_new_object(), *arr, *ev;
	struct ptrvec *v, st = {0};
	int64_t now = now_ms();
	struct revent *e;
	size_t i;

	(void)ctx;
	if (is_state)
		room_state_between(r, 0, r->events.n, &st);
	v = is_state ? &st : &r->events;
	arr = json_object_new_array();
	for (i = 0; i < v->n; i++) {
		e = v->v[i];
		ev = event_to_json(e, now, true);
		json_add_int(ev, "pos", (int64_t)e->pos);
		json_object_array_add(arr, ev);
	}
	vec_free(&st, NULL);
	json_object_object_add(o, "events", arr);
	http_reply_json(req, 200, o);
}

static void
ar_action(struct simhs *ctx, struct evhttp_request *req, struct room *r,
          const char *action, bool is_post, struct json_object *b)
{
	static const char *members[] = {"join", "leave", "invite", "kick",
	                                "ban"};
	size_t i;

	if (!is_post &&
	    (strcmp(action, "events") == 0 || strcmp(action, "state") == 0)) {
		ar_read(ctx, req, r, strcmp(action, "state") == 0);
		return;
	}
	if (!is_post) {
		http_reply_error(req, 405, "M_UNRECOGNIZED", "use POST");
		return;
	}
	for (i = 0; i < sizeof(members) / sizeof(members[0]); i++)
		if (strcmp(action, members[i]) == 0) {
			ar_member(ctx, req, r, action, b);
			return;
		}
	if (strcmp(action, "send") == 0)
		ar_send(ctx, req, r, b);
	else if (strcmp(action, "send_batch") == 0)
		ar_send_batch(ctx, req, r, b);
	else if (strcmp(action, "typing") == 0)
		ar_typing(ctx, req, r, b);
	else if (strcmp(action, "receipt") == 0)
		ar_receipt(ctx, req, r, b);
	else
		http_reply_error(req, 404, "M_UNRECOGNIZED",
		                 "Unrecognized request");
}

/* rest is "rooms" or "rooms/<room_id>/<action>". */
void
admin_rooms_dispatch(struct simhs *ctx, struct evhttp_request *req,
                     const char *rest, struct json_object *b)
{
	bool is_post = evhttp_request_get_command(req) == EVHTTP_REQ_POST;
	const char *id = rest + 6, *slash;
	struct room *r;
	char *room_id;

	if (strcmp(rest, "rooms") == 0) {
		if (is_post)
			ar_create(ctx, req, b);
		else
			http_reply_error(req, 405, "M_UNRECOGNIZED",
			                 "use POST");
		return;
	}
	if ((slash = strchr(id, '/')) == NULL) {
		http_reply_error(req, 404, "M_UNRECOGNIZED",
		                 "Unrecognized request");
		return;
	}
	room_id = xasprintf("%.*s", (int)(slash - id), id);
	if ((r = room_get(ctx, room_id)) == NULL)
		http_reply_error(req, 404, "M_NOT_FOUND", "unknown room");
	else
		ar_action(ctx, req, r, slash + 1, is_post, b);
	free(room_id);
}
