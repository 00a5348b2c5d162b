/*
 * http.c: the evhttp front door. Decodes the path, sends /_simhs/ to
 * admin.c, routes client-server calls (v3 and r0), authenticates them,
 * counts them, lets fail.c hijack them, and writes every reply (gzip for
 * large bodies when the client accepts it). A struct creq lives from
 * routing to the reply or to the client closing the connection.
 */
#include <sys/socket.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/keyvalq_struct.h>
#include <zlib.h>

#include "simhs.h"

#define GZIP_MIN 1024
/* above this a gzip answer is streamed (gz_more), this much input a chunk,
 * the next compressed at once while less than GZIP_AHEAD waits unsent */
#define GZIP_STREAM_MIN (1024 * 1024)
#define GZIP_SLICE (512 * 1024)
#define GZIP_AHEAD (512 * 1024)

struct route {
	const char *method; /* "GET", "POST" or "PUT" */
	const char *pattern;
	const char *name;
	void (*handler)(struct creq *);
};

static void whoami_handle(struct creq *);
static void filter_post_handle(struct creq *);
static void filter_get_handle(struct creq *);

static const struct route routes[] = {
    {"GET", "account/whoami", "whoami", whoami_handle},
    {"GET", "sync", "sync", sync_handle},
    {"POST", "user/*/filter", "filter", filter_post_handle},
    {"GET", "user/*/filter/*", "filter", filter_get_handle},
    {"PUT", "user/*/account_data/*", "account_data", account_data_put_handle},
    {"GET", "user/*/account_data/*", "account_data", account_data_get_handle},
    {"PUT", "user/*/rooms/*/account_data/*", "account_data",
     account_data_put_handle},
    {"GET", "user/*/rooms/*/account_data/*", "account_data",
     account_data_get_handle},
    {"POST", "rooms/*/receipt/*/*", "receipt", receipts_handle},
    {"POST", "rooms/*/read_markers", "receipt", receipts_markers_handle},
    {"GET", "rooms/*/messages", "messages", messages_handle},
    {"POST", "keys/upload", "keys_upload", e2ee_keys_upload_handle},
};

static const char *
reason(int code)
{
	switch (code) {
	case 200:
		return "OK";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 429:
		return "Too Many Requests";
	case 500:
		return "Internal Server Error";
	case 502:
		return "Bad Gateway";
	case 503:
		return "Service Unavailable";
	case 504:
		return "Gateway Timeout";
	default:
		return "Error";
	}
}

static int
gzip_into(struct evbuffer *out, const char *in, size_t len)
{
	unsigned char chunk[16384];
	z_stream zs;
	int rc;

	memset(&zs, 0, sizeof(zs));
	/* level 1: nginx's default gzip_comp_level in front of Synapse */
	if (deflateInit2(&zs, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) !=
	    Z_OK)
		return -1;
	zs.next_in = (Bytef *)(uintptr_t)in;
	zs.avail_in = (uInt)len;
	do {
		zs.next_out = chunk;
		zs.avail_out = sizeof(chunk);
		rc = deflate(&zs, Z_FINISH);
		if (rc == Z_STREAM_ERROR)
			break;
		evbuffer_add(out, chunk, sizeof(chunk) - zs.avail_out);
	} while (rc != Z_STREAM_END);
	deflateEnd(&zs);
	return rc == Z_STREAM_END ? 0 : -1;
}

static void
reply_raw(struct evhttp_request *req, int code, const char *ctype,
          const char *body, size_t len, bool try_gzip)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	struct evbuffer *buf = evbuffer_new();

	if (buf == NULL) {
		evhttp_send_error(req, 500, NULL);
		return;
	}
	evhttp_add_header(h, "Content-Type", ctype);
	evhttp_add_header(h, "Cache-Control",
	                  "no-cache, no-store, must-revalidate");
	if (try_gzip && len > GZIP_MIN && gzip_into(buf, body, len) == 0)
		evhttp_add_header(h, "Content-Encoding", "gzip");
	else {
		evbuffer_drain(buf, evbuffer_get_length(buf));
		evbuffer_add(buf, body, len);
	}
	evhttp_send_reply(req, code, reason(code), buf);
	evbuffer_free(buf);
}

