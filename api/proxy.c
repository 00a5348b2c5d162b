/*
 * proxy.c: one base URL. Every request under SYNCV3_PROXY_PREFIXES that
 * the api does not serve itself goes to SYNCV3_SERVER unchanged (method,
 * path, query, end-to-end headers, body) and its answer comes back the
 * same way, status and headers included, on its own curl multi handle
 * (common/curl_ev.c) whose connection cache keeps upstream connections
 * alive between requests.
 *
 * A struct preq lives from routing to the end of its reply or to the
 * client hanging up: QUEUED (SYNCV3_PROXY_MAX_CONCURRENT are running),
 * UPSTREAM (sent, no answer yet), STREAMING (reply started). Answers
 * stream to the client as they arrive; while the client's output buffer
 * is above SYNCV3_PROXY_BUFFER the transfer is paused
 * (CURL_WRITEFUNC_PAUSE) and resumed when evhttp reports it drained, so a
 * 100 MB download costs about that buffer. Request bodies stream out
 * the same way: http.c holds a pass-through request's head back from
 * evhttp (libevent 2.1's evhttp would read the body whole first) and
 * proxy_body.c reads the body off the connection as curl asks for it,
 * SYNCV3_PROXY_BUFFER at most waiting; curl is paused
 * (CURL_READFUNC_PAUSE) while none has arrived and resumed when some
 * does. A streamed body is bounded by SYNCV3_PROXY_MAX_STREAM (413, from
 * Content-Length before any of it is read); a body evhttp still reads
 * whole (one that came pipelined behind another request) by
 * SYNCV3_PROXY_MAX_UPLOAD, sent from evhttp's buffer without a copy. A
 * client that hangs up mid-upload aborts the upstream request; an
 * upstream that fails mid-upload gets the client a 502 once the client's
 * body is in (or after PROXY_DRAIN_MS), so that it reads the answer
 * rather than a reset. One timer per request: the header timeout until
 * upstream answers (504), restarted while the body flows, then the idle
 * timeout while upstream sends nothing and we are not the ones waiting.
 * Tokens, Authorization headers and bodies are never logged; paths are
 * logged without their query.
 */
#include <sys/queue.h>
#include <sys/socket.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "api.h"
#include "crypto.h"
#include "curl_ev.h"
#include "json_util.h"
#include "pg.h"
#include "proto.h"
#include "ss.h"
#include "util.h"

#define PROXY_MAX_RESP_HEADERS (64 * 1024)
#define PROXY_MAX_REWRITE (1024 * 1024) /* /versions is small */
#define PROXY_FEATURE "org.matrix.simplified_msc3575"
#define PROXY_DRAIN_MS 2000 /* a failed upload's rest, read and dropped */

enum pr_state {
	PR_QUEUED,
	PR_UPSTREAM,
	PR_STREAMING,
};

struct preq {
	struct proxy *px;
	struct evhttp_request *req; /* NULL once evhttp freed it */
	struct evhttp_connection *evcon;
	TAILQ_ENTRY(preq) entry; /* px->queue while QUEUED */
	enum pr_state state;
	CURL *easy;
	struct curl_slist *hdrs;
	struct evbuffer_ptr body_pos; /* next request body byte to send */
	char *query; /* sent upstream instead of the client's (ss_pos.c) */
	struct evkeyvalq resp; /* upstream's answer headers */
	size_t resp_bytes;
	int status;
	char reason[64];
	bool has_final_headers;
	bool is_rewrite;       /* GET /versions: add our flag */
	bool is_wellknown;     /* GET client well-known: we are m.homeserver */
	struct evbuffer *rbuf; /* its body */
	bool is_paused;
	struct pbody *body; /* a streamed request body (proxy_body.c) */
	long long len;      /* its Content-Length, -1 chunked */
	char *client_conn;  /* its Connection header (evhttp was given close) */
	bool is_up_paused;  /* curl waits for body bytes */
	bool is_draining;   /* failed: the body's rest goes, then the error */
	int body_err;       /* PBODY_EBAD, PBODY_ETOOBIG from the body */
	int fail_code;
	const char *fail_msg;
	struct event *resume;
	int logout; /* 0, 1 = this token, 2 = all */
	char token_hash[TOKEN_HASH_LEN + 1];
	struct event *timer;
	struct event *probe;
	char *log_path; /* without the query */
	long long start_ms;
};
TAILQ_HEAD(preq_q, preq);

struct proxy {
	struct api *api;
	struct curl_ev *ce;
	char **prefixes;
	int nprefixes;
	int active;
	int nqueued;
	struct preq_q queue;
	unsigned long long requests, failures;
	unsigned long long bytes_up, bytes_down; /* bodies, for /metrics */
	unsigned long long streamed, aborted;    /* streamed uploads */
};

/* RFC 9110 7.6.1 hop-by-hop headers, plus what curl and evhttp set. */
static const char *const hop_headers[] = {
    "Connection",
    "Keep-Alive",
    "Proxy-Authenticate",
    "Proxy-Authorization",
    "Proxy-Connection",
    "TE",
    "Trailer",
    "Transfer-Encoding",
    "Upgrade",
};

static void preq_start(struct preq *);
static void preq_abort_client(struct preq *);

/* Is name hop-by-hop, or named by conn (a Connection header, or NULL)? */
static bool
is_hop(const char *conn, const char *name)
{
	for (size_t i = 0; i < sizeof(hop_headers) / sizeof(hop_headers[0]);
	     i++)
		if (strcasecmp(name, hop_headers[i]) == 0)
			return true;
	if (conn == NULL)
		return false;
	for (const char *p = conn; *p != '\0';) {
		size_t n;

		p += strspn(p, " \t,");
		n = strcspn(p, " \t,");
		if (n > 0 && n == strlen(name) && strncasecmp(p, name, n) == 0)
			return true;
		p += n;
	}
	return false;
}

/*
 * Frees a pass-through request: its curl handle (a slot of the
 * concurrency cap), buffers and headers.
 */
