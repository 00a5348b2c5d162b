/*
 * auth.c: access tokens. A token is looked up by its hash: in memory
 * (positive entries for SYNCV3_API_WHOAMI_TTL_SECS, rejections for
 * SYNCV3_API_WHOAMI_NEG_SECS), then in syncv3_devices, then with upstream
 * /whoami. Concurrent requests with the same unknown token share one
 * lookup. A verified device is registered (contract 4/5) and pollers are
 * told with NOTIFY syncv3_devices.
 *
 * Bounded: upstream /whoami calls for unknown tokens go through token
 * buckets, one global and one per client address (429 M_LIMIT_EXCEEDED
 * above), so random tokens cannot turn into a flood upstream; the memory
 * holds at most SYNCV3_API_TOKENS_MAX entries (least recently used go
 * first), and a sweep drops expired ones and idle address buckets.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <curl/curl.h>

#include "api.h"
#include "crypto.h"
#include "curl_ev.h"
#include "json_util.h"
#include "pg.h"
#include "proto.h"
#include "util.h"

#define WHOAMI_MAX_BODY (64 * 1024)

enum ae_state {
	AE_PENDING,
	AE_OK,
	AE_BAD,
};

struct auth_ent {
	struct api *api;
	TAILQ_ENTRY(auth_ent) lru;
	char hash[TOKEN_HASH_LEN + 1];
	enum ae_state state;
	bool is_soft_logout;	/* AE_BAD: upstream expired it (soft) */
	bool is_user_locked;	/* AE_BAD: upstream said M_USER_LOCKED */
	char *user_id;
	char *device_id;
	bool is_initial_done;
	long long expires_ms;
	long long last_seen_ms;
	char *token;		/* only while pending */
	struct sreq **waiting;
	int nwaiting;
	CURL *easy;
	struct curl_slist *hdrs;
	char *body;
	size_t body_len;
	char *peer;	/* client address of the first request */
	int register_tries;
	long long retry_after_ms;	/* handed to waiters with a 429 */
};
TAILQ_HEAD(auth_lru, auth_ent);

/* A token bucket: rate per second, at most burst. */
struct bucket {
	double tokens;
	long long at_ms;
};

struct auth_peer {
	TAILQ_ENTRY(auth_peer) lru;
	char *addr;
	struct bucket b;
};
TAILQ_HEAD(auth_peers, auth_peer);

/* auth.c's part of struct api */
struct auth {
	struct map tokens;	/* token hash -> struct auth_ent */
	struct map peer_idx;	/* client address -> struct auth_peer */
	struct auth_lru ents;	/* least recently used first */
	struct auth_peers peers;	/* least recently used first */
	struct bucket global;
	struct event *sweep;
	long long nlookups;	/* token lookups waiting on Postgres */
};

/*
 * Unknown tokens are looked up in Postgres before the whoami buckets can
 * refuse them, so a flood of random tokens could fill the pool's queue
 * and starve the requests of known (cached) tokens. Their lookups may
 * take at most this share of the queue; past it an unknown token gets
 * 429 at once.
 */
#define LOOKUP_SHARE 4

#define SWEEP_MS 5000

static void
ent_free(void *arg)
{
	struct auth_ent *e = arg;

	if (e == NULL)
		return;
	if (e->easy != NULL) {
		curl_ev_remove(e->api->curl, e->easy);
		curl_easy_cleanup(e->easy);
	}
	curl_slist_free_all(e->hdrs);
	for (int i = 0; i < e->nwaiting; i++)
		sreq_unref(e->waiting[i]);
	free(e->waiting);
	free(e->user_id);
	free(e->device_id);
	free(e->token);
	free(e->body);
	free(e->peer);
	free(e);
}

/* Answers every request waiting on e; status 0 means authenticated. */
static void
ent_resolve(struct auth_ent *e, int status, const char *errcode,
    const char *msg)
{
	struct sreq **w = e->waiting;
	int n = e->nwaiting;

	e->waiting = NULL;
	e->nwaiting = 0;
	free(e->token);
	e->token = NULL;
	for (int i = 0; i < n; i++) {
		struct sreq *r = w[i];
		if (status == 0) {
			r->user_id = xstrdup(e->user_id);
			r->device_id = xstrdup(e->device_id);
			r->is_initial_done = e->is_initial_done;
		}
		r->retry_after_ms = e->retry_after_ms;
		r->is_soft_logout = e->is_soft_logout;
		r->is_user_locked = e->is_user_locked;
		if (!r->is_gone)
			r->done(r->done_arg, status, errcode, msg);
		sreq_unref(r);
	}
	free(w);
}

