/*
 * api.h: syncv3-api's table of contents. The api answers
 * POST /_matrix/client/v3/sync from Postgres (async pool only), verifies
 * tokens with upstream /whoami (cached), keeps sessions in Postgres and
 * long-polls clients until a change notice (SUB) concerns their streams.
 */
#ifndef SYNCV3_API_H
#define SYNCV3_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <json-c/json.h>

#include "log.h"
#include "map.h"
#include "pg.h"

struct api;

struct api_config {
	char *db;
	char *db_read; /* a streaming replica, "" for none */
	long long db_read_wait_ms;
	char *server;
	char *secret;
	char *bindaddr;
	char *notices;
	char *log_level;
	long long max_timeout_ms;
	long long session_idle_s;
	long long max_body;
	long long whoami_ttl_s;
	long long whoami_neg_s;
	long long pool_size;
	long long max_waiters;
	long long initial_wait_ms;
	long long silence_ms;
	long long db_timeout_ms;
	long long db_queue_max;
	long long sessions_per_device;
	long long whoami_rate;
	long long whoami_burst;
	long long whoami_peer_rate;
	long long whoami_peer_burst;
	long long tokens_max;
	/* proxy.c */
	char *proxy_prefixes;
	long long proxy_max_concurrent;
	long long proxy_max_queue;
	long long proxy_max_upload;
	long long proxy_buffer;
	long long proxy_connect_timeout_ms;
	long long proxy_header_timeout_ms;
	long long proxy_idle_timeout_ms;
	long long proxy_keepalive;
	long long proxy_max_stream;	/* a streamed body, in total */
	/* http.c: limits ahead of evhttp's (issue #9) */
	long long header_timeout_ms;
	long long body_timeout_ms;
	long long max_conns;
	long long max_headers;
	/* ss_conn.c: sliding sync connections */
	long long ss_conn_idle_s;
	long long ss_conns_per_device;
	char *admin_token;	/* admin.c: SYNCV3_ADMIN_TOKEN, NULL: off */
	/* proxy.c: the client well-known's m.homeserver.base_url */
	char *public_url; /* SYNCV3_PUBLIC_URL, "": from the request */
	bool is_trust_forwarded; /* SYNCV3_TRUST_FORWARDED */
};

