/*
 * http.c: the evhttp front door. One generic callback walks the route
 * table; every error is a Matrix error {"errcode","error"} with the right
 * status, and every non-200 answer is logged (rate-limited). Each
 * connection is watched for the limits evhttp lacks or answers in HTML
 * (struct conn: read timeouts, sizes, a connection cap). Also the small
 * JSON-writing helpers the streams share.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "api.h"
#include "ss.h"
#include "pg.h"
#include "util.h"

/*
 * Appends n bytes of s as a JSON string: runs of plain bytes are copied
 * as they are, quotes, backslashes and control characters escaped.
 */
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

static const char *http_reason(int code);

/* The method's name, NULL for one we do not serve or pass on. */
const char *
http_method_name(enum evhttp_cmd_type m)
{
	switch (m) {
	case EVHTTP_REQ_GET:
		return "GET";
	case EVHTTP_REQ_POST:
		return "POST";
	case EVHTTP_REQ_HEAD:
		return "HEAD";
	case EVHTTP_REQ_PUT:
		return "PUT";
	case EVHTTP_REQ_DELETE:
		return "DELETE";
	case EVHTTP_REQ_OPTIONS:
		return "OPTIONS";
	case EVHTTP_REQ_PATCH:
		return "PATCH";
	default:
		return NULL;
	}
}

/*
 * evhttp stops reading a connection once its request is complete, so a
 * client that hangs up before the reply goes unseen. Those who hold a
 * request (long polls, pass-through) watch the socket and ask this: data
 * (pipelined bytes: stop watching), nothing yet (watch again), or gone.
 */
enum http_peek
http_peek(evutil_socket_t fd)
{
	char b;
	ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);

	if (n > 0)
		return HTTP_PEEK_DATA;
	if (n < 0 &&
	    (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return HTTP_PEEK_AGAIN;
	return HTTP_PEEK_GONE;
}

/*
 * A long-polling client that hangs up goes unseen by evhttp (http_peek):
 * freeing the connection runs the path's close callback now, so the
 * waiter goes at once; pipelined bytes just end the watch.
 */
static void
probe_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sreq *r = arg;
	enum http_peek k = http_peek(fd);

	(void)what;
	if (k == HTTP_PEEK_DATA)
		return;
	if (k == HTTP_PEEK_AGAIN) {
		event_add(r->probe, NULL);
		return;
	}
	if (sreq_replied(r) || r->is_gone || r->evcon == NULL)
		return;
	sreq_ref(r);
	evhttp_connection_free(r->evcon);
	if (!sreq_replied(r)) {	/* no close callback ran: still let go */
		r->is_gone = true;
		r->req = NULL;
		r->on_hangup(r);
	}
	sreq_unref(r);
}

void
http_probe_start(struct sreq *r, void (*gone)(struct sreq *))
{
	struct bufferevent *bev = evhttp_connection_get_bufferevent(r->evcon);
	evutil_socket_t fd = bev != NULL ? bufferevent_getfd(bev) : -1;

	if (fd < 0)
		return;
	r->on_hangup = gone;
	r->probe = event_new(r->api->base, fd, EV_READ, probe_cb, r);
	if (r->probe != NULL)
		event_add(r->probe, NULL);
}