/* Drops e from the cache; frees it unless a callback still runs. */
static void
ent_drop(struct api *api, struct auth_ent *e)
{
	if (map_get(&api->auth->tokens, e->hash) == e) {
		map_del(&api->auth->tokens, e->hash);
		TAILQ_REMOVE(&api->auth->ents, e, lru);
	}
	ent_free(e);
}

/* Marks e as the most recently used. */
static void
ent_touch(struct api *api, struct auth_ent *e)
{
	TAILQ_REMOVE(&api->auth->ents, e, lru);
	TAILQ_INSERT_TAIL(&api->auth->ents, e, lru);
}

static bool
ent_is_expired(const struct auth_ent *e, long long now)
{
	return e->state != AE_PENDING && now >= e->expires_ms;
}

/*
 * Makes room for one more entry: the least recently used settled ones go
 * (pending ones have requests waiting; their number is bounded by the
 * database queue and the whoami rate).
 */
static void
ents_make_room(struct api *api)
{
	struct auth_ent *e, *next;

	for (e = TAILQ_FIRST(&api->auth->ents);
	    e != NULL && (long long)map_count(&api->auth->tokens) >= api->cfg.tokens_max;
	    e = next) {
		next = TAILQ_NEXT(e, lru);
		if (e->state == AE_PENDING)
			continue;
		api->stats.tokens_evicted++;
		ent_drop(api, e);
	}
}

static void
ent_ok(struct auth_ent *e, const char *user_id, const char *device_id,
    bool is_initial_done)
{
	struct api *api = e->api;

	free(e->user_id);
	free(e->device_id);
	e->user_id = xstrdup(user_id);
	e->device_id = xstrdup(device_id);
	e->is_initial_done = is_initial_done;
	e->state = AE_OK;
	e->expires_ms = now_ms() + api->cfg.whoami_ttl_s * 1000;
	e->last_seen_ms = now_ms();
	ent_resolve(e, 0, NULL, NULL);
}

static void
ent_reject(struct auth_ent *e, bool is_cached)
{
	struct api *api = e->api;

	ent_resolve(e, 401, "M_UNKNOWN_TOKEN", "unknown or expired token");
	if (is_cached && api->cfg.whoami_neg_s > 0) {
		e->state = AE_BAD;
		e->expires_ms = now_ms() + api->cfg.whoami_neg_s * 1000;
	} else
		ent_drop(api, e);
}

static void register_device(struct auth_ent *e);
static void auth_device_seen(struct api *api, struct auth_ent *e);

/*
 * A failed upsert is tried once more: two apis registering one token at
 * once can collide on the token_hash index, which ON CONFLICT (user_id,
 * device_id) does not arbitrate (23505 for the loser); by the retry the
 * winner's row is committed and the upsert updates it.
 */
static void
register_cb(PGresult *res, void *arg)
{
	struct auth_ent *e = arg;

	if ((res == NULL || PQntuples(res) != 1) && e->register_tries < 2) {
		log_info("auth: %s/%s: registering again", e->user_id,
		    e->device_id);
		register_device(e);
		return;
	}
	if (res == NULL || PQntuples(res) != 1) {
		ent_resolve(e, 503, "M_UNKNOWN", "cannot register device");
		ent_drop(e->api, e);
		return;
	}
	ent_ok(e, PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1),
	    PQgetvalue(res, 0, 2)[0] == 't');
}

/* Upserts the device verified by /whoami and tells the pollers. */
static void
register_device(struct auth_ent *e)
{
	struct api *api = e->api;
	char *enc;
	const char *params[4];

	e->register_tries++;
	if ((enc = token_encrypt(api->cfg.secret, e->token)) == NULL) {
		ent_resolve(e, 503, "M_UNKNOWN", "cannot protect token");
		ent_drop(api, e);
		return;
	}
	params[0] = e->user_id;
	params[1] = e->device_id;
	params[2] = e->hash;
	params[3] = enc;
	sql_query(api, Q_DEVICE_REGISTER, params, register_cb, e);
	free(enc);
}