/* sql.c: every statement the api runs (test_api_sql PREPAREs them all) */
enum api_sql {
	Q_DEVICE_REGISTER,
	Q_DEVICE_SEEN,
	Q_TOKEN_LOOKUP,
	Q_TOKEN_REJECTED,
	Q_SESSION_CREATE,
	Q_SESSION_LOAD,
	Q_SESSION_PARAMS,
	Q_SESSION_EXPIRE,
	Q_SESSION_RELEASE,
	Q_DEVICE_STATE,
	Q_POSITION,
	Q_USER_ROOMS,
	Q_TYPING,
	Q_TO_DEVICE,
	Q_MEMBER_PAGE,
	Q_MEMBER_STREAM,
	Q_LIST_PAGE,
	Q_LIST_STREAM,
	Q_LIST_DETAIL,
	Q_LIST_REMEMBER,
	Q_LOGOUT_ONE,
	Q_LOGOUT_ALL,
	Q_LOGOUT_DEVICE,
	Q_SS_LOAD, /* sliding sync (ss.h) */
	Q_SS_CREATE,
	Q_SS_SAVE,
	Q_SS_LIST,
	Q_SS_ROOMS,
	Q_SS_DETAIL,
	Q_SS_MEMBERS,
	Q_SS_EXPIRE,
	/* admin.c */
	Q_ADMIN_DEVICES,
	Q_ADMIN_DEVICE,
	Q_ADMIN_SESSIONS,
	Q_ADMIN_CONNS,
	Q_ADMIN_POLLERS,
	Q_ADMIN_FORGET,
	Q_ADMIN_DROP_USER,
	Q_ADMIN_RESYNC,
	Q_SS_EXT,
	Q_LIST_FIRST,
	Q_CHUNKS,         /* ss_rooms.c, s_room_list.c: prev_batch */
	Q_SS_LIST_ROOMS,  /* ss_rooms.c: SS_LIST and SS_ROOMS in one */
	Q_SS_POS_TOKEN,   /* ss_pos.c: a pos as a /messages token */
	Q_SS_CREATE_SAVE, /* ss_conn.c: SS_CREATE and SS_SAVE in one */
	Q_SS_DETAIL_SAVE, /* ss_rooms.c: SS_DETAIL and SS_CREATE_SAVE in one */
	Q_SS_LIST_ROOMS_PLAIN, /* ss_rooms.c: SS_LIST_ROOMS, no filter set */
	Q_SS_LIST_PLAIN, /* ss_rooms.c: SS_LIST, no filter set */
	Q_SS_DETAIL_SAVE_CONT, /* ss_rooms.c: SS_DETAIL and SS_SAVE in one */
	Q_COUNT,
};
struct api_stmt {
	const char *name;	/* for PREPARE and logs */
	const char *sql;
	int nparams;
};
extern const struct api_stmt api_stmts[Q_COUNT];
/*
 * api_stmt_is_read[id] (sql.c, beside api_stmts): the statement only
 * reads what the accumulator writes (no table the api itself writes:
 * sessions, session rooms, devices), so it may run on a streaming
 * replica (SYNCV3_DB_READ) once the replica has replayed the commits of
 * every notice this api has seen (api->read_lsn, notices.c): a replica's
 * snapshot then covers the position the query is asked about. Everything
 * else (writes, and reads of what the api wrote, which a replica could
 * show late) runs on the primary; a statement is the primary's unless
 * its line there says otherwise.
 */
extern const bool api_stmt_is_read[Q_COUNT];
/* pg_pool_query with statement id's text and parameter count, on the
 * primary or, for a replica-eligible statement, on the replica. */
struct pg_job *sql_query(struct api *api, enum api_sql id,
    const char *const *params, pg_cb cb, void *arg);
/*
 * The same for a statement that reads what was committed up to pos (a
 * round's r->to, which a since token may put past what this api has
 * heard of): a replica-eligible one goes to the replica only when pos is
 * at most api->cur_pos. sql_query is sql_query_at the current position.
 */
struct pg_job *sql_query_at(struct api *api, enum api_sql id, int64_t pos,
                            const char *const *params, pg_cb cb, void *arg);
/*
 * A statement of several requests' rounds at once (Q_LIST_STREAM,
 * Q_TO_DEVICE) tags each row with its request's index (from 1) in column
 * col, rows in index order: the rows of request k start at *row or after
 * it. Returns how many rows are k's, sets *lo to the first, and moves
 * *row past them; a row of another index is never counted.
 */
int sql_batch_rows(PGresult *res, int col, int k, int *row, int *lo);

/* sincetok.c: opaque since tokens (pure) */
struct since {
	int64_t sid;	/* session */
	int64_t m;	/* room_member position (pinned in pagination) */
	int64_t l;	/* room_list position (pinned in pagination) */
	int64_t t;	/* typing */
	int64_t d;	/* to_device */
	int64_t te;     /* typing: the early list's seq at t (s_typing.c) */
};
#define SINCE_MAX 160
/* Writes the token into out[SINCE_MAX]. */
void since_format(const struct since *s, const char *secret,
    const char *user_id, const char *device_id, char *out);
/* Syntax only: 0, or -1 (malformed). Sets s; mac_ok is checked later. */
int since_parse(const char *tok, struct since *s);
/* True if tok's MAC is right for this device. */
bool since_verify(const char *tok, const char *secret, const char *user_id,
    const char *device_id);