static void
preq_free(struct preq *p)
{
	if (p == NULL)
		return;
	if (p->easy != NULL) {
		curl_ev_remove(p->px->ce, p->easy);
		curl_easy_cleanup(p->easy);
		p->px->active--;
	}
	if (p->state == PR_QUEUED && p->px->nqueued > 0) {
		TAILQ_REMOVE(&p->px->queue, p, entry);
		p->px->nqueued--;
	}
	if (p->evcon != NULL)
		http_conn_closecb(p->px->api, p->evcon, NULL, NULL);
	if (p->timer != NULL)
		event_free(p->timer);
	if (p->probe != NULL)
		event_free(p->probe);
	if (p->resume != NULL)
		event_free(p->resume);
	pbody_free(p->body);
	free(p->client_conn);
	curl_slist_free_all(p->hdrs);
	evhttp_clear_headers(&p->resp);
	if (p->rbuf != NULL)
		evbuffer_free(p->rbuf);
	free(p->log_path);
	free(p->query);
	free(p);
}

/* Starts queued requests while there is room. */
static void
queue_run(struct proxy *px)
{
	struct preq *p;

	if (px->api->http == NULL) /* shutting down: evhttp_free ran */
		return;
	while (px->active < px->api->cfg.proxy_max_concurrent &&
	       (p = TAILQ_FIRST(&px->queue)) != NULL) {
		TAILQ_REMOVE(&px->queue, p, entry);
		px->nqueued--;
		p->state = PR_UPSTREAM;
		preq_start(p);
	}
}

/* Our part is over: p is freed and the next queued request may start. */
static void
preq_done(struct preq *p)
{
	struct proxy *px = p->px;

	log_debug("proxy: %s: %d after %lld ms", p->log_path, p->status,
	          now_ms() - p->start_ms);
	preq_free(p);
	queue_run(px);
}

/* Lets go of the client's connection: before it may be freed. */
static void
body_release(struct preq *p)
{
	pbody_free(p->body);
	p->body = NULL;
}

/* The upstream transfer ends early: its slot is free for the next. */
static void
easy_drop(struct preq *p)
{
	if (p->easy == NULL)
		return;
	curl_ev_remove(p->px->ce, p->easy);
	curl_easy_cleanup(p->easy);
	p->easy = NULL;
	p->px->active--;
}

static void drain(struct preq *);
static void timer_arm(struct preq *, long long);

static void
preq_fail(struct preq *p, int code, const char *msg)
{
	if (!p->is_draining) {
		p->px->failures++;
		log_warnx_rl("proxy: %s: %s", p->log_path, msg);
	}
	if (p->body != NULL && p->req != NULL && !p->is_draining &&
	    !pbody_is_done(p->body) && p->body_err != PBODY_EBAD) {
		/* the client is still sending: take it in, then answer */
		p->is_draining = true;
		p->fail_code = code;
		p->fail_msg = msg;
		easy_drop(p);
		pbody_start(p->body);
		timer_arm(p, PROXY_DRAIN_MS);
		drain(p);
		return;
	}
	body_release(p);
	p->status = code;
	if (p->req != NULL) {
		http_conn_closecb(p->px->api, p->evcon, NULL, NULL);
		p->evcon = NULL;
		http_error(p->req, code,
		           code == 413 ? "M_TOO_LARGE" : "M_UNKNOWN", msg);
		p->req = NULL;
	}
	preq_done(p);
}

static void
timer_arm(struct preq *p, long long ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

	evtimer_add(p->timer, &tv);
}

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct preq *p = arg;

	(void)fd;
	(void)what;
	if (p->is_draining) {
		body_release(p);
		preq_fail(p, p->fail_code, p->fail_msg);
		return;
	}
	if (p->state == PR_STREAMING) {
		log_warnx_rl("proxy: %s: homeserver stopped sending",
		             p->log_path);
		preq_abort_client(p);
		return;
	}
	preq_fail(p, 504, "homeserver timed out");
}

/*
 * The client went away: evhttp frees a request it still owns after this
 * callback; one whose reply was streaming it has already let go of, and
 * ending that reply frees it.
 */
static void
close_cb(struct evhttp_connection *evcon, void *arg)
{
	struct preq *p = arg;

	(void)evcon;
	p->evcon = NULL;
	if (p->body != NULL && !pbody_is_done(p->body)) {
		p->px->aborted++;
		log_info("proxy: %s: client hung up mid-upload", p->log_path);
	}
	body_release(p);
	if (p->req != NULL && evhttp_request_get_connection(p->req) == NULL)
		evhttp_send_reply_end(p->req);
	p->req = NULL;
	log_debug("proxy: %s: client went away", p->log_path);
	preq_done(p);
}

/* Drops the client's connection mid-answer (it sees a cut body). */
static void
preq_abort_client(struct preq *p)
{
	struct evhttp_connection *evcon = p->evcon;

	p->px->failures++;
	body_release(p);
	if (evcon != NULL) {
		http_conn_closecb(p->px->api, evcon, NULL, NULL);
		p->evcon = NULL;
		if (p->req != NULL &&
		    evhttp_request_get_connection(p->req) == NULL)
			evhttp_send_reply_end(p->req);
		else
			evhttp_connection_free(evcon);
	}
	p->req = NULL;
	preq_done(p);
}

/*
 * Until the reply starts evhttp does not read the connection, so a hang-up
 * goes unseen; watch it (http_peek) and free the connection on EOF.
 */
static void
probe_cb(evutil_socket_t fd, short what, void *arg)
{
	struct preq *p = arg;
	enum http_peek k = http_peek(fd);

	(void)what;
	if (k == HTTP_PEEK_DATA)
		return;
	if (k == HTTP_PEEK_AGAIN) {
		event_add(p->probe, NULL);
		return;
	}
	if (p->evcon != NULL)
		evhttp_connection_free(p->evcon); /* runs close_cb: p is gone */
}