/* Copies at most n-1 bytes of s into out, control bytes as '?'. */
static void
log_clean(char *out, size_t n, const char *s)
{
	size_t i;

	for (i = 0; s != NULL && s[i] != '\0' && i + 1 < n; i++)
		out[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' :
		    s[i];
	out[i] = '\0';
}

/*
 * One line for each answer that is not a 200 (issue #9): method, path
 * (never the query string, where since and access_token travel), status,
 * errcode and reason; never a header or the body. Client input in them
 * (a path, a room id in a reason) cannot forge lines. At most 10 lines a
 * second, so a flood of bad requests costs a few KB a minute of log; the
 * next line that passes says how many were left out.
 */
static void
http_log_answer(const char *method, const char *path, int code,
    const char *errcode, const char *msg)
{
	static unsigned n;
	static long long window;
	static unsigned long long dropped;
	char p[160], m[240];

	if (!log_rate_ok(&n, &window)) {
		dropped++;
		return;
	}
	if (dropped > 0) {
		log_info("http: %llu more error answers not logged", dropped);
		dropped = 0;
	}
	log_clean(p, sizeof(p), path);
	log_clean(m, sizeof(m), msg);
	if (code >= 500)
		log_warnx("http: %s %s: %d %s: %s", method, p, code, errcode,
		    m);
	else
		log_info("http: %s %s: %d %s: %s", method, p, code, errcode,
		    m);
}

/*
 * {"errcode","error"}; an M_UNKNOWN_TOKEN or M_USER_LOCKED adds
 * "soft_logout", as Synapse's always does (error_reply).
 */
static void
error_body(struct evbuffer *b, const char *errcode, const char *msg,
    bool is_soft_logout)
{
	evbuffer_add(b, "{\"errcode\":", 11);
	jstr(b, errcode);
	evbuffer_add(b, ",\"error\":", 9);
	jstr(b, msg);
	if (strcmp(errcode, "M_UNKNOWN_TOKEN") == 0 ||
	    strcmp(errcode, "M_USER_LOCKED") == 0)
		evbuffer_add_printf(b, ",\"soft_logout\":%s",
		    is_soft_logout ? "true" : "false");
	evbuffer_add(b, "}", 1);
}

/*
 * An M_UNKNOWN_TOKEN carries "soft_logout", as Synapse's always does:
 * true when the homeserver expired the token rather than revoked it.
 * Element Web keeps the session's data (its keys) only on true, and
 * deletes it on false.
 */
static void
error_reply(struct evhttp_request *req, int code, const char *errcode,
    const char *msg, bool is_soft_logout)
{
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri != NULL ? evhttp_uri_get_path(uri) : NULL;
	struct evbuffer *b = evbuffer_new();

	http_log_answer(http_method_name(evhttp_request_get_command(req)) ?
	    http_method_name(evhttp_request_get_command(req)) : "OTHER",
	    path != NULL ? path : "-", code, errcode, msg);
	error_body(b, errcode, msg, is_soft_logout);
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Content-Type", "application/json");
	evhttp_send_reply(req, code, http_reason(code), b);
	evbuffer_free(b);
}

void
http_error(struct evhttp_request *req, int code, const char *errcode,
    const char *msg)
{
	error_reply(req, code, errcode, msg, false);
}

void
http_error_sreq(struct sreq *r, int code, const char *errcode,
    const char *msg)
{
	if (code == 503 || code == 429)
		http_error_retry(r->req, code, errcode, msg,
		    r->retry_after_ms > 0 ? r->retry_after_ms : 1000);
	else if (code == 401 && r->is_user_locked &&
	    strcmp(errcode, "M_UNKNOWN_TOKEN") == 0)
		/* the homeserver's refusal, as it said it (auth.c) */
		error_reply(r->req, code, "M_USER_LOCKED",
		    "User account has been locked", true);
	else
		error_reply(r->req, code, errcode, msg, r->is_soft_logout);
}

void
http_error_body(struct evbuffer *b, const char *errcode, const char *msg)
{
	error_body(b, errcode, msg, false);
}

static const char *
http_reason(int code)
{
	switch (code) {
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 413: return "Payload Too Large";
	case 414: return "URI Too Long";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	default: return "Error";
	}
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
	unsigned long long eph_hits, eph_misses;
	size_t eph_rooms;
	struct pg_pool_stats rs = {0};

	eph_counts(api, &eph_hits, &eph_misses, &eph_rooms);
	/* SYNCV3_DB_READ: where the replica-eligible reads went */
	if (api->pool_read != NULL)
		pg_pool_get_stats(api->pool_read, &rs);
	evbuffer_add_printf(b, "{\"status\":\"%s\",\"pos\":%lld,"
	    "\"waiters\":%d,\"requests\":%llu,\"whoami_calls\":%llu,"
	    "\"notices\":%llu,\"gaps\":%llu,\"wakeups\":%llu,"
	    "\"wake_lat_n\":%u,\"wake_lat_p50_ms\":%.0f,"
	    "\"wake_lat_p99_ms\":%.0f,\"connections\":%lld,"
	    "\"queries\":%llu,\"typing_table_hits\":%llu,"
	    "\"typing_table_misses\":%llu,\"typing_table_rooms\":%zu,"
	    "\"reads_replica\":%llu,\"reads_primary\":%llu,"
	    "\"reads_waited\":%llu,\"to_device_notice_hits\":%llu}",
	    is_up ? "ok" : "db_unavailable",
	    (long long)api->cur_pos,
	    lp_count(api), api->stats.requests, api->stats.whoami_calls,
	    api->stats.notices, api->stats.gaps, api->stats.wakeups,
	    api->stats.nlat, lat_pct(&api->stats, 50),
	    lat_pct(&api->stats, 99), api->nconns, api->stats.queries,
	    eph_hits, eph_misses, eph_rooms, rs.read_replica, rs.read_primary,
	    rs.read_waited, api->stats.td_notice_hits);
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Content-Type", "application/json");
	evhttp_send_reply(req, is_up ? 200 : 503, is_up ? "OK" :
	    "Service Unavailable", b);
	evbuffer_free(b);
}

/*
 * Limits ahead of evhttp's (issue #9). libevent 2.1.12's evhttp times a
 * connection out only when it goes idle (a byte a second never does), and
 * answers its own limits (body, header size) with HTML pages; it has no
 * error callback, and no way to reply to a request it is still reading.
 * So http.c makes each connection's bufferevent (evhttp_set_bevcb) and
 * watches its input buffer, counting the raw bytes before evhttp parses
 * them: a request's line and headers must end within header_timeout_ms
 * and max_headers bytes (the first line alone too), its body within
 * body_timeout_ms and max_body bytes, and at most max_conns connections
 * are open. Past a limit http.c takes the connection from evhttp, writes
 * the Matrix error and closes; evhttp's own limits are set beyond ours so
 * that they never answer first. The connection's context lives until
 * evhttp's close callback, which is therefore ours: others register theirs
 * with http_conn_closecb(). Bytes that arrive while a request is being
 * served (pipelining: evhttp reads them after the reply) pass unchecked.
 */
enum conn_state {
	CONN_HEAD,	/* reading a request line and headers */
	CONN_BODY,	/* reading a body */
	CONN_SERVED,	/* handed to the router, until its reply is sent */
	CONN_IDLE,	/* keep-alive, between requests */
	CONN_REFUSED,	/* a limit's error is written, then closed */
	CONN_STREAM,	/* a held-back body, left for proxy_body.c */
};

struct conn {
	struct api *api;
	struct bufferevent *bev;
	struct evhttp_connection *evcon;	/* NULL until attached */
	struct event *attach;	/* conn_attach, once evhttp has it */
	struct event *timer;	/* the state's deadline; linger */
	enum conn_state state;
	char key[32];		/* in api->conns */
	size_t nhead;		/* bytes of this request's head so far */
	size_t nline;		/* bytes of its current line, without CR */
	bool is_first_line;
	size_t nbody;
	size_t nbody_armed;	/* nbody when the body timer was last armed */
	long long close_at;	/* CONN_REFUSED: close then at the latest */
	bool is_flushed;
	bool is_over_cap;	/* accepted past max_conns */
	void (*closecb)(struct evhttp_connection *, void *);
	void *closecb_arg;
	enum prom_ep ep;	/* the request being served (prom.c) */
	long long served_us;	/* when it was routed */
	/* a pass-through head held back from evhttp (conn_hold) */
	bool is_held;
	bool is_rewriting;	/* our own bytes going back in: not scanned */
	bufferevent_data_cb ev_readcb, ev_writecb;	/* evhttp's, meanwhile */
	bufferevent_event_cb ev_eventcb;
	void *ev_arg;
	bool has_body;		/* body below, until http_body_take */
	struct http_body body;
};

/*
 * The body timer restarts after each CONN_BODY_PROGRESS bytes, so a large
 * media upload on a slow link is not cut while a trickle (a byte a second
 * needs 18 hours for 64 KiB) still is.
 */
#define CONN_BODY_PROGRESS (64 * 1024)

/*
 * Which route a body is for is not known yet: the raw limit is the largest
 * any route takes (sync checks its own max_body, the pass-through its
 * proxy_max_upload).
 */
static size_t
conn_body_max(const struct api_config *cfg)
{
	return (size_t)(cfg->max_body > cfg->proxy_max_upload ?
	    cfg->max_body : cfg->proxy_max_upload);
}

static void
conn_arm(struct conn *c, long long ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

	evtimer_add(c->timer, &tv);
}

/* A new request begins: its head has header_timeout_ms. */
static void
conn_start(struct conn *c)
{
	c->state = CONN_HEAD;
	c->nhead = c->nline = c->nbody = c->nbody_armed = 0;
	c->is_first_line = true;
	conn_arm(c, c->api->cfg.header_timeout_ms);
}

static void
conn_close(struct conn *c)
{
	if (c->evcon != NULL)
		evhttp_connection_free(c->evcon);	/* conn_gone_cb frees c */
}

static void
conn_drain_cb(struct bufferevent *bev, void *arg)
{
	(void)arg;
	evbuffer_drain(bufferevent_get_input(bev),
	    evbuffer_get_length(bufferevent_get_input(bev)));
}

static void
conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	(void)what;
	conn_close(arg);
}

