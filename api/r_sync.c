/*
 * r_sync.c: POST /_matrix/client/v3/sync. A request goes through:
 * parse (query, token, body, param validation) -> auth (auth.c) ->
 * session (session.c) -> [hold until the device's initial sync is stored]
 * -> rounds: every requested stream queries Postgres at the current
 * position; if none has anything new the request waits (longpoll.c) until
 * a notice concerning it, its timeout, or the client going away. Nothing
 * here blocks: every step is a callback.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "api.h"
#include "crypto.h"
#include "json_util.h"
#include "pg.h"
#include "util.h"

static void sync_round(struct sreq *r);

/* Each stream's key in a request body and in a response. */
static const char *const stream_names[ST_COUNT] = {"typing", "to_device",
    "room_member", "room_list"};

void
sreq_ref(struct sreq *r)
{
	r->refs++;
}

void
sreq_unref(struct sreq *r)
{
	if (--r->refs > 0)
		return;
	if (r->timer != NULL)
		event_free(r->timer);
	for (int i = 0; i < ST_COUNT; i++)
		if (r->out[i] != NULL)
			evbuffer_free(r->out[i]);
	json_object_put(r->delta);
	json_object_put(r->params);
	free(r->token);
	free(r->user_id);
	free(r->device_id);
	free(r->since_tok);
	free(r->err_msg);
	free(r->req_msg);
	free(r);
}

/* Ends our part in the HTTP request (reply sent or client gone). */
static void
sreq_finish(struct sreq *r)
{
	if (r->is_done)
		return;
	r->is_done = true;
	if (r->timer != NULL)
		evtimer_del(r->timer);
	if (r->probe != NULL) {
		event_free(r->probe);
		r->probe = NULL;
	}
	lp_unwait(r->api, r);
	if (!r->is_gone && r->evcon != NULL)
		http_conn_closecb(r->api, r->evcon, NULL, NULL);
	sreq_unref(r);
}

static void
close_cb(struct evhttp_connection *evcon, void *arg)
{
	struct sreq *r = arg;

	(void)evcon;
	log_debug("sync: client went away");
	r->is_gone = true;
	r->req = NULL;
	sreq_finish(r);
}

/*
 * evhttp stops reading a connection once its request is complete, so it
 * never notices a long-polling client hang up and close_cb would only run
 * at the reply. Peek at the socket: EOF or an error means the client is
 * gone, and freeing the connection runs close_cb now (the waiter goes at
 * once); pipelined bytes just end the watch.
 */
static void
probe_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sreq *r = arg;
	ssize_t n;
	char b;

	(void)what;
	n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
	if (n > 0)
		return;
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK ||
	    errno == EINTR)) {
		event_add(r->probe, NULL);
		return;
	}
	if (r->is_done || r->is_gone || r->evcon == NULL)
		return;
	sreq_ref(r);
	evhttp_connection_free(r->evcon);
	if (!r->is_done) {	/* no close_cb ran: still let go */
		r->is_gone = true;
		r->req = NULL;
		sreq_finish(r);
	}
	sreq_unref(r);
}

static void
probe_start(struct sreq *r)
{
	struct bufferevent *bev = evhttp_connection_get_bufferevent(r->evcon);
	evutil_socket_t fd = bev != NULL ? bufferevent_getfd(bev) : -1;

	if (fd < 0)
		return;
	r->probe = event_new(r->api->base, fd, EV_READ, probe_cb, r);
	if (r->probe != NULL)
		event_add(r->probe, NULL);
}

void
sync_fail(struct sreq *r, int status, const char *errcode, const char *msg)
{
	if (r->is_done)
		return;
	r->api->stats.errors++;
	if (!r->is_gone && (status == 503 || status == 429))
		http_error_retry(r->req, status, errcode, msg,
		    r->retry_after_ms > 0 ? r->retry_after_ms : 1000);
	else if (!r->is_gone)
		http_error(r->req, status, errcode, msg);
	sreq_finish(r);
}

/*
 * A stream's query failed (already logged by the pool): the request ends
 * with 503 M_UNKNOWN once every stream is done, so the client retries.
 */
void
stream_fail_db(struct sreq *r)
{
	r->err_status = 503;
	r->err_code = "M_UNKNOWN";
}