/* Consumes obj. */
void
http_reply_json(struct evhttp_request *req, int code, struct json_object *obj)
{
	const char *s;
	size_t len;

	s = json_object_to_json_string_length(
	    obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
	reply_raw(req, code, "application/json", s, len, false);
	json_object_put(obj);
}

static struct json_object *
error_obj(const char *errcode, const char *msg)
{
	struct json_object *o = json_object_new_object();

	json_add_str(o, "errcode", errcode);
	json_add_str(o, "error", msg);
	return o;
}

void
http_reply_error(struct evhttp_request *req, int code, const char *errcode,
                 const char *msg)
{
	http_reply_json(req, code, error_obj(errcode, msg));
}

/*
 * Synapse's 401 for a token it does not take: "soft_logout" true for
 * one that expired (valid_until_ms, as refreshable and session_lifetime
 * tokens do: the client refreshes, or logs in again keeping its data),
 * false for one it does not know.
 */
struct json_object *
http_token_error(bool is_soft_logout, bool is_locked)
{
	struct json_object *e;

	/* synapse/api/auth/internal.py: a locked user's every token */
	if (is_locked)
		e = error_obj("M_USER_LOCKED", "User account has been locked");
	else
		e = error_obj("M_UNKNOWN_TOKEN",
		              is_soft_logout ? "Access token has expired"
		                             : "Invalid access token passed.");
	json_object_object_add(
	    e, "soft_logout",
	    json_object_new_boolean(is_soft_logout || is_locked));
	return e;
}

static void
creq_free(struct creq *c)
{
	struct token *t = c->tok;

	if (c->is_sync && t != NULL) {
		t->sync_inflight--;
		t->device->sync_inflight--;
	}
	if (c->probe != NULL)
		event_free(c->probe);
	free(c->path);
	free(c->query);
	free(c->token_str);
	free(c);
}

/* Reply and end the request. Consumes obj. */
/*
 * POST /_simhs/throttle {"bytes_per_sec": N}: client-server replies go out
 * at most N bytes a second from then on (0 or none: no limit), paced by
 * libevent's token bucket on each connection, so a large /sync body
 * arrives slowly. A bucket stays alive until exit: connections made
 * under it may still point at it.
 */
void
http_throttle(struct evhttp_request *req, struct simhs *ctx,
              struct json_object *b)
{
	struct json_object *v = json_get(b, "bytes_per_sec", json_type_int);
	int64_t bps = v != NULL ? json_object_get_int64(v) : 0;
	struct timeval tick = {0, 100 * 1000};
	size_t per_tick;

	if (bps < 0 || bps / 10 > EV_RATE_LIMIT_MAX) {
		http_reply_error(req, 400, "M_INVALID_PARAM",
		                 "bytes_per_sec: 0 to 2^31 * 10");
		return;
	}
	ctx->x_throttle = NULL;
	if (bps > 0) {
		per_tick = bps >= 10 ? (size_t)bps / 10 : 1;
		ctx->x_throttle = ev_token_bucket_cfg_new(
		    EV_RATE_LIMIT_MAX, EV_RATE_LIMIT_MAX, per_tick, per_tick,
		    &tick);
		if (ctx->x_throttle == NULL) {
			http_reply_error(req, 500, "M_UNKNOWN",
			                 "out of memory");
			return;
		}
		vec_push(&ctx->x_throttles, ctx->x_throttle);
	}
	admin_reply_ok(req);
}

/* The connection of c under the throttle now in force (or none). */
static void
creq_pace(struct creq *c)
{
	struct evhttp_connection *evcon = evhttp_request_get_connection(c->req);
	struct bufferevent *bev;

	if (evcon == NULL ||
	    (bev = evhttp_connection_get_bufferevent(evcon)) == NULL)
		return;
	if (c->ctx->x_throttle != NULL || c->ctx->x_throttles.n > 0)
		bufferevent_set_rate_limit(bev, c->ctx->x_throttle);
}

void
creq_reply(struct creq *c, int code, struct json_object *obj)
{
	const char *s;
	size_t len;

	creq_pace(c);

	s = json_object_to_json_string_length(
	    obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &len);
	reply_raw(c->req, code, "application/json", s, len, c->has_gzip);
	json_object_put(obj);
	creq_free(c);
}

/* A JSON body already serialised (sync_build); consumes body. */
/*
 * A large gzip answer (a 30 MB initial sync) compressed as nginx's gzip
 * module in front of Synapse does it: a slice at a time, each sent as a
 * chunk as soon as it is compressed, so the client reads (and here the
 * poller scans) one slice while the next is compressed, instead of
 * waiting for the whole body to be compressed before its first byte.
 * Lives until its last chunk is queued or the connection closes.
 */
struct gz_stream {
	struct simhs *ctx;
	struct evhttp_request *req;
	struct evhttp_connection *evcon;
	struct evbuffer *body; /* not compressed yet */
	struct event *next;    /* the next slice, on the loop's next turn */
	z_stream zs;
};

static void
gz_free(struct gz_stream *g)
{
	if (g->evcon != NULL)
		evhttp_connection_set_closecb(g->evcon, NULL, NULL);
	if (g->next != NULL)
		event_free(g->next);
	deflateEnd(&g->zs);
	evbuffer_free(g->body);
	free(g);
}

static void
gz_free_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	gz_free(arg);
}