/* The tokens' MAC (also sliding sync's pos): hex of body and the device. */
#define TOK_MAC_HEX 16
void tok_mac(const char *body, size_t len, const char *secret,
    const char *user_id, const char *device_id, char out[TOK_MAC_HEX + 1]);
/* Constant-time comparison of two TOK_MAC_HEX macs. */
bool tok_mac_eq(const char *a, const char *b);

/* query.c: the /sync query string (pure) */
struct query {
	long long timeout_ms;	/* -1: absent */
	char *since;		/* NULL: absent or empty (new session) */
	struct since from;	/* parsed since */
};
/* 0, or -1 with *errcode and *err set (static strings). */
int query_parse(const char *q, long long max_timeout_ms, struct query *out,
    const char **errcode, const char **err);
void query_free(struct query *q);

/* params.c: sticky stream parameters (pure) */
/* The stream's object in a request body, under its name or its alias. */
bool params_stream_get(struct json_object *delta, const char *name,
    struct json_object **v);
enum sort_key {
	SORT_BY_PL = 1,
	SORT_BY_NAME,
	SORT_BY_RECENCY,
};
#define PARAMS_MAX_SORTS 4
#define PARAMS_MAX_STATE 64
#define PARAMS_MAX_SPACES 64
struct params {
	bool has_typing;
	const char *typing_room;	/* borrowed from the merged object */
	bool has_to_device;
	int64_t td_limit;
	bool has_member;
	const char *m_room;
	int64_t m_limit;
	int m_sort;
	int64_t m_page;			/* -1: none */
	bool has_list;
	int64_t l_limit;
	int l_sorts[PARAMS_MAX_SORTS];
	int l_nsorts;
	int64_t l_timeline;
	const char *l_st_type[PARAMS_MAX_STATE];
	const char *l_st_key[PARAMS_MAX_STATE];
	int l_nst;
	const char *l_spaces[PARAMS_MAX_SPACES];
	int l_nspaces;
	int64_t l_page;
};
#define TD_LIMIT_DEFAULT 100
#define TD_LIMIT_MAX 1000
#define M_LIMIT_DEFAULT 50
#define M_LIMIT_MAX 1000
#define L_LIMIT_DEFAULT 20
#define L_LIMIT_MAX 1000
#define L_TIMELINE_DEFAULT 1
#define L_TIMELINE_MAX 50
/*
 * Validates delta (a client body) and merges it into stored (both JSON
 * objects; stored is modified). Returns 0, or -1 with *errcode and *err set
 * (static strings). *changed tells whether stored changed.
 */
int params_merge(struct json_object *stored, struct json_object *delta,
    bool *changed, const char **errcode, const char **err);
/* Fills p from a merged object (negotiation applied). p borrows from obj. */
void params_parse(struct json_object *obj, struct params *p);
const char *sort_name(int s);

/* roomname.c: spec room names and Unicode case folding (pure) */
struct hero {
	const char *user_id;
	const char *displayname;	/* NULL or "" if none */
};
/* Returns a new string: name, alias, heroes, or "Empty Room". */
char *room_name_calc(const char *name, const char *alias,
    const struct hero *heroes, int nheroes, long joined, long invited);
/* Returns a new string: the case-folded form of utf-8 s. */
char *casefold(const char *s);

/* http.c */
void http_init(struct api *api);
void http_shutdown(struct api *api);
void http_error(struct evhttp_request *req, int code, const char *errcode,
    const char *msg);
/* The method's name, NULL for one we do not serve or pass on. */
const char *http_method_name(enum evhttp_cmd_type m);
enum http_peek {
	HTTP_PEEK_DATA,		/* bytes wait (pipelined): stop watching */
	HTTP_PEEK_AGAIN,	/* nothing yet: watch again */
	HTTP_PEEK_GONE,		/* EOF or error: the client hung up */
};
/* Peeks at a held request's socket: has its client hung up? */
enum http_peek http_peek(evutil_socket_t fd);
/* Watches a held request's socket: gone(r) when its client hangs up. */
struct sreq;
void http_probe_start(struct sreq *r, void (*gone)(struct sreq *));
/* 429/503: the error with retry_after_ms and a Retry-After header. */
void http_error_retry(struct evhttp_request *req, int code, const char *errcode,
    const char *msg, long long retry_after_ms);