static void
latency_note(struct api *api, struct sreq *r)
{
	if (r->woken_ms == 0)
		return;
	api->stats.lat[api->stats.nlat++ % 4096] =
	    (double)(now_ms() - r->woken_ms);
}

static void
sync_reply(struct sreq *r)
{
	struct api *api = r->api;
	struct evbuffer *b;
	char tok[SINCE_MAX];

	if (r->is_done || r->is_gone)
		return;
	since_format(&r->next, api->cfg.secret, r->user_id, r->device_id, tok);
	b = evbuffer_new();
	evbuffer_add_printf(b, "{\"next_batch\":\"%s\"", tok);
	for (int i = 0; i < ST_COUNT; i++) {
		if (r->out[i] == NULL || evbuffer_get_length(r->out[i]) == 0)
			continue;
		evbuffer_add_printf(b, ",\"%s\":", stream_names[i]);
		evbuffer_add_buffer(b, r->out[i]);
	}
	evbuffer_add(b, "}\n", 2);
	evhttp_add_header(evhttp_request_get_output_headers(r->req),
	    "Content-Type", "application/json");
	evhttp_send_reply(r->req, 200, "OK", b);
	evbuffer_free(b);
	latency_note(api, r);
	sreq_finish(r);
}

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sreq *r = arg;

	(void)fd;
	(void)what;
	if (r->is_done)
		return;
	if (r->is_initial_wait) {
		/* the initial sync did not arrive in time: serve what exists */
		log_info("sync: %s/%s: initial sync not stored after %lld ms",
		    r->user_id, r->device_id, r->api->cfg.initial_wait_ms);
		lp_unwait(r->api, r);
		r->is_initial_wait = false;
		sync_round(r);
		return;
	}
	r->is_timed_out = true;
	if (r->is_waiting) {
		lp_unwait(r->api, r);
		if (r->rounds == 0)	/* waited first: answer with a round */
			sync_round(r);
		else
			sync_reply(r);
	}
}

static void
timer_at(struct sreq *r, long long at_ms)
{
	long long ms = at_ms - now_ms();
	struct timeval tv;

	if (ms < 0)
		ms = 0;
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	if (r->timer == NULL)
		r->timer = evtimer_new(r->api->base, timer_cb, r);
	evtimer_add(r->timer, &tv);
}

/*
 * Streams refused alone (issue #9). A stream refuses the way it always
 * has: it sets r->err_status/err_code and an err_msg that starts with its
 * own name ("typing: ...", "room_member.next_page ..."), then calls
 * sync_stream_done(). Callbacks run one at a time, so the refusal seen
 * here belongs to the stream that has just finished. When this request's
 * body gave that stream's parameters, the client is told at once and the
 * whole request fails as before; when they were inherited from the sticky
 * session, one stale stream must not starve the others (to-device
 * messages were never delivered again), so the stream's value becomes the
 * Matrix error object and its position stays where the client had it.
 * Anything else (a 503, an unnamed error) fails the request.
 */
static int
refusal_stream(const char *msg)
{
	size_t n;

	for (int i = 0; msg != NULL && i < ST_COUNT; i++) {
		n = strlen(stream_names[i]);
		if (strncmp(msg, stream_names[i], n) == 0 &&
		    (msg[n] == ':' || msg[n] == '.'))
			return i;
	}
	return -1;
}

/* The stream's position in the next token stays at the since token's. */
static void
stream_pos_keep(struct sreq *r, int st)
{
	switch (st) {
	case ST_TYPING:
		r->next.t = r->from.t;
		break;
	case ST_TO_DEVICE:
		r->next.d = r->from.d;
		break;
	case ST_MEMBER:
		r->next.m = r->from.m;
		break;
	case ST_LIST:
		r->next.l = r->from.l;
		break;
	}
}

