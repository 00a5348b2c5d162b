/*
 * media.c: media and misbehaving endpoints for pass-through tests.
 *
 * Media: POST /_matrix/media/v3/upload (and PUT .../upload/{server}/{id})
 * counts and hashes what it gets
 * (evhttp 2.1 reads a request body whole before the handler runs, so the
 * sink walks its segments and keeps nothing); GET
 * /_matrix/client/v1/media/download/{server}/gen<N> sends N bytes of the
 * pattern byte i = i % 251, generated as the client drains it (256 KiB at
 * a time, next piece when the socket buffer is empty), never whole.
 *
 * Under /_matrix/client/unstable/org.simhs/ (no auth): echo (method, uri,
 * headers, body length and SHA-256), status/<code>, reset (RST at once),
 * stall?ms= (answer after ms, default an hour), stall_body (headers and
 * 10 bytes, then nothing), chunked?n= (n chunked pieces) and hop (a
 * response carrying hop-by-hop headers and end-to-end ones).
 */
#include <sys/socket.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/evp.h>

#include "simhs.h"

#define DL_PIECE (256 * 1024)
#define TESTS_PREFIX "/_matrix/client/unstable/org.simhs/"

/* A streamed download or a stalled request; freed when done or gone. */
struct slow {
	struct simhs *ctx;
	struct evhttp_request *req;
	struct evhttp_connection *evcon;
	uint64_t left, off;
	struct event *timer;
	bool is_body_stall;
};

static void
slow_free(struct slow *s)
{
	struct ptrvec *v = &s->ctx->x_slow;

	for (size_t i = 0; i < v->n; i++)
		if (v->v[i] == s) {
			vec_remove(v, i);
			break;
		}
	if (s->evcon != NULL)
		evhttp_connection_set_closecb(s->evcon, NULL, NULL);
	if (s->timer != NULL)
		event_free(s->timer);
	free(s);
}

static void
slow_free_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	slow_free(arg);
}

static void
slow_close_cb(struct evhttp_connection *evcon, void *arg)
{
	struct slow *s = arg;

	(void)evcon;
	s->evcon = NULL;
	/* a reply in progress is orphaned; ending it frees it */
	if (s->req != NULL && evhttp_request_get_connection(s->req) == NULL)
		evhttp_send_reply_end(s->req);
	s->req = NULL;
	if (s->timer != NULL)
		evtimer_del(s->timer);
	event_base_once(s->ctx->base, -1, EV_TIMEOUT, slow_free_cb, s, NULL);
}

static struct slow *
slow_new(struct simhs *ctx, struct evhttp_request *req)
{
	struct slow *s = xcalloc(1, sizeof(*s));

	s->ctx = ctx;
	s->req = req;
	s->evcon = evhttp_request_get_connection(req);
	evhttp_connection_set_closecb(s->evcon, slow_close_cb, s);
	vec_push(&ctx->x_slow, s);
	return s;
}

static void dl_more_cb(struct evhttp_connection *, void *);

static void
dl_more(struct slow *s)
{
	struct evbuffer *b = evbuffer_new();
	unsigned char piece[4096];
	uint64_t n = s->left < DL_PIECE ? s->left : DL_PIECE;

	while (n > 0) {
		size_t k = n < sizeof(piece) ? (size_t)n : sizeof(piece);

		for (size_t i = 0; i < k; i++)
			piece[i] = (unsigned char)((s->off + i) % 251);
		evbuffer_add(b, piece, k);
		s->off += k;
		s->left -= k;
		n -= k;
	}
	if (s->left > 0) {
		evhttp_send_reply_chunk_with_cb(s->req, b, dl_more_cb, s);
		evbuffer_free(b);
		return;
	}
	evhttp_send_reply_chunk(s->req, b);
	evbuffer_free(b);
	evhttp_connection_set_closecb(s->evcon, NULL, NULL);
	s->evcon = NULL;
	evhttp_send_reply_end(s->req);
	slow_free(s);
}

static void
dl_more_cb(struct evhttp_connection *evcon, void *arg)
{
	(void)evcon;
	dl_more(arg);
}

/* GET .../download/{server}/gen<N>[/{filename}] */
static void
download(struct simhs *ctx, struct evhttp_request *req, const char *id)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	unsigned long long n;
	char len[32], *end;
	struct slow *s;

	if (strncmp(id, "gen", 3) != 0 ||
	    (n = strtoull(id + 3, &end, 10), end == id + 3) ||
	    (*end != '\0' && *end != '/') || n > (8ULL << 30)) {
		http_reply_error(req, 404, "M_NOT_FOUND", "Not found");
		return;
	}
	snprintf(len, sizeof(len), "%llu", n);
	evhttp_add_header(h, "Content-Type", "application/octet-stream");
	evhttp_add_header(h, "Content-Length", len);
	evhttp_add_header(h, "Content-Disposition", "attachment");
	evhttp_send_reply_start(req, 200, "OK");
	s = slow_new(ctx, req);
	s->left = n;
	dl_more(s);
}

