/*
 * client_x.c: the client-server calls a proxy passes through untouched,
 * answered the way Synapse does, so the api's pass-through and a real
 * client SDK (matrix-js-sdk) can be tested end to end: /login with
 * m.login.password against passwords set by the admin, /logout and
 * /logout/all, /pushrules/, /capabilities and
 * PUT /rooms/{id}/send/{type}/{txn} (stored as a timeline event, so it
 * flows back through the poller), and a client well-known the admin
 * sets. http.c hands us every request first;
 * we answer those we own and return false for the rest.
 */
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>

#include "simhs.h"

/* The caller's token, checked like creq_dispatch does, or NULL (replied). */
struct token *
client_x_auth(struct simhs *ctx, struct evhttp_request *req, const char *query)
{
	char *s = token_from_request(req, query);
	struct token *t = s != NULL ? token_get(ctx, s) : NULL;

	if (s == NULL)
		http_reply_error(req, 401, "M_MISSING_TOKEN",
		                 "Missing access token");
	else if (t == NULL || t->is_revoked) {
		http_reply_json(req, 401,
		                http_token_error(t != NULL && t->is_soft_logout,
		                                 t != NULL && t->is_locked));
		t = NULL;
	}
	free(s);
	return t;
}

/* The request body as a JSON object, or NULL (400 M_NOT_JSON sent). */
static struct json_object *
body_object(struct evhttp_request *req)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	struct json_object *o;

	o = json_parse((const char *)evbuffer_pullup(in, -1), len);
	if (o == NULL || !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		http_reply_error(req, 400, "M_NOT_JSON", "Content not JSON.");
		return NULL;
	}
	return o;
}

static void
maps_init(struct simhs *ctx)
{
	if (ctx->x_passwords.nbuckets == 0)
		map_init(&ctx->x_passwords);
	if (ctx->x_txns.nbuckets == 0)
		map_init(&ctx->x_txns);
}

/* POST /_simhs/password {"user_id"|"localpart", "password"} */
static void
password_set(struct simhs *ctx, struct evhttp_request *req)
{
	struct json_object *b = body_object(req);
	const char *pw;
	char *uid = NULL;

	if (b == NULL)
		return;
	pw = json_str(b, "password");
	if (pw == NULL || (uid = user_id_normalize(ctx, b)) == NULL) {
		http_reply_error(req, 400, "M_MISSING_PARAM",
		                 "user_id and password needed");
		goto out;
	}
	user_get_or_create(ctx, uid);
	free(map_get(&ctx->x_passwords, uid));
	map_put(&ctx->x_passwords, uid, xstrdup(pw));
	http_reply_json(req, 200, json_object_new_object());
out:
	free(uid);
	json_object_put(b);
}

/*
 * {"client": {...}}: served at /.well-known/matrix/client as it is, as
 * a homeserver that serves its own does; null or absent: none (404).
 */
static void
wellknown_set(struct simhs *ctx, struct evhttp_request *req)
{
	struct json_object *b = body_object(req), *wk;

	if (b == NULL)
		return;
	wk = json_get(b, "client", json_type_object);
	json_object_put(ctx->x_wellknown);
	ctx->x_wellknown = wk != NULL ? json_object_get(wk) : NULL;
	http_reply_json(req, 200, json_object_new_object());
	json_object_put(b);
}

/* "alice" or "@alice:server" from the identifier (or the legacy "user"). */
static char *
login_user_id(struct simhs *ctx, struct json_object *b)
{
	struct json_object *id = json_get(b, "identifier", json_type_object);
	const char *u = json_str(b, "user");

	if (id != NULL) {
		const char *type = json_str(id, "type");

		if (type == NULL || strcmp(type, "m.id.user") != 0)
			return NULL;
		u = json_str(id, "user");
	}
	if (u == NULL || *u == '\0')
		return NULL;
	if (u[0] == '@')
		return xstrdup(u);
	return xasprintf("@%s:%s", u, ctx->server_name);
}