/* r's error (r->req): http_error, or http_error_retry for 429 and 503. */
void http_error_sreq(struct sreq *r, int code, const char *errcode,
    const char *msg);
/*
 * evhttp_connection_set_closecb for the api's connections: http.c holds
 * evhttp's own close callback (its limits), calls this one from it.
 */
void http_conn_closecb(struct api *api, struct evhttp_connection *evcon,
    void (*cb)(struct evhttp_connection *, void *), void *arg);
/* Appends the Matrix error object {"errcode","error"}. */
void http_error_body(struct evbuffer *b, const char *errcode, const char *msg);
/* Appends s as a JSON string literal. */
void jstr(struct evbuffer *b, const char *s);
void jstrn(struct evbuffer *b, const char *s, size_t n);

/*
 * auth, session and longpoll hand their outcome to whichever request path
 * called them (v3 sync today, sliding sync next) through a completion:
 * status 0, or an HTTP status with a Matrix errcode and message.
 */
struct sreq;
typedef void (*api_done_fn)(void *arg, int status, const char *errcode,
    const char *msg);

/* auth.c */
struct auth;
void auth_init(struct api *api);
void auth_shutdown(struct api *api);
/* Resolves r->token into r->user_id/device_id, then done(arg, ...). */
void auth_resolve(struct api *api, struct sreq *r, api_done_fn done,
    void *arg);
/*
 * A device notice: is_expired drops its cached tokens (next use re-reads
 * the database), otherwise it is marked initially synced.
 */
void auth_forget(struct api *api, const char *user_id, const char *device_id,
    bool is_expired);
/* The device has another token now: drop this one's cached whoami. */
void auth_token_superseded(struct api *api, const char *token_hash);
/*
 * The homeserver refused the device's token (its device row or a notice
 * said expired): done(arg, 401, M_UNKNOWN_TOKEN, ...) with
 * r->is_soft_logout and r->is_user_locked when r's token is the one
 * refused (or no longer the
 * device's), done(arg, 0, ...) when it is a newer one (the client
 * refreshed: the notice was about the old token).
 */
void auth_rejected(struct api *api, struct sreq *r, api_done_fn done,
    void *arg);

/* session.c */
void session_init(struct api *api);
void session_shutdown(struct api *api);
/* Creates or loads r's session, then done(arg, ...). */
void session_load(struct api *api, struct sreq *r, api_done_fn done,
    void *arg);
/* Stores r->params in its session, then done(arg, ...). */
void session_store_params(struct api *api, struct sreq *r, api_done_fn done,
    void *arg);
/* Expired rows' (user_id, device_id): releases their to-device messages. */
void session_expired_cb(PGresult *res, void *arg);
/* A sweep running stmt(idle_s), expiring what idled; freed by _free. */
struct event *session_expiry_new(struct api *api, enum api_sql stmt,
                                 long long idle_s);
void session_expiry_free(struct event *ev);
/* A stream found r's session gone after loading it: 400, unknown session. */
void session_gone(struct sreq *r);

/* longpoll.c */
#define LP_RING 4096
struct longpoll;
struct proto_notice;
void lp_init(struct api *api);
void lp_shutdown(struct api *api);
/*
 * Registers r as waiting until a notice concerns it (wake(arg) from the
 * loop, r unregistered by then); returns -1 when too many waiters.
 */
int lp_wait(struct api *api, struct sreq *r, void (*wake)(void *),
    void *arg);