static void
digest_hex(struct evbuffer *in, char out[65], size_t *len)
{
	unsigned char md[32];
	EVP_MD_CTX *md_ctx = EVP_MD_CTX_new();
	int n = evbuffer_peek(in, -1, NULL, NULL, 0);
	struct evbuffer_iovec *v = xcalloc(n > 0 ? (size_t)n : 1, sizeof(*v));

	*len = evbuffer_get_length(in);
	EVP_DigestInit_ex(md_ctx, EVP_sha256(), NULL);
	n = evbuffer_peek(in, -1, NULL, v, n);
	for (int i = 0; i < n; i++)
		EVP_DigestUpdate(md_ctx, v[i].iov_base, v[i].iov_len);
	EVP_DigestFinal_ex(md_ctx, md, NULL);
	EVP_MD_CTX_free(md_ctx);
	free(v);
	for (int i = 0; i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static void
upload(struct simhs *ctx, struct evhttp_request *req)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	struct json_object *o = json_object_new_object();
	char hex[65], *uri;
	size_t len;

	digest_hex(in, hex, &len);
	uri = xasprintf("mxc://%s/up%zu", ctx->server_name, len);
	json_add_str(o, "content_uri", uri);
	json_add_int(o, "x_simhs_bytes", (int64_t)len);
	json_add_str(o, "x_simhs_sha256", hex);
	free(uri);
	http_reply_json(req, 200, o);
}

/*
 * Every header as {"lowercased-name": "value"} (repeats joined by ", "),
 * and an ETag of the body, as MSC4108's rendezvous answers carry one.
 */
static void
echo(struct evhttp_request *req)
{
	struct evkeyvalq *in = evhttp_request_get_input_headers(req);
	struct json_object *o = json_object_new_object();
	struct json_object *h = json_object_new_object();
	struct evkeyval *kv;
	char hex[65], etag[19];
	size_t len;

	TAILQ_FOREACH(kv, in, next)
	{
		char *name = xstrdup(kv->key), *v;
		const char *old;

		for (char *c = name; *c; c++)
			*c = (char)tolower((unsigned char)*c);
		old = json_str(h, name);
		v = old ? xasprintf("%s, %s", old, kv->value)
		        : xstrdup(kv->value);
		json_add_str(h, name, v);
		free(v);
		free(name);
	}
	digest_hex(evhttp_request_get_input_buffer(req), hex, &len);
	json_add_str(o, "method", method_name(req));
	json_add_str(o, "uri", evhttp_request_get_uri(req));
	json_object_object_add(o, "headers", h);
	json_add_int(o, "body_len", (int64_t)len);
	json_add_str(o, "body_sha256", hex);
	snprintf(etag, sizeof(etag), "\"%.16s\"", hex);
	evhttp_add_header(evhttp_request_get_output_headers(req), "ETag", etag);
	http_reply_json(req, 200, o);
}

/* Freeing a connection inside its request callback is not safe: later. */
static void
reset_cb(evutil_socket_t fd, short what, void *arg)
{
	struct evhttp_connection *evcon = arg;
	struct bufferevent *bev = evhttp_connection_get_bufferevent(evcon);
	struct linger l = {1, 0};
	evutil_socket_t s = bufferevent_getfd(bev);

	(void)fd;
	(void)what;
	if (s >= 0)
		setsockopt(s, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
	evhttp_connection_free(evcon);
}

static void
reset(struct simhs *ctx, struct evhttp_request *req)
{
	event_base_once(ctx->base, -1, EV_TIMEOUT, reset_cb,
	                evhttp_request_get_connection(req), NULL);
}

static void
stall_cb(evutil_socket_t fd, short what, void *arg)
{
	struct slow *s = arg;
	struct evhttp_request *req = s->req;

	(void)fd;
	(void)what;
	s->req = NULL;
	if (s->is_body_stall) {
		evhttp_connection_set_closecb(s->evcon, NULL, NULL);
		s->evcon = NULL;
		evhttp_send_reply_end(req);
	} else {
		evhttp_connection_set_closecb(s->evcon, NULL, NULL);
		s->evcon = NULL;
		http_reply_json(req, 200, json_object_new_object());
	}
	slow_free(s);
}

static long
query_long(const char *query, const char *key, long dflt)
{
	struct evkeyvalq q;
	const char *v;
	long out = dflt;

	TAILQ_INIT(&q);
	if (query != NULL && evhttp_parse_query_str(query, &q) == 0 &&
	    (v = evhttp_find_header(&q, key)) != NULL)
		out = strtol(v, NULL, 10);
	evhttp_clear_headers(&q);
	return out;
}

static void
stall(struct simhs *ctx, struct evhttp_request *req, const char *query,
      bool is_body)
{
	long ms = query_long(query, "ms", 3600 * 1000L);
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	struct slow *s;

	if (is_body) {
		struct evbuffer *b = evbuffer_new();

		evhttp_add_header(evhttp_request_get_output_headers(req),
		                  "Content-Length", "1000");
		evhttp_send_reply_start(req, 200, "OK");
		evbuffer_add(b, "0123456789", 10);
		evhttp_send_reply_chunk(req, b);
		evbuffer_free(b);
	}
	s = slow_new(ctx, req);
	s->is_body_stall = is_body;
	s->timer = evtimer_new(ctx->base, stall_cb, s);
	evtimer_add(s->timer, &tv);
}

static void
chunked(struct evhttp_request *req, const char *query)
{
	long n = query_long(query, "n", 3);
	struct evbuffer *b = evbuffer_new();

	evhttp_add_header(evhttp_request_get_output_headers(req),
	                  "Content-Type", "text/plain");
	evhttp_send_reply_start(req, 200, "OK");
	for (long i = 0; i < n && i < 10000; i++) {
		evbuffer_add_printf(b, "piece %ld\n", i);
		evhttp_send_reply_chunk(req, b);
	}
	evbuffer_free(b);
	evhttp_send_reply_end(req);
}

static void
hop(struct evhttp_request *req)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);

	evhttp_add_header(h, "Connection", "X-Hop-Named");
	evhttp_add_header(h, "X-Hop-Named", "must-not-pass");
	evhttp_add_header(h, "Keep-Alive", "timeout=5");
	evhttp_add_header(h, "Proxy-Authenticate", "Basic");
	evhttp_add_header(h, "Upgrade", "h2c");
	evhttp_add_header(h, "Trailer", "X-Trailer");
	evhttp_add_header(h, "X-End-To-End", "must-pass");
	evhttp_add_header(h, "Cache-Control", "no-store");
	evhttp_add_header(h, "Set-Cookie", "a=1");
	http_reply_json(req, 200, json_object_new_object());
}