static void
probe_start(struct preq *p)
{
	struct bufferevent *bev = evhttp_connection_get_bufferevent(p->evcon);
	evutil_socket_t fd = bev != NULL ? bufferevent_getfd(bev) : -1;

	if (fd < 0)
		return;
	p->probe = event_new(p->px->api->base, fd, EV_READ, probe_cb, p);
	if (p->probe != NULL)
		event_add(p->probe, NULL);
}

/* Copies upstream's end-to-end headers to the reply. */
static void
copy_resp_headers(struct preq *p)
{
	struct evkeyvalq *out = evhttp_request_get_output_headers(p->req);
	const char *conn = evhttp_find_header(&p->resp, "Connection");
	struct evkeyval *kv;

	TAILQ_FOREACH(kv, &p->resp, next)
	{
		if (is_hop(conn, kv->key) || cors_is_own(kv->key) ||
		    (p->is_rewrite &&
		     strcasecmp(kv->key, "Content-Length") == 0))
			continue;
		evhttp_add_header(out, kv->key, kv->value);
	}
}

static void
reply_start(struct preq *p)
{
	if (p->probe != NULL) {
		event_free(p->probe);
		p->probe = NULL;
	}
	copy_resp_headers(p);
	p->state = PR_STREAMING;
	evhttp_send_reply_start(p->req, p->status,
	                        p->reason[0] ? p->reason : "OK");
}

/*
 * curl's header callback: the status line and headers of the final
 * response are kept for the client, bounded in size.
 */
static size_t
header_cb(char *buf, size_t size, size_t n, void *arg)
{
	struct preq *p = arg;
	size_t len = size * n, klen;
	char *line, *v;

	if ((p->resp_bytes += len) > PROXY_MAX_RESP_HEADERS)
		return 0;
	if (len >= 5 && strncmp(buf, "HTTP/", 5) == 0) {
		evhttp_clear_headers(&p->resp);
		p->has_final_headers = false;
		line = xasprintf("%.*s", (int)len, buf);
		line[strcspn(line, "\r\n")] = '\0';
		v = strchr(line, ' ');
		p->status = v != NULL ? atoi(v + 1) : 0;
		p->reason[0] = '\0';
		if (v != NULL && (v = strchr(v + 1, ' ')) != NULL)
			snprintf(p->reason, sizeof(p->reason), "%s", v + 1);
		free(line);
		return len;
	}
	if (len <= 2 && (buf[0] == '\r' || buf[0] == '\n')) {
		if (p->status >= 200) {
			p->has_final_headers = true;
			timer_arm(p, p->px->api->cfg.proxy_idle_timeout_ms);
		}
		return len;
	}
	line = xasprintf("%.*s", (int)len, buf);
	line[strcspn(line, "\r\n")] = '\0';
	if ((v = strchr(line, ':')) != NULL) {
		klen = (size_t)(v - line);
		*v++ = '\0';
		v += strspn(v, " \t");
		if (klen > 0)
			evhttp_add_header(&p->resp, line, v);
	}
	free(line);
	return len;
}

static void
drained_cb(struct evhttp_connection *evcon, void *arg)
{
	struct preq *p = arg;

	(void)evcon;
	if (!p->is_paused || p->easy == NULL)
		return;
	p->is_paused = false;
	timer_arm(p, p->px->api->cfg.proxy_idle_timeout_ms);
	curl_easy_pause(p->easy,
	                p->is_up_paused ? CURLPAUSE_SEND : CURLPAUSE_CONT);
}

/*
 * curl's body callback: the body is streamed to the client as it comes,
 * or kept whole when it is to be rewritten.
 */
static size_t
write_cb(char *buf, size_t size, size_t n, void *arg)
{
	struct preq *p = arg;
	size_t len = size * n;
	struct evbuffer *out, *chunk;

	if (p->req == NULL)
		return 0;
	if (p->is_rewrite) {
		if (evbuffer_get_length(p->rbuf) + len > PROXY_MAX_REWRITE)
			return 0;
		evbuffer_add(p->rbuf, buf, len);
		return len;
	}
	if (p->state != PR_STREAMING)
		reply_start(p);
	out =
	    bufferevent_get_output(evhttp_connection_get_bufferevent(p->evcon));
	if (evbuffer_get_length(out) > (size_t)p->px->api->cfg.proxy_buffer) {
		p->is_paused = true;
		evtimer_del(p->timer);
		return CURL_WRITEFUNC_PAUSE;
	}
	chunk = evbuffer_new();
	evbuffer_add(chunk, buf, len);
	evhttp_send_reply_chunk_with_cb(p->req, chunk, drained_cb, p);
	evbuffer_free(chunk);
	timer_arm(p, p->px->api->cfg.proxy_idle_timeout_ms);
	return len;
}

/*
 * A streamed body: what has arrived, else a pause until more does (kick_cb).
 * While the body flows, upstream is not late: the header timer restarts.
 */
static size_t
body_read_cb(struct preq *p, char *buf, size_t n)
{
	ev_ssize_t got = pbody_read(p->body, buf, n);

	if (got == PBODY_AGAIN) {
		p->is_up_paused = true;
		return CURL_READFUNC_PAUSE;
	}
	if (got < 0) {
		p->body_err = (int)got;
		return CURL_READFUNC_ABORT;
	}
	timer_arm(p, p->px->api->cfg.proxy_header_timeout_ms);
	return (size_t)got;
}

/* Body bytes are left unread: no error answer until they are in. */
static void
drain(struct preq *p)
{
	char scratch[16384];
	ev_ssize_t got;

	while ((got = pbody_read(p->body, scratch, sizeof(scratch))) > 0)
		;
	if (got == PBODY_AGAIN)
		return;
	body_release(p);
	preq_fail(p, p->fail_code, p->fail_msg);
}

static void
resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct preq *p = arg;

	(void)fd;
	(void)what;
	if (p->is_draining) {
		drain(p);
		return;
	}
	if (!p->is_up_paused || p->easy == NULL)
		return;
	p->is_up_paused = false;
	curl_easy_pause(p->easy,
	                p->is_paused ? CURLPAUSE_RECV : CURLPAUSE_CONT);
}