static void
gz_close_cb(struct evhttp_connection *evcon, void *arg)
{
	struct gz_stream *g = arg;

	(void)evcon;
	g->evcon = NULL;
	/* the reply in progress is orphaned; ending it frees it */
	if (g->req != NULL && evhttp_request_get_connection(g->req) == NULL)
		evhttp_send_reply_end(g->req);
	g->req = NULL;
	evtimer_del(g->next);
	event_base_once(g->ctx->base, -1, EV_TIMEOUT, gz_free_cb, g, NULL);
}

/* Bytes of the reply queued on the connection, not yet written. */
static size_t
gz_unsent(const struct gz_stream *g)
{
	struct bufferevent *bev;

	if (g->evcon == NULL ||
	    (bev = evhttp_connection_get_bufferevent(g->evcon)) == NULL)
		return 0;
	return evbuffer_get_length(bufferevent_get_output(bev));
}

static void
gz_more_cb(struct evhttp_connection *evcon, void *arg)
{
	struct gz_stream *g = arg;
	unsigned char out[16384];
	struct evbuffer *chunk;
	size_t n = evbuffer_get_length(g->body);
	int flush = n <= GZIP_SLICE ? Z_FINISH : Z_SYNC_FLUSH, rc;

	(void)evcon;
	if (g->req == NULL)
		return;
	chunk = xevbuffer_new();
	n = n <= GZIP_SLICE ? n : GZIP_SLICE;
	g->zs.next_in = evbuffer_pullup(g->body, (ev_ssize_t)n);
	g->zs.avail_in = (uInt)n;
	do {
		g->zs.next_out = out;
		g->zs.avail_out = sizeof(out);
		rc = deflate(&g->zs, flush);
		evbuffer_add(chunk, out, sizeof(out) - g->zs.avail_out);
	} while (rc == Z_OK && (g->zs.avail_out == 0 || flush == Z_FINISH));
	evbuffer_drain(g->body, n);
	if (flush != Z_FINISH) {
		/*
		 * Waiting for every chunk to be written before compressing
		 * the next made the two take turns, a loop wake-up each
		 * (seconds on a loaded machine): compress ahead instead, up
		 * to GZIP_AHEAD unsent, then wait for the socket to drain.
		 */
		if (gz_unsent(g) + evbuffer_get_length(chunk) < GZIP_AHEAD) {
			struct timeval now = {0, 0};

			evhttp_send_reply_chunk(g->req, chunk);
			evtimer_add(g->next, &now);
		} else
			evhttp_send_reply_chunk_with_cb(g->req, chunk,
			                                gz_more_cb, g);
		evbuffer_free(chunk);
		return;
	}
	evhttp_send_reply_chunk(g->req, chunk);
	evbuffer_free(chunk);
	evhttp_connection_set_closecb(g->evcon, NULL, NULL);
	g->evcon = NULL;
	evhttp_send_reply_end(g->req);
	gz_free(g);
}

