/*
 * admin.c: the operator's API under /_syncv3/admin/ (README, "Admin
 * API"). Without SYNCV3_ADMIN_TOKEN every path under the prefix is a
 * 404, as if it did not exist; with it, each request must carry that
 * token as a bearer token (401 without, 403 with another one), compared
 * in constant time. Reads (devices, one device's sessions and sliding
 * sync connections, pollers) and actions (forget a device, drop a user's
 * sessions and connections, re-run an initial sync) are one statement
 * each through the pool (api/sql.c); a request whose client hangs up
 * before its statement returns is dropped then. Nothing here ever shows
 * an access token or its hash.
 */
#include <sys/queue.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/crypto.h>

#include "api.h"
#include "crypto.h"
#include "pg_lit.h"
#include "util.h"

#define ADMIN_PREFIX "/_syncv3/admin/"
#define ADMIN_V1 ADMIN_PREFIX "v1/"
#define ADMIN_LIMIT_DEFAULT 100
#define ADMIN_LIMIT_MAX 1000

enum admin_op {
	ADMIN_DEVICES,   /* GET v1/devices */
	ADMIN_DEVICE,    /* GET v1/devices/{user}/{device} */
	ADMIN_SESSIONS,  /* the same, second step: its sessions */
	ADMIN_CONNS,     /* third step: its sliding sync connections */
	ADMIN_POLLERS,   /* GET v1/pollers */
	ADMIN_FORGET,    /* POST v1/devices/{user}/{device}/forget */
	ADMIN_RESYNC,    /* POST v1/devices/{user}/{device}/resync */
	ADMIN_DROP_USER, /* POST v1/users/{user}/drop_sessions */
};

/* One admin request waiting for Postgres. */
struct areq {
	struct api *api;
	struct evhttp_request *req; /* NULL once the client is gone */
	struct evhttp_connection *evcon;
	enum admin_op op;
	char *user, *device;
	struct json_object *device_obj; /* ADMIN_DEVICE: before its sessions */
	long long limit;                /* ADMIN_DEVICES: the page's size */
};

static void
areq_free(struct areq *a)
{
	if (a->req != NULL)
		http_conn_closecb(a->api, a->evcon, NULL, NULL);
	json_object_put(a->device_obj);
	free(a->user);
	free(a->device);
	free(a);
}

static void
areq_gone_cb(struct evhttp_connection *evcon, void *arg)
{
	struct areq *a = arg;

	(void)evcon;
	a->req = NULL; /* evhttp frees it: the statement's answer is dropped */
}