/* More of the body arrived (proxy_body.c, in libevent's read): resume soon. */
static void
kick_cb(void *arg)
{
	struct preq *p = arg;

	if (p->is_up_paused || p->is_draining)
		event_active(p->resume, EV_TIMEOUT, 1);
}

/*
 * The body stays in evhttp's buffer (curl may rewind); a position kept
 * from call to call, moved forward only, keeps each read O(1) where
 * setting it from the start walked every chain of a 100 MB body.
 */
static size_t
read_cb(char *buf, size_t size, size_t n, void *arg)
{
	struct preq *p = arg;
	struct evbuffer *in;
	ev_ssize_t got;

	if (p->req == NULL)
		return CURL_READFUNC_ABORT;
	if (p->body != NULL)
		return body_read_cb(p, buf, size * n);
	in = evhttp_request_get_input_buffer(p->req);
	if ((size_t)p->body_pos.pos >= evbuffer_get_length(in))
		return 0;
	if ((got = evbuffer_copyout_from(in, &p->body_pos, buf, size * n)) <
	        0 ||
	    evbuffer_ptr_set(in, &p->body_pos, (size_t)got, EVBUFFER_PTR_ADD) !=
	        0)
		return CURL_READFUNC_ABORT;
	return (size_t)got;
}

/* curl rewinds when it resends on a kept-alive connection that died. */
static int
seek_cb(void *arg, curl_off_t off, int origin)
{
	struct preq *p = arg;
	struct evbuffer *in;

	if (origin != SEEK_SET || off < 0 || p->req == NULL)
		return CURL_SEEKFUNC_FAIL;
	in = evhttp_request_get_input_buffer(p->req);
	if ((size_t)off > evbuffer_get_length(in) ||
	    evbuffer_ptr_set(in, &p->body_pos, (size_t)off, EVBUFFER_PTR_SET) !=
	        0)
		return CURL_SEEKFUNC_FAIL;
	return CURL_SEEKFUNC_OK;
}

/* Adds "unstable_features": {PROXY_FEATURE: true}; the rest unchanged. */
static void
versions_edit(struct json_object *o)
{
	struct json_object *uf = NULL;

	if (!json_object_object_get_ex(o, "unstable_features", &uf) ||
	    !json_object_is_type(uf, json_type_object)) {
		uf = json_object_new_object();
		json_object_object_add(o, "unstable_features", uf);
	}
	json_object_object_add(uf, PROXY_FEATURE, json_object_new_boolean(1));
}

/* The first value of a list header ("https, http" -> "https"), or NULL. */
static char *
first_value(const char *v)
{
	size_t n;

	if (v == NULL)
		return NULL;
	v += strspn(v, " \t");
	n = strcspn(v, ", \t");
	return n > 0 ? xasprintf("%.*s", (int)n, v) : NULL;
}

/* Is s an http(s) URL with a host and no user, query or fragment? */
static bool
is_base_url(const char *s)
{
	struct evhttp_uri *u = evhttp_uri_parse(s);
	const char *sch;
	bool ok;

	if (u == NULL)
		return false;
	sch = evhttp_uri_get_scheme(u);
	ok = sch != NULL &&
	     (strcmp(sch, "http") == 0 || strcmp(sch, "https") == 0) &&
	     evhttp_uri_get_host(u) != NULL &&
	     *evhttp_uri_get_host(u) != '\0' &&
	     evhttp_uri_get_userinfo(u) == NULL &&
	     evhttp_uri_get_query(u) == NULL &&
	     evhttp_uri_get_fragment(u) == NULL;
	evhttp_uri_free(u);
	return ok;
}

/*
 * Our base URL as clients reach it: SYNCV3_PUBLIC_URL, else built from
 * the request: X-Forwarded-Proto/-Host only when SYNCV3_TRUST_FORWARDED
 * says a reverse proxy sets them (a client could send any), else Host
 * and http. NULL when there is no host or the URL does not parse.
 */
static char *
public_base_url(struct preq *p)
{
	struct api_config *cfg = &p->px->api->cfg;
	struct evkeyvalq *in = evhttp_request_get_input_headers(p->req);
	char *proto = NULL, *host = NULL, *url = NULL;

	if (*cfg->public_url != '\0')
		return xstrdup(cfg->public_url);
	if (cfg->is_trust_forwarded) {
		proto =
		    first_value(evhttp_find_header(in, "X-Forwarded-Proto"));
		host = first_value(evhttp_find_header(in, "X-Forwarded-Host"));
	}
	if (host == NULL)
		host = first_value(evhttp_find_header(in, "Host"));
	if (host == NULL)
		goto out;
	url = xasprintf("%s://%s", proto != NULL ? proto : "http", host);
	if (!is_base_url(url)) {
		free(url);
		url = NULL;
	}
out:
	free(proto);
	free(host);
	return url;
}

/*
 * A client well-known names us as m.homeserver (the rest unchanged):
 * Element X takes its base_url as the homeserver and would otherwise
 * talk to the upstream directly, past sliding sync.
 */
static void
wellknown_edit(struct preq *p, struct json_object *o)
{
	struct json_object *hs = NULL;
	char *url;

	if ((url = public_base_url(p)) == NULL) {
		log_warnx_rl("proxy: %s: no public url (SYNCV3_PUBLIC_URL, "
		             "Host): m.homeserver left as it is",
		             p->log_path);
		return;
	}
	if (!json_object_object_get_ex(o, "m.homeserver", &hs) ||
	    !json_object_is_type(hs, json_type_object)) {
		hs = json_object_new_object();
		json_object_object_add(o, "m.homeserver", hs);
	}
	json_object_object_add(hs, "base_url", json_object_new_string(url));
	free(url);
}