/*
 * Writes the Matrix error for a request over a limit, then closes. evhttp
 * lets go of the connection first: it parses nothing more and sends
 * nothing of its own.
 */
static void
conn_refuse(struct conn *c, int code, const char *errcode, const char *msg)
{
	struct evbuffer *body, *out = bufferevent_get_output(c->bev);

	if (c->state == CONN_REFUSED)
		return;
	c->state = CONN_REFUSED;
	c->is_held = false;	/* our callbacks go too */
	c->api->stats.errors++;
	prom_request(c->api, PROM_EP_OTHER, code, 0);
	http_log_answer("-", "(request being read)", code, errcode, msg);
	bufferevent_setcb(c->bev, conn_drain_cb, NULL, conn_event_cb, c);
	bufferevent_set_timeouts(c->bev, NULL, NULL);
	body = evbuffer_new();
	http_error_body(body, errcode, msg);
	evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\nContent-Type: "
	    "application/json\r\nContent-Length: %zu\r\nConnection: close\r\n",
	    code, http_reason(code), evbuffer_get_length(body));
	cors_add_raw(out);
	evbuffer_add(out, "\r\n", 2);
	evbuffer_add_buffer(out, body);
	evbuffer_free(body);
	c->close_at = now_ms() + 2000;
	conn_arm(c, 0);
}

