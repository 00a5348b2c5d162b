/*
 * ss_pos.c: a sliding sync pos as a /messages and /relations token
 * (MSC4186: "in the same way as a next_batch from /v3/sync"). The
 * homeserver never issued a pos, so passed through unchanged it fails
 * there. A GET of /rooms/{id}/messages or /rooms/{id}/relations/... whose
 * from or to is shaped like a pos is authenticated, the pos is checked
 * against the caller's device as the sync endpoints check it, and it is
 * replaced in the query by the upstream token kept with the response it
 * names (021_pos_token.sql: the device's committed since read at or below
 * the response's position, so dir=f from it skips nothing the response
 * did not carry). Everything else of the request goes upstream untouched
 * (proxy_resume). A pos of another user or device, of a response no
 * longer kept or of an expired connection: 400 M_UNKNOWN_POS. A token
 * that is not pos-shaped is not ours: the request is the proxy's at once.
 */
#include <sys/queue.h>

#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "crypto.h"
#include "pg.h"
#include "pg_lit.h"
#include "ss.h"
#include "util.h"

/* the query parameters a pos may stand in (dir=f/b start, end) */
static const char *const pos_keys[] = {"from", "to"};
#define NKEYS 2

struct pos_req {
	struct api *api;
	struct sreq *r; /* auth_resolve's record; r->req the client's */
	char *path;
	char *query;      /* as the client sent it */
	char *val[NKEYS]; /* decoded value of a pos-shaped from/to */
	char *up[NKEYS];  /* the upstream token for it */
	struct ss_pos pos[NKEYS];
	int at; /* the key being looked up */
};

/* c<digits>_<digits>_<mac>: what ss_pos_format writes, MAC unchecked. */
static bool
is_pos_shaped(const char *v)
{
	size_t n, len = strlen(v);

	if (len >= SS_POS_MAX || v[0] != 'c')
		return false;
	v++;
	for (int part = 0; part < 2; part++) {
		if ((n = strspn(v, "0123456789")) == 0 || v[n] != '_')
			return false;
		v += n + 1;
	}
	return strlen(v) == TOK_MAC_HEX &&
	       strspn(v, "0123456789abcdef") == TOK_MAC_HEX;
}

/*
 * /_matrix/client/{v1,v3,r0}/rooms/<id>/messages or
 * /_matrix/client/{v1,v3,r0}/rooms/<id>/relations/...
 */
static bool
is_paging_path(const char *path)
{
	static const char *const pfx[] = {"/_matrix/client/v1/rooms/",
	                                  "/_matrix/client/v3/rooms/",
	                                  "/_matrix/client/r0/rooms/"};
	const char *rest = NULL, *sl;

	for (size_t i = 0; i < sizeof(pfx) / sizeof(pfx[0]); i++)
		if (strncmp(path, pfx[i], strlen(pfx[i])) == 0)
			rest = path + strlen(pfx[i]);
	if (rest == NULL || (sl = strchr(rest, '/')) == NULL || sl == rest)
		return false;
	return strcmp(sl, "/messages") == 0 ||
	       strncmp(sl, "/relations/", 11) == 0;
}

static void
pos_req_free(struct pos_req *pr)
{
	for (int i = 0; i < NKEYS; i++) {
		free(pr->val[i]);
		free(pr->up[i]);
	}
	free(pr->path);
	free(pr->query);
	sreq_unref(pr->r);
	free(pr);
}

static void
close_cb(struct evhttp_connection *evcon, void *arg)
{
	struct pos_req *pr = arg;

	(void)evcon;
	pr->r->is_gone = true;
	pr->r->req = NULL;
}

/* Answers with an error, or not at all when the client left. */
static void
pos_fail(struct pos_req *pr, int status, const char *errcode, const char *msg)
{
	struct sreq *r = pr->r;

	r->state = SYNC_REPLIED;
	if (!r->is_gone) {
		if (r->evcon != NULL)
			http_conn_closecb(pr->api, r->evcon, NULL, NULL);
		pr->api->stats.errors++;
		http_error_sreq(r, status, errcode, msg);
	}
	pos_req_free(pr);
}

/* The client's query with each pos replaced by its upstream token. */
static char *
query_rewrite(const struct pos_req *pr)
{
	struct evbuffer *b = evbuffer_new();
	char *q = xstrdup(pr->query), *save = NULL, *out;
	size_t len;

	for (char *kv = strtok_r(q, "&", &save); kv != NULL;
	     kv = strtok_r(NULL, "&", &save)) {
		char *eq = strchr(kv, '='), *key;
		int hit = -1;

		if (eq != NULL)
			*eq = '\0';
		key = evhttp_uridecode(kv, 1, NULL);
		for (int i = 0; key != NULL && i < NKEYS; i++)
			if (pr->up[i] != NULL && strcmp(key, pos_keys[i]) == 0)
				hit = i;
		free(key);
		if (evbuffer_get_length(b) > 0)
			evbuffer_add(b, "&", 1);
		if (hit >= 0) {
			char *enc = evhttp_uriencode(pr->up[hit], -1, 0);
			evbuffer_add_printf(b, "%s=%s", kv, enc);
			free(enc);
		} else
			evbuffer_add_printf(b, "%s%s%s", kv,
			                    eq != NULL ? "=" : "",
			                    eq != NULL ? eq + 1 : "");
	}
	len = evbuffer_get_length(b);
	out = xmalloc(len + 1);
	evbuffer_remove(b, out, len);
	out[len] = '\0';
	evbuffer_free(b);
	free(q);
	return out;
}