static void
stream_refusal_take(struct sreq *r)
{
	struct evbuffer *b;
	int st;

	if (r->err_status == 0)
		return;
	st = refusal_stream(r->err_msg);
	if (r->err_status < 400 || r->err_status > 499 || st < 0 ||
	    (r->body_streams & (1u << st)) != 0) {
		if (r->req_status == 0) {
			r->req_status = r->err_status;
			r->req_code = r->err_code;
			free(r->req_msg);
			r->req_msg = r->err_msg;
			r->err_msg = NULL;
		}
	} else {
		log_debug("sync: %s/%s: %s refused alone: %s", r->user_id,
		    r->device_id, stream_names[st], r->err_msg);
		b = r->out[st];
		evbuffer_drain(b, evbuffer_get_length(b));
		http_error_body(b, r->err_code != NULL ? r->err_code :
		    "M_UNKNOWN", r->err_msg);
		stream_pos_keep(r, st);
	}
	r->err_status = 0;
	r->err_code = NULL;
	free(r->err_msg);
	r->err_msg = NULL;
}

/* Bit per stream this body names (an object, even empty). */
static unsigned
body_streams(struct json_object *delta)
{
	struct json_object *v;
	unsigned mask = 0;

	for (int i = 0; i < ST_COUNT; i++) {
		if ((json_object_object_get_ex(delta, stream_names[i], &v) ||
		    (i == ST_MEMBER && json_object_object_get_ex(delta,
		    "room_members", &v))) &&
		    json_object_is_type(v, json_type_object))
			mask |= 1u << i;
	}
	return mask;
}

static void
round_done(struct sreq *r)
{
	struct api *api = r->api;

	if (r->is_done)
		return;
	if (r->req_status != 0) {
		sync_fail(r, r->req_status, r->req_code,
		    r->req_msg ? r->req_msg : "error");
		return;
	}
	if (r->err_status != 0) {
		sync_fail(r, r->err_status, r->err_code,
		    r->err_msg ? r->err_msg : "error");
		return;
	}
	if (r->has_data || r->is_pagination || r->timeout_ms == 0 ||
	    r->is_timed_out || now_ms() >= r->deadline_ms ||
	    api->is_stopping) {
		sync_reply(r);
		return;
	}
	r->wait_from = r->to;
	if (lp_wait(api, r) == -1) {
		log_warnx_rl("sync: too many waiting requests");
		sync_reply(r);
		return;
	}
	if (r->is_waiting)
		timer_at(r, r->deadline_ms);
}

void
sync_stream_done(struct sreq *r)
{
	stream_refusal_take(r);
	if (--r->pending == 0)
		round_done(r);
	sreq_unref(r);
}

/* The position a round answers at. */
static int64_t
round_to(const struct sreq *r)
{
	int64_t to = r->api->cur_pos;

	/* a token from an api that heard of a later commit is still valid */
	if (r->from.m > to)
		to = r->from.m;
	if (r->from.l > to)
		to = r->from.l;
	if (r->from.t > to)
		to = r->from.t;
	if (r->from.d > to)
		to = r->from.d;
	return to;
}

/*
 * Can a request skip its first round and wait at once? Only when that
 * round is sure to find nothing: a streaming room_list and/or to_device
 * request with unchanged parameters whose since already covers every
 * position this api has heard of (the ring check in lp_wait wakes it for
 * anything later). Typing and room_member answer permission errors from
 * their queries, so they always run. This was about one empty round (two
 * statements) in three requests under load.
 */
static bool
can_wait_first(const struct sreq *r)
{
	int64_t to = round_to(r);

	if (r->since_tok == NULL || r->rounds > 0 || r->params_changed ||
	    r->timeout_ms == 0 || now_ms() >= r->deadline_ms ||
	    r->api->is_stopping || r->p.has_typing || r->p.has_member ||
	    (!r->p.has_list && !r->p.has_to_device))
		return false;
	if (r->p.has_list && (r->p.l_page >= 0 || r->from.l != to))
		return false;
	if (r->p.has_to_device && r->from.d != to)
		return false;
	return true;
}

/* Waits without a first round; the wake-up (or the timeout) runs it. */
static void
wait_first(struct sreq *r)
{
	r->to = r->wait_from = round_to(r);
	r->next = r->from;
	if (lp_wait(r->api, r) == -1) {
		sync_round(r);
		return;
	}
	if (r->is_waiting)
		timer_at(r, r->deadline_ms);
}

