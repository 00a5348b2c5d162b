/*
 * admin.c: the /_simhs/ control API that tests drive: users, logins,
 * tokens, to-device, account data, device lists, key counts, failure
 * injection, stats. Room calls go on to admin_rooms.c and bulk data to
 * scenario.c. Loopback only, no auth, JSON in and out; bad input gets a
 * 400 Matrix error, never a crash.
 */
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>

#include "simhs.h"

struct admin_route {
	const char *method;
	const char *path;
	void (*fn)(struct simhs *, struct evhttp_request *,
	           struct json_object *);
};

void
admin_reply_ok(struct evhttp_request *req)
{
	http_reply_json(req, 200, json_object_new_object());
}

/*
 * The user named by body[key]; with is_create, made if missing. Replies
 * with an error and returns NULL when there is none.
 */
struct user *
admin_user_arg(struct simhs *ctx, struct evhttp_request *req,
               struct json_object *body, const char *key, bool is_create)
{
	struct json_object *tmp;
	const char *id = json_str(body, key);
	struct user *u = NULL;
	char *norm;

	if (id == NULL) {
		http_reply_error(req, 400, "M_MISSING_PARAM", key);
		return NULL;
	}
	tmp = json_object_new_object();
	json_add_str(tmp, "user_id", id);
	norm = user_id_normalize(ctx, tmp);
	json_object_put(tmp);
	if (norm == NULL)
		http_reply_error(req, 400, "M_INVALID_PARAM", "bad user id");
	else if ((u = is_create ? user_get_or_create(ctx, norm)
	                        : user_get(ctx, norm)) == NULL)
		http_reply_error(req, 404, "M_NOT_FOUND", "unknown user");
	free(norm);
	return u;
}

static void
a_users(struct simhs *ctx, struct evhttp_request *req, struct json_object *b)
{
	struct json_object *o;
	struct user *u;
	char *id;

	if ((id = user_id_normalize(ctx, b)) == NULL) {
		http_reply_error(req, 400, "M_INVALID_PARAM",
		                 "need a valid user_id or localpart");
		return;
	}
	u = user_get_or_create(ctx, id);
	free(id);
	o = json_object_new_object();
	json_add_str(o, "user_id", u->user_id);
	http_reply_json(req, 200, o);
}

/*
 * Revokes t; as expired (soft_logout) when b says "soft_logout": true,
 * as its user locked (M_USER_LOCKED) when b says "locked": true.
 */
static void
revoke_token(struct token *t, struct json_object *b)
{
	struct json_object *soft =
	    json_get(b, "soft_logout", json_type_boolean);
	struct json_object *locked = json_get(b, "locked", json_type_boolean);

	t->is_revoked = true;
	t->is_soft_logout = soft != NULL && json_object_get_boolean(soft);
	t->is_locked = locked != NULL && json_object_get_boolean(locked);
}

static void
revoke_device(struct simhs *ctx, struct device *d, struct json_object *b)
{
	struct token *t;
	size_t i;

	for (i = 0; i < ctx->token_list.n; i++) {
		t = ctx->token_list.v[i];
		if (t->device == d)
			revoke_token(t, b);
	}
}

static void
a_login(struct simhs *ctx, struct evhttp_request *req, struct json_object *b)
{
	const char *dev_id = json_str(b, "device_id");
	struct json_object *o, *repl;
	struct device *d;
	bool is_new;
	struct token *t;
	struct user *u;
	char *id;

	if ((id = user_id_normalize(ctx, b)) == NULL) {
		http_reply_error(req, 400, "M_INVALID_PARAM",
		                 "need a valid user_id or localpart");
		return;
	}
	if (dev_id != NULL && (dev_id[0] == '\0' || strlen(dev_id) > 255)) {
		free(id);
		http_reply_error(req, 400, "M_INVALID_PARAM", "bad device_id");
		return;
	}
	u = user_get_or_create(ctx, id);
	free(id);
	is_new = dev_id == NULL || device_get(u, dev_id) == NULL;
	d = device_get_or_create(u, dev_id);
	/* Synapse announces a new device to everyone sharing a room. */
	if (is_new)
		e2ee_device_changed(ctx, u);
	repl = json_get(b, "replace", json_type_boolean);
	if (repl != NULL && json_object_get_boolean(repl))
		revoke_device(ctx, d, NULL);
	t = token_new(ctx, d, NULL);
	o = json_object_new_object();
	json_add_str(o, "user_id", u->user_id);
	json_add_str(o, "access_token", t->token);
	json_add_str(o, "device_id", d->device_id);
	json_add_str(o, "home_server", ctx->server_name);
	http_reply_json(req, 200, o);
}