/* Answers with obj (consumed) as JSON. */
static void
admin_reply(struct evhttp_request *req, int code, struct json_object *obj)
{
	struct evbuffer *b = evbuffer_new();

	evbuffer_add_printf(
	    b, "%s\n",
	    json_object_to_json_string_ext(
	        obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
	evhttp_add_header(evhttp_request_get_output_headers(req),
	                  "Content-Type", "application/json");
	evhttp_add_header(evhttp_request_get_output_headers(req),
	                  "Cache-Control", "no-store");
	evhttp_send_reply(req, code, code == 200 ? "OK" : "Error", b);
	evbuffer_free(b);
	json_object_put(obj);
}

/*
 * The bearer token against SYNCV3_ADMIN_TOKEN: both hashed first, so the
 * compare takes the same time whatever the length or the first wrong
 * byte. Only the Authorization header: a query string ends up in logs.
 */
static int
admin_auth(struct api *api, struct evhttp_request *req)
{
	const char *h = evhttp_find_header(
	    evhttp_request_get_input_headers(req), "Authorization");
	char want[TOKEN_HASH_LEN + 1], got[TOKEN_HASH_LEN + 1];
	const char *tok;

	if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0 || h[7] == '\0') {
		http_error(req, 401, "M_MISSING_TOKEN",
		           "admin token required (Authorization: Bearer)");
		return -1;
	}
	tok = h + 7;
	token_hash(api->cfg.admin_token, strlen(api->cfg.admin_token), want);
	token_hash(tok, strlen(tok), got);
	if (CRYPTO_memcmp(want, got, TOKEN_HASH_LEN) != 0) {
		log_warnx_rl("admin: wrong admin token refused");
		http_error(req, 403, "M_FORBIDDEN", "wrong admin token");
		return -1;
	}
	return 0;
}

/*
 * A decoded path segment, or NULL if it does not decode, is empty or
 * holds a control byte (no id has one; log lines must not get one).
 */
static char *
segment(const char *s, size_t n)
{
	char *raw = xstrndup(s, n), *dec;
	size_t len = 0, i;

	dec = evhttp_uridecode(raw, 0, &len);
	free(raw);
	if (dec == NULL)
		return NULL;
	for (i = 0; i < len; i++) {
		if ((unsigned char)dec[i] < 0x20 || dec[i] == 0x7f)
			break;
	}
	if (len == 0 || i < len) {
		free(dec);
		return NULL;
	}
	return dec;
}

/*
 * Splits rest (after "devices/" or "users/") into up to three segments,
 * '/'-separated; returns how many there were, -1 when one is bad.
 */
static int
segments(const char *rest, char *out[3])
{
	int n = 0;

	out[0] = out[1] = out[2] = NULL;
	while (*rest != '\0') {
		size_t len = strcspn(rest, "/");

		if (n == 3 || (out[n] = segment(rest, len)) == NULL)
			goto bad;
		n++;
		rest += len;
		if (*rest == '/' && *++rest == '\0')
			goto bad; /* a trailing slash */
	}
	return n;
bad:
	for (int i = 0; i < 3; i++) {
		free(out[i]);
		out[i] = NULL;
	}
	return -1;
}

enum col_type {
	COL_STR,
	COL_I64,
	COL_BOOL,
};

/* A result's columns, in order, as the keys of the objects answered. */
struct col {
	const char *key;
	enum col_type type;
};

/* Q_ADMIN_DEVICES and Q_ADMIN_DEVICE (ADMIN_DEVICE_ROWS in sql.c) */
static const struct col device_cols[] = {
    {"user_id", COL_STR},         {"device_id", COL_STR},
    {"poller", COL_STR},          {"lease_expires_in_ms", COL_I64},
    {"poller_alive", COL_BOOL},   {"poll_state", COL_STR},
    {"last_error", COL_STR},      {"poll_state_ts", COL_I64},
    {"last_ok_poll_ts", COL_I64}, {"has_since", COL_BOOL},
    {"since_age_ms", COL_I64},    {"is_initial_done", COL_BOOL},
    {"last_seen_ts", COL_I64},    {"created_ts", COL_I64},
    {"sessions", COL_I64},        {"connections", COL_I64},
};
static const struct col session_cols[] = {
    {"session_id", COL_I64},   {"created_ts", COL_I64},
    {"last_used_ts", COL_I64}, {"acked_to_device", COL_I64},
    {"rooms", COL_I64},
};
static const struct col conn_cols[] = {
    {"conn", COL_I64},       {"conn_id", COL_STR},      {"dialect", COL_STR},
    {"created_ts", COL_I64}, {"last_used_ts", COL_I64}, {"rooms", COL_I64},
};
static const struct col poller_cols[] = {
    {"id", COL_STR},         {"incarnation", COL_I64},
    {"started_ts", COL_I64}, {"expires_in_ms", COL_I64},
    {"alive", COL_BOOL},     {"devices", COL_I64},
};
static const struct col forget_cols[] = {
    {"devices", COL_I64},
    {"sessions", COL_I64},
    {"connections", COL_I64},
    {"to_device", COL_I64},
};
static const struct col drop_cols[] = {
    {"sessions", COL_I64},
    {"connections", COL_I64},
};
#define NCOLS(t) (sizeof(t) / sizeof((t)[0]))

/* Row i as an object (SQL NULL as JSON null, booleans false). */
static struct json_object *
row_obj(PGresult *res, int i, const struct col *cols, size_t n)
{
	struct json_object *o = json_object_new_object(), *v;

	for (size_t c = 0; c < n; c++) {
		const char *s = PQgetvalue(res, i, (int)c);
		bool is_null = PQgetisnull(res, i, (int)c);

		if (cols[c].type == COL_BOOL)
			v = json_object_new_boolean(!is_null && s[0] == 't');
		else if (is_null)
			v = NULL;
		else if (cols[c].type == COL_I64)
			v = json_object_new_int64(strtoll(s, NULL, 10));
		else
			v = json_object_new_string(s);
		json_object_object_add(o, cols[c].key, v);
	}
	return o;
}

static struct json_object *
rows(PGresult *res, const struct col *cols, size_t n)
{
	struct json_object *arr = json_object_new_array();

	for (int i = 0; i < PQntuples(res); i++)
		json_object_array_add(arr, row_obj(res, i, cols, n));
	return arr;
}

static struct json_object *
one(const char *key, struct json_object *v)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, key, v);
	return o;
}

static void admin_cb(PGresult *res, void *arg);

/* One device's next step: its sessions, then its connections. */
static void
device_next(struct areq *a, enum admin_op op, enum api_sql id)
{
	const char *params[2] = {a->user, a->device};

	a->op = op;
	sql_query(a->api, id, params, admin_cb, a);
}