static size_t
whoami_write_cb(char *ptr, size_t size, size_t nmemb, void *arg)
{
	struct auth_ent *e = arg;
	size_t n = size * nmemb;

	if (e->body_len + n > WHOAMI_MAX_BODY)
		return 0;
	e->body = xrealloc(e->body, e->body_len + n + 1);
	memcpy(e->body + e->body_len, ptr, n);
	e->body_len += n;
	e->body[e->body_len] = '\0';
	return n;
}

/*
 * Upstream answered /whoami for e's token: 200 with a user and device
 * registers the device (then answers the waiters), 401/403 is a cached
 * rejection (soft when upstream's "soft_logout" says so), 429 answers 429
 * with upstream's retry_after_ms (not cached), anything else
 * (5xx, transport error, no ids) answers 502 without caching, so the next
 * request asks again.
 */
static void
whoami_done_cb(CURL *easy, CURLcode result, void *arg)
{
	struct auth_ent *e = arg;
	struct json_object *obj = NULL;
	const char *user_id, *device_id;
	long code = 0;
	bool is_soft;
	int64_t retry;

	curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &code);
	curl_easy_cleanup(easy);
	e->easy = NULL;
	if (result == CURLE_OK && code == 429) {
		/* upstream's limit, passed on with its retry_after_ms */
		obj = json_parse_bounded(e->body ? e->body : "", e->body_len,
		    NULL);
		if (json_get_int(obj, "retry_after_ms", &retry) && retry > 0)
			e->retry_after_ms = retry < 3600000 ? retry : 3600000;
		json_object_put(obj);
		ent_resolve(e, 429, "M_LIMIT_EXCEEDED",
		    "the homeserver is rate limiting; retry later");
		ent_drop(e->api, e);
		return;
	}
	if (result != CURLE_OK || code == 0 || code >= 500 ||
	    (code != 200 && code != 401 && code != 403)) {
		log_warnx_rl("whoami: upstream failed: %s (http %ld)",
		    curl_easy_strerror(result), code);
		ent_resolve(e, 502, "M_UNKNOWN",
		    "homeserver unreachable or failing");
		ent_drop(e->api, e);
		return;
	}
	obj = json_parse_bounded(e->body ? e->body : "", e->body_len, NULL);
	if (code != 200) {
		e->is_soft_logout = json_get_bool(obj, "soft_logout", &is_soft) &&
		    is_soft;
		e->is_user_locked = code == 401 &&
		    json_get_str(obj, "errcode") != NULL &&
		    strcmp(json_get_str(obj, "errcode"), "M_USER_LOCKED") == 0;
		json_object_put(obj);
		ent_reject(e, true);
		return;
	}
	user_id = json_get_str(obj, "user_id");
	device_id = json_get_str(obj, "device_id");
	if (user_id == NULL || device_id == NULL || *user_id == '\0' ||
	    *device_id == '\0') {
		ent_resolve(e, 502, "M_UNKNOWN",
		    "homeserver /whoami gave no user_id/device_id");
		ent_drop(e->api, e);
	} else {
		free(e->user_id);
		free(e->device_id);
		e->user_id = xstrdup(user_id);
		e->device_id = xstrdup(device_id);
		register_device(e);
	}
	json_object_put(obj);
}

/*
 * Sends GET /account/whoami with e's token on the api's curl multi
 * handle, bounded in time and body size; whoami_done_cb takes the answer.
 */
