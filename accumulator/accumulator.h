/*
 * syncv3-accumulator: the single writer. Pollers send raw v2 /sync bodies
 * over a ROUTER socket (ingest.c); each body is normalised into a change
 * set (normalise.c, pure) and applied with a compare-and-set on the
 * device's since, several messages per transaction and per statement
 * (the store: store.c and the files below it); acks go back after COMMIT
 * and change notices go out on a PUB socket (notify.c).
 */
#ifndef SYNCV3_ACCUMULATOR_H
#define SYNCV3_ACCUMULATOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>
#include <json-c/json.h>
#include <libpq-fe.h>

#include "log.h"
#include "metrics.h"
#include "proto.h"
#include "redact.h"

#define ACC_EVENT_MAX (64 * 1024)	/* bytes; like Synapse's PDU limit */
#define ACC_TO_DEVICE_MAX (64 * 1024)
#define ACC_ADATA_MAX (1024 * 1024)
#define ACC_ID_MAX 255			/* event, room and user ids */
#define ACC_RECEIPTS_MAX 10000		/* per room per response */
/*
 * Chunk boundaries kept per room (015_chunks.sql), two per chunk: the
 * api answers at most SS_TIMELINE_MAX (100) events, whose oldest needs a
 * boundary at or after it, and each kept one is at a distinct event.
 */
#define ACC_CHUNKS_KEEP 512
/* a gap row outlives the oldest session that may be inside it by this
 * much (cleanup.c, S_CLEAN_GAPS): responses under way when it is checked */
#define ACC_GAP_MARGIN_SECS 300

struct acc_config {
	char *db;
	char *ingest;
	char *notices;
	char *log_level;
	long long batch_max;		/* messages per transaction */
	long long batch_bytes;		/* body bytes per transaction */
	long long batch_delay_ms;	/* unused: batches never wait */
	long long cleanup_secs;		/* interval of the cleanup pass */
	long long horizon_secs;		/* keep closed state this long */
	long long stats_secs;		/* interval of the stats line */
	char *prom;			/* metrics listener; empty: none */
	long long takeover_ms;          /* a standby takes over after this */
	long long window_rooms;		/* first window first; 0: off */
};

/* jscan.c: exact byte spans of values inside a validated JSON text */
struct jspan {
	const char *p;
	size_t len;
};
struct jscan_it {
	const char *p, *end;
	char close;
	bool first;
};
const char *jscan_skip(const char *p, const char *end);
int jscan_open(struct jscan_it *it, struct jspan v, char open);
int jscan_member(struct jscan_it *it, struct jspan *key, struct jspan *val);
int jscan_key(struct jscan_it *it, struct jspan *key);
int jscan_value(struct jscan_it *it, struct jspan *val);
bool jscan_at(const struct jscan_it *it, char open);
void jscan_enter(struct jscan_it *it, char open, struct jscan_it *child);
int jscan_leave(struct jscan_it *it, const struct jscan_it *child);
int jscan_elem(struct jscan_it *it, struct jspan *val);
bool jscan_key_eq(struct jspan key, const char *s);
char *jscan_str(struct jspan s);
bool jscan_is(struct jspan v, char c);
int jscan_cut(struct jspan obj, const char *key, struct jspan *cut);

/* normalise.c: v2 body -> change set, no I/O */
enum acc_bad {
	ACC_BAD_NOT_OBJECT = 0,	/* event is not a JSON object */
	ACC_BAD_NO_ID,		/* missing or empty event_id */
	ACC_BAD_TYPES,		/* a field has the wrong type */
	ACC_BAD_TOO_BIG,	/* over the size cap, or an id over 255 */
	ACC_BAD_ENCODING,	/* NUL or invalid UTF-8 in an indexed string */
	ACC_BAD_ROOM,		/* room_id of the event is another room */
	ACC_BAD__MAX,
};
const char *acc_bad_name(int kind);

enum acc_section {
	ACC_JOIN = 0,
	ACC_INVITE,
	ACC_LEAVE,
	ACC_KNOCK,
};
const char *acc_section_name(int s);

struct acc_event {
	struct json_object *obj;	/* a redaction's tree, else NULL */
	const char *raw;		/* exact bytes, borrowed from the body */
	size_t raw_len;
	const char *event_id, *type, *state_key, *sender;
	const char *membership;		/* m.room.member content.membership */
	int64_t ts;
	/* room summary field when type is name/topic/...; NULL = unset */
	const char *summary;
	bool in_timeline;		/* set by store for state blocks */
	/* unsigned.transaction_id (in obj), cut from the bytes, which
	 * then point at own (014_txn.sql) */
	const char *txn_id;
	char *own;
};

