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
#include "util.h"

/* Deletes the device's messages every live session has acknowledged. */
#define SQL_RELEASE                                                            \
	"DELETE FROM syncv3_to_device WHERE user_id = $1 AND device_id = $2 "  \
	"AND pos <= (SELECT min(acked_to_device) FROM syncv3_sessions s "      \
	"WHERE s.user_id = $1 AND s.device_id = $2 AND s.last_used > now() - " \
	"make_interval(secs => $3::bigint))"

/*
 * Whether the request's token is still the device's current one (and not
 * rejected upstream), as one CTE both statements below share. A device
 * has one live token: once another was registered for it, on this api or
 * any other behind the same database, the old one's cached whoami must
 * not keep it alive (contract 5). Reading the device row here costs the
 * request nothing extra.
 */
#define SQL_TOKEN_OK(u, d, h)                                                  \
	"dv AS (SELECT token_hash = " h " AND poll_state <> 'expired' AS ok "  \
	"FROM syncv3_devices WHERE user_id = " u " AND device_id = " d ")"

/*
 * Loads a live session, refreshes it, records its to-device ack and
 * releases what every live session has now acknowledged, in one
 * statement (the release was a second round trip on every request). The
 * DELETE sees the sessions as they were before the UPDATE, so it counts
 * this session's new ack itself. One row always: whether the token is
 * current, then the session (NULL when unknown, expired or the token is
 * not current).
 */
#define SQL_LOAD                                                               \
	"WITH " SQL_TOKEN_OK(                                                  \
	    "$2", "$3",                                                        \
	    "$6") ", "                                                         \
	    "u AS (UPDATE syncv3_sessions SET last_used = now(), "       \
	    "acked_to_device = greatest(acked_to_device, $4::bigint) "   \
	    "WHERE "                                                     \
	    "session_id = $1::bigint AND user_id = $2 AND device_id = "  \
	    "$3 AND "                                                    \
	    "last_used > now() - make_interval(secs => $5::bigint) AND " \
	    "(SELECT ok FROM dv) RETURNING params, acked_to_device), "   \
	    "d AS (DELETE FROM syncv3_to_device WHERE "                  \
	    "$4::bigint > 0 AND EXISTS (SELECT 1 FROM u) AND user_id = " \
	    "$2 AND "                                                    \
	    "device_id = $3 AND pos <= (SELECT min(CASE WHEN "           \
	    "s.session_id = "                                            \
	    "$1::bigint THEN greatest(s.acked_to_device, $4::bigint) "   \
	    "ELSE "                                                      \
	    "s.acked_to_device END) FROM syncv3_sessions s WHERE "       \
	    "s.user_id = $2 "                                            \
	    "AND s.device_id = $3 AND (s.session_id = $1::bigint OR "    \
	    "s.last_used "                                               \
	    "> now() - make_interval(secs => $5::bigint)))) "            \
	    "SELECT coalesce((SELECT ok FROM dv), false), u.params, "    \
	    "u.acked_to_device FROM (SELECT 1) one LEFT JOIN u ON true"

/*
 * Creates a session when the token is current, and expires the device's
 * least recently used sessions beyond SYNCV3_API_SESSIONS_PER_DEVICE (a
 * client minting sessions must not hold the device's to-device messages
 * back with each). An expired session holds nothing from then on: the
 * next acknowledgement of any live session releases what all of them
 * acknowledged (SQL_LOAD). No release here: this statement cannot see
 * the row it inserts, so it would release what the new session has not
 * been sent yet. Concurrent creations may leave a few sessions over the
 * cap until the next one. One row: the new session id (NULL when the
 * token is not current) and how many sessions were expired.
 */
#define SQL_CREATE                                                             \
	"WITH " SQL_TOKEN_OK("$1", "$2",                                       \
	    "$4") ", "                                        \
	    "ins AS (INSERT INTO syncv3_sessions "      \
	    "(user_id, device_id, params) "             \
	    "SELECT $1, $2, $3 FROM dv WHERE dv.ok "    \
	    "RETURNING session_id), "                   \
	    "old AS (DELETE FROM syncv3_sessions "      \
	    "WHERE session_id IN (SELECT "              \
	    "session_id FROM syncv3_sessions WHERE "    \
	    "user_id = $1 AND device_id = "             \
	    "$2 AND EXISTS (SELECT 1 FROM ins) ORDER "  \
	    "BY last_used DESC, "                       \
	    "session_id DESC OFFSET $5::bigint - 1) "   \
	    "RETURNING session_id) "                    \
	    "SELECT ins.session_id, (SELECT count(*) "  \
	    "FROM old) FROM (SELECT 1) "                \
	    "one LEFT JOIN ins ON true"

/* The token is no longer the device's: 401, and forget it here. */
static void
token_superseded(struct sreq *r)
{
	log_info("session: %s/%s: token no longer current", r->user_id,
	    r->device_id);
	auth_token_superseded(r->api, r->token_hash);
	sync_session_done(r, 401, "M_UNKNOWN_TOKEN",
	    "this token was replaced or revoked");
}

