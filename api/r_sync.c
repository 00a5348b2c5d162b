/*
 * r_sync.c: POST /_matrix/client/v3/sync as one state machine. A request
 * is in one state of enum sync_state (api.h), which names what it waits
 * for; sync_step() moves it on when that arrives: a completion (auth.c,
 * session.c, the device row, the round's streams), a wake-up (longpoll.c)
 * or its timer. parse -> auth -> session -> [parameters stored] -> device
 * [held until its initial sync is stored] -> rounds: every requested
 * stream (stream_table) queries Postgres at the current position; if none
 * has anything new the request waits until a notice concerning it, its
 * timeout, or the client going away. Nothing here blocks.
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
#include "proto.h"
#include "util.h"

enum sync_ev {
	SEV_DONE,	/* what the state waited for completed */
	SEV_WAKE,	/* longpoll.c: a notice concerns the request */
	SEV_TIMER,	/* the long-poll or initial-sync deadline */
};

static void sync_step(struct sreq *r, enum sync_ev ev);
static void sync_done_cb(void *arg, int status, const char *errcode,
    const char *msg);
static void sync_wake_cb(void *arg);
static void round_start(struct sreq *r);
static void device_check(struct sreq *r);

static bool
want_typing(const struct params *p)
{
	return p->has_typing;
}

static bool
want_to_device(const struct params *p)
{
	return p->has_to_device;
}

static bool
want_member(const struct params *p)
{
	return p->has_member;
}

static bool
want_list(const struct params *p)
{
	return p->has_list;
}

/*
 * The streams, in the order a round starts them: each one's key in a
 * request body and in a response, whether the parameters ask for it, how
 * it runs, and its position in a since token.
 */
static const struct stream {
	const char *name;
	bool (*wanted)(const struct params *);
	void (*run)(struct api *, struct sreq *);
	size_t pos;
} stream_table[ST_COUNT] = {
	[ST_TYPING] = {"typing", want_typing, s_typing_run,
	    offsetof(struct since, t)},
	[ST_TO_DEVICE] = {"to_device", want_to_device, s_to_device_run,
	    offsetof(struct since, d)},
	[ST_MEMBER] = {"room_member", want_member, s_room_member_run,
	    offsetof(struct since, m)},
	[ST_LIST] = {"room_list", want_list, s_room_list_run,
	    offsetof(struct since, l)},
};

static const char *const state_names[] = {
	[SYNC_PARSE] = "parse",
	[SYNC_AUTH] = "auth",
	[SYNC_SESSION] = "session",
	[SYNC_PARAMS] = "params",
	[SYNC_DEVICE] = "device",
	[SYNC_ROUND] = "round",
	[SYNC_WAITING] = "waiting",
	[SYNC_REPLIED] = "replied",
};

const char *
sync_state_name(enum sync_state s)
{
	if ((unsigned)s >= sizeof(state_names) / sizeof(state_names[0]))
		return "?";
	return state_names[s];
}

/* Ends our part in the HTTP request (reply sent or client gone). */
static void
sreq_finish(struct sreq *r)
{
	if (r->state == SYNC_REPLIED)
		return;
	r->state = SYNC_REPLIED;
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
	log_debug("sync: client went away (%s)", sync_state_name(r->state));
	r->is_gone = true;
	r->req = NULL;
	sreq_finish(r);
}

/* sreq_probe_start: the client hung up while its request was held. */
static void
probe_gone(struct sreq *r)
{
	sreq_finish(r);
}

static void
sync_fail(struct sreq *r, int status, const char *errcode, const char *msg)
{
	if (sreq_replied(r))
		return;
	r->api->stats.errors++;
	if (!r->is_gone)
		http_error_sreq(r, status, errcode, msg);
	sreq_finish(r);
}

static void
latency_note(struct api *api, struct sreq *r)
{
	if (r->woken_ms == 0)
		return;
	api->stats.lat[api->stats.nlat++ % 4096] =
	    (double)(now_ms() - r->woken_ms);
	prom_wake(api, now_ms() - r->woken_ms);
}