static void
whoami_start(struct auth_ent *e)
{
	struct api *api = e->api;
	char *url, *hdr;

	api->stats.whoami_calls++;
	url = xasprintf("%s/_matrix/client/v3/account/whoami",
	    api->cfg.server);
	hdr = xasprintf("Authorization: Bearer %s", e->token);
	e->hdrs = curl_slist_append(NULL, hdr);
	free(hdr);
	e->easy = curl_easy_init();
	curl_easy_setopt(e->easy, CURLOPT_URL, url);
	curl_easy_setopt(e->easy, CURLOPT_HTTPHEADER, e->hdrs);
	curl_easy_setopt(e->easy, CURLOPT_WRITEFUNCTION, whoami_write_cb);
	curl_easy_setopt(e->easy, CURLOPT_WRITEDATA, e);
	curl_easy_setopt(e->easy, CURLOPT_TIMEOUT_MS, 10000L);
	curl_easy_setopt(e->easy, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
	curl_easy_setopt(e->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e->easy, CURLOPT_USERAGENT, "syncv3-api");
	free(url);
	if (curl_ev_add(api->curl, e->easy, whoami_done_cb, e) == -1) {
		curl_easy_cleanup(e->easy);
		e->easy = NULL;
		ent_resolve(e, 502, "M_UNKNOWN", "cannot reach homeserver");
		ent_drop(api, e);
	}
}

/* Milliseconds until b has a token (0: one is there); refills b. */
static long long
bucket_wait(struct bucket *b, double rate, double burst, long long now)
{
	b->tokens += (double)(now - b->at_ms) * rate / 1000.0;
	if (b->tokens > burst)
		b->tokens = burst;
	b->at_ms = now;
	return b->tokens >= 1 ? 0
	    : (long long)((1 - b->tokens) * 1000 / rate) + 1;
}

static struct auth_peer *
peer_get(struct api *api, const char *addr, long long now)
{
	struct auth_peer *p = map_get(&api->auth->peer_idx, addr);

	if (p != NULL) {
		TAILQ_REMOVE(&api->auth->peers, p, lru);
		TAILQ_INSERT_TAIL(&api->auth->peers, p, lru);
		return p;
	}
	/* past the cap (an address spray), only the global bucket counts */
	if ((long long)map_count(&api->auth->peer_idx) >= api->cfg.tokens_max)
		return NULL;
	p = xcalloc(1, sizeof(*p));
	p->addr = xstrdup(addr);
	p->b.tokens = (double)api->cfg.whoami_peer_burst;
	p->b.at_ms = now;
	map_put(&api->auth->peer_idx, addr, p);
	TAILQ_INSERT_TAIL(&api->auth->peers, p, lru);
	return p;
}

/*
 * May an unknown token from addr cost an upstream /whoami now? 0 (and the
 * call is counted in both buckets), or the milliseconds to wait.
 */
static long long
whoami_admit(struct api *api, const char *addr)
{
	const struct api_config *c = &api->cfg;
	long long now = now_ms(), gw, pw = 0;
	struct auth_peer *p = peer_get(api, addr, now);

	gw = bucket_wait(&api->auth->global, (double)c->whoami_rate,
	    (double)c->whoami_burst, now);
	if (p != NULL)
		pw = bucket_wait(&p->b, (double)c->whoami_peer_rate,
		    (double)c->whoami_peer_burst, now);
	if (gw > 0 || pw > 0)
		return gw > pw ? gw : pw;
	api->auth->global.tokens -= 1;
	if (p != NULL)
		p->b.tokens -= 1;
	return 0;
}

/*
 * The database's answer for a token hash: a known device (expired or
 * not) settles e without upstream; an unknown token goes to /whoami if
 * the global and per-address buckets admit it, else 429 with a retry.
 */
static void
lookup_cb(PGresult *res, void *arg)
{
	struct auth_ent *e = arg;
	long long wait;

	e->api->auth->nlookups--;
	if (res == NULL) {
		ent_resolve(e, 503, "M_UNKNOWN", "database unavailable");
		ent_drop(e->api, e);
		return;
	}
	if (PQntuples(res) == 0) {
		if ((wait = whoami_admit(e->api, e->peer)) > 0) {
			e->api->stats.whoami_limited++;
			log_warnx_rl("whoami: %s: unknown tokens over the rate "
			    "limit",
			    e->peer);
			e->retry_after_ms = wait;
			ent_resolve(e, 429, "M_LIMIT_EXCEEDED",
			    "too many unknown tokens; retry later");
			ent_drop(e->api, e);
			return;
		}
		whoami_start(e);
		return;
	}
	if (dev_state_parse(PQgetvalue(res, 0, 2)) == DEV_STATE_EXPIRED) {
		e->is_soft_logout = PQgetvalue(res, 0, 4)[0] == 't';
		e->is_user_locked = PQgetvalue(res, 0, 5)[0] == 't';
		ent_reject(e, true);
		return;
	}
	ent_ok(e, PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1),
	    PQgetvalue(res, 0, 3)[0] == 't');
	/*
	 * Found by hash, not registered just now: the stored last_seen may
	 * be old enough that pollers stopped the device as idle, so the
	 * first request refreshes it.
	 */
	e->last_seen_ms = 0;
	auth_device_seen(e->api, e);
}