static void
created_cb(PGresult *res, void *arg)
{
	struct sreq *r = arg;

	if (r->is_gone)
		goto out;
	if (res == NULL || PQntuples(res) != 1) {
		sync_session_done(r, 503, "M_UNKNOWN", "cannot create session");
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
	sync_session_done(r, 0, NULL, NULL);
out:
	sreq_unref(r);
}

static void
loaded_cb(PGresult *res, void *arg)
{
	struct sreq *r = arg;
	struct json_object *stored;

	if (r->is_gone)
		goto out;
	if (res == NULL) {
		sync_session_done(r, 503, "M_UNKNOWN", "database unavailable");
		goto out;
	}
	if (PQntuples(res) != 1) {
		sync_session_done(r, 503, "M_UNKNOWN", "cannot load session");
		goto out;
	}
	if (PQgetvalue(res, 0, 0)[0] != 't') {
		token_superseded(r);
		goto out;
	}
	if (PQgetisnull(res, 0, 1)) {
		sync_session_done(r, 400, "M_UNKNOWN_SYNC_SESSION",
		    "Session unknown or expired");
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
	sync_session_done(r, 0, NULL, NULL);
out:
	sreq_unref(r);
}

void
session_load(struct api *api, struct sreq *r)
{
	char sid[24], acked[24], idle[24], cap[24];
	const char *params[6];

	snprintf(idle, sizeof(idle), "%lld", api->cfg.session_idle_s);
	sreq_ref(r);
	if (r->since_tok == NULL) {
		snprintf(cap, sizeof(cap), "%lld",
		    api->cfg.sessions_per_device);
		params[0] = r->user_id;
		params[1] = r->device_id;
		params[2] = json_plain(r->params, NULL);
		params[3] = r->token_hash;
		params[4] = cap;
		pg_pool_query(api->pool, SQL_CREATE, 5, params, created_cb, r);
		return;
	}
	snprintf(sid, sizeof(sid), "%" PRId64, r->from.sid);
	snprintf(acked, sizeof(acked), "%" PRId64, r->from.d);
	params[0] = sid;
	params[1] = r->user_id;
	params[2] = r->device_id;
	params[3] = acked;
	params[4] = idle;
	params[5] = r->token_hash;
	pg_pool_query(api->pool, SQL_LOAD, 6, params, loaded_cb, r);
}

static void
stored_cb(PGresult *res, void *arg)
{
	struct sreq *r = arg;

	if (!r->is_gone && !r->is_done) {
		if (res == NULL)
			sync_fail(r, 503, "M_UNKNOWN", "database unavailable");
		else
			sync_params_stored(r);
	}
	sreq_unref(r);
}

/*
 * Stores the merged parameters, then calls sync_params_stored(). The reply
 * waits for it: the client's next request may load the session from any
 * pool connection (or any api), and must see these parameters.
 */
void
session_store_params(struct api *api, struct sreq *r)
{
	char sid[24];
	const char *params[2];

	snprintf(sid, sizeof(sid), "%" PRId64, r->from.sid);
	params[0] = sid;
	params[1] = json_plain(r->params, NULL);
	sreq_ref(r);
	pg_pool_query(api->pool, "UPDATE syncv3_sessions SET params = $2 "
	    "WHERE session_id = $1", 2, params, stored_cb, r);
}

static void
expired_cb(PGresult *res, void *arg)
{
	struct api *api = arg;
	char idle[24];
	const char *params[3];

	if (res == NULL)
		return;
	snprintf(idle, sizeof(idle), "%lld", api->cfg.session_idle_s);
	for (int i = 0; i < PQntuples(res); i++) {
		log_debug("session: expired sessions of %s/%s released",
		    PQgetvalue(res, i, 0), PQgetvalue(res, i, 1));
		params[0] = PQgetvalue(res, i, 0);
		params[1] = PQgetvalue(res, i, 1);
		params[2] = idle;
		pg_pool_query(api->pool, SQL_RELEASE, 3, params, NULL, NULL);
	}
}

static void
expire_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct api *api = arg;
	char idle[24];
	const char *params[1];

	(void)fd;
	(void)what;
	snprintf(idle, sizeof(idle), "%lld", api->cfg.session_idle_s);
	params[0] = idle;
	pg_pool_query(api->pool, "WITH gone AS (DELETE FROM syncv3_sessions "
	    "WHERE last_used <= now() - make_interval(secs => $1::bigint) "
	    "RETURNING user_id, device_id) "
	    "SELECT DISTINCT user_id, device_id FROM gone", 1, params,
	    expired_cb, api);
}

void
session_init(struct api *api)
{
	long long ms = api->cfg.session_idle_s * 1000 / 4;
	struct timeval tv;

	if (ms > 30000)
		ms = 30000;
	if (ms < 250)
		ms = 250;
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	api->expire_timer = event_new(api->base, -1, EV_PERSIST,
	    expire_timer_cb, api);
	event_add(api->expire_timer, &tv);
}

void
session_shutdown(struct api *api)
{
	if (api->expire_timer != NULL)
		event_free(api->expire_timer);
}