static void
gz_next_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	gz_more_cb(NULL, arg);
}

/* Takes body; false (body kept) if zlib will not start. */
static bool
gz_stream_start(struct creq *c, int code, struct evbuffer *body)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(c->req);
	struct gz_stream *g = xcalloc(1, sizeof(*g));

	/* level 1: nginx's default gzip_comp_level in front of Synapse */
	if (deflateInit2(&g->zs, 1, Z_DEFLATED, 15 + 16, 8,
	                 Z_DEFAULT_STRATEGY) != Z_OK) {
		free(g);
		return false;
	}
	g->ctx = c->ctx;
	g->next = evtimer_new(c->ctx->base, gz_next_cb, g);
	g->req = c->req;
	g->body = body;
	g->evcon = evhttp_request_get_connection(c->req);
	evhttp_add_header(h, "Content-Type", "application/json");
	evhttp_add_header(h, "Cache-Control",
	                  "no-cache, no-store, must-revalidate");
	evhttp_add_header(h, "Content-Encoding", "gzip");
	evhttp_send_reply_start(c->req, code, reason(code));
	if (g->evcon != NULL)
		evhttp_connection_set_closecb(g->evcon, gz_close_cb, g);
	gz_more_cb(NULL, g);
	return true;
}

void
creq_reply_buf(struct creq *c, int code, struct evbuffer *body)
{
	size_t len = evbuffer_get_length(body);
	const char *s;

	creq_pace(c);
	if (c->has_gzip && len > GZIP_STREAM_MIN &&
	    gz_stream_start(c, code, body)) {
		creq_free(c);
		return;
	}
	s = (const char *)evbuffer_pullup(body, -1);
	reply_raw(c->req, code, "application/json", s != NULL ? s : "", len,
	          c->has_gzip);
	evbuffer_free(body);
	creq_free(c);
}

void
creq_reply_raw(struct creq *c, int code, const char *ctype, const char *body)
{
	reply_raw(c->req, code, ctype, body, strlen(body), false);
	creq_free(c);
}

void
creq_error(struct creq *c, int code, const char *errcode, const char *msg)
{
	creq_reply(c, code, error_obj(errcode, msg));
}

/*
 * The connection is gone (or about to be): forget c without replying.
 * If libevent already detached the request from its dead connection,
 * nobody else will free it.
 */
void
creq_abort(struct creq *c)
{
	if (evhttp_request_get_connection(c->req) == NULL)
		evhttp_request_free(c->req);
	creq_free(c);
}

/*
 * evhttp stops reading a connection once a request is complete, so it
 * never sees a long-polling client hang up. Peek at the socket ourselves:
 * EOF or an error means the client is gone; pipelined bytes just end the
 * watch.
 */