static void
sync_round(struct sreq *r)
{
	struct api *api = r->api;

	r->rounds++;
	r->to = round_to(r);
	r->has_data = r->is_pagination = false;
	r->next = r->from;
	r->req_status = 0;
	for (int i = 0; i < ST_COUNT; i++) {
		if (r->out[i] == NULL)
			r->out[i] = evbuffer_new();
		evbuffer_drain(r->out[i], evbuffer_get_length(r->out[i]));
	}
	/* one extra count so no stream finishes the round before all start */
	r->pending = 1;
	sreq_ref(r);
	if (r->p.has_typing) {
		r->pending++;
		sreq_ref(r);
		s_typing_run(api, r);
	}
	if (r->p.has_to_device) {
		r->pending++;
		sreq_ref(r);
		s_to_device_run(api, r);
	}
	if (r->p.has_member) {
		r->pending++;
		sreq_ref(r);
		s_room_member_run(api, r);
	}
	if (r->p.has_list) {
		r->pending++;
		sreq_ref(r);
		s_room_list_run(api, r);
	}
	sync_stream_done(r);
}

void
sync_wake(struct sreq *r)
{
	if (r->is_done)
		return;
	if (r->is_revoked) {
		sync_fail(r, 401, "M_UNKNOWN_TOKEN",
		    "the homeserver rejected this token");
		return;
	}
	if (r->is_initial_wait) {
		r->is_initial_wait = false;
		if (r->timer != NULL)
			evtimer_del(r->timer);
	}
	if (!r->is_initial_done) {
		sync_session_done(r, 0, NULL, NULL);
		return;
	}
	sync_round(r);
}

static void
device_cb(PGresult *res, void *arg)
{
	struct sreq *r = arg;

	if (r->is_done)
		goto out;
	if (res == NULL || PQntuples(res) != 1) {
		sync_fail(r, res ? 401 : 503, res ? "M_UNKNOWN_TOKEN" :
		    "M_UNKNOWN", res ? "unknown device" : "database unavailable");
		goto out;
	}
	if (strcmp(PQgetvalue(res, 0, 1), "expired") == 0) {
		auth_forget(r->api, r->user_id, r->device_id, true);
		sync_fail(r, 401, "M_UNKNOWN_TOKEN",
		    "the homeserver rejected this token");
		goto out;
	}
	if (PQgetvalue(res, 0, 0)[0] == 't') {
		r->is_initial_done = true;
		auth_forget(r->api, r->user_id, r->device_id, false);
		sync_round(r);
		goto out;
	}
	if (r->device_notices_at != r->api->device_notices) {
		/* one may be this device's initial sync, already walked past */
		sync_params_stored(r);
		goto out;
	}
	/* hold until the poller's initial sync is stored (bounded) */
	r->is_initial_wait = true;
	if (lp_wait(r->api, r) == -1) {
		r->is_initial_wait = false;
		sync_round(r);
		goto out;
	}
	if (r->is_waiting && (r->timer == NULL ||
	    !evtimer_pending(r->timer, NULL)))
		timer_at(r, r->start_ms + r->api->cfg.initial_wait_ms);
out:
	sreq_unref(r);
}

void
sync_session_done(struct sreq *r, int status, const char *errcode,
    const char *msg)
{
	const char *ec, *em;
	bool changed;

	if (status != 0) {
		sync_fail(r, status, errcode, msg);
		return;
	}
	if (r->rounds == 0 && !r->is_initial_wait && r->since_tok != NULL &&
	    r->delta != NULL) {
		if (params_merge(r->params, r->delta, &changed, &ec, &em) ==
		    -1) {
			sync_fail(r, 400, ec, em);
			return;
		}
		json_object_put(r->delta);
		r->delta = NULL;
		params_parse(r->params, &r->p);
		r->params_changed = changed;
		if (changed) {
			session_store_params(r->api, r);
			return;
		}
	}
	sync_params_stored(r);
}

/* The session's parameters are settled: serve, or hold for initial sync. */
void
sync_params_stored(struct sreq *r)
{
	struct api *api = r->api;
	const char *params[2];

	if (r->is_initial_done || api->cfg.initial_wait_ms == 0) {
		if (can_wait_first(r))
			wait_first(r);
		else
			sync_round(r);
		return;
	}
	r->to = r->wait_from = api->cur_pos;
	r->device_notices_at = api->device_notices;
	params[0] = r->user_id;
	params[1] = r->device_id;
	sreq_ref(r);
	sql_query(api, Q_DEVICE_STATE, params, device_cb, r);
}