struct acc_evlist {
	struct acc_event *v;
	size_t n, cap;
};

struct acc_receipt {
	char *event_id, *rtype, *user_id, *thread_id;
	int64_t ts;
};

struct acc_adata {
	char *type;
	char *json;			/* the {type, content} object, raw */
};

struct acc_room {
	char *room_id;
	enum acc_section section;
	struct acc_evlist state, timeline;
	bool limited;
	char *prev_batch;
	char *typing;			/* sorted JSON array, NULL = none */
	int64_t typing_early;           /* its early notice's seq, 0 = none */
	struct acc_receipt *receipts;
	size_t nreceipts;
	struct acc_adata *adata;
	size_t nadata;
	bool has_unread;
	int64_t notif, highlight;
	char *heroes;			/* JSON array, NULL = absent */
	int64_t joined_count, invited_count; /* -1 = absent */
	char *invite_state;		/* raw stripped-state array */
	const char *my_membership;	/* static string */
	struct jspan span;              /* its value in the body */
};

struct acc_changes {
	struct acc_room *rooms;
	size_t nrooms, caprooms;
	struct acc_adata *adata;	/* global account data */
	size_t nadata;
	char **to_device;		/* raw event objects */
	size_t nto_device;
	char **dl_changed, **dl_left;
	size_t ndl_changed, ndl_left;
	char *otk_counts;		/* raw JSON object or NULL */
	char *fallback_types;		/* raw JSON array or NULL */
	bool has_fallback_stable;	/* ... from the stable name */
	size_t nevents;			/* valid room events */
	unsigned bad[ACC_BAD__MAX];
	unsigned nbad;
	/* normalise_light's: rooms hold their timeline only */
	bool is_light;
	/* normalise_pick's: rooms owned, adata a view of the light set's */
	bool is_picked;
};

/*
 * Parses body (a whole v2 /sync response). user_id (may be NULL) is the
 * syncing user, used to derive their membership in left rooms. Returns 0,
 * or -1 with *err set when the body is not a JSON object; bad parts
 * inside a valid body are dropped and counted in out->bad.
 */
int normalise(const char *body, size_t len, const char *user_id,
    struct acc_changes *out, const char **err) WARN_UNUSED;
void normalise_free(struct acc_changes *c);
/*
 * The first window's cheap pass (docs/DESIGN.md, "The first window
 * first"): every room of body, in normalise's order, with its id,
 * section, timeline and span only, and the global account data; the body
 * is not validated as a whole. -1 when it is not an object.
 */
int normalise_light(const char *body, size_t len, const char *user_id,
                    struct acc_changes *out) WARN_UNUSED;
/* The rooms of light with sel[i] set, normalised in full into out. */
void normalise_pick(const struct acc_changes *light, const bool *sel,
                    const char *user_id, struct acc_changes *out);

/* notice.c: the notices of one message, sent after COMMIT */
struct notice_list {
	struct proto_notice *v;	/* seq and epoch unset */
	char **bufs;		/* bufs[i] owns the strings v[i] points to */
	size_t n, cap;
};
void notice_add(struct notice_list *l, const struct proto_notice *n);
void notice_clear(struct notice_list *l);

/* notify.c: the PUB socket */
struct notify;
struct notify *notify_new(struct event_base *base, void *zctx,
    const char *endpoint);
uint64_t notify_send(struct notify *n, const struct proto_notice *pn);
void notify_typing_early(struct notify *n, struct acc_changes *ch);
void notify_send_list(struct notify *n, const struct notice_list *l);
void notify_set_pos(struct notify *n, int64_t pos);
/* The WAL position every notice from now on carries (store_lsn). */
void notify_set_lsn(struct notify *n, int64_t lsn);
/* Notices published and those the PUB socket refused. */
void notify_counts(const struct notify *n, unsigned long long *sent,
                   unsigned long long *failed);
void notify_free(struct notify *n);

/*
 * The store: the writer connection and everything written through it.
 * Layers, each using only those below it: store.c (the public face and
 * the batch) -> rooms.c, apply.c, cleanup.c -> pos.c -> db.c. Their
 * shared state (struct store, struct msgctx) is in store_int.h.
 */