/*
 * Answers a request kept whole (is_rewrite): a 200 JSON object edited
 * (/versions, the client well-known), anything else as upstream sent
 * it. The upstream request had no Accept-Encoding, so the body is
 * plain, and evhttp sets Content-Length from what is sent.
 */
static void
rewrite_reply(struct preq *p)
{
	size_t len = evbuffer_get_length(p->rbuf);
	struct json_object *o;
	struct evbuffer *b = p->rbuf;
	const char *s;

	o = json_parse_bounded((const char *)evbuffer_pullup(b, -1), len, NULL);
	if (p->status == 200 && o != NULL &&
	    json_object_is_type(o, json_type_object)) {
		if (p->is_wellknown)
			wellknown_edit(p, o);
		else
			versions_edit(o);
		s = json_object_to_json_string_ext(
		    o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
		b = evbuffer_new();
		evbuffer_add(b, s, strlen(s));
	}
	copy_resp_headers(p);
	evhttp_send_reply(p->req, p->status, p->reason[0] ? p->reason : "OK",
	                  b);
	if (b != p->rbuf)
		evbuffer_free(b);
	json_object_put(o);
}

static void
forget_cb(PGresult *res, void *arg)
{
	struct api *api = arg;

	if (res == NULL) {
		log_warnx_rl("proxy: logout: cannot expire the device");
		return;
	}
	for (int i = 0; i < PQntuples(res); i++) {
		const char *u = PQgetvalue(res, i, 0),
		           *d = PQgetvalue(res, i, 1);
		struct proto_notice n = {.type = PROTO_NOTICE_DEVICE,
		                         .pos = api->cur_pos,
		                         .user_id = u,
		                         .device_id = d,
		                         .state =
		                             dev_state_name(DEV_STATE_EXPIRED)};

		log_info("device %s/%s: logged out upstream; polling stopped",
		         u, d);
		auth_forget(api, u, d, true);
		lp_notice(api, &n);
	}
}

/*
 * Upstream accepted a logout: the device (or every device of the user)
 * is expired at once. Its lease is taken away in the same statement, so
 * its poller drops it at the next heartbeat, and the poller's state
 * writes (which need the lease) cannot undo the expiry.
 *
 * Lock order (docs/INTERNALS.md, "Row locks on devices"): like the
 * poller's own "lease stop", one lease row, then one device row, one
 * device per statement. The UPDATE reads the DELETE's count before it can
 * produce a row, so the lease row is gone before the device row is locked;
 * and a logout of every device is first listed, then done device by
 * device, so the api never holds one device row while waiting for another.
 * The statements are Q_LOGOUT_ONE/ALL and Q_LOGOUT_DEVICE (sql.c).
 */
static void
logout_list_cb(PGresult *res, void *arg)
{
	struct api *api = arg;

	if (res == NULL) {
		log_warnx_rl("proxy: logout: cannot find the device");
		return;
	}
	for (int i = 0; i < PQntuples(res); i++) {
		const char *params[2] = {PQgetvalue(res, i, 0),
		                         PQgetvalue(res, i, 1)};

		sql_query(api, Q_LOGOUT_DEVICE, params, forget_cb, api);
	}
}

static void
logout_forget(struct preq *p)
{
	const char *params[1] = {p->token_hash};

	sql_query(p->px->api, p->logout == 2 ? Q_LOGOUT_ALL : Q_LOGOUT_ONE,
	          params, logout_list_cb, p->px->api);
}

/*
 * The upstream exchange ended: answer the client (an error when it
 * failed before a response), finish a streamed reply, and run what
 * follows a successful logout.
 */
static void
done_cb(CURL *easy, CURLcode result, void *arg)
{
	struct preq *p = arg;
	curl_off_t up = 0, down = 0;

	/* counted once per exchange, from curl's own totals */
	curl_easy_getinfo(easy, CURLINFO_SIZE_UPLOAD_T, &up);
	curl_easy_getinfo(easy, CURLINFO_SIZE_DOWNLOAD_T, &down);
	p->px->bytes_up += (unsigned long long)up;
	p->px->bytes_down += (unsigned long long)down;
	curl_easy_cleanup(easy);
	p->easy = NULL;
	p->px->active--;
	if (p->body_err != 0 && p->state != PR_STREAMING) {
		if (p->body_err == PBODY_ETOOBIG)
			preq_fail(p, 413, "request body too large");
		else
			preq_fail(p, 400, "malformed chunked request body");
		return;
	}
	if (result != CURLE_OK || !p->has_final_headers) {
		if (p->state == PR_STREAMING) {
			log_warnx_rl("proxy: %s: cut short: %s", p->log_path,
			             curl_easy_strerror(result));
			preq_abort_client(p);
		} else if (result == CURLE_OPERATION_TIMEDOUT)
			preq_fail(p, 504, "homeserver timed out");
		else
			preq_fail(p, 502,
			          result == CURLE_OK
			              ? "homeserver sent no answer"
			              : "homeserver unreachable or failing");
		return;
	}
	if (p->logout != 0 && p->status == 200)
		logout_forget(p);
	body_release(p);
	http_conn_closecb(p->px->api, p->evcon, NULL, NULL);
	p->evcon = NULL;
	if (p->is_rewrite)
		rewrite_reply(p);
	else {
		if (p->state != PR_STREAMING)
			reply_start(p);
		evhttp_send_reply_end(p->req);
	}
	p->req = NULL;
	preq_done(p);
}

/* Adds name: value to the upstream request (curl's "name;" if empty). */
static void
hdr_add(struct preq *p, const char *name, const char *value)
{
	char *h = *value != '\0' ? xasprintf("%s: %s", name, value)
	                         : xasprintf("%s;", name);

	p->hdrs = curl_slist_append(p->hdrs, h);
	free(h);
}

/*
 * X-Forwarded-*, as the homeserver (Synapse's x_forwarded) reads them:
 * the leftmost For is the client's IP for rate limits, bans and
 * last_seen_ip. A client's own values are kept only behind a reverse
 * proxy that sets them (SYNCV3_TRUST_FORWARDED), which then gets our peer
 * appended; otherwise we are the edge and say what we saw: the peer, plain
 * http (the listener has no TLS) and the Host asked for.
 */
static void
forwarded_headers(struct preq *p, struct evkeyvalq *in)
{
	bool is_trusted = p->px->api->cfg.is_trust_forwarded;
	const char *xff = evhttp_find_header(in, "X-Forwarded-For");
	const char *xfp = evhttp_find_header(in, "X-Forwarded-Proto");
	const char *xfh = evhttp_find_header(in, "X-Forwarded-Host");
	const char *host = evhttp_find_header(in, "Host");
	char *peer = NULL, *v;
	ev_uint16_t port;

	if (!is_trusted)
		xff = xfp = xfh = NULL;
	evhttp_connection_get_peer(p->evcon, &peer, &port);
	v = xff != NULL ? xasprintf("%s, %s", xff, peer ? peer : "unknown")
	                : xstrdup(peer ? peer : "unknown");
	hdr_add(p, "X-Forwarded-For", v);
	free(v);
	hdr_add(p, "X-Forwarded-Proto", xfp != NULL ? xfp : "http");
	if (xfh != NULL || host != NULL)
		hdr_add(p, "X-Forwarded-Host", xfh != NULL ? xfh : host);
}

static void
request_headers(struct preq *p)
{
	struct evkeyvalq *in = evhttp_request_get_input_headers(p->req);
	const char *conn = p->body != NULL
	                       ? p->client_conn
	                       : evhttp_find_header(in, "Connection");
	struct evkeyval *kv;

	TAILQ_FOREACH(kv, in, next)
	{
		if (is_hop(conn, kv->key) || strcasecmp(kv->key, "Host") == 0 ||
		    strcasecmp(kv->key, "Content-Length") == 0 ||
		    strcasecmp(kv->key, "Expect") == 0 ||
		    strncasecmp(kv->key, "X-Forwarded-", 12) == 0 ||
		    (p->is_rewrite &&
		     strcasecmp(kv->key, "Accept-Encoding") == 0))
			continue;
		hdr_add(p, kv->key, kv->value);
	}
	forwarded_headers(p, in);
	/* curl's own defaults are not the client's */
	p->hdrs = curl_slist_append(p->hdrs, "Expect:");
	if (evhttp_find_header(in, "Accept") == NULL)
		p->hdrs = curl_slist_append(p->hdrs, "Accept:");
}

/*
 * The curl handle for one upstream request: method, URL, the client's
 * headers and body, and the pass-through's timeouts and limits.
 */
static void
easy_setup(struct preq *p, const char *url)
{
	struct api_config *cfg = &p->px->api->cfg;
	enum evhttp_cmd_type m = evhttp_request_get_command(p->req);
	size_t len =
	    evbuffer_get_length(evhttp_request_get_input_buffer(p->req));
	curl_off_t size = (curl_off_t)len;
	CURL *e = p->easy;

	if (p->body != NULL) { /* Content-Length, or chunked (-1) again */
		size = (curl_off_t)p->len;
		len = 1;
	}

	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_PATH_AS_IS, 1L);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
	                 (long)cfg->proxy_connect_timeout_ms);
	curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 64L * 1024);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, p);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, p);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, p->hdrs);
	if (m == EVHTTP_REQ_HEAD)
		curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
	else if (m != EVHTTP_REQ_GET || len > 0)
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, http_method_name(m));
	if (len > 0 || m == EVHTTP_REQ_POST || m == EVHTTP_REQ_PUT ||
	    m == EVHTTP_REQ_PATCH) {
		curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, size);
		curl_easy_setopt(e, CURLOPT_READFUNCTION, read_cb);
		curl_easy_setopt(e, CURLOPT_READDATA, p);
		/* fewer, larger reads of a stream: each may pause and resume */
		curl_easy_setopt(e, CURLOPT_UPLOAD_BUFFERSIZE, 512L * 1024);
		if (p->body == NULL) { /* a stream cannot rewind */
			curl_easy_setopt(e, CURLOPT_SEEKFUNCTION, seek_cb);
			curl_easy_setopt(e, CURLOPT_SEEKDATA, p);
		}
	}
}