/*
 * Counts n more bytes of the stream, refusing the request past a limit.
 * The head ends at its first empty line (LF or CRLF, as evhttp reads it).
 */
static void
conn_scan(struct conn *c, const unsigned char *p, size_t n)
{
	const struct api_config *cfg = &c->api->cfg;
	size_t max = (size_t)cfg->max_headers, i;

	for (i = 0; i < n && (c->state == CONN_HEAD || c->state == CONN_IDLE);
	    i++) {
		if (c->state == CONN_IDLE)
			conn_start(c);
		c->nhead++;
		if (p[i] == '\n') {
			if (c->nline == 0 && !c->is_first_line) {
				c->state = CONN_BODY;
				conn_arm(c, cfg->body_timeout_ms);
			}
			c->is_first_line = false;
			c->nline = 0;
		} else if (p[i] != '\r')
			c->nline++;
		if (c->is_first_line && c->nline > max)
			conn_refuse(c, 414, "M_TOO_LARGE",
			    "request line too long");
		else if (c->nhead > max)
			conn_refuse(c, 431, "M_TOO_LARGE",
			    "request headers too large");
	}
	if (c->state != CONN_BODY)
		return;
	c->nbody += n - i;
	if (c->nbody > conn_body_max(cfg))
		conn_refuse(c, 413, "M_TOO_LARGE", "request body too large");
	else if (c->nbody - c->nbody_armed >= CONN_BODY_PROGRESS) {
		/* a real upload keeps going; a trickle never gets this far */
		c->nbody_armed = c->nbody;
		conn_arm(c, cfg->body_timeout_ms);
	}
}

static bool conn_is_passthrough(struct api *api, enum evhttp_cmd_type m,
    const char *path);
static struct conn *conn_of(struct api *api, struct evhttp_connection *evcon);

/*
 * Streamed request bodies (issue #12). libevent 2.1.12's evhttp reads a
 * request's body whole before any callback of ours can see the request:
 * evhttp_set_newreqcb, which would let us set a chunked callback first,
 * came in 2.2. So the head of a pass-through request is held back here,
 * on the bufferevent we own: once its first line names a pass-through
 * path, evhttp's callbacks are swapped for ours until the head is
 * complete. A head with a body (chunked, or a Content-Length above
 * SYNCV3_PROXY_BUFFER) then goes to evhttp without its framing headers
 * and with "Connection: close", so evhttp routes it at once as a request
 * without a body; the body stays on the connection for proxy_body.c, and
 * the connection closes after the answer (no next request can follow an
 * upload on it). Any other head, or one we do not understand, goes back
 * to evhttp unchanged.
 */
static enum evhttp_cmd_type
method_of(const char *name)
{
	static const enum evhttp_cmd_type all[] = {EVHTTP_REQ_GET,
	    EVHTTP_REQ_POST, EVHTTP_REQ_HEAD, EVHTTP_REQ_PUT,
	    EVHTTP_REQ_DELETE, EVHTTP_REQ_OPTIONS, EVHTTP_REQ_PATCH};

	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		if (strcmp(http_method_name(all[i]), name) == 0)
			return all[i];
	return 0;
}