static void
login_post(struct simhs *ctx, struct evhttp_request *req)
{
	struct json_object *b = body_object(req), *o;
	const char *type, *pw, *want, *did;
	struct device *d;
	struct token *t;
	char *uid = NULL;

	if (b == NULL)
		return;
	type = json_str(b, "type");
	if (type == NULL || strcmp(type, "m.login.password") != 0) {
		http_reply_error(req, 400, "M_UNKNOWN", "Unknown login type");
		goto out;
	}
	pw = json_str(b, "password");
	if (pw == NULL || (uid = login_user_id(ctx, b)) == NULL) {
		http_reply_error(req, 400, "M_MISSING_PARAM",
		                 "Missing parameters");
		goto out;
	}
	want = map_get(&ctx->x_passwords, uid);
	if (want == NULL || strcmp(want, pw) != 0 ||
	    user_get(ctx, uid) == NULL) {
		http_reply_error(req, 403, "M_FORBIDDEN",
		                 "Invalid username or password");
		goto out;
	}
	did = json_str(b, "device_id");
	d = device_get_or_create(user_get(ctx, uid), did);
	t = token_new(ctx, d, NULL);
	o = json_object_new_object();
	json_add_str(o, "user_id", uid);
	json_add_str(o, "access_token", t->token);
	json_add_str(o, "device_id", d->device_id);
	json_add_str(o, "home_server", ctx->server_name);
	http_reply_json(req, 200, o);
out:
	free(uid);
	json_object_put(b);
}

static void
login_get(struct evhttp_request *req)
{
	struct json_object *o = json_object_new_object();
	struct json_object *flows = json_object_new_array();
	struct json_object *f = json_object_new_object();

	json_add_str(f, "type", "m.login.password");
	json_object_array_add(flows, f);
	json_object_object_add(o, "flows", flows);
	http_reply_json(req, 200, o);
}

/* Synapse deletes the device's tokens; one token (or all of the user's). */
static void
logout(struct simhs *ctx, struct evhttp_request *req, struct token *t,
       bool is_all)
{
	struct user *u = t->device->user;

	for (size_t i = 0; i < ctx->token_list.n; i++) {
		struct token *o = ctx->token_list.v[i];

		if (o == t || (is_all && o->device->user == u))
			o->is_revoked = true;
	}
	http_reply_json(req, 200, json_object_new_object());
}

static struct json_object *
rule(const char *id, bool is_default, bool is_enabled)
{
	struct json_object *r = json_object_new_object();

	json_add_str(r, "rule_id", id);
	json_object_object_add(r, "default",
	                       json_object_new_boolean(is_default));
	json_object_object_add(r, "enabled",
	                       json_object_new_boolean(is_enabled));
	json_object_object_add(r, "conditions", json_object_new_array());
	json_object_object_add(r, "actions", json_object_new_array());
	return r;
}

/* A small default ruleset in Synapse's shape: every kind present. */
static void
pushrules(struct evhttp_request *req)
{
	static const char *kinds[] = {"override", "content", "room", "sender",
	                              "underride"};
	struct json_object *g = json_object_new_object(), *o;

	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		struct json_object *a = json_object_new_array();

		if (i == 0)
			json_object_array_add(
			    a, rule(".m.rule.master", true, false));
		json_object_object_add(g, kinds[i], a);
	}
	o = json_object_new_object();
	json_object_object_add(o, "global", g);
	http_reply_json(req, 200, o);
}

static void
capabilities(struct evhttp_request *req)
{
	struct json_object *c = json_object_new_object(), *v, *avail, *o;
	struct json_object *pw = json_object_new_object();

	json_object_object_add(pw, "enabled", json_object_new_boolean(1));
	json_object_object_add(c, "m.change_password", pw);
	v = json_object_new_object();
	avail = json_object_new_object();
	json_add_str(avail, "10", "stable");
	json_add_str(avail, "11", "stable");
	json_add_str(v, "default", "10");
	json_object_object_add(v, "available", avail);
	json_object_object_add(c, "m.room_versions", v);
	o = json_object_new_object();
	json_object_object_add(o, "capabilities", c);
	http_reply_json(req, 200, o);
}