static void
a_revoke(struct simhs *ctx, struct evhttp_request *req, struct json_object *b)
{
	const char *tok = json_str(b, "access_token"), *dev;
	struct device *d;
	struct token *t;
	struct user *u;

	if (tok != NULL) {
		if ((t = token_get(ctx, tok)) == NULL) {
			http_reply_error(req, 404, "M_NOT_FOUND",
			                 "unknown token");
			return;
		}
		revoke_token(t, b);
		admin_reply_ok(req);
		return;
	}
	if ((u = admin_user_arg(ctx, req, b, "user_id", false)) == NULL)
		return;
	if ((dev = json_str(b, "device_id")) == NULL ||
	    (d = device_get(u, dev)) == NULL) {
		http_reply_error(
		    req, 404, "M_NOT_FOUND",
		    "need access_token, or user_id and a known device_id");
		return;
	}
	revoke_device(ctx, d, b);
	admin_reply_ok(req);
}

static void
a_account_data(struct simhs *ctx, struct evhttp_request *req,
               struct json_object *b)
{
	const char *type = json_str(b, "type"),
	           *room_id = json_str(b, "room_id");
	struct json_object *content = json_get(b, "content", json_type_object);
	struct user *u;

	if (type == NULL || content == NULL) {
		http_reply_error(req, 400, "M_MISSING_PARAM",
		                 "need type and content (object)");
		return;
	}
	if (room_id != NULL && room_get(ctx, room_id) == NULL) {
		http_reply_error(req, 404, "M_NOT_FOUND", "unknown room");
		return;
	}
	if ((u = admin_user_arg(ctx, req, b, "user_id", true)) == NULL)
		return;
	acct_set(ctx, u, room_id, type, content);
	admin_reply_ok(req);
}

/* Check one to-device message; sets *u. Replies on error. */
static int
todevice_check(struct simhs *ctx, struct evhttp_request *req,
               struct json_object *m, struct user **u)
{
	if (!json_object_is_type(m, json_type_object) ||
	    json_str(m, "sender") == NULL || json_str(m, "type") == NULL ||
	    json_str(m, "device_id") == NULL ||
	    json_get(m, "content", json_type_object) == NULL) {
		http_reply_error(
		    req, 400, "M_MISSING_PARAM",
		    "each message needs sender, type, content, user_id, "
		    "device_id");
		return -1;
	}
	*u = admin_user_arg(ctx, req, m, "user_id", false);
	return *u != NULL ? 0 : -1;
}

static uint64_t
todevice_send(struct simhs *ctx, struct user *u, struct json_object *m)
{
	const char *dev = json_str(m, "device_id");
	struct json_object *content = json_get(m, "content", json_type_object);
	uint64_t pos = 0;
	size_t i;

	if (strcmp(dev, "*") != 0)
		return todevice_push(ctx, device_get_or_create(u, dev),
		                     json_str(m, "sender"), json_str(m, "type"),
		                     content);
	for (i = 0; i < u->devices.n; i++)
		pos = todevice_push(ctx, u->devices.v[i], json_str(m, "sender"),
		                    json_str(m, "type"), content);
	return pos;
}

static void
a_to_device(struct simhs *ctx, struct evhttp_request *req,
            struct json_object *b)
{
	struct json_object *msgs = json_get(b, "messages", json_type_array);
	struct json_object *o;
	struct user *u;
	uint64_t pos = 0;
	size_t i, n;

	n = msgs != NULL ? json_object_array_length(msgs) : 1;
	for (i = 0; i < n; i++)
		if (todevice_check(
		        ctx, req,
		        msgs != NULL ? json_object_array_get_idx(msgs, i) : b,
		        &u) < 0)
			return;
	for (i = 0; i < n; i++) {
		struct json_object *m =
		    msgs != NULL ? json_object_array_get_idx(msgs, i) : b;

		u = user_get(ctx, json_str(m, "user_id"));
		pos = todevice_send(ctx, u, m);
	}
	o = json_object_new_object();
	json_add_int(o, "pos", (int64_t)pos);
	json_add_int(o, "count", (int64_t)n);
	http_reply_json(req, 200, o);
}

static int
string_array_ok(struct json_object *a)
{
	size_t i;

	if (a == NULL)
		return 0;
	for (i = 0; i < json_object_array_length(a); i++)
		if (!json_object_is_type(json_object_array_get_idx(a, i),
		                         json_type_string))
			return -1;
	return 0;
}