static bool
hdr_is(const char *line, size_t namelen, const char *name)
{
	return namelen == strlen(name) &&
	    strncasecmp(line, name, namelen) == 0;
}

/*
 * Walks the header lines of head h (n bytes, ending with its empty line).
 * Without out: true when the body is one to stream (one Content-Length
 * above min, or Transfer-Encoding: chunked alone; no Expect but
 * 100-continue; no folded lines), its framing in *b. With out: writes the
 * head evhttp gets instead.
 */
static bool
head_walk(const char *h, size_t n, long long min, struct http_body *b,
    struct evbuffer *out)
{
	const char *p = memchr(h, '\n', n), *end = h + n, *nl, *v;
	int ncl = 0, nte = 0;
	size_t len, k;
	long long cl = -1;
	char num[24];

	if (p == NULL)
		return false;
	if (out != NULL)
		evbuffer_add(out, h, (size_t)(p - h + 1));
	b->len = -1;
	b->has_continue = false;
	b->connection[0] = '\0';
	for (p++; p < end && (nl = memchr(p, '\n', (size_t)(end - p))) != NULL;
	    p = nl + 1) {
		len = (size_t)(nl - p);
		if (len > 0 && p[len - 1] == '\r')
			len--;
		if (len == 0)
			break;
		if (p[0] == ' ' || p[0] == '\t' ||
		    (v = memchr(p, ':', len)) == NULL)
			return false;
		k = (size_t)(v - p);
		for (v++; v < p + len && (*v == ' ' || *v == '\t'); v++)
			;
		if (hdr_is(p, k, "Content-Length")) {
			if (++ncl > 1 || (size_t)(p + len - v) >= sizeof(num))
				return false;
			snprintf(num, sizeof(num), "%.*s", (int)(p + len - v),
			    v);
			if (parse_i64(num, &cl) == -1)
				return false;
		} else if (hdr_is(p, k, "Transfer-Encoding")) {
			if (++nte > 1 || (size_t)(p + len - v) != 7 ||
			    strncasecmp(v, "chunked", 7) != 0)
				return false;
		} else if (hdr_is(p, k, "Expect")) {
			if ((size_t)(p + len - v) != 12 ||
			    strncasecmp(v, "100-continue", 12) != 0)
				return false;
			b->has_continue = true;
		} else if (hdr_is(p, k, "Connection"))	/* evhttp's: close */
			snprintf(b->connection, sizeof(b->connection), "%.*s",
			    (int)(p + len - v), v);
		else if (out != NULL)
			evbuffer_add(out, p, (size_t)(nl - p + 1));
	}
	if (out != NULL)
		evbuffer_add_printf(out, "Connection: close\r\n\r\n");
	if (nte == 1)
		return ncl == 0;
	b->len = cl;
	return ncl == 1 && cl > min;
}

/*
 * The held head is complete: evhttp gets it, rewritten when streamed. A
 * body no larger than SYNCV3_PROXY_BUFFER is read whole by evhttp as
 * before (it costs no more than streaming would) and keeps the
 * connection alive; the API's small bodies (sends, keys, logins) stay on
 * one connection.
 */
static void
conn_release(struct conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev), *out;
	size_t n = c->nhead;
	long long min = c->api->cfg.proxy_buffer;
	const char *h;
	struct http_body b;

	bufferevent_setcb(c->bev, c->ev_readcb, c->ev_writecb, c->ev_eventcb,
	    c->ev_arg);
	c->is_held = false;
	if (evbuffer_get_length(in) >= n && n > 0 &&
	    (h = (const char *)evbuffer_pullup(in, (ev_ssize_t)n)) != NULL &&
	    h[n - 1] == '\n' && head_walk(h, n, min, &b, NULL)) {
		out = evbuffer_new();
		head_walk(h, n, min, &b, out);
		c->is_rewriting = true;
		evbuffer_drain(in, n);
		evbuffer_prepend_buffer(in, out);
		c->is_rewriting = false;
		evbuffer_free(out);
		c->body = b;
		c->has_body = true;
		c->state = CONN_STREAM;
		evtimer_del(c->timer);
	}
	if (c->ev_readcb != NULL)
		c->ev_readcb(c->bev, c->ev_arg);	/* may free c */
}

