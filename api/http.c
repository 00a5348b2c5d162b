/*
 * http.c: the evhttp front door. One generic callback walks the route
 * table; every error is a Matrix error {"errcode","error"} with the right
 * status. Also the small JSON-writing helpers the streams share.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "api.h"
#include "pg.h"
#include "util.h"

void
jstrn(struct evbuffer *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t i, start = 0;

	evbuffer_add(b, "\"", 1);
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		char esc[7];

		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		evbuffer_add(b, s + start, i - start);
		start = i + 1;
		switch (c) {
		case '"':
			evbuffer_add(b, "\\\"", 2);
			break;
		case '\\':
			evbuffer_add(b, "\\\\", 2);
			break;
		case '\n':
			evbuffer_add(b, "\\n", 2);
			break;
		case '\t':
			evbuffer_add(b, "\\t", 2);
			break;
		case '\r':
			evbuffer_add(b, "\\r", 2);
			break;
		default:
			memcpy(esc, "\\u00", 4);
			esc[4] = hex[c >> 4];
			esc[5] = hex[c & 15];
			evbuffer_add(b, esc, 6);
		}
	}
	evbuffer_add(b, s + start, i - start);
	evbuffer_add(b, "\"", 1);
}

void
jstr(struct evbuffer *b, const char *s)
{
	jstrn(b, s, strlen(s));
}

char *
pg_text_array(const char *const *v, int n)
{
	size_t len = 3;
	char *out, *o;

	for (int i = 0; i < n; i++)
		len += strlen(v[i]) * 2 + 3;
	o = out = xmalloc(len);
	*o++ = '{';
	for (int i = 0; i < n; i++) {
		if (i > 0)
			*o++ = ',';
		*o++ = '"';
		for (const char *s = v[i]; *s != '\0'; s++) {
			if (*s == '"' || *s == '\\')
				*o++ = '\\';
			*o++ = *s;
		}
		*o++ = '"';
	}
	*o++ = '}';
	*o = '\0';
	return out;
}

void
http_error(struct evhttp_request *req, int code, const char *errcode,
    const char *msg)
{
	struct evbuffer *b = evbuffer_new();
	const char *reason;

	evbuffer_add_printf(b, "{\"errcode\":");
	jstr(b, errcode);
	evbuffer_add_printf(b, ",\"error\":");
	jstr(b, msg);
	evbuffer_add(b, "}", 1);
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Content-Type", "application/json");
	switch (code) {
	case 400: reason = "Bad Request"; break;
	case 401: reason = "Unauthorized"; break;
	case 403: reason = "Forbidden"; break;
	case 404: reason = "Not Found"; break;
	case 405: reason = "Method Not Allowed"; break;
	case 413: reason = "Payload Too Large"; break;
	case 429: reason = "Too Many Requests"; break;
	case 502: reason = "Bad Gateway"; break;
	case 503: reason = "Service Unavailable"; break;
	default: reason = "Error"; break;
	}
	evhttp_send_reply(req, code, reason, b);
	evbuffer_free(b);
}

static int
dbl_cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* p-th percentile (0..100) of the last wake-up latencies, or -1. */
static double
lat_pct(const struct api_stats *st, double p)
{
	size_t n = st->nlat < 4096 ? st->nlat : 4096;
	double *v, out;

	if (n == 0)
		return -1;
	v = xmalloc(sizeof(*v) * n);
	memcpy(v, st->lat, sizeof(*v) * n);
	qsort(v, n, sizeof(*v), dbl_cmp);
	out = v[(size_t)((double)(n - 1) * p / 100.0 + 0.5)];
	free(v);
	return out;
}

static void
health_cb(struct api *api, struct evhttp_request *req)
{
	struct evbuffer *b = evbuffer_new();
	bool is_up = pg_pool_is_up(api->pool);	/* 503 while Postgres is away */

	evbuffer_add_printf(b, "{\"status\":\"%s\",\"pos\":%lld,"
	    "\"waiters\":%d,\"requests\":%llu,\"whoami_calls\":%llu,"
	    "\"notices\":%llu,\"gaps\":%llu,\"wakeups\":%llu,"
	    "\"wake_lat_n\":%u,\"wake_lat_p50_ms\":%.0f,"
	    "\"wake_lat_p99_ms\":%.0f}", is_up ? "ok" : "db_unavailable",
	    (long long)api->cur_pos,
	    lp_count(api), api->stats.requests, api->stats.whoami_calls,
	    api->stats.notices, api->stats.gaps, api->stats.wakeups,
	    api->stats.nlat, lat_pct(&api->stats, 50),
	    lat_pct(&api->stats, 99));
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Content-Type", "application/json");
	evhttp_send_reply(req, is_up ? 200 : 503, is_up ? "OK" :
	    "Service Unavailable", b);
	evbuffer_free(b);
}