static void
preq_start(struct preq *p)
{
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(p->req);
	const char *q = p->query != NULL ? p->query : evhttp_uri_get_query(uri);
	char *url;

	url = xasprintf("%s%s%s%s", p->px->api->cfg.server,
	                evhttp_uri_get_path(uri), q != NULL ? "?" : "",
	                q != NULL ? q : "");
	if ((p->easy = curl_easy_init()) == NULL) {
		free(url);
		preq_fail(p, 502, "cannot reach homeserver");
		return;
	}
	request_headers(p);
	easy_setup(p, url);
	free(url);
	if (p->body != NULL)
		pbody_start(p->body);
	p->px->active++;
	if (curl_ev_add(p->px->ce, p->easy, done_cb, p) == -1) {
		curl_easy_cleanup(p->easy);
		p->easy = NULL;
		p->px->active--;
		preq_fail(p, 502, "cannot reach homeserver");
	}
}

static bool
has_prefix(struct proxy *px, const char *path)
{
	for (int i = 0; i < px->nprefixes; i++)
		if (strncmp(path, px->prefixes[i], strlen(px->prefixes[i])) ==
		    0)
			return true;
	return false;
}

/* http.c asks before evhttp has the request: the same test as below. */
bool
proxy_takes(struct api *api, enum evhttp_cmd_type m, const char *path)
{
	return api->proxy != NULL && path != NULL &&
	       has_prefix(api->proxy, path) && http_method_name(m) != NULL;
}