static void
creq_probe_cb(evutil_socket_t fd, short what, void *arg)
{
	struct creq *c = arg;
	struct evhttp_connection *evcon = c->evcon;
	void (*cb)(struct evhttp_connection *, void *) = c->hold_cb;
	void *cb_arg = c->hold_arg;
	ssize_t n;
	char b;

	(void)what;
	n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
	if (n > 0)
		return;
	if (n < 0 &&
	    (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
		event_add(c->probe, NULL);
		return;
	}
	creq_unhold(c);
	cb(evcon, cb_arg);
	evhttp_connection_free(evcon);
}

/* While held, cb runs if the client closes; the reply path must unhold. */
void
creq_hold(struct creq *c, void (*cb)(struct evhttp_connection *, void *),
          void *arg)
{
	struct bufferevent *bev = evhttp_connection_get_bufferevent(c->evcon);
	evutil_socket_t fd = bev != NULL ? bufferevent_getfd(bev) : -1;

	evhttp_connection_set_closecb(c->evcon, cb, arg);
	c->is_held = true;
	c->hold_cb = cb;
	c->hold_arg = arg;
	if (fd < 0)
		return;
	c->probe = event_new(c->ctx->base, fd, EV_READ, creq_probe_cb, c);
	if (c->probe != NULL)
		event_add(c->probe, NULL);
}

void
creq_unhold(struct creq *c)
{
	if (c->is_held)
		evhttp_connection_set_closecb(c->evcon, NULL, NULL);
	c->is_held = false;
	if (c->probe != NULL)
		event_free(c->probe);
	c->probe = NULL;
}

static const struct route *
route_find(const char *method, const char *path, bool *is_wrong_method)
{
	const char *p, *q;
	size_t i;

	*is_wrong_method = false;
	for (i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		for (p = routes[i].pattern, q = path; *p && *q;) {
			if (*p == '*') {
				if (*q == '/')
					break;
				q += strcspn(q, "/");
				p++;
			} else if (*p++ != *q++)
				break;
		}
		if (*p != '\0' || *q != '\0')
			continue;
		if (strcmp(routes[i].method, method) == 0)
			return &routes[i];
		*is_wrong_method = true;
	}
	return NULL;
}

const char *
method_name(struct evhttp_request *req)
{
	switch (evhttp_request_get_command(req)) {
	case EVHTTP_REQ_HEAD:
		return "HEAD";
	case EVHTTP_REQ_PATCH:
		return "PATCH";
	case EVHTTP_REQ_GET:
		return "GET";
	case EVHTTP_REQ_POST:
		return "POST";
	case EVHTTP_REQ_PUT:
		return "PUT";
	case EVHTTP_REQ_DELETE:
		return "DELETE";
	default:
		return "OTHER";
	}
}

/* Bearer header first, then ?access_token= as a real homeserver does. */
char *
token_from_request(struct evhttp_request *req, const char *query)
{
	struct evkeyvalq *h = evhttp_request_get_input_headers(req);
	const char *auth, *v;
	struct evkeyvalq q;
	char *out = NULL;

	if ((auth = evhttp_find_header(h, "Authorization")) != NULL) {
		if (strncasecmp(auth, "Bearer ", 7) == 0 && auth[7] != '\0')
			return xstrdup(auth + 7);
		return NULL;
	}
	if (query == NULL)
		return NULL;
	TAILQ_INIT(&q);
	if (evhttp_parse_query_str(query, &q) == 0 &&
	    (v = evhttp_find_header(&q, "access_token")) != NULL)
		out = xstrdup(v);
	evhttp_clear_headers(&q);
	return out;
}

static void
count_path(struct simhs *ctx, const char *path)
{
	uint64_t *n;

	if ((n = map_get(&ctx->path_counts, path)) == NULL) {
		n = xcalloc(1, sizeof(*n));
		map_put(&ctx->path_counts, path, n);
	}
	(*n)++;
}

static void
creq_count(struct creq *c)
{
	struct token *t = c->tok;
	struct device *d;

	if (strcmp(c->route, "whoami") == 0)
		c->ctx->whoami_requests++;
	if (c->is_sync)
		c->ctx->sync_requests++;
	if (t == NULL)
		return;
	d = t->device;
	t->requests++;
	if (strcmp(c->route, "whoami") == 0)
		d->whoami_requests++;
	if (!c->is_sync)
		return;
	d->sync_requests++;
	if (++t->sync_inflight > t->sync_inflight_max)
		t->sync_inflight_max = t->sync_inflight;
	if (++d->sync_inflight > d->sync_inflight_max)
		d->sync_inflight_max = d->sync_inflight;
}

/* Authenticate and run the route's handler (fail.c may come back here). */
void
creq_dispatch(struct creq *c)
{
	if (c->token_str == NULL) {
		creq_error(c, 401, "M_MISSING_TOKEN", "Missing access token");
		return;
	}
	if (c->tok == NULL) {
		creq_reply(c, 401,
		           http_token_error(c->is_soft_logout, c->is_locked));
		return;
	}
	c->handler(c);
}

static void
whoami_handle(struct creq *c)
{
	struct device *d = c->tok->device;
	struct json_object *o = json_object_new_object();

	json_add_str(o, "user_id", d->user->user_id);
	json_add_str(o, "device_id", d->device_id);
	json_object_object_add(o, "is_guest", json_object_new_boolean(0));
	creq_reply(c, 200, o);
}

/* "user/<id>/filter[/<n>]": is <id> the caller? */
static bool
filter_owner_ok(struct creq *c)
{
	const char *uid = c->tok->device->user->user_id;
	const char *p = c->path + strlen("user/");
	size_t len = strcspn(p, "/");

	if (len == strlen(uid) && strncmp(p, uid, len) == 0)
		return true;
	creq_error(c, 403, "M_FORBIDDEN", "Cannot use filters for other users");
	return false;
}

/* The request body if it is a JSON object, else NULL. */
struct json_object *
creq_body_parse(struct creq *c)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(c->req);
	size_t len = evbuffer_get_length(in);
	struct json_object *body;

	if (len == 0)
		return NULL;
	body = json_parse((const char *)evbuffer_pullup(in, -1), len);
	if (body != NULL && !json_object_is_type(body, json_type_object)) {
		json_object_put(body);
		body = NULL;
	}
	return body;
}