static void
a_device_lists(struct simhs *ctx, struct evhttp_request *req,
               struct json_object *b)
{
	struct json_object *ch = json_get(b, "changed", json_type_array);
	struct json_object *left = json_get(b, "left", json_type_array), *o;
	struct user *u;
	size_t i;

	if (string_array_ok(ch) < 0 || string_array_ok(left) < 0) {
		http_reply_error(req, 400, "M_INVALID_PARAM",
		                 "changed and left must be arrays of user ids");
		return;
	}
	if ((u = admin_user_arg(ctx, req, b, "user_id", false)) == NULL)
		return;
	for (i = 0; ch != NULL && i < json_object_array_length(ch); i++)
		devlist_add(
		    ctx, u,
		    json_object_get_string(json_object_array_get_idx(ch, i)),
		    false);
	for (i = 0; left != NULL && i < json_object_array_length(left); i++)
		devlist_add(
		    ctx, u,
		    json_object_get_string(json_object_array_get_idx(left, i)),
		    true);
	o = json_object_new_object();
	json_add_int(o, "pos", (int64_t)ctx->pos);
	http_reply_json(req, 200, o);
}

/* A user's device list changed (new keys, a device gone...). */
static void
a_device_change(struct simhs *ctx, struct evhttp_request *req,
                struct json_object *b)
{
	struct json_object *o;
	struct user *u;

	if ((u = admin_user_arg(ctx, req, b, "user_id", false)) == NULL)
		return;
	e2ee_device_changed(ctx, u);
	o = json_object_new_object();
	json_add_int(o, "pos", (int64_t)ctx->pos);
	http_reply_json(req, 200, o);
}

static void
a_keys(struct simhs *ctx, struct evhttp_request *req, struct json_object *b)
{
	struct json_object *otk =
	    json_get(b, "one_time_keys_count", json_type_object);
	struct json_object *fb =
	    json_get(b, "unused_fallback_key_types", json_type_array);
	const char *dev = json_str(b, "device_id");
	const char *names = json_str(b, "fallback_names");
	static const char *const known[] = {"both", "stable", "unstable",
	                                    "none"};
	struct device *d;
	struct user *u;
	size_t i = 0;

	while (names != NULL && i < 4 && strcmp(names, known[i]) != 0)
		i++;
	if (dev == NULL || string_array_ok(fb) < 0 || i == 4) {
		http_reply_error(
		    req, 400, "M_INVALID_PARAM",
		    "need device_id; unused_fallback_key_types is a string "
		    "array; fallback_names is both, stable, unstable or none");
		return;
	}
	if ((u = admin_user_arg(ctx, req, b, "user_id", false)) == NULL)
		return;
	if ((d = device_get(u, dev)) == NULL) {
		http_reply_error(req, 404, "M_NOT_FOUND", "unknown device");
		return;
	}
	if (otk != NULL) {
		json_object_put(d->otk_count);
		d->otk_count = json_object_get(otk);
	}
	if (fb != NULL) {
		json_object_put(d->fallback_types);
		d->fallback_types = json_object_get(fb);
	}
	if (names != NULL)
		d->fallback_names = known[i];
	admin_reply_ok(req);
}

static void
a_todevice_pending(struct simhs *ctx, struct evhttp_request *req,
                   struct json_object *b)
{
	const char *dev = json_str(b, "device_id");
	struct json_object *o;
	struct device *d;
	struct user *u;

	if ((u = admin_user_arg(ctx, req, b, "user_id", false)) == NULL)
		return;
	if (dev == NULL || (d = device_get(u, dev)) == NULL) {
		http_reply_error(req, 404, "M_NOT_FOUND", "unknown device");
		return;
	}
	o = json_object_new_object();
	json_add_int(o, "count", (int64_t)d->ntodevice);
	if (!TAILQ_EMPTY(&d->todevice)) {
		json_add_int(o, "first_pos",
		             (int64_t)TAILQ_FIRST(&d->todevice)->pos);
		json_add_int(
		    o, "last_pos",
		    (int64_t)TAILQ_LAST(&d->todevice, todevice_q)->pos);
	}
	http_reply_json(req, 200, o);
}

