/*
 * simhs.h: the simulated homeserver's table of contents.
 *
 * Everything lives in memory in one struct simhs, driven by one libevent
 * loop. A single stream position (simhs.pos) orders every change: room
 * events, typing, receipts, to-device, account data and device lists.
 */
#ifndef SIMHS_H
#define SIMHS_H

#include <sys/queue.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <json-c/json.h>

#define SIMHS_DEFAULT_LISTEN "127.0.0.1:8009"
#define SIMHS_DEFAULT_LIMIT 10     /* Synapse's default timeline limit */
#define SIMHS_MAX_TIMEOUT_MS 60000 /* long-poll cap */
#define SIMHS_TODEVICE_LIMIT 100   /* to-device messages per response */
#define SIMHS_MAX_BODY (256u << 20) /* bulk loads, 100 MB media uploads */
#define SIMHS_JSON_DEPTH 64
#define SIMHS_TOKEN_LEN 160

#define PRINTFLIKE(a, b) __attribute__((format(printf, a, b)))
#define WARN_UNUSED __attribute__((warn_unused_result))

/* util.c: string-keyed hash map, pointer vector, ids, JSON helpers */
struct map_entry {
	char *key;
	void *val;
	struct map_entry *next;
};

struct map {
	struct map_entry **buckets;
	size_t nbuckets;
	size_t count;
};

struct ptrvec {
	void **v;
	size_t n;
	size_t cap;
};

/* A room event. Immutable once appended, except for the refcounted JSON. */
struct revent {
	char *event_id;
	char *type;
	char *sender;
	char *state_key;      /* NULL for message events */
	char *replaces_state; /* event id of the state it replaced */
	char *prev_sender;
	char *txn_id;     /* PUT .../send txn id, or NULL */
	char *txn_device; /* the device that sent it with txn_id */
	struct json_object *content;
	struct json_object *prev_content;
	int64_t ts;
	uint64_t pos;
	size_t idx; /* index in the room timeline */
	struct room *room;
	bool is_sync_hidden; /* left out of every /sync timeline */
	struct json_object *redacted_because; /* the redaction, or NULL */
};

struct receipt {
	struct user *user;
	struct revent *event;
	int64_t ts;
	uint64_t pos;
	char *type;      /* m.read or m.read.private */
	char *thread_id; /* NULL: unthreaded */
};

struct room {
	char *room_id;
	struct ptrvec events;       /* struct revent *, in order */
	struct ptrvec state_events; /* the state events among them */
	struct map state;           /* "type\x1fstate_key" -> current event */
	struct ptrvec users;        /* users with any membership event */
	struct ptrvec typing;       /* char * user ids */
	uint64_t typing_pos;
	struct ptrvec receipts; /* struct receipt *, one per user */
	uint64_t max_pos;       /* last change of anything in the room */
	bool is_direct;
};

struct todevice {
	TAILQ_ENTRY(todevice) entry;
	uint64_t pos;
	struct json_object *msg; /* {sender, type, content} */
};
TAILQ_HEAD(todevice_q, todevice);

struct device {
	char *device_id;
	struct user *user;
	struct todevice_q todevice;
	size_t ntodevice;
	struct json_object *otk_count;
	struct json_object *fallback_types;
	const char *fallback_names; /* "both", "stable", "unstable", "none" */
	uint64_t sync_requests;
	uint64_t whoami_requests;
	int sync_inflight;
	int sync_inflight_max;
	struct map ll_cache; /* user id -> struct ll_ent (sync_state.c) */
	uint64_t ll_clock;   /* its LRU order */
	struct json_object *device_keys; /* as last uploaded, or NULL */
	struct json_object *otk_ids; /* one-time key ids uploaded, or NULL */
};

struct acct_data {
	char *room_id; /* NULL: global account data */
	char *type;
	struct json_object *content;
	uint64_t pos;
};

struct devlist_change {
	char *user_id;
	bool is_left;
	uint64_t pos;
};

struct waiter;
TAILQ_HEAD(waiter_q, waiter);