/* PUT rooms/{roomId}/send/{type}/{txnId} (rest is after "rooms/"). */
static void
room_send(struct simhs *ctx, struct evhttp_request *req, struct token *t,
          const char *rest)
{
	const char *uid = t->device->user->user_id, *m;
	char *s = xstrdup(rest), *room_id = s, *type, *txn, *key = NULL;
	struct json_object *b = NULL, *o;
	struct revent *e, *mem;
	struct room *r;
	const char *seen;

	type = strstr(s, "/send/");
	if (type == NULL || (txn = strchr(type + 6, '/')) == NULL ||
	    txn[1] == '\0' || strchr(txn + 1, '/') != NULL) {
		http_reply_error(req, 404, "M_UNRECOGNIZED",
		                 "Unrecognized request");
		goto out;
	}
	*type = '\0';
	type += 6;
	*txn++ = '\0';
	key = xasprintf("%s\x1f%s", t->token, txn);
	if ((seen = map_get(&ctx->x_txns, key)) != NULL) {
		o = json_object_new_object();
		json_add_str(o, "event_id", seen);
		http_reply_json(req, 200, o);
		goto out;
	}
	r = room_get(ctx, room_id);
	mem = r != NULL ? room_state_get(r, "m.room.member", uid) : NULL;
	m = mem != NULL ? event_membership(mem) : NULL;
	if (m == NULL || strcmp(m, "join") != 0) {
		http_reply_error(req, 403, "M_FORBIDDEN", "User not in room");
		goto out;
	}
	if ((b = body_object(req)) == NULL)
		goto out;
	e = room_append(ctx, r, uid, type, NULL, b);
	e->txn_id = xstrdup(txn);
	e->txn_device = xstrdup(t->device->device_id);
	map_put(&ctx->x_txns, key, xstrdup(e->event_id));
	o = json_object_new_object();
	json_add_str(o, "event_id", e->event_id);
	http_reply_json(req, 200, o);
out:
	json_object_put(b);
	free(key);
	free(s);
}

static bool
is_method(struct evhttp_request *req, enum evhttp_cmd_type m)
{
	return evhttp_request_get_command(req) == m;
}

/* Calls under /_matrix/client/{v3,r0}/ (rest after the prefix). */
static bool
client_call(struct simhs *ctx, struct evhttp_request *req, const char *rest,
            const char *query)
{
	bool is_get = is_method(req, EVHTTP_REQ_GET);
	bool is_post = is_method(req, EVHTTP_REQ_POST);
	struct token *t;

	if (strcmp(rest, "login") == 0 && (is_get || is_post)) {
		if (is_get)
			login_get(req);
		else
			login_post(ctx, req);
		return true;
	}
	if (!((is_post && (strcmp(rest, "logout") == 0 ||
	                   strcmp(rest, "logout/all") == 0)) ||
	      (is_get && (strcmp(rest, "pushrules/") == 0 ||
	                  strcmp(rest, "capabilities") == 0)) ||
	      (is_method(req, EVHTTP_REQ_PUT) &&
	       strncmp(rest, "rooms/", 6) == 0 && strstr(rest, "/send/"))))
		return false;
	if ((t = client_x_auth(ctx, req, query)) == NULL)
		return true;
	if (strncmp(rest, "logout", 6) == 0)
		logout(ctx, req, t, strcmp(rest, "logout/all") == 0);
	else if (strcmp(rest, "pushrules/") == 0)
		pushrules(req);
	else if (strcmp(rest, "capabilities") == 0)
		capabilities(req);
	else
		room_send(ctx, req, t, rest + 6);
	return true;
}

bool
client_x_dispatch(struct simhs *ctx, struct evhttp_request *req,
                  const char *path, const char *query)
{
	maps_init(ctx);
	if (strcmp(path, "/_simhs/password") == 0 &&
	    is_method(req, EVHTTP_REQ_POST)) {
		password_set(ctx, req);
		return true;
	}
	if (strcmp(path, "/_simhs/wellknown") == 0 &&
	    is_method(req, EVHTTP_REQ_POST)) {
		wellknown_set(ctx, req);
		return true;
	}
	if (strcmp(path, "/.well-known/matrix/client") == 0 &&
	    ctx->x_wellknown != NULL) {
		http_reply_json(req, 200, json_object_get(ctx->x_wellknown));
		return true;
	}
	if (strncmp(path, "/_matrix/client/v3/", 19) == 0 ||
	    strncmp(path, "/_matrix/client/r0/", 19) == 0)
		return client_call(ctx, req, path + 19, query);
	return media_dispatch(ctx, req, path, query);
}

void
client_x_shutdown(struct simhs *ctx)
{
	if (ctx->x_passwords.nbuckets != 0)
		map_clear(&ctx->x_passwords, free);
	if (ctx->x_txns.nbuckets != 0)
		map_clear(&ctx->x_txns, free);
	media_shutdown(ctx);
	json_object_put(ctx->x_wellknown);
	ctx->x_wellknown = NULL;
}