struct route {
	const char *path;
	enum evhttp_cmd_type method;
	void (*fn)(struct api *, struct evhttp_request *);
};

static const struct route routes[] = {
	{"/_matrix/client/v3/sync", EVHTTP_REQ_POST, sync_handle},
	{"/health", EVHTTP_REQ_GET, health_cb},
};

static void
http_gen_cb(struct evhttp_request *req, void *arg)
{
	struct api *api = arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
	bool path_ok = false;

	cors_add(req);
	if (path == NULL) {
		http_error(req, 400, "M_UNRECOGNIZED", "bad request URI");
		return;
	}
	if (cors_preflight(req))
		return;
	if (api->is_stopping) {
		http_error(req, 503, "M_UNKNOWN", "shutting down");
		return;
	}
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		if (strcmp(routes[i].path, path) != 0)
			continue;
		path_ok = true;
		if (evhttp_request_get_command(req) == routes[i].method ||
		    (routes[i].method == EVHTTP_REQ_GET &&
		    evhttp_request_get_command(req) == EVHTTP_REQ_HEAD)) {
			routes[i].fn(api, req);
			return;
		}
	}
	if (proxy_handle(api, req, path) == 0)
		return;
	if (path_ok)
		http_error(req, 405, "M_UNRECOGNIZED",
		    "method not allowed on this path");
	else
		http_error(req, 404, "M_UNRECOGNIZED", "unrecognized request");
}

void
http_init(struct api *api)
{
	char *host, *colon;
	long long port;

	api->http = evhttp_new(api->base);
	if (api->http == NULL)
		fatalx("evhttp_new");
	host = xstrdup(api->cfg.bindaddr);
	if ((colon = strrchr(host, ':')) == NULL)
		fatalx("SYNCV3_BINDADDR: expected host:port, got %s", host);
	*colon = '\0';
	if (parse_i64(colon + 1, &port) == -1 || port < 0 || port > 65535)
		fatalx("SYNCV3_BINDADDR: bad port in %s", api->cfg.bindaddr);
	if (host[0] == '[') {
		memmove(host, host + 1, strlen(host));
		host[strcspn(host, "]")] = '\0';
	}
	if (evhttp_bind_socket(api->http, host, (uint16_t)port) != 0)
		fatal("cannot bind %s", api->cfg.bindaddr);
	free(host);
	/*
	 * evhttp answers 413 itself (without a Matrix error) only far past
	 * our limit; up to 4x we read the body and answer M_TOO_LARGE.
	 */
	evhttp_set_max_body_size(api->http, (ev_ssize_t)(api->cfg.max_body *
	    4 > api->cfg.proxy_max_upload ? api->cfg.max_body * 4 :
	    api->cfg.proxy_max_upload));
	evhttp_set_max_headers_size(api->http, 64 * 1024);
	evhttp_set_timeout(api->http,
	    (int)(api->cfg.max_timeout_ms / 1000 + 120));
	evhttp_set_allowed_methods(api->http, EVHTTP_REQ_GET |
	    EVHTTP_REQ_POST | EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT |
	    EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
	evhttp_set_gencb(api->http, http_gen_cb, api);
	proxy_init(api);
	log_info("listening on %s", api->cfg.bindaddr);
}

void
http_shutdown(struct api *api)
{
	struct evhttp *http = api->http;

	api->http = NULL;
	if (http != NULL)
		evhttp_free(http);
	proxy_shutdown(api);
}

/*
 * A limit or an outage: the client should come back later, so it gets
 * retry_after_ms (Matrix's M_LIMIT_EXCEEDED field) and a Retry-After
 * header in whole seconds, rounded up.
 */
void
http_error_retry(struct evhttp_request *req, int code, const char *errcode,
    const char *msg, long long retry_after_ms)
{
	struct json_object *o = json_object_new_object();
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	struct evbuffer *b = evbuffer_new();
	char secs[24];

	json_object_object_add(o, "errcode", json_object_new_string(errcode));
	json_object_object_add(o, "error", json_object_new_string(msg));
	json_object_object_add(o, "retry_after_ms",
	    json_object_new_int64(retry_after_ms));
	evbuffer_add_printf(b, "%s", json_object_to_json_string_ext(o,
	    JSON_C_TO_STRING_PLAIN));
	json_object_put(o);
	snprintf(secs, sizeof(secs), "%lld", (retry_after_ms + 999) / 1000);
	evhttp_add_header(h, "Retry-After", secs);
	evhttp_add_header(h, "Content-Type", "application/json");
	evhttp_send_reply(req, code, code == 429 ? "Too Many Requests" :
	    "Service Unavailable", b);
	evbuffer_free(b);
}