struct user {
	char *user_id;
	struct ptrvec devices;      /* struct device * */
	struct ptrvec rooms;        /* rooms with any membership of ours */
	struct ptrvec account_data; /* struct acct_data * */
	struct ptrvec devlists;     /* struct devlist_change * */
	struct ptrvec filters;      /* struct json_object *, id = index */
	struct waiter_q waiters;
	bool is_dirty;
};

struct token {
	char *token;
	struct device *device;
	bool is_revoked;
	bool is_soft_logout; /* revoked as expired: 401 says soft_logout */
	bool is_locked;      /* its user locked: 401 M_USER_LOCKED */
	uint64_t requests;
	int sync_inflight;
	int sync_inflight_max;
};

/* A client-server request in progress (http.c owns it). */
struct creq {
	struct simhs *ctx;
	struct evhttp_request *req;
	struct evhttp_connection *evcon;
	const char *route; /* "sync", "whoami", ... */
	void (*handler)(struct creq *);
	char *path;        /* decoded path after the version prefix */
	char *query;       /* raw query string, may be NULL */
	char *token_str;   /* as presented, may be NULL */
	struct token *tok; /* valid token or NULL */
	bool is_soft_logout; /* tok was revoked as expired */
	bool is_locked;      /* tok's user was locked */
	bool is_sync;      /* counted in the in-flight gauges */
	bool has_gzip;
	bool is_held;        /* a closecb points at us */
	struct event *probe; /* watches for the client EOF while held */
	void (*hold_cb)(struct evhttp_connection *, void *);
	void *hold_arg;
};

enum fail_mode {
	FAIL_STATUS,
	FAIL_MALFORMED,
	FAIL_TRUNCATED,
	FAIL_DROP,
	FAIL_SLOW,
	FAIL_STALL,     /* 200, half a body, then silence */
	FAIL_UNCHANGED, /* 200 at once, next_batch = the since sent */
};

struct fail_rule {
	TAILQ_ENTRY(fail_rule) entry;
	char *path;  /* route name or "*" */
	char *token; /* NULL: any */
	int count;
	enum fail_mode mode;
	int status;
	char *errcode;
	int64_t retry_after_ms;
	int delay_ms;
};
TAILQ_HEAD(fail_q, fail_rule);

struct fail_hold;
TAILQ_HEAD(fail_hold_q, fail_hold);

/* The query strings of the last SYNC_LOG_MAX /sync requests (fail.c). */
#define SYNC_LOG_MAX 256
struct sync_log_ent {
	char *token; /* as presented, may be NULL */
	char *query; /* raw, may be NULL */
};

struct simhs {
	struct event_base *base;
	struct evhttp *http;
	char *server_name;
	bool is_verbose;
	uint64_t pos;
	struct map users; /* user_id -> struct user * */
	struct map rooms; /* room_id -> struct room * */
	struct map tokens;
	struct ptrvec user_list;
	struct ptrvec room_list;
	struct ptrvec token_list;
	struct ptrvec dirty; /* users whose waiters must be re-checked */
	struct event *wake_ev;
	struct fail_q fails;
	struct fail_hold_q holds;
	struct map path_counts; /* path -> uint64_t * */
	uint64_t whoami_requests;
	uint64_t sync_requests;
	size_t nwaiters;
	size_t nevents;
	struct sync_log_ent sync_log[SYNC_LOG_MAX];
	uint64_t sync_log_n; /* requests logged since start */
	struct map x_passwords; /* client_x.c: user_id -> password */
	struct map x_txns;      /* client_x.c: token\x1ftxn -> event_id */
	struct ptrvec x_slow;   /* media.c: streams and stalls in progress */

	struct ptrvec devchanges; /* struct devlist_change *, all users */
	struct json_object *x_wellknown; /* client_x.c: client well-known */
	struct ev_token_bucket_cfg *x_throttle; /* http.c: NULL, no limit */
	struct ptrvec x_throttles; /* http.c: every one made, freed at exit */
};

