/*
 * fail.c: failure injection. Rules added through POST /_simhs/fail match
 * the next N client-server requests (by route and optionally token) and
 * answer them badly: an error status, a non-JSON or cut-off body, a
 * dropped connection, a delay, a body that stalls half way, or an
 * instant answer that does not move next_batch. Held requests (drop, slow,
 * stall) are owned here until their timer fires or the client goes away.
 * It also keeps the query strings of the last /sync requests, so a test
 * can see what a client asked for (GET /_simhs/sync_log).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>

#include "simhs.h"

struct fail_hold {
	TAILQ_ENTRY(fail_hold) entry;
	struct simhs *ctx;
	struct creq *c;
	struct event *timer;
	bool is_drop;
};

static const char *mode_names[] = {"status", "malformed", "truncated", "drop",
                                   "slow",   "stall",     "unchanged"};

static void
rule_free(struct fail_rule *r)
{
	free(r->path);
	free(r->token);
	free(r->errcode);
	free(r);
}

static void
hold_free(struct fail_hold *h)
{
	TAILQ_REMOVE(&h->ctx->holds, h, entry);
	event_free(h->timer);
	free(h);
}

static void
hold_close_cb(struct evhttp_connection *evcon, void *arg)
{
	struct fail_hold *h = arg;

	(void)evcon;
	creq_abort(h->c);
	hold_free(h);
}

/* Timer: drop the connection without a word, or carry on late. */
static void
hold_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct fail_hold *h = arg;
	struct evhttp_connection *evcon = h->c->evcon;
	struct creq *c = h->c;
	bool is_drop = h->is_drop;

	(void)fd;
	(void)what;
	creq_unhold(c);
	hold_free(h);
	if (is_drop) {
		creq_abort(c);
		evhttp_connection_free(evcon);
	} else
		creq_dispatch(c);
}

static void
fail_hold(struct creq *c, bool is_drop, int delay_ms)
{
	struct fail_hold *h;
	struct timeval tv;

	h = xcalloc(1, sizeof(*h));
	h->ctx = c->ctx;
	h->c = c;
	h->is_drop = is_drop;
	if ((h->timer = evtimer_new(c->ctx->base, hold_timer_cb, h)) == NULL) {
		free(h);
		creq_error(c, 500, "M_UNKNOWN", "Internal server error");
		return;
	}
	TAILQ_INSERT_TAIL(&c->ctx->holds, h, entry);
	tv.tv_sec = delay_ms / 1000;
	tv.tv_usec = (delay_ms % 1000) * 1000;
	evtimer_add(h->timer, &tv);
	creq_hold(c, hold_close_cb, h);
}

static void
fail_status(struct creq *c, const struct fail_rule *r)
{
	struct json_object *o = json_object_new_object();
	char secs[32];

	json_add_str(o, "errcode", r->errcode);
	json_add_str(o, "error",
	             r->status == 429 ? "Too Many Requests"
	                              : "Injected failure");
	if (r->status == 429) {
		json_add_int(o, "retry_after_ms", r->retry_after_ms);
		snprintf(secs, sizeof(secs), "%lld",
		         (long long)((r->retry_after_ms + 999) / 1000));
		evhttp_add_header(evhttp_request_get_output_headers(c->req),
		                  "Retry-After", secs);
	}
	creq_reply(c, r->status, o);
}

/*
 * 200 and the first half of a body, sent at once, then nothing until
 * delay_ms is over and the connection is dropped: a client without a
 * stall limit waits for the rest as long as its own timeout lets it.
 */
static void
fail_stall(struct creq *c, const struct fail_rule *r)
{
	struct evbuffer *b = evbuffer_new();

	if (b == NULL) {
		creq_error(c, 500, "M_UNKNOWN", "Internal server error");
		return;
	}
	evhttp_add_header(evhttp_request_get_output_headers(c->req),
	                  "Content-Type", "application/json");
	evhttp_send_reply_start(c->req, 200, "OK");
	evbuffer_add_printf(b,
	                    "{\"next_batch\":\"s%llu_0_0_0_0_1_0_0_0_1\","
	                    "\"rooms\":{\"join\":{\"!stall:%s\":{",
	                    (unsigned long long)c->ctx->pos,
	                    c->ctx->server_name);
	evhttp_send_reply_chunk(c->req, b);
	evbuffer_free(b);
	fail_hold(c, true, r->delay_ms);
}