static void
conn_held_read_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;

	(void)bev;
	if (c->state != CONN_HEAD)	/* the head is complete */
		conn_release(c);
}

static void
conn_held_write_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;

	if (c->ev_writecb != NULL)
		c->ev_writecb(bev, c->ev_arg);
}

static void
conn_held_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;

	if (c->ev_eventcb != NULL)
		c->ev_eventcb(bev, what, c->ev_arg);
}

/* The first line of a request is in: hold the head if it is passed on. */
static void
conn_hold(struct conn *c, struct evbuffer *in)
{
	size_t eol = 0;
	struct evbuffer_ptr pos = evbuffer_search_eol(in, NULL, &eol,
	    EVBUFFER_EOL_CRLF);
	char *line, *sp1, *sp2;
	struct evhttp_uri *uri = NULL;
	bufferevent_data_cb readcb = NULL;

	if (pos.pos <= 0 || pos.pos > 16384)
		return;
	line = xmalloc((size_t)pos.pos + 1);
	evbuffer_copyout(in, line, (size_t)pos.pos);
	line[pos.pos] = '\0';
	if ((sp1 = strchr(line, ' ')) == NULL ||
	    (sp2 = strchr(sp1 + 1, ' ')) == NULL)
		goto out;
	*sp1 = *sp2 = '\0';
	if ((uri = evhttp_uri_parse_with_flags(sp1 + 1, 0)) == NULL ||
	    !conn_is_passthrough(c->api, method_of(line),
	    evhttp_uri_get_path(uri)))
		goto out;
	bufferevent_getcb(c->bev, &readcb, &c->ev_writecb, &c->ev_eventcb,
	    &c->ev_arg);
	if (readcb == NULL)
		goto out;
	c->ev_readcb = readcb;
	c->is_held = true;
	bufferevent_setcb(c->bev, conn_held_read_cb, conn_held_write_cb,
	    conn_held_event_cb, c);
out:
	if (uri != NULL)
		evhttp_uri_free(uri);
	free(line);
}

struct bufferevent *
http_body_take(struct api *api, struct evhttp_request *req,
    struct http_body *info)
{
	struct conn *c = conn_of(api, evhttp_request_get_connection(req));

	if (c == NULL || !c->has_body)
		return NULL;
	c->has_body = false;
	*info = c->body;
	return c->bev;
}

/* Bytes were read into the connection's input; evhttp parses them next. */
static void
conn_input_cb(struct evbuffer *in, const struct evbuffer_cb_info *info,
    void *arg)
{
	struct conn *c = arg;
	struct evbuffer_ptr pos;
	struct evbuffer_iovec v;
	size_t left = info->n_added;
	bool was_first = c->state == CONN_IDLE ||
	    (c->state == CONN_HEAD && c->is_first_line);

	if (left == 0 || c->is_rewriting || evbuffer_ptr_set(in, &pos,
	    info->orig_size, EVBUFFER_PTR_SET) == -1)
		return;
	while (left > 0 && (c->state == CONN_HEAD || c->state == CONN_BODY ||
	    c->state == CONN_IDLE) && evbuffer_peek(in, (ev_ssize_t)left, &pos,
	    &v, 1) > 0 && v.iov_len > 0) {
		if (v.iov_len > left)
			v.iov_len = left;
		conn_scan(c, v.iov_base, v.iov_len);
		left -= v.iov_len;
		if (evbuffer_ptr_set(in, &pos, v.iov_len,
		    EVBUFFER_PTR_ADD) == -1)
			break;
	}
	if (was_first && !c->is_first_line && !c->is_held &&
	    (c->state == CONN_HEAD || c->state == CONN_BODY))
		conn_hold(c, in);
}

/*
 * A refused connection: wait for the error to leave, then half-close and
 * keep reading (and dropping) a moment, so that the client's unread bytes
 * do not make the kernel reset the connection before it read the answer.
 */
static void
conn_linger(struct conn *c)
{
	evutil_socket_t fd = bufferevent_getfd(c->bev);

	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	if (!c->is_flushed &&
	    evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
		c->is_flushed = true;
		if (fd >= 0)
			shutdown(fd, SHUT_WR);
		c->close_at = now_ms() + 1000;
	}
	if (now_ms() >= c->close_at) {
		conn_close(c);
		return;
	}
	conn_arm(c, c->is_flushed ? c->close_at - now_ms() : 20);
}

static void conn_gone_cb(struct evhttp_connection *evcon, void *arg);