/* As creq_body_parse, but replies 400 M_NOT_JSON (Synapse's words). */
struct json_object *
creq_body_object(struct creq *c)
{
	struct json_object *body;

	if ((body = creq_body_parse(c)) == NULL)
		creq_error(c, 400, "M_NOT_JSON", "Content not JSON.");
	return body;
}

static void
filter_post_handle(struct creq *c)
{
	struct user *u = c->tok->device->user;
	struct json_object *body, *o;
	const char *err;
	char id[32];

	if (!filter_owner_ok(c))
		return;
	if ((body = creq_body_object(c)) == NULL)
		return;
	if ((err = filter_validate(body)) != NULL) {
		json_object_put(body);
		creq_error(c, 400, "M_UNKNOWN", err);
		return;
	}
	vec_push(&u->filters, body);
	snprintf(id, sizeof(id), "%zu", u->filters.n - 1);
	o = json_object_new_object();
	json_add_str(o, "filter_id", id);
	creq_reply(c, 200, o);
}

static void
filter_get_handle(struct creq *c)
{
	struct user *u = c->tok->device->user;
	const char *p = strrchr(c->path, '/') + 1;
	char *end;
	long id;

	if (!filter_owner_ok(c))
		return;
	id = strtol(p, &end, 10);
	if (*p == '\0' || *end != '\0' || id < 0 ||
	    (size_t)id >= u->filters.n) {
		creq_error(c, 404, "M_NOT_FOUND", "No such filter");
		return;
	}
	creq_reply(c, 200, json_object_get(u->filters.v[id]));
}

static void
versions_reply(struct evhttp_request *req)
{
	static const char *v[] = {"r0.6.1", "v1.1", "v1.2",  "v1.3",
	                          "v1.4",   "v1.5", "v1.6",  "v1.7",
	                          "v1.8",   "v1.9", "v1.10", "v1.11"};
	struct json_object *o = json_object_new_object(), *arr;
	size_t i;

	arr = json_object_new_array();
	for (i = 0; i < sizeof(v) / sizeof(v[0]); i++)
		json_object_array_add(arr, json_object_new_string(v[i]));
	json_object_object_add(o, "versions", arr);
	json_object_object_add(o, "unstable_features",
	                       json_object_new_object());
	json_object_object_add(json_object_object_get(o, "unstable_features"),
	                       "org.simhs.feature", json_object_new_boolean(1));
	http_reply_json(req, 200, o);
}

static bool
accepts_gzip(struct evhttp_request *req)
{
	const char *v = evhttp_find_header(
	    evhttp_request_get_input_headers(req), "Accept-Encoding");

	return v != NULL && strstr(v, "gzip") != NULL;
}