/*
 * What a homeserver with nothing new says when it does not wait: 200 at
 * once, next_batch equal to the since it was given (the current position
 * without one), and no sections but the always-present key counts.
 */
static void
fail_unchanged(struct creq *c)
{
	struct json_object *o = json_object_new_object(), *k;
	struct evkeyvalq q;
	const char *since = NULL;
	char tok[200];

	TAILQ_INIT(&q);
	if (c->query != NULL && evhttp_parse_query_str(c->query, &q) == 0)
		since = evhttp_find_header(&q, "since");
	if (since == NULL || since[0] == '\0') {
		token_format(tok, sizeof(tok), c->ctx->pos, c->ctx->pos);
		since = tok;
	}
	json_add_str(o, "next_batch", since);
	k = json_object_new_object();
	json_add_int(k, "signed_curve25519", 0);
	json_object_object_add(o, "device_one_time_keys_count", k);
	json_object_object_add(o, "device_unused_fallback_key_types",
	                       json_object_new_array());
	evhttp_clear_headers(&q);
	creq_reply(c, 200, o);
}

static void
fail_apply(struct creq *c, const struct fail_rule *r)
{
	char body[512];

	log_debug(c->ctx, "fail: %s on %s", mode_names[r->mode], c->route);
	switch (r->mode) {
	case FAIL_STATUS:
		fail_status(c, r);
		break;
	case FAIL_MALFORMED:
		creq_reply_raw(
		    c, 200, "text/html",
		    "<html><body><h1>502 Bad Gateway</h1></body></html>\n");
		break;
	case FAIL_TRUNCATED:
		snprintf(
		    body, sizeof(body),
		    "{\"next_batch\":\"s%llu_0_0_0_0_1_0_0_0_1\",\"rooms\":"
		    "{\"join\":{\"!cut:%s\":{\"timeline\":{\"events\":"
		    "[{\"type\":\"m.room.message\",\"content\":{\"bo",
		    (unsigned long long)c->ctx->pos, c->ctx->server_name);
		creq_reply_raw(c, 200, "application/json", body);
		break;
	case FAIL_DROP:
		fail_hold(c, true, 0);
		break;
	case FAIL_SLOW:
		fail_hold(c, false, r->delay_ms);
		break;
	case FAIL_STALL:
		fail_stall(c, r);
		break;
	case FAIL_UNCHANGED:
		fail_unchanged(c);
		break;
	}
}

/* Keeps the query of a /sync request in the ring of the last ones. */
static void
fail_log_sync(struct creq *c)
{
	struct sync_log_ent *e;

	if (!c->is_sync)
		return;
	e = &c->ctx->sync_log[c->ctx->sync_log_n++ % SYNC_LOG_MAX];
	free(e->token);
	free(e->query);
	e->token = c->token_str != NULL ? xstrdup(c->token_str) : NULL;
	e->query = c->query != NULL ? xstrdup(c->query) : NULL;
}

/* GET /_simhs/sync_log[?access_token=]: oldest first. */
void
fail_sync_log(struct evhttp_request *req, struct simhs *ctx,
              struct json_object *b)
{
	const char *tok = json_str(b, "access_token");
	struct json_object *o = json_object_new_object();
	struct json_object *a = json_object_new_array(), *x;
	uint64_t i =
	    ctx->sync_log_n > SYNC_LOG_MAX ? ctx->sync_log_n - SYNC_LOG_MAX : 0;

	for (; i < ctx->sync_log_n; i++) {
		struct sync_log_ent *e = &ctx->sync_log[i % SYNC_LOG_MAX];

		if (tok != NULL &&
		    (e->token == NULL || strcmp(e->token, tok) != 0))
			continue;
		x = json_object_new_object();
		if (e->token != NULL)
			json_add_str(x, "access_token", e->token);
		json_add_str(x, "query", e->query != NULL ? e->query : "");
		json_object_array_add(a, x);
	}
	json_object_object_add(o, "requests", a);
	json_add_int(o, "total", (int64_t)ctx->sync_log_n);
	http_reply_json(req, 200, o);
}