void lp_unwait(struct api *api, struct sreq *r);
/* A notice: records it and wakes the waiters it concerns. */
void lp_notice(struct api *api, const struct proto_notice *n);
/* Position re-read after a gap: wakes everyone if pos advanced. */
void lp_resync(struct api *api, int64_t pos);
int lp_count(const struct api *api);

/* notices.c */
struct notices;
void notices_init(struct api *api);
void notices_shutdown(struct api *api);

/*
 * ephemeral.c: typing lists kept from the notices, answered without
 * Postgres (the sliding sync typing extension can read eph_typing_get).
 */
struct ephemeral;
#define EPH_ROOMS_MAX 10000	/* rooms in the table; then the LRU goes */
void eph_init(struct api *api);
void eph_shutdown(struct api *api);
/* A notice: typing lists and membership changes update the table. */
void eph_notice(struct api *api, const struct proto_notice *n);
/* Notices may have been lost (gap, epoch, silence): drop everything. */
void eph_forget_all(struct api *api);
/*
 * True when the table knows the room's list and that user_id is joined:
 * *pos (the row's position, or the last commit's for a list sent before
 * its commit), *early (that list's notice seq, else 0), *stored (its row's
 * position once stored, else 0), *user_ids (JSON
 * array text, borrowed until the next notice) and *mark (see
 * eph_typing_changed).
 */
bool eph_typing_get(struct api *api, const char *room_id, const char *user_id,
                    int64_t *pos, int64_t *early, int64_t *stored,
                    const char **user_ids, uint64_t *mark);
/* Taken before a Postgres typing read; passed back to eph_typing_fill. */
uint64_t eph_fill_mark(struct api *api);
/* A Postgres typing answer (pos 0, "[]" when no row) fills the table. */
void eph_typing_fill(struct api *api, const char *room_id, const char *user_id,
    uint64_t mark, int64_t pos, const char *user_ids, bool is_member);
/* lp_wait: did the list r read from the table change since? */
bool eph_typing_changed(struct api *api, const struct sreq *r);
/* r already shows room's current list (longpoll's matching). */
bool eph_typing_seen(struct api *api, const struct sreq *r,
                     const char *room_id);
void eph_counts(const struct api *api, unsigned long long *hits,
    unsigned long long *misses, size_t *rooms);

/* sreq.c: a client request's record and its lifetime (references) */
struct sreq *sreq_new(struct api *api, struct evhttp_request *req);
void sreq_ref(struct sreq *r);
void sreq_unref(struct sreq *r);
/* Bearer token from the Authorization header, or NULL (borrowed). */
const char *sreq_bearer(struct evhttp_request *req);
/* Arms r->timer (created with cb, arg on first use) for at_ms. */
void sreq_timer_at(struct sreq *r, long long at_ms, event_callback_fn cb,
    void *arg);

/* r_sync.c: the v3 request state machine */
enum sync_state {
	SYNC_PARSE,	/* the token is read, auth starts */
	SYNC_AUTH,	/* auth_resolve; then query, since and body checks */
	SYNC_SESSION,	/* session_load; then the body's parameters merge */
	SYNC_PARAMS,	/* session_store_params (parameters changed) */
	SYNC_DEVICE,	/* the device row, or held until its initial sync */
	SYNC_ROUND,	/* the streams query at one position */
	SYNC_WAITING,	/* long-poll: a notice, the timeout, or a hang-up */
	SYNC_REPLIED,	/* answered or the client gone */
};
const char *sync_state_name(enum sync_state s);
void sync_handle(struct api *api, struct evhttp_request *req);

/* s_<stream>.c: each runs one stream for r and calls stream_done() */
void s_typing_run(struct api *api, struct sreq *r);
void s_to_device_run(struct api *api, struct sreq *r);
/*
 * A to-device notice's messages (proto.h), shared by the v3 requests it
 * wakes, which answer from them without reading Postgres. NULL when the
 * notice carries none.
 */