static int parse_query(struct sreq *, const char **, const char **);
static int parse_body(struct sreq *, int *, const char **, const char **);

/*
 * What a request asks, checked once its token is known (issue #9: a
 * client must learn first that it is not authenticated, then that its
 * since is unusable, only then what is wrong with its body). Fails the
 * request and returns -1, or returns 0.
 */
static int
sync_parse(struct sreq *r)
{
	const char *errcode, *err;
	int status;

	if (parse_query(r, &errcode, &err) == -1) {
		sync_fail(r, strcmp(errcode, "M_MISSING_TOKEN") == 0 ? 401 :
		    400, errcode, err);
		return -1;
	}
	if (r->since_tok != NULL && !since_verify(r->since_tok,
	    r->api->cfg.secret, r->user_id, r->device_id)) {
		sync_fail(r, 400, "M_UNKNOWN_SYNC_SESSION",
		    "Session unknown or expired");
		return -1;
	}
	if (parse_body(r, &status, &errcode, &err) == -1) {
		sync_fail(r, status, errcode, err);
		return -1;
	}
	r->deadline_ms = r->start_ms + r->timeout_ms;
	return 0;
}

void
sync_auth_done(struct sreq *r, int status, const char *errcode,
    const char *msg)
{
	if (status != 0) {
		sync_fail(r, status, errcode, msg);
		return;
	}
	if (r->is_done || sync_parse(r) == -1)
		return;
	session_load(r->api, r);
}

/* Bearer token from the Authorization header, or NULL. */
static const char *
bearer(struct evhttp_request *req)
{
	const char *h = evhttp_find_header(evhttp_request_get_input_headers(req),
	    "Authorization");

	if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0)
		return NULL;
	h += 7;
	while (*h == ' ')
		h++;
	return *h != '\0' ? h : NULL;
}

static int
parse_query(struct sreq *r, const char **errcode, const char **err)
{
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(r->req);
	struct query q;

	if (query_parse(evhttp_uri_get_query(uri), r->api->cfg.max_timeout_ms,
	    &q, errcode, err) == -1)
		return -1;
	if (q.timeout_ms >= 0)
		r->timeout_ms = q.timeout_ms;
	r->from = q.from;
	r->since_tok = q.since;	/* taken over */
	return 0;
}

static int
parse_body(struct sreq *r, int *status, const char **errcode,
    const char **err)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(r->req);
	size_t len = evbuffer_get_length(in);
	struct json_object *merged;
	const char *perr;
	bool changed;

	*status = 400;
	if ((long long)len > r->api->cfg.max_body) {
		*status = 413;
		*errcode = "M_TOO_LARGE";
		*err = "request body too large";
		return -1;
	}
	if (len == 0)
		r->delta = json_object_new_object();
	else if ((r->delta = json_parse_bounded(
	    (const char *)evbuffer_pullup(in, -1), len, &perr)) == NULL) {
		*errcode = "M_NOT_JSON";
		*err = "request body is not valid JSON";
		return -1;
	}
	r->body_streams = body_streams(r->delta);
	merged = json_object_new_object();
	if (params_merge(merged, r->delta, &changed, errcode, err) == -1) {
		json_object_put(merged);
		return -1;
	}
	r->params = merged;
	if (r->since_tok == NULL) {
		params_parse(r->params, &r->p);
		json_object_put(r->delta);
		r->delta = NULL;
	}
	return 0;
}

void
sync_handle(struct api *api, struct evhttp_request *req)
{
	struct sreq *r;
	const char *tok;

	api->stats.requests++;
	r = xcalloc(1, sizeof(*r));
	r->api = api;
	r->req = req;
	r->refs = 1;
	r->start_ms = now_ms();
	r->evcon = evhttp_request_get_connection(req);
	if ((tok = bearer(req)) == NULL) {
		sync_fail(r, 401, "M_MISSING_TOKEN",
		    "missing access token (Authorization: Bearer)");
		return;
	}
	r->token = xstrdup(tok);
	token_hash(r->token, strlen(r->token), r->token_hash);
	if (r->evcon != NULL) {
		http_conn_closecb(api, r->evcon, close_cb, r);
		probe_start(r);
	}
	auth_resolve(api, r);
}
