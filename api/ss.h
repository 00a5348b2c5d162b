/*
 * ss.h: sliding sync (MSC4186), the contract between its parts. One
 * request path serves both endpoints:
 *   POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync
 *	(SS_SYNAPSE: what matrix-js-sdk 43 and Element X send today)
 *   POST /_matrix/client/v4/sync (SS_V4: the MSC as merged)
 * ss_proto.c parses either dialect into one struct ss_request and writes
 * one struct ss_response in either dialect (pure, unit tested, fuzzed);
 * ss_conn.c keeps connections in Postgres; ss_rooms.c computes lists and
 * room results; ss_req.c is the request's state machine; ss_ext.c runs
 * the extensions through ss_ext_run() (owned by the extensions work).
 *
 * Who owns what: everything a struct here points to is owned by it and
 * freed by its _free function, unless the comment says "borrowed".
 */
#ifndef SYNCV3_SS_H
#define SYNCV3_SS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>
#include <json-c/json.h>

#include "api.h"

enum ss_dialect {
	SS_SYNAPSE, /* unstable path: pos/timeout in the query, tuples */
	SS_V4,      /* /v4/sync: pos/timeout/conn_id in the body */
};
const char *ss_dialect_name(enum ss_dialect d);

/* Limits (the MSC's 100 lists / 100 subscriptions; ours for the rest). */
#define SS_MAX_LISTS 100
#define SS_MAX_SUBS 100
/* sticky subscriptions kept per connection (least recently given go) */
#define SS_MAX_STICKY_SUBS 500
#define SS_MAX_UNSUB 1000
#define SS_MAX_RS 100     /* required_state entries per config */
#define SS_MAX_FILTER 100 /* entries per filter array */
#define SS_MAX_RANGES 10  /* Synapse dialect: ranges per list */
#define SS_KEY_MAX 255    /* opaque identifier: list keys, conn_id */
/* timeline_limit above this is clamped (not refused): a documented cap */
#define SS_TIMELINE_MAX 100
#define SS_POS_MAX 128

/* A bool the client may leave out. */
enum ss_tri {
	SS_UNSET = -1,
	SS_NO = 0,
	SS_YES = 1,
};

/*
 * One required_state entry. type/state_key NULL: any (Synapse "*", a
 * v4 element without the field). state_key may be "$ME" (the user);
 * Synapse's "$LAZY" is parsed into lazy_members instead. group: combined
 * configs are kept apart (the MSC's option a), an exclude only cancels
 * the includes of its own group; group 0 holds the includes of configs
 * without excludes.
 */
struct ss_rs_elem {
	char *type;
	char *state_key;
	int group;
};

struct ss_required_state {
	struct ss_rs_elem *include;
	int ninclude;
	struct ss_rs_elem *exclude; /* v4 only */
	int nexclude;
	bool lazy_members;
};

struct ss_room_config {
	int64_t timeline_limit; /* clamped to [0, SS_TIMELINE_MAX] */
	struct ss_required_state rs;
};

/*
 * A list's filters. Arrays with has_ false are unset (no filter); an
 * empty array that is set matches nothing (room_types: []) or nothing is
 * excluded (not_*: []). room_types/not_room_types: NULL entries stand for
 * the JSON null (a room with no type).
 */
struct ss_filters {
	enum ss_tri is_dm;
	enum ss_tri is_invite; /* Synapse is_invite, v4 is_invited */
	enum ss_tri is_encrypted;
	bool has_spaces;
	char **spaces;
	int nspaces;
	bool has_room_types;
	char **room_types;
	int nroom_types;
	bool has_not_room_types;
	char **not_room_types;
	int nnot_room_types;
	bool has_tags;
	char **tags;
	int ntags;
	bool has_not_tags;
	char **not_tags;
	int nnot_tags;
};

/* A range [lo, hi], both inclusive, 0-based. */
struct ss_range {
	int64_t lo, hi;
};

struct ss_list {
	char *key; /* opaque id, as the client sent it */
	struct ss_range ranges[SS_MAX_RANGES];
	int nranges; /* 0: all rooms (no range given) */
	struct ss_room_config cfg;
	struct ss_filters f;
};

struct ss_sub {
	char *room_id;
	struct ss_room_config cfg;
};