/* util.c */
void *xcalloc(size_t, size_t);
void *xreallocarray(void *, size_t, size_t);
char *xstrdup(const char *);
char *xasprintf(const char *, ...) PRINTFLIKE(1, 2);
void log_warnx(const char *, ...) PRINTFLIKE(1, 2);
void log_debug(struct simhs *, const char *, ...) PRINTFLIKE(2, 3);
void map_init(struct map *);
void *map_get(const struct map *, const char *);
void map_put(struct map *, const char *, void *);
void map_clear(struct map *, void (*)(void *));
void vec_push(struct ptrvec *, void *);
void vec_remove(struct ptrvec *, size_t);
void vec_free(struct ptrvec *, void (*)(void *));
void random_letters(char *, size_t);
void random_b64url(char *, size_t);
int64_t now_ms(void);
struct json_object *json_parse(const char *, size_t);
const char *json_str(struct json_object *, const char *);
struct json_object *json_get(struct json_object *, const char *,
                             enum json_type);
void json_add_str(struct json_object *, const char *, const char *);
void json_add_int(struct json_object *, const char *, int64_t);
int token_parse(const char *, uint64_t *, uint64_t *) WARN_UNUSED;
void token_format(char *, size_t, uint64_t, uint64_t);

/* users.c */
struct user *user_get(struct simhs *, const char *);
struct user *user_get_or_create(struct simhs *, const char *);
char *user_id_normalize(struct simhs *, struct json_object *);
struct device *device_get(struct user *, const char *);
struct device *device_get_or_create(struct user *, const char *);
struct token *token_new(struct simhs *, struct device *, const char *);
struct token *token_get(struct simhs *, const char *);
uint64_t todevice_push(struct simhs *, struct device *, const char *,
                       const char *, struct json_object *);
void todevice_ack(struct device *, uint64_t);
void acct_set(struct simhs *, struct user *, const char *, const char *,
              struct json_object *);
void devlist_add(struct simhs *, struct user *, const char *, bool);
void users_free(struct simhs *);

/* rooms.c */
struct room *room_new(struct simhs *, const char *);
struct room *room_get(struct simhs *, const char *);
struct revent *room_append(struct simhs *, struct room *, const char *,
                           const char *, const char *, struct json_object *);
struct revent *room_member_at(struct room *, const char *, size_t);
const char *event_membership(const struct revent *);
struct revent *room_state_get(struct room *, const char *, const char *);
size_t room_first_after(struct room *, uint64_t);
void room_state_between(struct room *, size_t, size_t, struct ptrvec *);
struct revent *room_find_event(struct room *, const char *);
void room_set_typing(struct simhs *, struct room *, struct json_object *);
int room_set_receipt(struct simhs *, struct room *, struct user *,
                     const char *) WARN_UNUSED;
struct json_object *event_to_json(const struct revent *, int64_t, bool);
struct json_object *event_to_stripped(const struct revent *);
void room_notify(struct simhs *, struct room *);
void rooms_free(struct simhs *);

/* sync.c */
struct sync_params {
	bool has_since;
	bool is_full_state;
	uint64_t since_pos;
	uint64_t since_td;
	int limit;
	int timeout_ms;
	struct json_object *filter; /* one reference, NULL: none */
};
struct evbuffer *xevbuffer_new(void);
struct evbuffer *sync_build(struct simhs *, struct device *,
                            const struct sync_params *, bool *);
void sync_handle(struct creq *);

/* sync_state.c: the timeline batch of one room entry, chosen by sync.c */
struct sync_batch {
	struct ptrvec events; /* the timeline, oldest first */
	struct map in_tl;     /* event id -> event, for events above */
	size_t from, end;     /* the timeline range [from, end) */
	bool is_full;         /* full state (initial or newly joined) */
	bool is_limited;
	bool has_since;
};
void sync_state(struct room *, const struct sync_batch *, struct device *,
                struct json_object *, struct ptrvec *);
struct json_object *sync_summary(struct room *, const struct sync_batch *,
                                 struct device *, struct json_object *,
                                 struct ptrvec *);

/* filter.c */
const char *filter_validate(struct json_object *);
int filter_resolve(struct creq *, const char *,
                   struct json_object **) WARN_UNUSED;
struct json_object *filter_top(struct json_object *, const char *);
struct json_object *filter_section(struct json_object *, const char *);
bool filter_allows(struct json_object *, const char *, const char *,
                   const char *);