static void
stats_devices(struct simhs *ctx, struct json_object *o)
{
	struct json_object *req = json_object_new_object();
	struct json_object *inf = json_object_new_object();
	struct json_object *max = json_object_new_object();
	struct json_object *who = json_object_new_object();
	struct device *d;
	struct user *u;
	size_t i, j;
	char *key;

	for (i = 0; i < ctx->user_list.n; i++) {
		u = ctx->user_list.v[i];
		for (j = 0; j < u->devices.n; j++) {
			d = u->devices.v[j];
			if (d->sync_requests == 0 && d->whoami_requests == 0)
				continue;
			key = xasprintf("%s|%s", u->user_id, d->device_id);
			json_add_int(req, key, (int64_t)d->sync_requests);
			json_add_int(inf, key, d->sync_inflight);
			json_add_int(max, key, d->sync_inflight_max);
			json_add_int(who, key, (int64_t)d->whoami_requests);
			free(key);
		}
	}
	json_object_object_add(o, "sync_requests", req);
	json_object_object_add(o, "sync_inflight", inf);
	json_object_object_add(o, "sync_inflight_max", max);
	json_object_object_add(o, "whoami_by_device", who);
}

static void
stats_tokens(struct simhs *ctx, struct json_object *o)
{
	struct json_object *all = json_object_new_object(), *t;
	struct token *tok;
	size_t i;

	for (i = 0; i < ctx->token_list.n; i++) {
		tok = ctx->token_list.v[i];
		if (tok->requests == 0)
			continue;
		t = json_object_new_object();
		json_add_str(t, "user_id", tok->device->user->user_id);
		json_add_str(t, "device_id", tok->device->device_id);
		json_add_int(t, "requests", (int64_t)tok->requests);
		json_add_int(t, "sync_inflight", tok->sync_inflight);
		json_add_int(t, "sync_inflight_max", tok->sync_inflight_max);
		json_object_object_add(
		    t, "revoked", json_object_new_boolean(tok->is_revoked));
		json_object_object_add(all, tok->token, t);
	}
	json_object_object_add(o, "tokens", all);
}

static void
a_stats(struct simhs *ctx, struct evhttp_request *req, struct json_object *b)
{
	struct json_object *o = json_object_new_object(), *paths;
	struct map_entry *e;
	size_t i;

	(void)b;
	json_add_int(o, "pos", (int64_t)ctx->pos);
	json_add_int(o, "users", (int64_t)ctx->user_list.n);
	json_add_int(o, "rooms", (int64_t)ctx->room_list.n);
	json_add_int(o, "events", (int64_t)ctx->nevents);
	json_add_int(o, "waiters", (int64_t)ctx->nwaiters);
	json_add_int(o, "whoami_requests", (int64_t)ctx->whoami_requests);
	json_add_int(o, "sync_requests_total", (int64_t)ctx->sync_requests);
	stats_devices(ctx, o);
	stats_tokens(ctx, o);
	paths = json_object_new_object();
	for (i = 0; i < ctx->path_counts.nbuckets; i++)
		for (e = ctx->path_counts.buckets[i]; e != NULL; e = e->next)
			json_add_int(paths, e->key,
			             (int64_t) * (uint64_t *)e->val);
	json_object_object_add(o, "paths", paths);
	http_reply_json(req, 200, o);
}

/* Zero the counters (gauges of requests still in flight stay). */
static void
a_stats_reset(struct simhs *ctx, struct evhttp_request *req,
              struct json_object *b)
{
	struct token *t;
	struct device *d;
	struct user *u;
	size_t i, j;

	(void)b;
	ctx->whoami_requests = ctx->sync_requests = 0;
	map_clear(&ctx->path_counts, free);
	map_init(&ctx->path_counts);
	for (i = 0; i < ctx->token_list.n; i++) {
		t = ctx->token_list.v[i];
		t->requests = 0;
		t->sync_inflight_max = t->sync_inflight;
	}
	for (i = 0; i < ctx->user_list.n; i++) {
		u = ctx->user_list.v[i];
		for (j = 0; j < u->devices.n; j++) {
			d = u->devices.v[j];
			d->sync_requests = d->whoami_requests = 0;
			d->sync_inflight_max = d->sync_inflight;
		}
	}
	admin_reply_ok(req);
}

static void
a_fail(struct simhs *ctx, struct evhttp_request *req, struct json_object *b)
{
	fail_add(req, ctx, b);
}

static void
a_fail_clear(struct simhs *ctx, struct evhttp_request *req,
             struct json_object *b)
{
	(void)b;
	fail_clear(ctx);
	admin_reply_ok(req);
}

static void
a_sync_log(struct simhs *ctx, struct evhttp_request *req, struct json_object *b)
{
	fail_sync_log(req, ctx, b);
}