struct td_hint *td_hint_new(const struct proto_notice *pn);
void td_hint_unref(struct td_hint *h);
/* r keeps h (a reference) for its next round, in place of an older one. */
void td_hint_give(struct sreq *r, struct td_hint *h);
void s_room_member_run(struct api *api, struct sreq *r);
void s_room_list_run(struct api *api, struct sreq *r);

enum stream_id {
	ST_TYPING,
	ST_TO_DEVICE,
	ST_MEMBER,
	ST_LIST,
	ST_COUNT,
};

/* A v3 request in progress. */
struct sreq {
	struct api *api;
	struct evhttp_request *req;
	struct evhttp_connection *evcon;
	int refs;
	enum sync_state state;
	bool is_gone;		/* client went away */
	char *token;
	char token_hash[65];
	char *user_id;
	char *device_id;
	bool is_initial_done;	/* the device's initial sync is stored */
	char *since_tok;	/* as given, NULL for a new session */
	struct since from;
	struct since next;
	int64_t acked_d;	/* to-device position the session acked */
	int64_t to;		/* current position used for this round */
	long long timeout_ms;
	long long deadline_ms;	/* monotonic */
	long long start_ms;
	struct json_object *delta;	/* body */
	struct json_object *params;	/* merged */
	bool params_changed;
	struct params p;
	struct event *timer;	/* long-poll or initial-sync deadline */
	struct event *probe;	/* client hang-up watch (http.c) */
	bool is_waiting;
	bool is_initial_wait;
	bool is_timed_out;
	bool is_revoked;	/* woken because upstream rejected the token */
	bool is_soft_logout;	/* ... as expired: 401 says "soft_logout" */
	bool is_user_locked;	/* ... its user locked: 401 M_USER_LOCKED */
	int pending;		/* streams still running this round */
	bool has_data;
	bool is_pagination;
	int err_status;		/* a stream failed: reply this */
	const char *err_code;
	char *err_msg;
	struct evbuffer *out[ST_COUNT];
	int rounds;
	/* the completion of the auth or session step under way */
	api_done_fn done;
	void *done_arg;
	/* the streams' completion (r_sync.c sets it) */
	void (*stream_cb)(struct sreq *r);
	/* longpoll.c */
	void (*lp_wake)(void *arg);
	void *lp_arg;
	int64_t wait_from;	/* position the last round covered */
	int widx;		/* index in the waiters */
	long long woken_ms;	/* notice received (latency stats) */
	long long woken_us;     /* the same, for ss_req.c's hops */
	/* auth.c: a 429 tells the client when to retry */
	long long retry_after_ms;
	/* api->device_notices when the device row was read */
	uint64_t device_notices_at;
	/* r_sync.c: a stream refused alone (stream_refusal_take) */
	unsigned body_streams;	/* bit per stream_id: this body gave it */
	int req_status;		/* a request-level failure of this round */
	const char *req_code;
	char *req_msg;
	/* s_typing.c: the table's mark of the list this round read, 0 if
	 * the round read Postgres (ephemeral.c) */
	uint64_t typing_mark;
	/* s_to_device.c: the messages of the notice that woke r, or NULL */
	struct td_hint *td_hint;
	/* ss_req.c: a sliding sync request (NULL for v3), its ss_wake bits */
	struct ss_req *ss;
	unsigned ss_wake;
	/* http_probe_start: what the path does when its client hung up */
	void (*on_hangup)(struct sreq *r);
};

/* A stream's part of the round is done (its output in r->out[]). */
static inline void
stream_done(struct sreq *r)
{
	r->stream_cb(r);
}

/*
 * A stream's query failed (already logged by the pool): the request ends
 * with 503 M_UNKNOWN once every stream is done, so the client retries.
 */
static inline void
stream_fail_db(struct sreq *r)
{
	r->err_status = 503;
	r->err_code = "M_UNKNOWN";
}

/* The request was answered (or the client left): drop late results. */
static inline bool
sreq_replied(const struct sreq *r)
{
	return r->state == SYNC_REPLIED;
}