static void
auth_device_seen(struct api *api, struct auth_ent *e)
{
	const char *params[2];

	if (now_ms() - e->last_seen_ms < 60000)
		return;
	e->last_seen_ms = now_ms();
	params[0] = e->user_id;
	params[1] = e->device_id;
	sql_query(api, Q_DEVICE_SEEN, params, NULL, NULL);
}

static const char *
peer_addr(struct sreq *r)
{
	char *addr = NULL;
	ev_uint16_t port;

	if (r->evcon != NULL)
		evhttp_connection_get_peer(r->evcon, &addr, &port);
	return addr != NULL ? addr : "unknown";
}

/*
 * Resolves r->token to (user, device) into r, then calls done(arg,
 * status, ...): from the cache at once, else after the database and maybe
 * upstream /whoami (requests with the same token share the lookup).
 */
void
auth_resolve(struct api *api, struct sreq *r, api_done_fn done, void *arg)
{
	struct auth_ent *e = map_get(&api->auth->tokens, r->token_hash);
	const char *params[1];

	if (e != NULL && ent_is_expired(e, now_ms())) {
		ent_drop(api, e);
		e = NULL;
	}
	if (e != NULL)
		ent_touch(api, e);
	if (e != NULL && e->state == AE_OK) {
		api->stats.whoami_cache_hits++;
		r->user_id = xstrdup(e->user_id);
		r->device_id = xstrdup(e->device_id);
		r->is_initial_done = e->is_initial_done;
		auth_device_seen(api, e);
		done(arg, 0, NULL, NULL);
		return;
	}
	if (e != NULL && e->state == AE_BAD) {
		r->is_soft_logout = e->is_soft_logout;
		r->is_user_locked = e->is_user_locked;
		done(arg, 401, "M_UNKNOWN_TOKEN", "unknown or expired token");
		return;
	}
	if (e == NULL &&
	    api->auth->nlookups >= api->cfg.db_queue_max / LOOKUP_SHARE) {
		api->stats.whoami_limited++;
		log_warnx_rl("auth: %lld token lookups pending: unknown tokens "
		    "refused", api->auth->nlookups);
		r->retry_after_ms = 1000;
		done(arg, 429, "M_LIMIT_EXCEEDED",
		    "too many unknown tokens; retry later");
		return;
	}
	if (e == NULL) {
		ents_make_room(api);
		e = xcalloc(1, sizeof(*e));
		e->api = api;
		memcpy(e->hash, r->token_hash, sizeof(e->hash));
		e->state = AE_PENDING;
		e->token = xstrdup(r->token);
		e->peer = xstrdup(peer_addr(r));
		map_put(&api->auth->tokens, e->hash, e);
		TAILQ_INSERT_TAIL(&api->auth->ents, e, lru);
		params[0] = e->hash;
		api->auth->nlookups++;
		api->stats.token_lookups++;
		sql_query(api, Q_TOKEN_LOOKUP, params, lookup_cb, e);
	}
	e->waiting = xrealloc(e->waiting,
	    sizeof(*e->waiting) * (size_t)(e->nwaiting + 1));
	e->waiting[e->nwaiting++] = r;
	r->done = done;
	r->done_arg = arg;
	sreq_ref(r);
}

/* Marks the cached device as initially synced. */
static void
mark_cb(const char *key, void *val, void *arg)
{
	struct auth_ent *e = val;
	const char **ud = arg;

	(void)key;
	if (e->state == AE_OK && strcmp(e->user_id, ud[0]) == 0 &&
	    strcmp(e->device_id, ud[1]) == 0) {
		if (ud[2] != NULL)
			e->expires_ms = 0; /* expired: next use re-reads */
		else
			e->is_initial_done = true;
	}
}

void
auth_forget(struct api *api, const char *user_id, const char *device_id,
    bool is_expired)
{
	const char *ud[3] = {user_id, device_id, is_expired ? "x" : NULL};

	map_each(&api->auth->tokens, mark_cb, ud);
}

void
auth_token_superseded(struct api *api, const char *token_hash)
{
	struct auth_ent *e = map_get(&api->auth->tokens, token_hash);

	if (e != NULL && e->state == AE_OK)
		ent_drop(api, e);
}