static void
sync_reply(struct sreq *r)
{
	struct api *api = r->api;
	struct evbuffer *b;
	char tok[SINCE_MAX];

	if (sreq_replied(r) || r->is_gone)
		return;
	since_format(&r->next, api->cfg.secret, r->user_id, r->device_id, tok);
	b = evbuffer_new();
	evbuffer_add_printf(b, "{\"next_batch\":\"%s\"", tok);
	for (int i = 0; i < ST_COUNT; i++) {
		if (r->out[i] == NULL || evbuffer_get_length(r->out[i]) == 0)
			continue;
		evbuffer_add_printf(b, ",\"%s\":", stream_table[i].name);
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
	if (sreq_replied(r))
		return;
	if (r->is_initial_wait) {
		sync_step(r, SEV_TIMER);
		return;
	}
	/* a round under way (or a wake-up on its way) sees it and replies */
	r->is_timed_out = true;
	if (r->is_waiting)
		sync_step(r, SEV_TIMER);
}

static void
timer_at(struct sreq *r, long long at_ms)
{
	sreq_timer_at(r, at_ms, timer_cb, r);
}

/*
 * Streams refused alone (issue #9). A stream refuses the way it always
 * has: it sets r->err_status/err_code and an err_msg that starts with its
 * own name ("typing: ...", "room_member.next_page ..."), then calls
 * stream_done(). Callbacks run one at a time, so the refusal seen
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
		n = strlen(stream_table[i].name);
		if (strncmp(msg, stream_table[i].name, n) == 0 &&
		    (msg[n] == ':' || msg[n] == '.'))
			return i;
	}
	return -1;
}

/* The stream's position in the next token stays at the since token's. */
static void
stream_pos_keep(struct sreq *r, int st)
{
	size_t off = stream_table[st].pos;

	*(int64_t *)((char *)&r->next + off) =
	    *(const int64_t *)((const char *)&r->from + off);
}

/*
 * Takes the refusal the stream that just finished left in r->err_*, if
 * any: a request-level failure, or the stream's own error object (see
 * above).
 */
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
		    r->device_id, stream_table[st].name, r->err_msg);
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
		if (params_stream_get(delta, stream_table[i].name, &v) &&
		    json_object_is_type(v, json_type_object))
			mask |= 1u << i;
	}
	return mask;
}

/* Every stream of the round is done: reply, or wait for a change. */
static void
round_done(struct sreq *r)
{
	struct api *api = r->api;

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
	r->state = SYNC_WAITING;
	if (lp_wait(api, r, sync_wake_cb, r) == -1) {
		log_warnx_rl("sync: too many waiting requests");
		sync_reply(r);
		return;
	}
	if (r->is_waiting)
		timer_at(r, r->deadline_ms);
}