/* Returns true when a rule took over the request. */
bool
fail_check(struct creq *c)
{
	struct fail_rule *r, copy;

	fail_log_sync(c);
	TAILQ_FOREACH(r, &c->ctx->fails, entry)
	{
		if (strcmp(r->path, "*") != 0 && strcmp(r->path, c->route) != 0)
			continue;
		if (r->token != NULL && (c->token_str == NULL ||
		                         strcmp(r->token, c->token_str) != 0))
			continue;
		break;
	}
	if (r == NULL)
		return false;
	copy = *r;
	if (--r->count > 0) {
		fail_apply(c, &copy);
		return true;
	}
	TAILQ_REMOVE(&c->ctx->fails, r, entry);
	fail_apply(c, &copy);
	rule_free(r);
	return true;
}

static int
fail_parse_mode(struct json_object *body, struct fail_rule *r)
{
	const char *m = json_str(body, "mode");
	size_t i;

	if (m == NULL) {
		r->mode = FAIL_STATUS;
		return 0;
	}
	for (i = 0; i < sizeof(mode_names) / sizeof(mode_names[0]); i++)
		if (strcmp(m, mode_names[i]) == 0) {
			r->mode = (enum fail_mode)i;
			return 0;
		}
	return -1;
}

static int64_t
int_or(struct json_object *body, const char *key, int64_t dflt)
{
	struct json_object *v = json_get(body, key, json_type_int);

	return v != NULL ? json_object_get_int64(v) : dflt;
}

/* POST /_simhs/fail */
void
fail_add(struct evhttp_request *req, struct simhs *ctx,
         struct json_object *body)
{
	const char *path = json_str(body, "path"), *tok, *ec;
	struct fail_rule *r;
	struct json_object *o;

	r = xcalloc(1, sizeof(*r));
	r->path = xstrdup(path != NULL ? path : "*");
	if ((tok = json_str(body, "access_token")) != NULL)
		r->token = xstrdup(tok);
	r->count = (int)int_or(body, "count", 1);
	r->status = (int)int_or(body, "status", 500);
	r->retry_after_ms = int_or(body, "retry_after_ms", 1000);
	r->delay_ms = (int)int_or(body, "delay_ms", 1000);
	ec = json_str(body, "errcode");
	r->errcode = xstrdup(ec != NULL         ? ec
	                     : r->status == 429 ? "M_LIMIT_EXCEEDED"
	                                        : "M_UNKNOWN");
	if (fail_parse_mode(body, r) < 0 || r->count < 1 ||
	    r->count > 1000000 || r->status < 100 || r->status > 599 ||
	    r->retry_after_ms < 0 || r->delay_ms < 0 || r->delay_ms > 600000) {
		rule_free(r);
		http_reply_error(
		    req, 400, "M_INVALID_PARAM",
		    "bad fail rule: mode status|malformed|truncated|drop|slow|"
		    "stall|unchanged, count 1.., status 100-599, "
		    "delay_ms 0-600000");
		return;
	}
	TAILQ_INSERT_TAIL(&ctx->fails, r, entry);
	o = json_object_new_object();
	json_add_str(o, "path", r->path);
	json_add_str(o, "mode", mode_names[r->mode]);
	json_add_int(o, "count", r->count);
	http_reply_json(req, 200, o);
}

void
fail_clear(struct simhs *ctx)
{
	struct fail_rule *r;

	while ((r = TAILQ_FIRST(&ctx->fails)) != NULL) {
		TAILQ_REMOVE(&ctx->fails, r, entry);
		rule_free(r);
	}
}

/* On exit: forget held requests; evhttp_free closes their connections. */
void
fail_shutdown(struct simhs *ctx)
{
	struct fail_hold *h;

	while ((h = TAILQ_FIRST(&ctx->holds)) != NULL) {
		creq_unhold(h->c);
		creq_abort(h->c);
		hold_free(h);
	}
	fail_clear(ctx);
	for (size_t i = 0; i < SYNC_LOG_MAX; i++) {
		free(ctx->sync_log[i].token);
		free(ctx->sync_log[i].query);
		ctx->sync_log[i].token = ctx->sync_log[i].query = NULL;
	}
}