static bool
tests_dispatch(struct simhs *ctx, struct evhttp_request *req, const char *what,
               const char *query)
{
	if (strcmp(what, "echo") == 0)
		echo(req);
	else if (strncmp(what, "status/", 7) == 0) {
		long code = strtol(what + 7, NULL, 10);

		if (code < 200 || code > 599)
			code = 500;
		http_reply_error(req, (int)code, "M_UNKNOWN", "as asked");
	} else if (strcmp(what, "reset") == 0)
		reset(ctx, req);
	else if (strcmp(what, "stall") == 0)
		stall(ctx, req, query, false);
	else if (strcmp(what, "stall_body") == 0)
		stall(ctx, req, query, true);
	else if (strcmp(what, "chunked") == 0)
		chunked(req, query);
	else if (strcmp(what, "hop") == 0)
		hop(req);
	else
		return false;
	return true;
}

bool
media_dispatch(struct simhs *ctx, struct evhttp_request *req, const char *path,
               const char *query)
{
	static const char dl[] = "/_matrix/client/v1/media/download/";
	static const char up[] = "/_matrix/media/v3/upload/";
	enum evhttp_cmd_type m = evhttp_request_get_command(req);
	const char *id;

	if (strncmp(path, TESTS_PREFIX, strlen(TESTS_PREFIX)) == 0)
		return tests_dispatch(ctx, req, path + strlen(TESTS_PREFIX),
		                      query);
	if (strcmp(path, "/_matrix/media/v3/upload") == 0 &&
	    m == EVHTTP_REQ_POST) {
		if (client_x_auth(ctx, req, query) != NULL)
			upload(ctx, req);
		return true;
	}
	/* PUT .../upload/{serverName}/{mediaId}: the same counting sink */
	if (strncmp(path, up, sizeof(up) - 1) == 0 && m == EVHTTP_REQ_PUT &&
	    strchr(path + sizeof(up) - 1, '/') != NULL) {
		if (client_x_auth(ctx, req, query) != NULL)
			upload(ctx, req);
		return true;
	}
	if (strncmp(path, dl, sizeof(dl) - 1) == 0 &&
	    (m == EVHTTP_REQ_GET || m == EVHTTP_REQ_HEAD)) {
		if (client_x_auth(ctx, req, query) == NULL)
			return true;
		id = strchr(path + sizeof(dl) - 1, '/');
		if (id == NULL)
			http_reply_error(req, 404, "M_NOT_FOUND", "Not found");
		else
			download(ctx, req, id + 1);
		return true;
	}
	return false;
}

/* Before evhttp_free: what is still streaming or stalled lets go. */
void
media_shutdown(struct simhs *ctx)
{
	while (ctx->x_slow.n > 0)
		slow_free(ctx->x_slow.v[ctx->x_slow.n - 1]);
	vec_free(&ctx->x_slow, NULL);
}