/* One request, either dialect. */
struct ss_request {
	enum ss_dialect dialect;
	char *conn_id;        /* "" when absent */
	char *pos;            /* NULL: a new connection */
	long long timeout_ms; /* -1 absent; capped by the caller's max */
	char *set_presence;   /* NULL absent; else online|offline|unavailable */
	struct ss_list *lists;
	int nlists;
	bool has_subs; /* room_subscriptions given (may be {}) */
	struct ss_sub *subs;
	int nsubs;
	/* room_subscriptions as sent, room id -> config object (sticky store)
	 */
	struct json_object *subs_json;
	char **unsub;
	int nunsub;
	/* extensions as sent (NULL when absent); owned reference */
	struct json_object *extensions;
	/*
	 * The request but for pos, timeout and to_device's since (the
	 * idle-poll key, ss_req.c wait_early, which checks the since on its
	 * own): the dialect and the body as parsed, written again without
	 * them. NULL when the query has other parameters.
	 */
	char *key;
};

/*
 * ss_proto.c. Parses a body (and, Synapse dialect, the query string) into
 * out. 0, or -1 with err set (status 400 or 413, a static errcode, a
 * message naming the field). Unknown fields are ignored.
 */
struct ss_parse_err {
	int status;
	const char *errcode;
	char msg[160];
};
int ss_parse(enum ss_dialect d, const char *body, size_t len, const char *query,
             long long max_timeout_ms, struct ss_request *out,
             struct ss_parse_err *err);
void ss_request_free(struct ss_request *req);
/* Parses one stored subscription config (subs_json's value) into cfg. */
int ss_room_config_parse(enum ss_dialect d, struct json_object *o,
                         struct ss_room_config *cfg, struct ss_parse_err *err);
void ss_room_config_free(struct ss_room_config *cfg);
/* The union of two configs (the MSC's combining rules) into *into. */
void ss_room_config_merge(struct ss_room_config *into,
                          const struct ss_room_config *from);
/* Does a state entry (type, state_key) match the config? me: the user. */
bool ss_rs_matches(const struct ss_required_state *rs, const char *type,
                   const char *state_key, const char *me);
/* Canonical text of a config's required_state (stored per room sent). */
char *ss_rs_canonical(const struct ss_required_state *rs);
/* Its inverse: 0, or -1 (rs empty) for text that is not canonical. */
int ss_rs_from_canonical(const char *text, struct ss_required_state *rs);
void ss_rs_free(struct ss_required_state *rs);
/*
 * Merges a request's extensions into the connection's sticky ones: per
 * extension, the request's fields replace the stored ones of the same
 * name, others stay. stored is modified; request is borrowed.
 */
void ss_ext_merge(struct json_object *stored, struct json_object *request);

/* One room of a response. */
struct ss_room_result {
	char *room_id;
	bool is_initial;
	bool is_expanded; /* timeline expanded beyond what was sent */
	char *membership; /* join|invite|leave|ban|knock */
	int *lists;       /* indexes into the request's lists */
	int nlists;
	bool has_name;
	char *name; /* NULL with has_name: removed (JSON null) */
	bool has_avatar;
	char *avatar;
	char *heroes; /* JSON array of {user_id,...}, NULL none */
	enum ss_tri is_dm;
	char **required_state; /* raw event JSON (or a StateStub) */
	int nrequired_state;
	char **timeline; /* raw event JSON, oldest first */
	int ntimeline;
	bool has_timeline;
	bool is_limited;
	char *prev_batch;
	int64_t num_live;     /* -1: not sent */
	int64_t bump_stamp;   /* 0: not sent */
	int64_t joined_count; /* -1: not sent */
	int64_t invited_count;
	int64_t notification_count;
	int64_t highlight_count;
	char *stripped_state; /* invites: JSON array of stripped events */
};

struct ss_response {
	char pos[SS_POS_MAX];
	int64_t *counts; /* per request list, in request order */
	int ncounts;
	struct ss_room_result *rooms;
	int nrooms, caprooms;
	/* the extensions' members ("name":{...},...) or empty */
	struct evbuffer *extensions;
};
/* Writes resp in dialect d (list keys from req) into out. */
void ss_write(enum ss_dialect d, const struct ss_request *req,
              const struct ss_response *resp, struct evbuffer *out);