/*
 * Is the raw path one we may send upstream verbatim (CURLOPT_PATH_AS_IS)
 * after testing its prefix? Not when a segment, percent-decoded, is "."
 * or "..": a hop behind us that removes dot segments (RFC 3986 5.2.4),
 * decoding %2e or %2f first as many do, would serve a path outside the
 * prefix, e.g. /_matrix/../_synapse/admin. Refused rather than normalised:
 * clients normalise before sending and no Matrix path has such a segment.
 * A backslash counts as a separator (some servers take it for one), a
 * decoded NUL is refused, and the prefix is tested on the decoded form
 * too. Empty segments (//) stay: they cannot leave a prefix without a
 * dot segment, and an empty state key makes one.
 */
static bool
is_clean_path(struct proxy *px, const char *path)
{
	size_t len, n;
	char *d = evhttp_uridecode(path, 0, &len);
	bool ok;

	if (d == NULL)
		return false;
	ok = strlen(d) == len && has_prefix(px, d);
	for (const char *s = d; ok && *s != '\0'; s += n) {
		s += strspn(s, "/\\");
		n = strcspn(s, "/\\");
		if ((n == 1 || n == 2) && strncmp(s, "..", n) == 0)
			ok = false;
	}
	free(d);
	return ok;
}

/* A Matrix error, and no further request read on this connection. */
static void
refuse_and_close(struct evhttp_request *req, int code, const char *msg)
{
	evhttp_add_header(evhttp_request_get_output_headers(req), "Connection",
	                  "close");
	http_error(req, code, "M_UNKNOWN", msg);
}

/*
 * Message framing evhttp lets through (RFC 9112 6.1, 6.3), checked for
 * every request (http.c, before routing): it reads the body by the first
 * Content-Length and takes a Transfer-Encoding other than chunked for no
 * body (and a field name with a space before its
 * colon for another field), leaving the rest on the connection to be read
 * as the next request, where a front proxy that chose otherwise sees
 * part of a body (request smuggling). Such a request is answered here
 * and its connection closed. 0 when the framing is sound.
 */
int
proxy_framing_check(struct evhttp_request *req)
{
	struct evkeyvalq *in = evhttp_request_get_input_headers(req);
	const char *cl = NULL;
	struct evkeyval *kv;

	TAILQ_FOREACH(kv, in, next)
	{
		/* "Transfer-Encoding : chunked" is not one to evhttp */
		if (kv->key[strcspn(kv->key, " \t")] != '\0') {
			refuse_and_close(req, 400,
			                 "whitespace in a header field name");
			return -1;
		}
		if (strcasecmp(kv->key, "Transfer-Encoding") == 0 &&
		    strcasecmp(kv->value, "chunked") != 0) {
			refuse_and_close(req, 501,
			                 "transfer coding not implemented");
			return -1;
		}
		if (strcasecmp(kv->key, "Content-Length") != 0)
			continue;
		if (cl != NULL && strcmp(cl, kv->value) != 0) {
			refuse_and_close(req, 400,
			                 "conflicting Content-Length headers");
			return -1;
		}
		cl = kv->value;
	}
	return 0;
}

/* Token of a logout (header, else ?access_token=) hashed into p. */
static void
logout_prepare(struct preq *p, const char *path)
{
	struct evkeyvalq *in = evhttp_request_get_input_headers(p->req);
	const char *auth = evhttp_find_header(in, "Authorization");
	const char *q =
	    evhttp_uri_get_query(evhttp_request_get_evhttp_uri(p->req));
	struct evkeyvalq qs;
	const char *tok = NULL;

	if (evhttp_request_get_command(p->req) != EVHTTP_REQ_POST ||
	    (strncmp(path, "/_matrix/client/v3/", 19) != 0 &&
	     strncmp(path, "/_matrix/client/r0/", 19) != 0))
		return;
	if (strcmp(path + 19, "logout") == 0)
		p->logout = 1;
	else if (strcmp(path + 19, "logout/all") == 0)
		p->logout = 2;
	else
		return;
	TAILQ_INIT(&qs);
	if (auth != NULL && strncasecmp(auth, "Bearer ", 7) == 0)
		tok = auth + 7;
	else if (q != NULL && evhttp_parse_query_str(q, &qs) == 0)
		tok = evhttp_find_header(&qs, "access_token");
	if (tok == NULL || *tok == '\0')
		p->logout = 0;
	else
		token_hash(tok, strlen(tok), p->token_hash);
	evhttp_clear_headers(&qs);
}

/*
 * Requests whose query is ours to rewrite before they go upstream: each
 * takes (0) and later calls proxy_resume, or leaves (-1). A table, as
 * http.c's routes: the hooks call back into the pass-through.
 */
static int (*const hooks[])(struct api *, struct evhttp_request *,
                            const char *) = {
    ss_pos_take, /* a sliding sync pos as a /messages token */
};

/*
 * Takes req when its path is under a pass-through prefix and not one the
 * api serves itself; queued when SYNCV3_PROXY_MAX_CONCURRENT are running.
 */
int
proxy_handle(struct api *api, struct evhttp_request *req, const char *path)
{
	if (!proxy_takes(api, evhttp_request_get_command(req), path))
		return -1;
	for (size_t i = 0; i < sizeof(hooks) / sizeof(hooks[0]); i++)
		if (hooks[i](api, req, path) == 0)
			return 0;
	proxy_resume(api, req, path, NULL);
	return 0;
}

/*
 * Passes req through; query (not NULL: ss_pos.c's rewrite) is sent
 * upstream instead of the client's.
 */