static void
conn_forget(struct conn *c)
{
	evbuffer_remove_cb(bufferevent_get_input(c->bev), conn_input_cb, c);
	map_del(&c->api->conns, c->key);
	c->api->nconns--;
	event_free(c->attach);
	event_free(c->timer);
	free(c);
}

/*
 * Right after evhttp made the connection: its close callback is ours.
 * Until then our reference keeps the bufferevent: a client that hung up
 * at once may have had its connection freed by evhttp already (which
 * cleared the callbacks).
 */
static void
conn_attach(struct conn *c)
{
	void (*eventcb)(struct bufferevent *, short, void *) = NULL;
	void *evcon = NULL;

	if (c->evcon != NULL)
		return;
	event_del(c->attach);
	bufferevent_getcb(c->bev, NULL, NULL, &eventcb, &evcon);
	if (eventcb == NULL || evcon == NULL) {
		struct bufferevent *bev = c->bev;

		conn_forget(c);
		bufferevent_decref(bev);
		return;
	}
	c->evcon = evcon;
	evhttp_connection_set_closecb(c->evcon, conn_gone_cb, c);
	/*
	 * A response larger than a segment leaves a short last segment that
	 * Nagle holds until the client ACKs the rest: no use to a server that
	 * writes each response whole.
	 */
	if (setsockopt(bufferevent_getfd(c->bev), IPPROTO_TCP, TCP_NODELAY,
	    &(int){1}, sizeof(int)) == -1)
		log_debug("TCP_NODELAY: %s", strerror(errno));
	bufferevent_decref(c->bev);
	if (c->is_over_cap)
		conn_refuse(c, 503, "M_LIMIT_EXCEEDED",
		    "too many connections; retry later");
	else if (c->state == CONN_REFUSED)	/* refused before: close */
		conn_arm(c, 0);
}

static void
conn_attach_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	conn_attach(arg);	/* may free c */
}

static void
conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	(void)fd;
	(void)what;
	switch (c->state) {
	case CONN_HEAD:
		conn_refuse(c, 408, "M_UNKNOWN",
		    "request headers not received in time");
		break;
	case CONN_BODY:
		conn_refuse(c, 408, "M_UNKNOWN",
		    "request body not received in time");
		break;
	case CONN_REFUSED:
		conn_linger(c);
		break;
	case CONN_SERVED:
	case CONN_IDLE:
	case CONN_STREAM:
		break;
	}
}

/* evhttp frees the connection: tell who asked (r_sync.c), then forget it. */
static void
conn_gone_cb(struct evhttp_connection *evcon, void *arg)
{
	struct conn *c = arg;

	if (c->state == CONN_SERVED)	/* the client left before the answer */
		prom_request(c->api, c->ep, 0, now_us() - c->served_us);
	if (c->closecb != NULL)
		c->closecb(evcon, c->closecb_arg);
	conn_forget(c);
}

/* evhttp's bufferevent for a new connection, watched by a conn. */
static struct bufferevent *
conn_new_cb(struct event_base *base, void *arg)
{
	struct api *api = arg;
	struct conn *c = xcalloc(1, sizeof(*c));

	c->api = api;
	if ((c->bev = bufferevent_socket_new(base, -1, 0)) == NULL ||
	    (c->timer = evtimer_new(base, conn_timer_cb, c)) == NULL ||
	    (c->attach = evtimer_new(base, conn_attach_cb, c)) == NULL ||
	    evbuffer_add_cb(bufferevent_get_input(c->bev), conn_input_cb,
	    c) == NULL)
		fatalx("%s: out of memory", __func__);
	snprintf(c->key, sizeof(c->key), "%p", (void *)c->bev);
	map_put(&api->conns, c->key, c);
	api->nconns++;
	c->is_over_cap = api->nconns > api->cfg.max_conns;
	bufferevent_incref(c->bev);	/* until conn_attach */
	conn_start(c);
	event_active(c->attach, EV_TIMEOUT, 0);
	return c->bev;
}

static struct conn *
conn_of(struct api *api, struct evhttp_connection *evcon)
{
	struct bufferevent *bev;
	char key[32];

	if (evcon == NULL ||
	    (bev = evhttp_connection_get_bufferevent(evcon)) == NULL)
		return NULL;
	snprintf(key, sizeof(key), "%p", (void *)bev);
	return map_get(&api->conns, key);
}