struct ss_room_result *ss_response_room(struct ss_response *resp,
                                        const char *room_id);
void ss_response_free(struct ss_response *resp);

/* pos tokens: c<conn>_<gen>_<mac>, MACed to the device (sincetok.c's MAC) */
struct ss_pos {
	int64_t conn;
	int64_t gen;
};
void ss_pos_format(const struct ss_pos *p, const char *secret,
                   const char *user_id, const char *device_id,
                   char out[SS_POS_MAX]);
/* 0, or -1: malformed or not this device's. */
int ss_pos_parse(const char *tok, const char *secret, const char *user_id,
                 const char *device_id, struct ss_pos *p);

/*
 * ss_pos.c: a GET of /rooms/{id}/messages or /relations whose from or to
 * is a pos: 0, taken (answered, or handed to proxy_resume with the
 * upstream token in its place); -1, not such a request.
 */
int ss_pos_take(struct api *api, struct evhttp_request *req, const char *path);

/*
 * A connection (syncv3_ss_conns), as loaded at the start of a request. A
 * response the client has not confirmed yet (pending_gen) is kept apart
 * from the confirmed one: a pos naming it confirms it, a pos naming the
 * confirmed one discards it (the response was lost).
 */
struct ss_conn {
	int64_t id;
	int64_t gen;       /* the generation this request continues from */
	int64_t pos;       /* database position that response covered */
	int64_t ver;       /* compare-and-set on save */
	int64_t saved_gen; /* the generation this response was saved as */
	bool is_new;
	bool is_deferred;         /* new, created by its save (ss_conn_defer) */
	struct json_object *subs; /* sticky subscriptions (raw configs) */
	struct json_object *ext;  /* sticky extension configs */
	char *ext_state;          /* the extensions' blob, NULL none */
	/*
	 * the device's since read when the connection was loaded or
	 * created, and the position of that read (021_pos_token.sql): the
	 * response's /messages token if it was built at or above tok_at
	 */
	char *tok;
	int64_t tok_at;
	/*
	 * a deferred connection saved by its round's SS_DETAIL_SAVE
	 * (ss_conn_fold_query): what that statement saved and returned,
	 * taken by ss_conn_save if the round sent what it saved
	 */
	bool is_folded, is_fold_done, is_fold_ok;
	int nfolded;
	int64_t fold_id, fold_gen, fold_dropped;
	/*
	 * a continuing connection saved by its round's SS_DETAIL_SAVE_CONT:
	 * ver moved on with it, and until a save uses it, its generation's
	 * rows are garbage that the next save drops (0: none)
	 */
	int64_t drop_gen;
};

/*
 * The extensions' hook. ss_req.c fills a context per round and calls
 * ss_ext_run(); the extensions write their members into out (without
 * the enclosing braces, comma separated, e.g. "to_device":{...}), set
 * new_state (malloc'd text, stored with the connection and handed back
 * as state next time; NULL keeps none) and has_data (something new: a
 * long-poll answers), then call done(arg, 0 or an HTTP status, errcode,
 * msg). Everything in the context but out/new_state/has_data/priv is
 * borrowed and valid until done is called.
 */
struct ss_ext_room {
	const char *room_id;
	const int *lists; /* indexes into list_keys */
	int nlists;
	bool is_sub;                  /* (also) in the room subscriptions */
	bool is_initial;              /* sent with initial in this response */
	bool is_expanded;             /* timeline re-sent longer */
	const char *const *event_ids; /* timeline sent in this response */
	int nevents;
	/* the user's membership by visible.h's rule at to_pos: per-room
	 * data of a room not joined must stop at the leave */
	const char *membership;
};

struct ss_ctx {
	struct sreq *r; /* the request (user_id, device_id) */
	const char *user_id;
	const char *device_id;
	const char *conn_id;
	int64_t conn; /* the connection's row id */
	enum ss_dialect dialect;
	bool is_new_conn; /* no pos: the connection starts */
	int64_t from_pos; /* what the client has (0 new) */
	int64_t to_pos;   /* what this response covers */
	const char *const *list_keys;
	int nlists;
	/*
	 * every room of every list's window (all ranges, whether or not it
	 * changed in this response) and every sticky subscription
	 */
	const struct ss_ext_room *rooms;
	int nrooms;
	struct json_object
	    *cfg;          /* sticky configs, merged with this request's */
	const char *state; /* the blob of the confirmed response */
	/* out */
	struct evbuffer *out;
	char *new_state;
	bool has_data;
	/* to_device's next_batch (-1: off) and whether its page was full,
	 * for ss_req.c wait_early */
	int64_t td_next;
	bool is_td_full;
	void *priv; /* ss_ext.c's own, freed by it */
};
void ss_ext_run(struct api *api, struct ss_ctx *c, api_done_fn done, void *arg);