/* A client-server call: route, count, maybe fail, then authenticate. */
static void
client_request(struct simhs *ctx, struct evhttp_request *req, const char *rest,
               const char *query)
{
	const struct route *rt;
	struct creq *c;
	bool is_wrong;

	if ((rt = route_find(method_name(req), rest, &is_wrong)) == NULL) {
		if (is_wrong)
			http_reply_error(req, 405, "M_UNRECOGNIZED",
			                 "Unrecognized request");
		else
			http_reply_error(req, 404, "M_UNRECOGNIZED",
			                 "Unrecognized request");
		return;
	}
	c = xcalloc(1, sizeof(*c));
	c->ctx = ctx;
	c->req = req;
	c->evcon = evhttp_request_get_connection(req);
	c->route = rt->name;
	c->handler = rt->handler;
	c->path = xstrdup(rest);
	c->query = query != NULL ? xstrdup(query) : NULL;
	c->token_str = token_from_request(req, query);
	c->is_sync = strcmp(rt->name, "sync") == 0;
	c->has_gzip = c->is_sync && accepts_gzip(req);
	if (c->token_str != NULL &&
	    (c->tok = token_get(ctx, c->token_str)) != NULL &&
	    c->tok->is_revoked) {
		c->is_soft_logout = c->tok->is_soft_logout;
		c->is_locked = c->tok->is_locked;
		c->tok = NULL;
	}
	creq_count(c);
	if (!fail_check(c))
		creq_dispatch(c);
}

static void
http_gen_cb(struct evhttp_request *req, void *arg)
{
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	struct simhs *ctx = arg;
	const char *raw, *query;
	char *path = NULL;
	size_t len = 0;

	raw = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
	query = uri != NULL ? evhttp_uri_get_query(uri) : NULL;
	if (raw == NULL || (path = evhttp_uridecode(raw, 0, &len)) == NULL ||
	    strlen(path) != len) {
		http_reply_error(req, 400, "M_UNRECOGNIZED", "Bad path");
		goto out;
	}
	log_debug(ctx, "%s %s", method_name(req), path);
	count_path(ctx, path);
	if (client_x_dispatch(ctx, req, path, query))
		; /* client_x.c and media.c answered */
	else if (strncmp(path, "/_simhs/", 8) == 0)
		admin_dispatch(ctx, req, path + 8);
	else if (strcmp(path, "/_matrix/client/versions") == 0)
		versions_reply(req);
	else if (strncmp(path, "/_matrix/client/v3/", 19) == 0 ||
	         strncmp(path, "/_matrix/client/r0/", 19) == 0)
		client_request(ctx, req, path + 19, query);
	else
		http_reply_error(req, 404, "M_UNRECOGNIZED",
		                 "Unrecognized request");
out:
	free(path);
}

/* Bind host:port (IPv6 as [addr]:port) and start serving. */
int
http_init(struct simhs *ctx, const char *listen)
{
	char *host = xstrdup(listen), *colon, *h = host;
	long port;
	int rc = -1;

	if ((colon = strrchr(host, ':')) == NULL)
		goto out;
	*colon = '\0';
	port = strtol(colon + 1, NULL, 10);
	if (port <= 0 || port > 65535)
		goto out;
	if (h[0] == '[' && colon[-1] == ']') {
		h++;
		colon[-1] = '\0';
	}
	if ((ctx->http = evhttp_new(ctx->base)) == NULL)
		goto out;
	evhttp_set_max_body_size(ctx->http, SIMHS_MAX_BODY);
	evhttp_set_timeout(ctx->http, 120);
	evhttp_set_gencb(ctx->http, http_gen_cb, ctx);
	evhttp_set_allowed_methods(ctx->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST |
	                           EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT |
	                           EVHTTP_REQ_DELETE | EVHTTP_REQ_PATCH);
	if (evhttp_bind_socket_with_handle(ctx->http, h, (ev_uint16_t)port) ==
	    NULL)
		goto out;
	fprintf(stderr, "simhs: listening on %s:%ld\n", h, port);
	rc = 0;
out:
	free(host);
	return rc;
}

void
http_shutdown(struct simhs *ctx)
{
	if (ctx->http != NULL)
		evhttp_free(ctx->http);
	ctx->http = NULL;
	map_clear(&ctx->path_counts, free);
	for (size_t i = 0; i < ctx->x_throttles.n; i++)
		ev_token_bucket_cfg_free(ctx->x_throttles.v[i]);
	free(ctx->x_throttles.v);
	ctx->x_throttles.v = NULL;
	ctx->x_throttles.n = 0;
}