/* A stream's completion (stream_done): the last one ends the round. */
static void
round_stream_done(struct sreq *r)
{
	stream_refusal_take(r);
	if (--r->pending == 0)
		sync_step(r, SEV_DONE);
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
 * The lowest position a waiting-first request's since covers: what came
 * after it is in the ring of notices, which lp_wait reads from there.
 */
static int64_t
since_covers(const struct sreq *r)
{
	int64_t at = round_to(r);

	if (r->p.has_list && r->from.l < at)
		at = r->from.l;
	if (r->p.has_to_device && r->from.d < at)
		at = r->from.d;
	return at;
}

/*
 * Can a request skip its first round and wait at once? Only when that
 * round is sure to find nothing: a streaming room_list and/or to_device
 * request with unchanged parameters whose since covers every change this
 * api has heard of that concerns it. Changes after the since are in the
 * ring of notices from since_covers() on (lp_wait wakes the request at
 * once for one that concerns it, or when the ring no longer reaches back
 * so far), so a since behind only by other users' changes waits too: at
 * 1,000 events/s to 100 clients nearly every since was behind, and 40 %
 * of the rounds (two statements each) found nothing. Typing and
 * room_member answer permission errors from their queries, so they always
 * run.
 */
static bool
can_wait_first(const struct sreq *r)
{
	/* once woken it runs a round: the ring would wake it again at once */
	if (r->since_tok == NULL || r->rounds > 0 || r->woken_ms != 0 ||
	    r->params_changed || r->timeout_ms == 0 ||
	    now_ms() >= r->deadline_ms || r->api->is_stopping ||
	    r->p.has_typing || r->p.has_member ||
	    (!r->p.has_list && !r->p.has_to_device))
		return false;
	if (r->p.has_list && (r->p.l_page >= 0 || r->from.l <= 0))
		return false;
	return true;
}

/* Waits without a first round; the wake-up (or the timeout) runs it. */
static void
wait_first(struct sreq *r)
{
	r->to = round_to(r);
	r->wait_from = since_covers(r);
	r->next = r->from;
	r->state = SYNC_WAITING;
	if (lp_wait(r->api, r, sync_wake_cb, r) == -1) {
		round_start(r);
		return;
	}
	if (r->is_waiting)
		timer_at(r, r->deadline_ms);
}

/* Starts every stream the parameters ask for, at one position. */
static void
round_start(struct sreq *r)
{
	struct api *api = r->api;

	r->state = SYNC_ROUND;
	r->rounds++;
	r->to = round_to(r);
	r->has_data = r->is_pagination = false;
	r->next = r->from;
	r->req_status = 0;
	r->stream_cb = round_stream_done;
	for (int i = 0; i < ST_COUNT; i++) {
		if (r->out[i] == NULL)
			r->out[i] = evbuffer_new();
		evbuffer_drain(r->out[i], evbuffer_get_length(r->out[i]));
	}
	/* one extra count so no stream finishes the round before all start */
	r->pending = 1;
	sreq_ref(r);
	for (int i = 0; i < ST_COUNT; i++) {
		if (!stream_table[i].wanted(&r->p))
			continue;
		r->pending++;
		sreq_ref(r);
		stream_table[i].run(api, r);
	}
	round_stream_done(r);
}

/*
 * Whether r needs only the first window of an initial sync that is still
 * being stored (k rooms of it are, docs/DESIGN.md "The first window
 * first"): a room_list first page by recency of at most k rooms, or its
 * stream, without spaces and without a room's members.
 */
static bool
window_fits(const struct sreq *r, long long k)
{
	const struct params *p = &r->p;

	return k > 0 && p->has_list && !p->has_member && p->l_nspaces == 0 &&
	       p->l_page < 0 && p->l_limit <= k &&
	       (p->l_nsorts == 0 || p->l_sorts[0] == SORT_BY_RECENCY);
}

static void wake(struct sreq *r);

/* auth_rejected: 401, or a newer token than the one refused goes on. */
static void
rejected_cb(void *arg, int status, const char *errcode, const char *msg)
{
	struct sreq *r = arg;

	if (status != 0) {
		sync_fail(r, status, errcode, msg);
		return;
	}
	r->is_revoked = false;
	r->state = SYNC_DEVICE;
	wake(r);
}

/*
 * The homeserver refused the device's token: auth.c says whether it was
 * this one, and softly; the long-poll timer is ignored meanwhile
 * (SYNC_AUTH).
 */
static void
token_rejected(struct sreq *r)
{
	r->state = SYNC_AUTH;
	auth_rejected(r->api, r, rejected_cb, r);
}

/*
 * The device row: an expired device is 401, an initially synced one is
 * served, and so is a request its first window answers; else the request
 * is held until its initial sync is stored (re-read first if a device
 * notice arrived meanwhile).
 */
static void
device_cb(PGresult *res, void *arg)
{
	struct sreq *r = arg;

	if (sreq_replied(r))
		goto out;
	if (res == NULL || PQntuples(res) != 1) {
		sync_fail(r, res ? 401 : 503, res ? "M_UNKNOWN_TOKEN" :
		    "M_UNKNOWN", res ? "unknown device" : "database unavailable");
		goto out;
	}
	if (dev_state_parse(PQgetvalue(res, 0, 1)) == DEV_STATE_EXPIRED) {
		token_rejected(r);
		goto out;
	}
	if (PQgetvalue(res, 0, 0)[0] == 't') {
		r->is_initial_done = true;
		auth_forget(r->api, r->user_id, r->device_id, false);
		round_start(r);
		goto out;
	}
	if (window_fits(r, strtoll(PQgetvalue(res, 0, 2), NULL, 10))) {
		round_start(r);
		goto out;
	}
	if (r->device_notices_at != r->api->device_notices) {
		/* one may be this device's initial sync, already walked past */
		device_check(r);
		goto out;
	}
	/* hold until the poller's initial sync is stored (bounded) */
	r->is_initial_wait = true;
	if (lp_wait(r->api, r, sync_wake_cb, r) == -1) {
		r->is_initial_wait = false;
		round_start(r);
		goto out;
	}
	if (r->is_waiting && (r->timer == NULL ||
	    !evtimer_pending(r->timer, NULL)))
		timer_at(r, r->start_ms + r->api->cfg.initial_wait_ms);
out:
	sreq_unref(r);
}

/*
 * The session's parameters are settled: serve, or read the device row to
 * hold the request until the device's initial sync is stored.
 */
static void
device_check(struct sreq *r)
{
	struct api *api = r->api;
	const char *params[2];

	r->state = SYNC_DEVICE;
	if (r->is_initial_done || api->cfg.initial_wait_ms == 0) {
		if (can_wait_first(r))
			wait_first(r);
		else
			round_start(r);
		return;
	}
	r->to = r->wait_from = api->cur_pos;
	r->device_notices_at = api->device_notices;
	params[0] = r->user_id;
	params[1] = r->device_id;
	sreq_ref(r);
	sql_query(api, Q_DEVICE_STATE, params, device_cb, r);
}

/*
 * A loaded session: the body's parameters merge into its sticky ones.
 * Returns 1 when they changed (to be stored), 0, or -1 (request failed).
 */
static int
params_take(struct sreq *r)
{
	const char *ec, *em;
	bool changed;

	if (r->since_tok == NULL || r->delta == NULL)
		return 0;
	if (params_merge(r->params, r->delta, &changed, &ec, &em) == -1) {
		sync_fail(r, 400, ec, em);
		return -1;
	}
	json_object_put(r->delta);
	r->delta = NULL;
	params_parse(r->params, &r->p);
	r->params_changed = changed;
	return changed ? 1 : 0;
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

/* A wake-up (longpoll.c), or a notice held a device on hold. */
static void
wake(struct sreq *r)
{
	if (r->is_revoked) {
		token_rejected(r);
		return;
	}
	if (r->is_initial_wait) {
		r->is_initial_wait = false;
		if (r->timer != NULL)
			evtimer_del(r->timer);
	}
	if (!r->is_initial_done)
		device_check(r);
	else
		round_start(r);
}

/*
 * The one place a request moves on: what r->state waited for (ev) has
 * arrived. Events a state does not wait for are stale (a wake-up queued
 * before a timer that already moved the request on) and are dropped.
 */
static void
sync_step(struct sreq *r, enum sync_ev ev)
{
	switch (r->state) {
	case SYNC_PARSE:
		r->state = SYNC_AUTH;
		auth_resolve(r->api, r, sync_done_cb, r);
		break;
	case SYNC_AUTH:
		if (ev != SEV_DONE || sync_parse(r) == -1)
			break;
		r->state = SYNC_SESSION;
		session_load(r->api, r, sync_done_cb, r);
		break;
	case SYNC_SESSION:
		if (ev != SEV_DONE)
			break;
		switch (params_take(r)) {
		case 1:
			r->state = SYNC_PARAMS;
			session_store_params(r->api, r, sync_done_cb, r);
			break;
		case 0:
			device_check(r);
			break;
		}
		break;
	case SYNC_PARAMS:
		if (ev == SEV_DONE)
			device_check(r);
		break;
	case SYNC_DEVICE:
		if (ev == SEV_WAKE)
			wake(r);
		else if (ev == SEV_TIMER && r->is_initial_wait) {
			/* the initial sync did not arrive in time: serve */
			log_info("sync: %s/%s: initial sync not stored after "
			    "%lld ms", r->user_id, r->device_id,
			    r->api->cfg.initial_wait_ms);
			lp_unwait(r->api, r);
			r->is_initial_wait = false;
			round_start(r);
		}
		break;
	case SYNC_ROUND:
		if (ev == SEV_DONE)
			round_done(r);
		break;
	case SYNC_WAITING:
		if (ev == SEV_WAKE)
			wake(r);
		else if (ev == SEV_TIMER) {
			lp_unwait(r->api, r);
			if (r->rounds == 0)	/* waited first: answer a round */
				round_start(r);
			else
				sync_reply(r);
		}
		break;
	case SYNC_REPLIED:
		break;
	}
}

/* auth.c, session.c: 0 moves the request on, anything else answers it. */
static void
sync_done_cb(void *arg, int status, const char *errcode, const char *msg)
{
	struct sreq *r = arg;

	if (status != 0) {
		sync_fail(r, status, errcode, msg);
		return;
	}
	sync_step(r, SEV_DONE);
}

static void
sync_wake_cb(void *arg)
{
	sync_step(arg, SEV_WAKE);
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

/*
 * Reads the body as the streams' parameters: bounded, JSON, each stream
 * checked; a new session takes them as they are, a since merges them
 * with its session's once loaded.
 */
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
	r = sreq_new(api, req);
	if ((tok = sreq_bearer(req)) == NULL) {
		sync_fail(r, 401, "M_MISSING_TOKEN",
		    "missing access token (Authorization: Bearer)");
		return;
	}
	r->token = xstrdup(tok);
	token_hash(r->token, strlen(r->token), r->token_hash);
	if (r->evcon != NULL) {
		http_conn_closecb(api, r->evcon, close_cb, r);
		http_probe_start(r, probe_gone);
	}
	sync_step(r, SEV_DONE);
}