/*
 * Which notices concern the extensions of cfg (a long-poll waits for
 * these too): a bit per enum ss_wake.
 */
enum ss_wake {
	/* PROTO_NOTICE_TO_DEVICE of the device (to-device, device lists, keys)
	 */
	SS_WAKE_TO_DEVICE = 1 << 0,
	/* PROTO_NOTICE_TYPING of a room the user is joined to */
	SS_WAKE_TYPING = 1 << 1,
	/* PROTO_NOTICE_ACCOUNT_DATA of the user */
	SS_WAKE_ACCOUNT_DATA = 1 << 2,
	/* PROTO_NOTICE_DEVICE (any state) of the device: receipts come with
	 * the device's own sync, which has no notice of its own */
	SS_WAKE_RECEIPTS = 1 << 3,
};
unsigned ss_ext_wake(struct json_object *cfg);
/*
 * Checks a request's extensions (pure, before any connection state
 * changes): 0, or -1 with err set (e.g. 400 M_INVALID_PARAM for a
 * to_device.since that is not an integer). A non-zero status from
 * ss_ext_run's done also answers the request and saves nothing.
 */
int ss_ext_check(struct json_object *extensions, struct ss_parse_err *err);
/*
 * Are two sticky extension configs the same setting? to_device.since, an
 * acknowledgement that changes with every request, is left out.
 */
bool ss_ext_sticky_same(struct json_object *a, struct json_object *b);

/* ss_req.c: the request path (both endpoints) */
void ss_handle_synapse(struct api *api, struct evhttp_request *req);
void ss_handle_v4(struct api *api, struct evhttp_request *req);
/* ss_conn.c: idle connections expire (SYNCV3_SS_CONN_IDLE_S) */
void ss_init(struct api *api);
void ss_shutdown(struct api *api);

/*
 * The core's internals (ss_req.c, ss_conn.c, ss_rooms.c), not part of
 * the extensions' contract.
 */
enum ss_state {
	SS_ST_AUTH,    /* auth_resolve; then pos, body and extension checks */
	SS_ST_CONN,    /* the connection loaded or created */
	SS_ST_DEVICE,  /* held until the device's initial sync is stored */
	SS_ST_ROUND,   /* lists, rooms, details, extensions at one position */
	SS_ST_WAITING, /* long-poll: a notice, the timeout, or a hang-up */
	SS_ST_SAVE,    /* the response stored as the unconfirmed one */
	SS_ST_DONE,    /* answered or the client gone */
};
const char *ss_state_name(enum ss_state s);

/* A room in this round's scope (a list window or a subscription). */
struct ss_room {
	char *id;
	struct ss_room_config cfg; /* combined over its lists and subs */
	int *lists;
	int nlists;
	bool is_sub;
	bool is_visible; /* SS_ROOMS found a membership */
	/* what SS_ROOMS read */
	char *membership;
	int64_t last; /* last position the user may see */
	int64_t bump, upos;
	int64_t ur_upos; /* the user's own row alone (invite, unread counts) */
	char *name, *avatar, *heroes, *invite_state, *prev_batch;
	int64_t joined, invited, notif, highlight;
	bool is_dm;
	bool is_name_changed, is_members_changed, is_bump_changed;
	bool is_order_gap; /* events placed before what was sent (ORDER_GAP) */
	bool has_sent;
	int64_t s_nid, s_limit, s_state_pos;
	char *s_rs, *s_membership;
	/* the decision and its results */
	bool is_send, is_initial, is_expanded, is_limited;
	bool is_from_create; /* the oldest timeline event read is the create */
	bool has_chunk;      /* a chunk boundary gave prev_batch (Q_CHUNKS) */
	bool is_bare;        /* never visible: its membership only */
	int64_t tl_from, st_from, ub;
	char *rs_canon;
	struct json_object *lazy;       /* array: members sent from now on */
	struct json_object *lazy_asked; /* members asked for this round */
	struct ss_required_state s_cfg; /* the config sent, when it differs */
	bool has_s_cfg;
	int64_t max_nid;
	int64_t tl_oldest;            /* nid of the timeline's oldest event */
	char **tl, **st, **event_ids; /* timeline oldest first, state */
	int ntl, nst, nevent_ids;
	int64_t num_live;
};