struct api_stats {
	unsigned long long requests;
	unsigned long long errors;
	unsigned long long wakeups;
	unsigned long long whoami_calls;
	unsigned long long notices;
	unsigned long long gaps;
	/* notice received -> response written, ms, last LAT_RING wake-ups */
	double lat[4096];
	unsigned nlat;
	unsigned long long whoami_limited;	/* 429: over the whoami rate */
	unsigned long long sessions_evicted;	/* over the per-device cap */
	unsigned long long tokens_evicted;	/* over SYNCV3_API_TOKENS_MAX */
	unsigned long long queries;	/* statements sent (sql_query) */
	unsigned long long whoami_cache_hits;	/* resolved from memory */
	unsigned long long token_lookups;	/* looked up in Postgres */
	/* to-device answered from a notice's messages (s_to_device.c) */
	unsigned long long td_notice_hits;
};

struct api {
	struct event_base *base;
	struct api_config cfg;
	struct evhttp *http;
	struct pg_pool *pool;
	struct pg_pool *pool_read; /* SYNCV3_DB_READ, or NULL */
	int64_t read_lsn; /* WAL of the last commit notices announced */
	struct curl_ev *curl;
	void *zctx;
	void *sub;
	struct zmq_ev *zev;
	int64_t cur_pos;
	bool is_stopping;
	struct event *sig_term, *sig_int, *sig_pipe, *stop_timer;
	struct auth *auth;	/* auth.c: token cache, LRU, rate limits */
	/* session.c */
	struct event *expire_timer;
	struct longpoll *lp;	/* longpoll.c: waiters, their index, ring */
	struct notices *notices;	/* notices.c: the SUB's sequence */
	struct list_batch *list_batch;	/* s_room_list.c: rounds to read */
	struct td_batch *td_batch;	/* s_to_device.c: rounds to read */
	uint64_t device_notices;	/* PROTO_NOTICE_DEVICE received */
	struct api_stats stats;
	struct proxy *proxy;	/* proxy.c */
	struct ephemeral *eph;	/* ephemeral.c: typing lists */
	/* http.c */
	struct map conns;	/* "%p" of a connection's bufferevent -> conn */
	long long nconns;
	struct event *ss_expire_timer; /* ss_conn.c */
	struct prom *prom;	/* prom.c */
};

/* proxy.c: everything else under SYNCV3_PROXY_PREFIXES to SYNCV3_SERVER */
struct proxy;
void proxy_init(struct api *api);
/* After evhttp_free: every request it had is gone by then. */
void proxy_shutdown(struct api *api);
/* 0 if it took req (answered or on its way), -1 if not ours. */
int proxy_handle(struct api *api, struct evhttp_request *req,
    const char *path);
/*
 * -1 (answered 400/501, connection closing) when req's framing is one a
 * front proxy may read otherwise (every request, before routing).
 */
int proxy_framing_check(struct evhttp_request *req);
/* proxy.c: the request, query (NULL: the client's) sent upstream */
void proxy_resume(struct api *api, struct evhttp_request *req,
    const char *path, const char *query);
/* Would the pass-through take a request for method and path? */
bool proxy_takes(struct api *api, enum evhttp_cmd_type m, const char *path);

/*
 * http.c holds back the head of a pass-through request with a body and
 * gives evhttp the head without its body (issue #12): the body stays on
 * the connection for proxy_body.c to stream upstream.
 */
struct http_body {
	long long len;	   /* Content-Length, or -1 for chunked */
	bool has_continue; /* Expect: 100-continue */
	char connection[256]; /* the client's Connection ("": none) */
};
/* The connection of req when its body was held back (info filled), or NULL. */
struct bufferevent *http_body_take(struct api *api, struct evhttp_request *req,
    struct http_body *info);