bool filter_room_allowed(struct json_object *, const char *);
bool filter_lazy_members(struct json_object *);
bool filter_redundant_members(struct json_object *);
bool filter_include_leave(struct json_object *);
int filter_timeline_limit(struct json_object *);

/* receipts.c */
int receipt_set(struct simhs *, struct room *, struct user *, const char *,
                const char *, const char *) WARN_UNUSED;
void receipt_free(void *);
size_t receipt_read_upto(struct room *, struct user *);
struct json_object *receipts_json(struct room *, struct user *, bool, uint64_t);
void receipts_handle(struct creq *);
void receipts_markers_handle(struct creq *);

/* account_data.c */
void account_data_put_handle(struct creq *);
void account_data_get_handle(struct creq *);
bool account_data_ignores(struct user *, const char *);

/* e2ee.c */
void e2ee_device_changed(struct simhs *, struct user *);
struct json_object *e2ee_device_lists(struct simhs *, struct user *, uint64_t);
void e2ee_keys_upload_handle(struct creq *);

/* messages.c */
void messages_token_format(char *, size_t, size_t, uint64_t, uint64_t);
void messages_handle(struct creq *);

/* longpoll.c */
void longpoll_init(struct simhs *);
void longpoll_add(struct creq *, const struct sync_params *);
void longpoll_touch(struct simhs *, struct user *);
void longpoll_shutdown(struct simhs *);

/* http.c */
int http_init(struct simhs *, const char *) WARN_UNUSED;
void http_shutdown(struct simhs *);
void http_reply_json(struct evhttp_request *, int, struct json_object *);
void http_reply_error(struct evhttp_request *, int, const char *, const char *);
struct json_object *http_token_error(bool, bool);
void creq_reply(struct creq *, int, struct json_object *);
void creq_error(struct creq *, int, const char *, const char *);
void creq_reply_raw(struct creq *, int, const char *, const char *);
void creq_reply_buf(struct creq *, int, struct evbuffer *);
void creq_hold(struct creq *, void (*)(struct evhttp_connection *, void *),
               void *);
void creq_unhold(struct creq *);
void creq_abort(struct creq *);
void creq_dispatch(struct creq *);
struct json_object *creq_body_parse(struct creq *);
struct json_object *creq_body_object(struct creq *);
void http_throttle(struct evhttp_request *, struct simhs *,
                   struct json_object *);

/* fail.c */
bool fail_check(struct creq *);
void fail_add(struct evhttp_request *, struct simhs *, struct json_object *);
void fail_clear(struct simhs *);
void fail_shutdown(struct simhs *);
void fail_sync_log(struct evhttp_request *, struct simhs *,
                   struct json_object *);

/* admin.c */
void admin_dispatch(struct simhs *, struct evhttp_request *, const char *);
struct user *admin_user_arg(struct simhs *, struct evhttp_request *,
                            struct json_object *, const char *, bool);

/* admin_rooms.c */
void admin_rooms_dispatch(struct simhs *, struct evhttp_request *, const char *,
                          struct json_object *);
struct room *admin_room_create(struct simhs *, struct user *, const char *,
                               const char *, bool, bool);
struct revent *admin_membership(struct simhs *, struct room *, const char *,
                                struct user *, struct user *, const char *,
                                const char **);
void admin_reply_ok(struct evhttp_request *);

/* scenario.c */
void scenario_run(struct evhttp_request *, struct simhs *,
                  struct json_object *);
void scenario_demo(struct simhs *);

/* client_x.c: /login, /logout, pushrules, capabilities, send */
bool client_x_dispatch(struct simhs *, struct evhttp_request *, const char *,
                       const char *);
struct token *client_x_auth(struct simhs *, struct evhttp_request *,
                            const char *);
void client_x_shutdown(struct simhs *);
char *token_from_request(struct evhttp_request *, const char *);
const char *method_name(struct evhttp_request *);

/* media.c: media upload/download, misbehaving test endpoints */
bool media_dispatch(struct simhs *, struct evhttp_request *, const char *,
                    const char *);
void media_shutdown(struct simhs *);

#endif /* SIMHS_H */