void
proxy_resume(struct api *api, struct evhttp_request *req, const char *path,
             const char *query)
{
	struct proxy *px = api->proxy;
	enum evhttp_cmd_type m = evhttp_request_get_command(req);
	struct http_body hb;
	struct bufferevent *bev;
	struct preq *p;

	/* before the body is taken: a refusal closes the connection */
	if (!is_clean_path(px, path)) {
		evhttp_add_header(evhttp_request_get_output_headers(req),
		                  "Connection", "close");
		http_error(req, 404, "M_UNRECOGNIZED",
		           "unrecognized request: dot segment in path");
		return;
	}
	bev = http_body_take(api, req, &hb);
	if ((bev == NULL && evbuffer_get_length(evhttp_request_get_input_buffer(
	                        req)) > (size_t)api->cfg.proxy_max_upload) ||
	    (bev != NULL && hb.len > api->cfg.proxy_max_stream)) {
		http_error(req, 413, "M_TOO_LARGE", "request body too large");
		return;
	}
	if (px->active >= api->cfg.proxy_max_concurrent &&
	    px->nqueued >= api->cfg.proxy_max_queue) {
		px->failures++;
		http_error(req, 503, "M_UNKNOWN",
		           "too many requests to the homeserver in flight");
		return;
	}
	px->requests++;
	p = xcalloc(1, sizeof(*p));
	p->px = px;
	p->req = req;
	p->evcon = evhttp_request_get_connection(req);
	p->start_ms = now_ms();
	p->log_path = xstrdup(path);
	p->query = query != NULL ? xstrdup(query) : NULL;
	evbuffer_ptr_set(evhttp_request_get_input_buffer(req), &p->body_pos, 0,
	                 EVBUFFER_PTR_SET);
	TAILQ_INIT(&p->resp);
	p->is_wellknown = (m == EVHTTP_REQ_GET || m == EVHTTP_REQ_HEAD) &&
	                  strcmp(path, "/.well-known/matrix/client") == 0;
	p->is_rewrite = ((m == EVHTTP_REQ_GET || m == EVHTTP_REQ_HEAD) &&
	                 strcmp(path, "/_matrix/client/versions") == 0) ||
	                p->is_wellknown;
	if (p->is_rewrite)
		p->rbuf = evbuffer_new();
	logout_prepare(p, path);
	http_conn_closecb(p->px->api, p->evcon, close_cb, p);
	p->timer = evtimer_new(api->base, timer_cb, p);
	timer_arm(p, api->cfg.proxy_header_timeout_ms);
	if (bev != NULL) { /* it reads the connection: no probe */
		px->streamed++;
		p->len = hb.len;
		p->client_conn = xstrdup(hb.connection);
		p->resume = event_new(api->base, -1, 0, resume_cb, p);
		p->body = pbody_new(bev, &hb, api->cfg.proxy_max_stream,
		                    (size_t)api->cfg.proxy_buffer, kick_cb, p);
	} else
		probe_start(p);
	p->state = PR_QUEUED;
	TAILQ_INSERT_TAIL(&px->queue, p, entry);
	px->nqueued++;
	queue_run(px);
}

/* A base URL with a trailing slash would double it in a path. */
static void
trim_slashes(char *url)
{
	size_t n = strlen(url);

	while (n > 0 && url[n - 1] == '/')
		url[--n] = '\0';
}

/*
 * Parses SYNCV3_PROXY_PREFIXES and sets up the pass-through's own curl
 * multi handle.
 */
/* Read from the counters above at each scrape of /metrics. */
static void
proxy_metrics(struct api *api, struct proxy *px)
{
	prom_gauge_int(api, "syncv3_api_proxy_active",
	               "Pass-through requests upstream now.", &px->active);
	prom_gauge_int(api, "syncv3_api_proxy_queued",
	               "Pass-through requests waiting for a slot.",
	               &px->nqueued);
	prom_counter_ull(api, "syncv3_api_proxy_requests_total",
	                 "Pass-through requests taken.", &px->requests);
	prom_counter_ull(
	    api, "syncv3_api_proxy_failures_total",
	    "Pass-through requests that failed upstream (502, 504, cut).",
	    &px->failures);
	prom_counter_ull(api, "syncv3_api_proxy_sent_bytes_total",
	                 "Request body bytes passed to the homeserver.",
	                 &px->bytes_up);
	prom_counter_ull(api, "syncv3_api_proxy_received_bytes_total",
	                 "Response body bytes passed on from the homeserver.",
	                 &px->bytes_down);
	prom_counter_ull(api, "syncv3_api_proxy_streamed_total",
	                 "Pass-through request bodies streamed upstream.",
	                 &px->streamed);
	prom_counter_ull(api, "syncv3_api_proxy_upload_aborted_total",
	                 "Streamed uploads cut by the client hanging up.",
	                 &px->aborted);
}

void
proxy_init(struct api *api)
{
	struct proxy *px = xcalloc(1, sizeof(*px));
	char *list = xstrdup(api->cfg.proxy_prefixes), *s, *save = NULL;

	px->api = api;
	TAILQ_INIT(&px->queue);
	for (s = strtok_r(list, ", ", &save); s != NULL;
	     s = strtok_r(NULL, ", ", &save)) {
		if (s[0] != '/')
			fatalx("SYNCV3_PROXY_PREFIXES: %s does not start "
			       "with /",
			       s);
		px->prefixes =
		    xrealloc(px->prefixes, sizeof(*px->prefixes) *
		                               (size_t)(px->nprefixes + 1));
		px->prefixes[px->nprefixes++] = xstrdup(s);
	}
	free(list);
	trim_slashes(api->cfg.server);
	trim_slashes(api->cfg.public_url);
	if (*api->cfg.public_url != '\0' && !is_base_url(api->cfg.public_url))
		fatalx("SYNCV3_PUBLIC_URL: %s is not an http(s) base URL",
		       api->cfg.public_url);
	if ((px->ce = curl_ev_new(api->base)) == NULL)
		fatalx("curl_ev_new");
	curl_multi_setopt(curl_ev_multi(px->ce), CURLMOPT_MAXCONNECTS,
	                  (long)api->cfg.proxy_keepalive);
	proxy_metrics(api, px);
	api->proxy = px;
}

void
proxy_shutdown(struct api *api)
{
	struct proxy *px = api->proxy;
	struct preq *p;

	if (px == NULL)
		return;
	while ((p = TAILQ_FIRST(&px->queue)) != NULL)
		preq_fail(p, 503, "shutting down");
	curl_ev_free(px->ce);
	for (int i = 0; i < px->nprefixes; i++)
		free(px->prefixes[i]);
	free(px->prefixes);
	free(px);
	api->proxy = NULL;
}