struct store;
struct msgctx;

/* store.c: the store's life and the batch */
struct store_msg {
	/* in */
	const char *user_id, *device_id, *since_in, *next_batch;
	const char *body;
	size_t body_len;
	/* in: PROTO_SYNC_RAW's first ("", "sibling", "refill"; "window" for
	 * store_window's part) and catchup */
	const char *first;
	int64_t catchup;
	bool is_fill; /* the rest of a body whose window is committed */
	int64_t window_k; /* store_window's k: a first page it answers */
	int64_t window_cut; /* and the ts it was cut at (016_cold.sql) */
	int64_t window_more; /* rooms the rest adds to the user's lists */
	/* in, optional: the body normalised beforehand (pre_rc and pre_err
	 * are what normalise returned), used instead of parsing it again;
	 * the caller frees it */
	struct acc_changes *pre;
	int pre_rc;
	const char *pre_err;
	/* out */
	bool ok;
	char *since;		/* committed since for the ack */
	const char *error;
	struct notice_list notices;
	size_t nevents, nbad;
	bool is_replay; /* ok: a resend of what was committed */
	size_t nstate_rows; /* syncv3_state rows its group wrote */
};

struct store_stats {
	unsigned long long msgs, acks, nacks, events, bad_events, batches;
	unsigned long long bad_bodies;
	unsigned long long pg_errors; /* statements Postgres failed */
	unsigned long long round_trips; /* waits for Postgres, in batches */
	unsigned long long covered;   /* sibling-first devices synced */
	unsigned long long order_renumbered; /* S_LATE out of float8 room */
	long long commit_us;          /* waited in COMMIT, in all batches */
};

/* A standby's store: connected and migrated, not the writer. */
struct store *store_new(const char *conninfo, const char *owner,
                        long long takeover_ms);
/*
 * One try at becoming the writer (the lock, the liveness row; a holder
 * whose row expired has its session ended): 1 writer now, 0 another
 * accumulator is, -1 error.
 */
int store_take_writer(struct store *st) WARN_UNUSED;
int64_t store_generation(const struct store *st);
/* The writer's connection broke and another accumulator took over. */
bool store_is_demoted(const struct store *st);
/* WAL insert position after the last COMMIT (the notices carry it). */
int64_t store_lsn(const struct store *st);
void store_free(struct store *st);
int store_batch_begin(struct store *st) WARN_UNUSED;
/*
 * Takes one message into the batch: the messages of a batch are applied
 * together (one statement per table) at the latest by store_batch_commit,
 * which fills in each outcome; m must stay valid until then. A message
 * Postgres rejects fails alone. Messages of one device may follow each
 * other in a batch: each sees the since the one before it set.
 */
void store_apply(struct store *st, struct store_msg *m);
/* Applies and commits; on failure every message of the batch becomes a
 * nack. */
int store_batch_commit(struct store *st) WARN_UNUSED;
void store_batch_rollback(struct store *st);
int64_t store_pos(const struct store *st);
int store_poll_state(struct store *st, const struct proto_poll_state *ps)
    WARN_UNUSED;
/*
 * The first window first (docs/DESIGN.md): commits the most recently
 * active rooms of an initial sync (at least k, and whatever sorts with
 * them) in a transaction of their own, as wm (first "window") with the
 * rooms of all in win; rest gets the other rooms and everything else of
 * all, to be applied as m->is_fill. 1: committed; 0: not done (apply
 * all as usual); win and rest are freed by store_view_free.
 */
int store_window(struct store *st, struct store_msg *wm,
    const struct acc_changes *all, struct acc_changes *win,
    struct acc_changes *rest, size_t k);
/*
 * store_window's choice: in[i] for each room of all the window takes, the
 * cut, and how many rooms of the rest would be new to user_id's lists
 * (window_more); -1 when there is no window to make, or on error.
 */
int store_window_choose(struct store *st, const char *user_id,
    const struct acc_changes *all, size_t k, bool *in, int64_t *cutp,
    int64_t *more) WARN_UNUSED;
void store_view_free(struct acc_changes *v);
/* Deletes superseded rows older than horizon_secs; returns rows or -1. */
long long store_cleanup(struct store *st, long long horizon_secs);
const struct store_stats *store_stats(const struct store *st);
void store_msg_reset(struct store_msg *m);