/* proxy_body.c: a held-back body read off the connection, bounded */
struct pbody;
enum {
	PBODY_AGAIN = -1,  /* nothing yet: more is on its way */
	PBODY_EBAD = -2,   /* malformed chunked framing */
	PBODY_ETOOBIG = -3 /* past SYNCV3_PROXY_MAX_STREAM */
};
struct pbody *pbody_new(struct bufferevent *bev, const struct http_body *info,
    long long max, size_t buffer, void (*kick)(void *), void *arg);
void pbody_free(struct pbody *b);
void pbody_start(struct pbody *b);
ev_ssize_t pbody_read(struct pbody *b, char *buf, size_t n);
bool pbody_is_done(const struct pbody *b);

/* cors.c */
/* The CORS headers, replacing any already there. */
void cors_add(struct evhttp_request *req);
/* The CORS headers as "Name: value\r\n" lines (answers written by hand). */
void cors_add_raw(struct evbuffer *out);
/* Answers an OPTIONS pre-flight; false for other methods. */
bool cors_preflight(struct evhttp_request *req);
/* Access-Control-*: ours to set, never copied from upstream. */
bool cors_is_own(const char *header);

/* admin.c: /_syncv3/admin/ (0: answered or on its way, -1: not ours) */
int admin_handle(struct api *api, struct evhttp_request *req,
    const char *path);

/* webview.c: /_syncv3/client/ (0: answered, -1: not ours) */
int webview_handle(struct api *api, struct evhttp_request *req,
    const char *path);
/* api/web's files, built in by api/web/embed.cmake; a NULL name ends it */
struct webview_file {
	const char *name;
	const char *type;
	const unsigned char *data;
	size_t len;
};
extern const struct webview_file webview_files[];

/* prom.c: the api's metrics, GET /metrics */
enum prom_ep {
	PROM_EP_SYNC,
	PROM_EP_SLIDING,
	PROM_EP_PROXY,
	PROM_EP_ADMIN,
	PROM_EP_CLIENT,
	PROM_EP_HEALTH,
	PROM_EP_METRICS,
	PROM_EP_OTHER,
	PROM_EP_COUNT,
};
struct prom;
void prom_init(struct api *api);
void prom_shutdown(struct api *api);
enum prom_ep prom_endpoint(const char *path);
/* One answered request: status 0 when the client left first. */
void prom_request(struct api *api, enum prom_ep ep, int status, long long us);
/* A woken long poll answered ms after its notice. */
void prom_wake(struct api *api, long long ms);
/*
 * The steps of a woken sliding sync round, in order (ss_req.c ss_hop):
 * each is the time since the previous one ended, the first since the
 * notice that woke it. A round that finds nothing ends at PROM_SS_EXT
 * and waits again (counted as PROM_SS_IDLE).
 */
enum prom_ss_hop {
	PROM_SS_WAKE,    /* notice -> the round starts (the loop's turn) */
	PROM_SS_LIST,    /* SS_LIST or SS_LIST_ROOMS (step 1) */
	PROM_SS_ROOMS,   /* SS_ROOMS */
	PROM_SS_DETAIL,  /* SS_DETAIL */
	PROM_SS_MEMBERS, /* SS_MEMBERS */
	PROM_SS_EXT,     /* the extensions (SS_EXT, or none) */
	PROM_SS_IDLE,    /* nothing to send: waits again */
	PROM_SS_SAVE,    /* SS_SAVE */
	PROM_SS_WRITE,   /* the answer written */
	PROM_SS_HOP_COUNT,
};
void prom_ss_hop(struct api *api, enum prom_ss_hop h, long long us);
void prom_handle(struct api *api, struct evhttp_request *req);
/*
 * A gauge or counter of another module read from *v at each scrape (*v
 * lives as long as the api serves): it counts as it always did.
 */
void prom_gauge_int(struct api *api, const char *name, const char *help,
    const int *v);
void prom_counter_ull(struct api *api, const char *name, const char *help,
    const unsigned long long *v);

#endif
