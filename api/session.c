/*
 * session.c: v3 sessions in Postgres (so any api instance can serve any
 * session). A request without since creates one; a since loads it (only
 * for its own device, only while not idle for SYNCV3_API_SESSION_IDLE_SECS)
 * and acknowledges to-device messages up to its to_device position. A
 * periodic timer deletes idle sessions, which then no longer hold messages
 * back; messages are deleted once every live session of the device has
 * acknowledged them.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "json_util.h"
#include "pg.h"
#include "pg_lit.h"
#include "util.h"

#define SESSION_GONE_CODE "M_UNKNOWN_SYNC_SESSION"
#define SESSION_GONE_MSG "Session unknown or expired"

/* Hands the outcome to whoever asked (session_load's done). */
static void
session_done(struct sreq *r, int status, const char *errcode,
    const char *msg)
{
	r->done(r->done_arg, status, errcode, msg);
}

/* The token is no longer the device's: 401, and forget it here. */
static void
token_superseded(struct sreq *r)
{
	log_info("session: %s/%s: token no longer current", r->user_id,
	    r->device_id);
	auth_token_superseded(r->api, r->token_hash);
	session_done(r, 401, "M_UNKNOWN_TOKEN",
	    "this token was replaced or revoked");
}

static void
created_cb(PGresult *res, void *arg)
{
	struct sreq *r = arg;

	if (r->is_gone)
		goto out;
	if (res == NULL || PQntuples(res) != 1) {
		session_done(r, 503, "M_UNKNOWN", "cannot create session");
		goto out;
	}
	if (PQgetisnull(res, 0, 0)) {
		token_superseded(r);
		goto out;
	}
	r->from.sid = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	if (strcmp(PQgetvalue(res, 0, 1), "0") != 0) {
		r->api->stats.sessions_evicted +=
		    strtoull(PQgetvalue(res, 0, 1), NULL, 10);
		log_debug("session: %s/%s: %s least recently used expired",
		    r->user_id, r->device_id, PQgetvalue(res, 0, 1));
	}
	session_done(r, 0, NULL, NULL);
out:
	sreq_unref(r);
}

/*
 * The loaded session: a token no longer current is 401, an unknown or
 * idle session M_UNKNOWN_SYNC_SESSION, else its sticky parameters.
 */
static void
loaded_cb(PGresult *res, void *arg)
{
	struct sreq *r = arg;
	struct json_object *stored;

	if (r->is_gone)
		goto out;
	if (res == NULL) {
		session_done(r, 503, "M_UNKNOWN", "database unavailable");
		goto out;
	}
	if (PQntuples(res) != 1) {
		session_done(r, 503, "M_UNKNOWN", "cannot load session");
		goto out;
	}
	if (PQgetvalue(res, 0, 0)[0] != 't') {
		token_superseded(r);
		goto out;
	}
	if (PQgetisnull(res, 0, 1)) {
		session_done(r, 400, SESSION_GONE_CODE, SESSION_GONE_MSG);
		goto out;
	}
	stored = json_parse_bounded(PQgetvalue(res, 0, 1),
	    (size_t)PQgetlength(res, 0, 1), NULL);
	if (stored == NULL || !json_object_is_type(stored, json_type_object)) {
		json_object_put(stored);
		stored = json_object_new_object();
	}
	json_object_put(r->params);
	r->params = stored;
	r->acked_d = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
	session_done(r, 0, NULL, NULL);
out:
	sreq_unref(r);
}

/*
 * Creates r's session (no since) or loads it (acknowledging to-device
 * messages up to r->from.d), then calls done(arg, status, ...): status 0
 * with r->from.sid, r->params and r->acked_d set.
 */
void
session_load(struct api *api, struct sreq *r, api_done_fn done, void *arg)
{
	char sid[PG_I64_LEN], acked[PG_I64_LEN], idle[PG_I64_LEN], cap[PG_I64_LEN];
	const char *params[6];

	pg_i64(idle, api->cfg.session_idle_s);
	r->done = done;
	r->done_arg = arg;
	sreq_ref(r);
	if (r->since_tok == NULL) {
		pg_i64(cap, api->cfg.sessions_per_device);
		params[0] = r->user_id;
		params[1] = r->device_id;
		params[2] = json_plain(r->params, NULL);
		params[3] = r->token_hash;
		params[4] = cap;
		sql_query(api, Q_SESSION_CREATE, params, created_cb, r);
		return;
	}
	pg_i64(sid, r->from.sid);
	pg_i64(acked, r->from.d);
	params[0] = sid;
	params[1] = r->user_id;
	params[2] = r->device_id;
	params[3] = acked;
	params[4] = idle;
	params[5] = r->token_hash;
	sql_query(api, Q_SESSION_LOAD, params, loaded_cb, r);
}