/* rooms.c: the room parts of a group of messages, in order */
int rooms_apply(struct store *st, struct msgctx *xs, size_t n) WARN_UNUSED;
/* Whether an event of this type moves sliding sync's bump_stamp. */
bool rooms_is_bump_type(const char *type);

/* txn.c: transaction ids of the group's events (014_txn.sql) */
int txn_write(struct store *st, struct msgctx *xs, size_t n) WARN_UNUSED;

/* apply.c: the other per-table steps of a group, in this order */
int apply_typing(struct store *st, struct msgctx *xs, size_t n) WARN_UNUSED;
int apply_receipts(struct store *st, struct msgctx *xs, size_t n)
    WARN_UNUSED;
int apply_adata(struct store *st, struct msgctx *xs, size_t n) WARN_UNUSED;
int apply_device(struct store *st, struct msgctx *xs, size_t n) WARN_UNUSED;
void apply_finish(struct store *st);

/* redact.c: the redaction algorithm, pure (redact.h) */
/* The room summary content key of a state type, or NULL (normalise.c). */
const char *acc_summary_key(const char *type);

/* redaction.c: redactions of the group's events (018_redact.sql) */
int redaction_apply(struct store *st, struct msgctx *xs, size_t n)
    WARN_UNUSED;

/* cleanup.c: superseded rows, between batches */
long long cleanup_run(struct store *st, long long horizon_secs);

/* pos.c: positions (contract 2) */
int pos_load(struct store *st) WARN_UNUSED;
int pos_reserve(struct store *st, int64_t n) WARN_UNUSED;
int64_t pos_next(struct store *st);
int pos_commit(struct store *st) WARN_UNUSED;

/* db.c: the connection and its statements (ids in store_int.h) */
int db_connect(struct store *st, int max_wait_s) WARN_UNUSED;
int db_take_writer(struct store *st) WARN_UNUSED;
int db_commit(struct store *st, const char *const *pos) WARN_UNUSED;
PGresult *db_q(struct store *st, int id, int nparams,
    const char *const *params);
int db_q0(struct store *st, int id, int nparams, const char *const *params);
/* db_q0 whose result (a row or none) apply_finish reads for m */
int db_q_later(struct store *st, struct store_msg *m, int id, int nparams,
               const char *const *params);
/* Drops the db_q_later results (a group or batch that failed). */
void db_later_clear(struct store *st);
int db_begin_later(struct store *st, const char *const *sqls, size_t n);
const char *db_sql(int id); /* statement id's text (tests) */
/* one statement of db_qv */
struct db_call {
	int id, nparams;
	const char *const *params;
};
int db_qv(struct store *st, const struct db_call *calls, size_t n,
    PGresult **out) WARN_UNUSED;
int db_exec(struct store *st, const char *tag, const char *sql);
int db_sync(struct store *st);
int db_copy(struct store *st, const char *sql, const char *data, size_t len);
struct rows;
int db_rows(struct store *st, struct rows *r, const char *copy_sql, int id);

/* ingest.c */
struct ingest;
struct ingest *ingest_new(struct event_base *base, void *zctx,
                          const struct acc_config *cfg, struct store *st,
                          struct notify *nt, void (*on_demote)(void *),
                          void *demote_arg);
void ingest_stop(struct ingest *in);
void ingest_free(struct ingest *in);
/* What ingest counted, for the metrics (prom.c); loop thread only. */
struct ingest_counts {
	unsigned long long applied, replayed, rejected, events, to_device;
	unsigned long long state_rows, bad_msgs;
	size_t queued;
	long long loop_stall_max_ms; /* longest the loop was held */
	unsigned long long pub_slices, frees_detached; /* pub_run's */
	struct store_stats st; /* after the store's last batch */
	struct metric_hist batch_size, commit_secs;
};
extern const double ingest_batch_le[], ingest_commit_le[];
extern const size_t ingest_batch_nle, ingest_commit_nle;
void ingest_counts(struct ingest *in, struct ingest_counts *out);
bool ingest_is_stopping(const struct ingest *in);

/* active.c: standby or writer (the writer lock, the liveness row) */
struct active;
struct active *active_new(struct event_base *base, void *zctx,
                          const struct acc_config *cfg);
void active_stop(struct active *a);
void active_free(struct active *a);

/* prom.c: the metrics registry and its listener (README, Metrics) */
struct acc_prom;
struct acc_prom *prom_new(struct event_base *base, const char *addr,
                          struct ingest *in, struct notify *nt);
void prom_free(struct acc_prom *ap);

#endif