/* A list of devices, with where the next page starts when it is full. */
static struct json_object *
devices_page(PGresult *res, long long limit)
{
	struct json_object *o =
	    one("devices", rows(res, device_cols, NCOLS(device_cols)));
	int n = PQntuples(res);

	if (n > 0 && n == limit) {
		json_object_object_add(
		    o, "next_after_user",
		    json_object_new_string(PQgetvalue(res, n - 1, 0)));
		json_object_object_add(
		    o, "next_after_device",
		    json_object_new_string(PQgetvalue(res, n - 1, 1)));
	}
	return o;
}

/* A forgotten device: this api's cached tokens for it go too. */
static struct json_object *
forgotten(struct areq *a, PGresult *res)
{
	auth_forget(a->api, a->user, a->device, true);
	log_info("admin: device %s/%s forgotten", a->user, a->device);
	return row_obj(res, 0, forget_cols, NCOLS(forget_cols));
}

/*
 * Every statement's answer. A result is NULL when the pool failed (it
 * logged why): the client gets a 503 to retry.
 */
static void
admin_cb(PGresult *res, void *arg)
{
	struct areq *a = arg;
	struct json_object *o = NULL;

	if (a->req == NULL)
		goto out;
	if (res == NULL) {
		http_error_retry(a->req, 503, "M_UNKNOWN",
		                 "database unavailable; retry", 1000);
		goto out;
	}
	switch (a->op) {
	case ADMIN_DEVICES:
		o = devices_page(res, a->limit);
		break;
	case ADMIN_DEVICE:
		if (PQntuples(res) == 1) {
			a->device_obj =
			    row_obj(res, 0, device_cols, NCOLS(device_cols));
			device_next(a, ADMIN_SESSIONS, Q_ADMIN_SESSIONS);
			return;
		}
		break;
	case ADMIN_SESSIONS:
		json_object_object_add(
		    a->device_obj, "session_list",
		    rows(res, session_cols, NCOLS(session_cols)));
		device_next(a, ADMIN_CONNS, Q_ADMIN_CONNS);
		return;
	case ADMIN_CONNS:
		o = a->device_obj;
		a->device_obj = NULL;
		json_object_object_add(o, "connection_list",
		                       rows(res, conn_cols, NCOLS(conn_cols)));
		break;
	case ADMIN_POLLERS:
		o = one("pollers", rows(res, poller_cols, NCOLS(poller_cols)));
		break;
	case ADMIN_FORGET:
		if (PQntuples(res) == 1 &&
		    strcmp(PQgetvalue(res, 0, 0), "0") != 0)
			o = forgotten(a, res);
		break;
	case ADMIN_RESYNC:
		if (PQntuples(res) == 1) {
			log_info("admin: device %s/%s: initial sync again",
			         a->user, a->device);
			o = one("resync", json_object_new_boolean(1));
		}
		break;
	case ADMIN_DROP_USER:
		log_info("admin: user %s: sessions dropped", a->user);
		o = row_obj(res, 0, drop_cols, NCOLS(drop_cols));
		break;
	}
	if (o != NULL)
		admin_reply(a->req, 200, o);
	else
		http_error(a->req, 404, "M_NOT_FOUND", "no such device");
out:
	areq_free(a);
}

/*
 * Starts statement id for op; a owns user and device (either NULL). The
 * parameters are params, or (user, device) when params is NULL; limit is
 * the page size of a list.
 */
static void
areq_start(struct api *api, struct evhttp_request *req, enum admin_op op,
           enum api_sql id, char *user, char *device, const char *const *params,
           long long limit)
{
	struct areq *a = xcalloc(1, sizeof(*a));
	const char *ud[2] = {user, device};

	a->api = api;
	a->req = req;
	a->evcon = evhttp_request_get_connection(req);
	a->op = op;
	a->user = user;
	a->device = device;
	a->limit = limit;
	http_conn_closecb(api, a->evcon, areq_gone_cb, a);
	sql_query(api, id, params != NULL ? params : ud, admin_cb, a);
}

/* GET v1/devices[?user_id=&after_user=&after_device=&limit=] */
static void
devices_list(struct api *api, struct evhttp_request *req)
{
	const char *q =
	    evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
	static const char *const keys[3] = {"user_id", "after_user",
	                                    "after_device"};
	struct evkeyvalq kv;
	const char *lim, *params[4];
	long long limit = ADMIN_LIMIT_DEFAULT;
	char buf[24];

	TAILQ_INIT(&kv);
	if (q != NULL && evhttp_parse_query_str(q, &kv) != 0) {
		http_error(req, 400, "M_INVALID_PARAM", "bad query string");
		goto out;
	}
	lim = evhttp_find_header(&kv, "limit");
	if (lim != NULL && (parse_i64(lim, &limit) == -1 || limit < 1 ||
	                    limit > ADMIN_LIMIT_MAX)) {
		http_error(req, 400, "M_INVALID_PARAM",
		           "limit: a number from 1 to 1000");
		goto out;
	}
	for (int i = 0; i < 3; i++) {
		params[i] = evhttp_find_header(&kv, keys[i]);
		if (params[i] == NULL)
			params[i] = "";
	}
	snprintf(buf, sizeof(buf), "%lld", limit);
	params[3] = buf;
	areq_start(api, req, ADMIN_DEVICES, Q_ADMIN_DEVICES, NULL, NULL, params,
	           limit);
out:
	evhttp_clear_headers(&kv);
}