/*
 * A stream found r's session gone after it was loaded (evicted by the
 * per-device cap or expired meanwhile): the request fails as one naming
 * an unknown session would, never as a database error.
 */
void
session_gone(struct sreq *r)
{
	log_debug("session: %s/%s: session %" PRId64 " gone mid-request",
	          r->user_id, r->device_id, r->from.sid);
	r->err_status = 400;
	r->err_code = SESSION_GONE_CODE;
	free(r->err_msg);
	r->err_msg = xstrdup(SESSION_GONE_MSG);
}

static void
stored_cb(PGresult *res, void *arg)
{
	struct sreq *r = arg;

	if (!r->is_gone) {
		if (res == NULL)
			session_done(r, 503, "M_UNKNOWN",
			    "database unavailable");
		else
			session_done(r, 0, NULL, NULL);
	}
	sreq_unref(r);
}

/*
 * Stores the merged parameters, then calls done(arg, status, ...). The
 * reply waits for it: the client's next request may load the session from
 * any pool connection (or any api), and must see these parameters.
 */
void
session_store_params(struct api *api, struct sreq *r, api_done_fn done,
    void *arg)
{
	char sid[PG_I64_LEN];
	const char *params[2];

	pg_i64(sid, r->from.sid);
	params[0] = sid;
	params[1] = json_plain(r->params, NULL);
	r->done = done;
	r->done_arg = arg;
	sreq_ref(r);
	sql_query(api, Q_SESSION_PARAMS, params, stored_cb, r);
}

/*
 * The devices whose sessions (or sliding sync connections, ss_conn.c)
 * were expired: release what their live ones have all acknowledged.
 */
void
session_expired_cb(PGresult *res, void *arg)
{
	struct api *api = arg;
	char idle[PG_I64_LEN];
	const char *params[3];

	if (res == NULL)
		return;
	pg_i64(idle, api->cfg.session_idle_s);
	for (int i = 0; i < PQntuples(res); i++) {
		log_debug("session: expired sessions of %s/%s released",
		    PQgetvalue(res, i, 0), PQgetvalue(res, i, 1));
		params[0] = PQgetvalue(res, i, 0);
		params[1] = PQgetvalue(res, i, 1);
		params[2] = idle;
		sql_query(api, Q_SESSION_RELEASE, params, NULL, NULL);
	}
}

/*
 * An idle-expiry sweep: stmt (one parameter, the idle seconds) deletes
 * the sessions or sliding sync connections idle for idle_s and returns
 * their devices, which session_expired_cb then releases: what expired
 * no longer holds its device's to-device messages back.
 */
struct expiry {
	struct api *api;
	enum api_sql stmt;
	long long idle_s;
};

static void
expiry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct expiry *x = arg;
	char idle[PG_I64_LEN];
	const char *params[1];

	(void)fd;
	(void)what;
	params[0] = pg_i64(idle, x->idle_s);
	sql_query(x->api, x->stmt, params, session_expired_cb, x->api);
}

/*
 * Starts stmt's sweep, four times per idle period, between 250 ms and
 * 30 s apart; session_expiry_free stops it.
 */
struct event *
session_expiry_new(struct api *api, enum api_sql stmt, long long idle_s)
{
	struct expiry *x = xcalloc(1, sizeof(*x));
	long long ms = idle_s * 1000 / 4;
	struct timeval tv;
	struct event *ev;

	x->api = api;
	x->stmt = stmt;
	x->idle_s = idle_s;
	if (ms > 30000)
		ms = 30000;
	if (ms < 250)
		ms = 250;
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	ev = event_new(api->base, -1, EV_PERSIST, expiry_cb, x);
	event_add(ev, &tv);
	return ev;
}

void
session_expiry_free(struct event *ev)
{
	if (ev == NULL)
		return;
	free(event_get_callback_arg(ev));
	event_free(ev);
}

void
session_init(struct api *api)
{
	api->expire_timer =
	    session_expiry_new(api, Q_SESSION_EXPIRE, api->cfg.session_idle_s);
}

void
session_shutdown(struct api *api)
{
	session_expiry_free(api->expire_timer);
	api->expire_timer = NULL;
}