/* Q_TOKEN_REJECTED's answer: is r's token refused (and softly)? */
static void
rejected_cb(PGresult *res, void *arg)
{
	struct sreq *r = arg;
	bool is_refused = res != NULL &&
	    (PQntuples(res) != 1 || PQgetvalue(res, 0, 0)[0] == 't');

	if (is_refused) {
		r->is_soft_logout = PQntuples(res) == 1 &&
		    PQgetvalue(res, 0, 1)[0] == 't';
		r->is_user_locked = PQntuples(res) == 1 &&
		    PQgetvalue(res, 0, 2)[0] == 't';
		auth_forget(r->api, r->user_id, r->device_id, true);
	}
	if (r->is_gone)
		;
	else if (res == NULL)
		r->done(r->done_arg, 503, "M_UNKNOWN", "database unavailable");
	else if (is_refused)
		r->done(r->done_arg, 401, "M_UNKNOWN_TOKEN",
		    "the homeserver rejected this token");
	else
		r->done(r->done_arg, 0, NULL, NULL);
	sreq_unref(r);
}

/*
 * Read here, on the way out, rather than by the statements every request
 * runs: whether the refusal was soft (poll_error), and whether r's token
 * is still the refused one. An expiry notice stays in the long-poll ring
 * after the client has refreshed, so a request with the new token and
 * an older pos is woken by it, and must go on.
 */
void
auth_rejected(struct api *api, struct sreq *r, api_done_fn done, void *arg)
{
	const char *params[3] = {r->user_id, r->device_id, r->token_hash};

	r->done = done;
	r->done_arg = arg;
	sreq_ref(r);
	sql_query(api, Q_TOKEN_REJECTED, params, rejected_cb, r);
}

/*
 * Expired tokens are otherwise only dropped when used again, which random
 * or one-off tokens never are; address buckets go once full again (idle
 * for burst/rate seconds), as a new one would start full anyway.
 */
static void
sweep_cb(evutil_socket_t fd, short what, void *arg)
{
	struct api *api = arg;
	struct auth_ent *e, *next;
	struct auth_peer *p;
	long long now = now_ms();
	int n = 0;

	(void)fd;
	(void)what;
	for (e = TAILQ_FIRST(&api->auth->ents); e != NULL; e = next) {
		next = TAILQ_NEXT(e, lru);
		if (ent_is_expired(e, now)) {
			ent_drop(api, e);
			n++;
		}
	}
	while ((p = TAILQ_FIRST(&api->auth->peers)) != NULL &&
	    bucket_wait(&p->b, (double)api->cfg.whoami_peer_rate,
	    (double)api->cfg.whoami_peer_burst, now) == 0 &&
	    p->b.tokens >= (double)api->cfg.whoami_peer_burst) {
		TAILQ_REMOVE(&api->auth->peers, p, lru);
		map_del(&api->auth->peer_idx, p->addr);
		free(p->addr);
		free(p);
	}
	if (n > 0)
		log_debug("auth: sweep dropped %d expired; %zu tokens, %zu "
		    "addresses remain",
		    n, map_count(&api->auth->tokens), map_count(&api->auth->peer_idx));
}

void
auth_init(struct api *api)
{
	struct timeval tv = {SWEEP_MS / 1000, (SWEEP_MS % 1000) * 1000};

	api->auth = xcalloc(1, sizeof(*api->auth));
	map_init(&api->auth->tokens);
	map_init(&api->auth->peer_idx);
	TAILQ_INIT(&api->auth->ents);
	TAILQ_INIT(&api->auth->peers);
	api->auth->global.tokens = (double)api->cfg.whoami_burst;
	api->auth->global.at_ms = now_ms();
	api->auth->sweep = event_new(api->base, -1, EV_PERSIST, sweep_cb, api);
	event_add(api->auth->sweep, &tv);
	if ((api->curl = curl_ev_new(api->base)) == NULL)
		fatalx("curl_ev_new");
}

static void
peer_free(void *arg)
{
	struct auth_peer *p = arg;

	free(p->addr);
	free(p);
}

void
auth_shutdown(struct api *api)
{
	map_free(&api->auth->tokens, ent_free);
	map_free(&api->auth->peer_idx, peer_free);
	event_free(api->auth->sweep);
	free(api->auth);
	api->auth = NULL;
	curl_ev_free(api->curl);
}