/* What may follow v1/devices/{user}/{device}, and v1/users/{user}. */
static const struct admin_route {
	const char *action; /* NULL: none */
	enum evhttp_cmd_type method;
	enum admin_op op;
	enum api_sql id;
} device_routes[] =
    {
        {NULL, EVHTTP_REQ_GET, ADMIN_DEVICE, Q_ADMIN_DEVICE},
        {"forget", EVHTTP_REQ_POST, ADMIN_FORGET, Q_ADMIN_FORGET},
        {"resync", EVHTTP_REQ_POST, ADMIN_RESYNC, Q_ADMIN_RESYNC},
},
  user_routes[] = {
      {"drop_sessions", EVHTTP_REQ_POST, ADMIN_DROP_USER, Q_ADMIN_DROP_USER},
};

/*
 * rest is nids ids, then maybe an action: the route of the table it
 * names, 405 for another method, 404 for anything else.
 */
static void
id_route(struct api *api, struct evhttp_request *req, const char *rest,
         int nids, const struct admin_route *routes, size_t nroutes)
{
	char *seg[3];
	int n = segments(rest, seg);
	const char *action = n > nids ? seg[nids] : NULL;
	const struct admin_route *r = NULL;
	char *user, *device = NULL;

	for (size_t i = 0; n >= nids && n <= nids + 1 && i < nroutes; i++) {
		if ((routes[i].action == NULL) == (action == NULL) &&
		    (action == NULL || strcmp(routes[i].action, action) == 0)) {
			r = &routes[i];
			break;
		}
	}
	if (r == NULL)
		http_error(req, 404, "M_UNRECOGNIZED", "unrecognized request");
	else if (evhttp_request_get_command(req) != r->method)
		http_error(req, 405, "M_UNRECOGNIZED",
		           "method not allowed on this path");
	else {
		user = seg[0];
		seg[0] = NULL;
		if (nids == 2) {
			device = seg[1];
			seg[1] = NULL;
		}
		areq_start(api, req, r->op, r->id, user, device, NULL, 0);
	}
	for (int i = 0; i < 3; i++)
		free(seg[i]);
}

#define NROUTES(t) (sizeof(t) / sizeof((t)[0]))

/*
 * 0 if req is the admin API's (answered, or on its way), -1 if its path
 * is not under /_syncv3/admin/.
 */
int
admin_handle(struct api *api, struct evhttp_request *req, const char *path)
{
	const char *v1;

	if (strncmp(path, ADMIN_PREFIX, strlen(ADMIN_PREFIX)) != 0 &&
	    strcmp(path, "/_syncv3/admin") != 0)
		return -1;
	if (api->cfg.admin_token == NULL || api->cfg.admin_token[0] == '\0') {
		http_error(req, 404, "M_UNRECOGNIZED",
		           "the admin API is off (SYNCV3_ADMIN_TOKEN unset)");
		return 0;
	}
	if (admin_auth(api, req) == -1)
		return 0;
	if (strncmp(path, ADMIN_V1, strlen(ADMIN_V1)) != 0) {
		http_error(req, 404, "M_UNRECOGNIZED", "unrecognized request");
		return 0;
	}
	v1 = path + strlen(ADMIN_V1);
	if (strcmp(v1, "devices") == 0) {
		if (evhttp_request_get_command(req) == EVHTTP_REQ_GET)
			devices_list(api, req);
		else
			http_error(req, 405, "M_UNRECOGNIZED",
			           "method not allowed on this path");
	} else if (strcmp(v1, "pollers") == 0) {
		if (evhttp_request_get_command(req) == EVHTTP_REQ_GET)
			areq_start(api, req, ADMIN_POLLERS, Q_ADMIN_POLLERS,
			           NULL, NULL, NULL, 0);
		else
			http_error(req, 405, "M_UNRECOGNIZED",
			           "method not allowed on this path");
	} else if (strncmp(v1, "devices/", 8) == 0)
		id_route(api, req, v1 + 8, 2, device_routes,
		         NROUTES(device_routes));
	else if (strncmp(v1, "users/", 6) == 0)
		id_route(api, req, v1 + 6, 1, user_routes,
		         NROUTES(user_routes));
	else
		http_error(req, 404, "M_UNRECOGNIZED", "unrecognized request");
	return 0;
}