static void lookup_next(struct pos_req *pr);

static void
token_cb(PGresult *res, void *arg)
{
	struct pos_req *pr = arg;

	if (pr->r->is_gone) {
		pos_req_free(pr);
		return;
	}
	if (res == NULL) {
		pos_fail(pr, 503, "M_UNKNOWN", "database unavailable");
		return;
	}
	if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0)) {
		pos_fail(pr, 400, "M_UNKNOWN_POS",
		         "unknown or expired pos: page from a later pos or "
		         "a timeline's prev_batch");
		return;
	}
	pr->up[pr->at] = xstrdup(PQgetvalue(res, 0, 0));
	pr->at++;
	lookup_next(pr);
}

/* Maps the next pos given, or hands the request on once all are. */
static void
lookup_next(struct pos_req *pr)
{
	struct sreq *r = pr->r;
	char a[PG_I64_LEN], b[PG_I64_LEN], c[PG_I64_LEN];
	const char *p[5];
	char *q;

	while (pr->at < NKEYS && pr->val[pr->at] == NULL)
		pr->at++;
	if (pr->at == NKEYS) {
		r->state = SYNC_REPLIED;
		if (r->evcon != NULL)
			http_conn_closecb(pr->api, r->evcon, NULL, NULL);
		q = query_rewrite(pr);
		proxy_resume(pr->api, r->req, pr->path, q);
		free(q);
		pos_req_free(pr);
		return;
	}
	p[0] = pg_i64(a, pr->pos[pr->at].conn);
	p[1] = r->user_id;
	p[2] = r->device_id;
	p[3] = pg_i64(b, pr->pos[pr->at].gen);
	p[4] = pg_i64(c, pr->api->cfg.ss_conn_idle_s);
	sql_query(pr->api, Q_SS_POS_TOKEN, p, token_cb, pr);
}

static void
auth_cb(void *arg, int status, const char *errcode, const char *msg)
{
	struct pos_req *pr = arg;
	struct sreq *r = pr->r;

	if (r->is_gone) {
		pos_req_free(pr);
		return;
	}
	if (status != 0) {
		pos_fail(pr, status, errcode, msg);
		return;
	}
	/* the MAC ties a pos to its user and device (MSC4186) */
	for (int i = 0; i < NKEYS; i++)
		if (pr->val[i] != NULL &&
		    ss_pos_parse(pr->val[i], pr->api->cfg.secret, r->user_id,
		                 r->device_id, &pr->pos[i]) == -1) {
			pos_fail(pr, 400, "M_UNKNOWN_POS",
			         "this pos was not issued to this device");
			return;
		}
	lookup_next(pr);
}

int
ss_pos_take(struct api *api, struct evhttp_request *req, const char *path)
{
	const char *q =
	    evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
	const char *tok = sreq_bearer(req);
	struct evkeyvalq kv;
	struct pos_req *pr;
	bool has_pos = false;
	const char *v;

	struct evkeyvalq *in = evhttp_request_get_input_headers(req);

	/* a GET with a body is the streaming path's, left as it is */
	if (evhttp_request_get_command(req) != EVHTTP_REQ_GET || q == NULL ||
	    tok == NULL || !is_paging_path(path) ||
	    evhttp_find_header(in, "Transfer-Encoding") != NULL ||
	    ((v = evhttp_find_header(in, "Content-Length")) != NULL &&
	     strcmp(v, "0") != 0))
		return -1;
	TAILQ_INIT(&kv);
	if (evhttp_parse_query_str(q, &kv) == -1) {
		evhttp_clear_headers(&kv);
		return -1; /* upstream tells what is wrong with it */
	}
	pr = xcalloc(1, sizeof(*pr));
	for (int i = 0; i < NKEYS; i++)
		if ((v = evhttp_find_header(&kv, pos_keys[i])) != NULL &&
		    is_pos_shaped(v)) {
			pr->val[i] = xstrdup(v);
			has_pos = true;
		}
	evhttp_clear_headers(&kv);
	if (!has_pos) {
		free(pr);
		return -1;
	}
	api->stats.requests++;
	pr->api = api;
	pr->path = xstrdup(path);
	pr->query = xstrdup(q);
	pr->r = sreq_new(api, req);
	pr->r->token = xstrdup(tok);
	token_hash(pr->r->token, strlen(pr->r->token), pr->r->token_hash);
	if (pr->r->evcon != NULL)
		http_conn_closecb(api, pr->r->evcon, close_cb, pr);
	auth_resolve(api, pr->r, auth_cb, pr);
	return 0;
}