static void
a_pos(struct simhs *ctx, struct evhttp_request *req, struct json_object *b)
{
	struct json_object *o = json_object_new_object();
	char tok[200];

	(void)b;
	json_add_int(o, "pos", (int64_t)ctx->pos);
	token_format(tok, sizeof(tok), ctx->pos, ctx->pos);
	json_add_str(o, "token", tok);
	http_reply_json(req, 200, o);
}

static void
a_scenario(struct simhs *ctx, struct evhttp_request *req, struct json_object *b)
{
	scenario_run(req, ctx, b);
}

static void
a_throttle(struct simhs *ctx, struct evhttp_request *req, struct json_object *b)
{
	http_throttle(req, ctx, b);
}

static const struct admin_route admin_routes[] = {
    {"POST", "users", a_users},
    {"POST", "login", a_login},
    {"POST", "revoke", a_revoke},
    {"POST", "account_data", a_account_data},
    {"POST", "to_device", a_to_device},
    {"GET", "to_device_pending", a_todevice_pending},
    {"POST", "device_lists", a_device_lists},
    {"POST", "keys", a_keys},
    {"POST", "device_change", a_device_change},
    {"GET", "stats", a_stats},
    {"POST", "stats/reset", a_stats_reset},
    {"POST", "fail", a_fail},
    {"POST", "fail/clear", a_fail_clear},
    {"GET", "pos", a_pos},
    {"POST", "scenario", a_scenario},
    {"GET", "sync_log", a_sync_log},
    {"POST", "throttle", a_throttle},
};

static bool
is_loopback(struct evhttp_request *req)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(req);
	char *addr = NULL;
	ev_uint16_t port;

	if (evcon == NULL)
		return false;
	evhttp_connection_get_peer(evcon, &addr, &port);
	return addr != NULL &&
	       (strncmp(addr, "127.", 4) == 0 || strcmp(addr, "::1") == 0 ||
	        strncmp(addr, "::ffff:127.", 11) == 0);
}

/* POST: the body as a JSON object ({} when empty). GET: the query. */
static struct json_object *
admin_args(struct evhttp_request *req, bool is_post)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	struct json_object *o = NULL;
	struct evkeyvalq q;
	struct evkeyval *kv;
	const char *qs;
	size_t len;

	if (is_post) {
		if ((len = evbuffer_get_length(in)) == 0)
			return json_object_new_object();
		o = json_parse((const char *)evbuffer_pullup(in, -1), len);
		if (o != NULL && !json_object_is_type(o, json_type_object)) {
			json_object_put(o);
			o = NULL;
		}
		return o;
	}
	TAILQ_INIT(&q);
	qs = uri != NULL ? evhttp_uri_get_query(uri) : NULL;
	if (qs != NULL && evhttp_parse_query_str(qs, &q) < 0)
		return NULL;
	o = json_object_new_object();
	TAILQ_FOREACH(kv, &q, next)
	json_add_str(o, kv->key, kv->value);
	evhttp_clear_headers(&q);
	return o;
}

void
admin_dispatch(struct simhs *ctx, struct evhttp_request *req, const char *rest)
{
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	bool is_post = cmd == EVHTTP_REQ_POST, is_wrong = false;
	struct json_object *args;
	size_t i;

	if (!is_loopback(req)) {
		http_reply_error(req, 403, "M_FORBIDDEN", "loopback only");
		return;
	}
	if (!is_post && cmd != EVHTTP_REQ_GET) {
		http_reply_error(req, 405, "M_UNRECOGNIZED", "GET or POST");
		return;
	}
	if ((args = admin_args(req, is_post)) == NULL) {
		http_reply_error(req, 400, "M_NOT_JSON",
		                 "body must be a JSON object");
		return;
	}
	if (strcmp(rest, "rooms") == 0 || strncmp(rest, "rooms/", 6) == 0) {
		admin_rooms_dispatch(ctx, req, rest, args);
		goto out;
	}
	for (i = 0; i < sizeof(admin_routes) / sizeof(admin_routes[0]); i++) {
		if (strcmp(admin_routes[i].path, rest) != 0)
			continue;
		if (strcmp(admin_routes[i].method, is_post ? "POST" : "GET")) {
			is_wrong = true;
			continue;
		}
		admin_routes[i].fn(ctx, req, args);
		goto out;
	}
	http_reply_error(req, is_wrong ? 405 : 404, "M_UNRECOGNIZED",
	                 "Unrecognized request");
out:
	json_object_put(args);
}