struct ss_req {
	struct api *api;
	struct sreq *r; /* auth, long-poll and lifetime (sreq.c) */
	enum ss_state state;
	struct ss_request q;
	struct ss_parse_err perr; /* a bad request, told after auth */
	bool is_bad;
	struct ss_pos pos; /* as the client sent it */
	struct ss_conn conn;
	struct json_object *subs; /* sticky subscriptions after this request */
	struct json_object *ext;  /* sticky extension configs, merged */
	bool is_sticky_changed;
	/* this round */
	int64_t at; /* the position answered */
	struct ss_response resp;
	struct ss_room *rooms;
	int nrooms, caprooms;
	char **list_canon; /* each list's required_state canonical */
	int nlist_canon;
	int pending;        /* queries of this step still running */
	bool is_rooms_read; /* SS_LIST_ROOMS: step 2 came with step 1 */
	bool is_failed;
	struct ss_ctx ext_ctx;
	struct ss_ext_room *ext_rooms;
	const char **list_keys;
	bool has_data;
	/*
	 * The device's initial sync is being stored and its window is
	 * (docs/DESIGN.md, "The first window first"): a round answers only
	 * if each list's last row in range sorts at window_cut or later and
	 * every subscribed room is stored, else is_window_short and the
	 * request waits for the rest; the rooms of the rest count (SS_MORE,
	 * read in the list's own snapshot).
	 */
	bool is_window, is_window_short;
	int64_t window_cut;
	api_done_fn round_done; /* ss_rooms_run's completion */
	void *round_arg;
	/* waiting: the rooms of the last round's windows and subscriptions
	 * (room id -> 1), for the notices that concern only those; read by
	 * longpoll.c */
	struct map scope;
	bool is_early; /* waiting without a round (ss_req.c wait_early) */
	long long hop_us; /* a woken round: its last step's end, else 0 */
};

/* ss_req.c: a woken round's step h ended (prom.c's hop table) */
void ss_hop(struct ss_req *s, enum prom_ss_hop h);

/* ss_conn.c */
void ss_conn_open(struct ss_req *s, api_done_fn done, void *arg);
void ss_conn_save(struct ss_req *s, api_done_fn done, void *arg);
void ss_conn_defer(struct ss_req *s);
bool ss_conn_may_fold(const struct ss_req *s);
void ss_conn_fold_query(struct ss_req *s, const char *const *detail_p,
                        pg_cb cb, void *arg);
void ss_conn_fold_row(struct ss_req *s, PGresult *res, int i);
void ss_conn_free(struct ss_conn *c);
/*
 * What this api last saved on a connection: a request that continues it,
 * the same but for its pos, waits at once (ss_req.c wait_early).
 */
struct ss_last {
	int64_t gen;  /* the response saved */
	int64_t at;   /* the position it covered */
	char *key;    /* the request but for pos and timeout */
	char **rooms; /* its scope (the rooms of its windows and subs) */
	int nrooms;
	int64_t *counts; /* its lists' counts */
	int ncounts;
	bool is_ext;     /* extensions were on: a timeout runs a round */
	int64_t td_next; /* its to_device next_batch, -1: off */
	bool is_td_full; /* more to-device messages than one page */
};
void ss_conn_keep(struct ss_req *s, bool is_ext);
const struct ss_last *ss_conn_last(int64_t conn);
void ss_conn_last_counts(const struct ss_last *l, struct ss_response *resp);
/*
 * ss_rooms.c: one round; has_data and resp set when done(arg, 0, ...);
 * is_create: a new connection, created by the round's save (ss_conn_defer)
 */
void ss_rooms_run(struct ss_req *s, bool is_create, api_done_fn done,
                  void *arg);
void ss_rooms_clear(struct ss_req *s);

#endif