void
http_conn_closecb(struct api *api, struct evhttp_connection *evcon,
    void (*cb)(struct evhttp_connection *, void *), void *arg)
{
	struct conn *c = conn_of(api, evcon);

	if (c == NULL) {
		evhttp_connection_set_closecb(evcon, cb, arg);
		return;
	}
	c->closecb = cb;
	c->closecb_arg = arg;
}

static void
conn_done_cb(struct evhttp_request *req, void *arg)
{
	struct conn *c = arg;

	if (c->state != CONN_SERVED)
		return;
	c->state = CONN_IDLE;
	prom_request(c->api, c->ep, evhttp_request_get_response_code(req),
	    now_us() - c->served_us);
}

/* The router has the request: reading it is over, its limits too. */
static void
conn_served(struct api *api, struct evhttp_request *req, const char *path)
{
	struct conn *c = conn_of(api, evhttp_request_get_connection(req));

	if (c == NULL)
		return;
	conn_attach(c);		/* served before conn_attach_cb ran */
	if (c->state == CONN_REFUSED)
		return;
	c->state = CONN_SERVED;
	c->ep = prom_endpoint(path);
	c->served_us = now_us();
	evtimer_del(c->timer);
	evhttp_request_set_on_complete_cb(req, conn_done_cb, c);
}

struct route {
	const char *path;
	enum evhttp_cmd_type method;
	void (*fn)(struct api *, struct evhttp_request *);
};

static const struct route routes[] = {
	{"/_matrix/client/v3/sync", EVHTTP_REQ_POST, sync_handle},
	{"/_matrix/client/unstable/org.matrix.simplified_msc3575/sync",
	    EVHTTP_REQ_POST, ss_handle_synapse},
	{"/_matrix/client/v4/sync", EVHTTP_REQ_POST, ss_handle_v4},
	{"/health", EVHTTP_REQ_GET, health_cb},
	{"/metrics", EVHTTP_REQ_GET, prom_handle},
};

/* A GET route answers HEAD too. */
static bool
route_takes(const struct route *r, enum evhttp_cmd_type m)
{
	return m == r->method ||
	    (r->method == EVHTTP_REQ_GET && m == EVHTTP_REQ_HEAD);
}

/*
 * Would http_gen_cb give a request for m and path to the pass-through?
 * Our own trees (admin.c, webview.c) are all under /_syncv3/.
 */
static bool
conn_is_passthrough(struct api *api, enum evhttp_cmd_type m, const char *path)
{
	if (m == 0 || path == NULL || strncmp(path, "/_syncv3/", 9) == 0)
		return false;
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
		if (strcmp(routes[i].path, path) == 0 &&
		    route_takes(&routes[i], m))
			return false;
	return proxy_takes(api, m, path);
}

/*
 * Our own trees (issue #14), before the routes: each handler takes the
 * paths under its prefix (0) and leaves the rest (-1).
 */
static const struct {
	int (*fn)(struct api *, struct evhttp_request *, const char *);
} prefixes[] = {
	{admin_handle},
	{webview_handle},
};

/*
 * Every request evhttp parsed: CORS, then the routes table (405 for a
 * known path with another method), then the pass-through, else 404.
 */
static void
http_gen_cb(struct evhttp_request *req, void *arg)
{
	struct api *api = arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
	bool path_ok = false;

	cors_add(req);
	conn_served(api, req, path);
	if (path == NULL) {
		http_error(req, 400, "M_UNRECOGNIZED", "bad request URI");
		return;
	}
	if (cors_preflight(req))
		return;
	if (proxy_framing_check(req) == -1)
		return; /* answered; the connection closes */
	if (api->is_stopping) {
		http_error(req, 503, "M_UNKNOWN", "shutting down");
		return;
	}
	for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
		if (prefixes[i].fn(api, req, path) == 0)
			return;
	}
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		if (strcmp(routes[i].path, path) != 0)
			continue;
		path_ok = true;
		if (route_takes(&routes[i], evhttp_request_get_command(req))) {
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

/*
 * Binds SYNCV3_BINDADDR and sets evhttp's own limits, the routes, the
 * limits layer's connection callback and the pass-through.
 */
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
	/* our limits answer first, with Matrix errors (conn_scan) */
	map_init(&api->conns);
	evhttp_set_bevcb(api->http, conn_new_cb, api);
	evhttp_set_max_body_size(api->http, -1);
	evhttp_set_max_headers_size(api->http,
	    (ev_ssize_t)api->cfg.max_headers * 2 + 4096);
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
	map_free(&api->conns, NULL);
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
