/*
 * poller.h: the poller's table of contents. One process holds many devices
 * (user_id, device_id), each with exactly one v2 /sync request in flight,
 * driven by libcurl's multi socket API on one libevent loop. Devices are
 * assigned through Postgres leases (lease.c), responses go to the
 * accumulator over DEALER -> ROUTER and the since only advances on its ack
 * (publish.c, DESIGN.md contract 1).
 */
#ifndef SYNCV3_POLLER_H
#define SYNCV3_POLLER_H

#include <sys/queue.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <libpq-fe.h>

#include "config.h"
#include "jsonv.h"
#include "map.h"
#include "metrics.h"
#include "proto.h"

#define POLLER_FILTER "{\"room\":{\"timeline\":{\"limit\":50}}}"
/*
 * A sibling-first sync (docs/DESIGN.md, "Sibling devices"): no rooms, so
 * only to-device, device lists, key counts and account data. "rooms": []
 * is the spec's way (an empty list of rooms to include); Synapse also
 * reads "*" in not_rooms as "every room" and then skips the room part of
 * the sync altogether. A server that took "*" for a room id would still
 * send no rooms because of the empty list.
 */
#define POLLER_SIBLING_FILTER "{\"room\":{\"rooms\":[],\"not_rooms\":[\"*\"]}}"
#define POLLER_USER_AGENT "syncv3-poller"
#define LEASE_APP_NAME "syncv3-poller" /* counts live pollers */
#define POLLER_FP_LEN 16               /* token_hash prefix kept per device */
#define POLLER_ERR_MAX 120 /* poll_error length we keep and report */

struct poller_config {
	char *db;
	char *server;
	char *secret;
	char *ingest;
	char *poller_id;
	char *log_level;
	long long lease_secs;
	long long takeover_ms;
	long long poll_timeout_ms;
	long long initial_timeout_s;
	long long max_initial;
	long long backoff_base_ms;
	long long backoff_cap_ms;
	long long idle_secs;
	long long max_body;
	long long max_devices;
	long long ack_timeout_ms;
	long long low_speed_limit;
	long long low_speed_secs;
	char *prom;                /* metrics listener host:port; empty: none */
	long long sibling_wait_ms; /* 0: no sibling-first syncs */
	long long first_timeline;  /* timeline.limit of a device's first sync */
};

/* Where a device is in its cycle; exactly one of these at a time. */
enum dev_cycle {
	DEV_WAITING,  /* queued for an initial-sync slot */
	DEV_POLLING,  /* a v2 request is in flight */
	DEV_ACK_WAIT, /* body sent to the accumulator, waiting for its ack */
	DEV_BACKOFF,  /* timer armed, then poll again */
	DEV_STOPPED,  /* expired, lost or released; about to be freed */
};

struct verdict_info;
struct json_tokener;
struct json_object;

/* A /sync body validated as it arrives (policy.c, policy_scan_*). */
struct body_scan {
	struct jsonv v; /* v.err: why refused; NULL: fine so far */
	size_t len;     /* bytes fed */
};

struct device {
	struct poller *p;
	char *key;                  /* in the device table (map_key3) */
	TAILQ_ENTRY(device) entry;  /* all devices */
	TAILQ_ENTRY(device) waitq;  /* waiting for an initial slot */
	TAILQ_ENTRY(device) dirtyq; /* poll state to write */
	char *user_id;
	char *device_id;
	char *token;
	char *since;                /* committed since we poll with */
	char fp[POLLER_FP_LEN + 1]; /* token_hash prefix */
	enum dev_cycle cycle;
	enum dev_state ps; /* last state reported (proto.h) */
	bool is_dirty;
	bool is_initial_slot;   /* holds one of max_initial */
	bool is_releasing;      /* shed: release instead of polling */
	bool has_inflight_easy; /* easy handle is in the multi */
	unsigned hb_gen;        /* last heartbeat that returned it */
	int attempt;            /* consecutive failures */
	int send_attempt;       /* resends of the pending body */
	int unchanged_attempt;  /* answers in a row that did not move */
	long retry_after_s;     /* Retry-After header of this response */
	CURL *easy;             /* reused for every request */
	void (*sync_done)(struct device *, struct verdict_info *); /* sync.c */
	struct curl_slist *headers;
	struct event *timer;      /* backoff and ack-resend */
	struct event *stall_ev;   /* low-speed check of the response */
	struct event *resume_ev;  /* unpauses a response paused by write_cb */
	long long req_start_ms;   /* when the request went out */
	size_t rx_bytes, rx_mark; /* received; at the last stall check */
	bool is_receiving;        /* the response has begun */
	char *body;               /* response, kept until acked */
	struct body_scan scan;    /* of body, fed by write_cb */
	size_t body_len, body_cap;
	bool is_body_mapped;        /* body is an mmap (sync.c, body_grow) */
	char *next_batch;           /* pending, awaiting ack */
	char error[POLLER_ERR_MAX]; /* last error, reported with backoff */
	long long retry_at_ms;
	/* sibling devices (docs/DESIGN.md, "Sibling devices") */
	bool is_sibling_first;  /* the initial sync asks for no rooms */
	bool is_refill_due;     /* no sibling caught up: full initial */
	int64_t catchup;        /* a catch-up the next request carries */
	int64_t req_catchup;    /* the one the current request carries */
	const char *req_first;  /* "", "sibling", "refill": this request */
	struct event *cover_ev; /* sibling_wait_ms after a sibling-first */
};

TAILQ_HEAD(device_q, device);

/*
 * What device.c asks of the lease layer above it (lease.c sets them in
 * lease_init): the state machine reports, it does not reach up, so the
 * files only call down (lease.c -> device.c -> sync.c, publish.c).
 */
struct dev_owner {
	/* Gives d's lease back between two polls; d is dropped. */
	void (*release)(struct device *d);
	/* After a nack: the committed since from Postgres; 0 or -1. */
	int (*reload_since)(struct device *d);
	/* Records a final state (expired) and gives the lease back; 0 or -1. */
	int (*stop)(struct device *d, enum dev_state state, const char *error);
	/* False once this poller may have lost its devices: start nothing. */
	bool (*may_poll)(struct poller *p);
	/* Whether d's initial sync counts as stored: 1, 0 or -1 (unknown). */
	int (*is_synced)(struct device *d);
};

/* sync.c tells its caller a request ended; vi->next_batch can be taken. */
typedef void (*sync_done_fn)(struct device *d, struct verdict_info *vi);
/* publish.c hands each ack, and each reconnection, to its caller. */
typedef void (*publish_ack_fn)(struct poller *p,
                               const struct proto_sync_ack *ack);
typedef void (*publish_connect_fn)(struct poller *p);

struct poller_stats {
	unsigned long long polls_ok; /* 200 + acked */
	unsigned long long polls_failed;
	unsigned long long acks;
	unsigned long long nacks;
	unsigned long long resends;
};

/* One loop round's time for write_cb (sync.c); zeroed to start. */
struct policy_slice {
	struct timeval round; /* the loop's cached time: names the round */
	long long start_us;   /* CLOCK_MONOTONIC at the round's first call */
};

struct poller {
	struct poller_config cfg;
	struct event_base *base;
	struct curl_ev *curl;
	/* device.c */
	struct dev_owner owner; /* set by lease_init */
	struct map table;       /* device key -> struct device */
	size_t ndevices;
	struct device_q devices;
	struct device_q waiting;
	struct device_q dead; /* dropped, freed by the next loop round */
	bool is_reap_armed;   /* an event_base_once for the dead is pending */
	int initial_inflight;
	/* lease.c */
	PGconn *pg;
	struct event *pg_ev;
	struct event *claim_ev;     /* periodic */
	struct event *claim_now_ev; /* one-shot: NOTIFY, more to claim */
	struct event *hb_ev;
	struct event *flush_ev;
	struct device_q dirty;
	unsigned hb_gen;
	long long hb_ok_ms; /* last successful heartbeat */
	long long share;    /* fair share of the active devices */
	size_t nreleasing;  /* devices marked is_releasing */
	bool is_first_claim;
	struct event *live_ev; /* liveness renewal, every takeover_ms / 4 */
	bool is_lapsed;        /* devices dropped: liveness not kept */
	/* live.c */
	long long incarnation; /* ours in syncv3_pollers */
	long long live_ok_ms;  /* when the last good renewal was sent */
	bool has_id_lock;
	/* publish.c */
	publish_ack_fn on_ack;
	publish_connect_fn on_connect;
	void *zctx;
	void *dealer;
	struct zmq_ev *zev;
	void *monitor; /* PAIR on the dealer's socket monitor */
	struct zmq_ev *mev;
	uint64_t seq;
	/* sync.c */
	struct policy_slice slice; /* write_cb's share of this loop round */
	/* main.c */
	char *first_filter; /* policy_first_filter(cfg.first_timeline) */
	struct event *stats_ev;
	bool is_stopping;
	struct poller_stats stats;
	/* prom.c: always counted, served when SYNCV3_PROM is set */
	struct metrics *metrics;
	struct metrics_http *prom;
	struct metric *m_backoffs, *m_latency, *m_status200;
	struct event *lag_ev;  /* ticks every LAG_TICK_MS */
	long long lag_last_us; /* the last tick; 0: none yet */
	long long lag_max_ms;  /* longest loop stall seen */
};

/* policy.c: pure decisions, unit-tested without a network */
enum verdict {
	V_OK,        /* 200 with a JSON body carrying next_batch */
	V_EXPIRED,   /* token rejected: stop polling */
	V_RATELIMIT, /* 429: wait retry_ms */
	V_RETRY,     /* 5xx, network, bad body: exponential backoff */
};
struct verdict_info {
	enum verdict verdict;
	long long retry_ms; /* V_RATELIMIT */
	char *next_batch;   /* V_OK: new string, caller frees */
	bool is_empty;      /* V_OK: no sections with content */
	char error[POLLER_ERR_MAX];
};
enum ack_action {
	ACK_ADVANCE, /* committed: poll with next_batch */
	ACK_STALE,   /* about an older message: ignore */
	ACK_RELOAD,  /* rejected: reload since, poll again */
};
uint32_t policy_backoff_ms(int attempt, uint32_t base_ms, uint32_t cap_ms,
                           uint32_t rnd);
char *policy_sync_url(const char *server, const char *since, long timeout_ms,
                      const char *filter);
void policy_classify(CURLcode res, long status, const char *body, size_t len,
                     long retry_after_s, struct verdict_info *out);
void policy_classify_scan(CURLcode res, long status, const char *body,
                          size_t len, long retry_after_s,
                          struct body_scan *scan, struct verdict_info *out);
int policy_scan_body(const char *buf, size_t len, char **next_batch);
void policy_scan_init(struct body_scan *s);
void policy_scan_feed(struct body_scan *s, const char *buf, size_t len);
int policy_scan_end(struct body_scan *s, char **next_batch, bool *is_empty);
void policy_scan_free(struct body_scan *s);
bool policy_slice_over(struct policy_slice *s, const struct timeval *round,
                       long long now_us, long long budget_us);
bool policy_is_unchanged(const char *since, const struct verdict_info *vi,
                         long long elapsed_ms, long long timeout_ms);
uint32_t policy_unchanged_ms(int attempt, uint32_t base_ms, uint32_t cap_ms,
                             long long timeout_ms, uint32_t rnd);
long long policy_request_timeout_ms(bool is_initial, long long poll_ms,
                                    long long initial_s);
enum ack_action policy_ack(const char *since_in, const char *next_batch,
                           bool ok, const char *ack_since, const char *error);
long long policy_share(long long active, long long live, long long max);
bool policy_claim_more(long long n, long long held, long long share,
                       long long batch);
char *policy_first_filter(long long timeline_limit);

/* device.c: device table and per-device state machine */
void device_init(struct poller *p);
void device_shutdown(struct poller *p);
struct device *device_find(struct poller *p, const char *user_id,
                           const char *device_id);
struct device *device_add(struct poller *p, const char *user_id,
                          const char *device_id, char *token, const char *since,
                          const char *fp);
void device_start(struct device *d);
void device_replace_token(struct device *d, char *token, const char *fp,
                          const char *since);
void device_drop(struct device *d);
void device_set_ps(struct device *d, enum dev_state ps, const char *error);
void device_backoff(struct device *d, long long delay_ms);
void device_on_response(struct device *d, struct verdict_info *vi);
void device_on_ack(struct device *d, bool ok, const char *since,
                   const char *error);
void device_ack_timeout(struct device *d);
void device_ack_received(struct poller *p, const struct proto_sync_ack *ack);
void device_resend_pending(struct poller *p);
void device_release_slot(struct device *d);
void device_mark_dirty(struct device *d);
void device_catchup(struct poller *p, const char *user_id, int64_t pos);
void device_cover_wait(struct device *d);
void device_pause_all(struct poller *p);
void device_resume_all(struct poller *p);

/* sync.c: the v2 request of one device */
int sync_start(struct device *d, sync_done_fn done) WARN_UNUSED;
void sync_abort(struct device *d);
void sync_easy_free(struct device *d);
void sync_body_free(struct device *d);

/* lease_sql.c: every statement lease.c runs (prepared by a unit test) */
enum lease_stmt_id {
	LS_SHARE,
	LS_CLAIM,
	LS_HEARTBEAT,
	LS_RELEASE,
	LS_RELEASE_ALL,
	LS_FLUSH,
	LS_STOP,
	LS_TOKEN,
	LS_SINCE,
	LS_LIVE_LOCK,
	LS_LIVE_READ,
	LS_LIVE_BEGIN,
	LS_LIVE_RENEW,
	LS_LIVE_END,
	LS_SYNCED,
	LS_COUNT
};
struct lease_stmt {
	const char *name;
	const char *sql;
};
extern const struct lease_stmt lease_stmts[LS_COUNT];
PGresult *lease_q(struct poller *p, enum lease_stmt_id id, int n,
                  const char *const *params);

/* live.c: the id lock and this poller's liveness row (below lease.c) */
enum live_renewal {
	LIVE_OK,        /* renewed */
	LIVE_PEER_DEAD, /* renewed; an expired poller still holds leases */
	LIVE_LOST,      /* our row expired or superseded: stop */
	LIVE_FAILED,    /* not renewed this time (Postgres unreachable) */
};
int live_lock(struct poller *p);
long long live_begin(struct poller *p);
enum live_renewal live_renew(struct poller *p);
bool live_may_poll(struct poller *p);
void live_end(struct poller *p);

/* lease.c: Postgres leases, LISTEN/NOTIFY, poll state writes */
void lease_init(struct poller *p);
void lease_shutdown(struct poller *p);
void lease_flush(struct poller *p);

/* publish.c: DEALER to the accumulator */
void publish_init(struct poller *p, publish_ack_fn on_ack,
                  publish_connect_fn on_connect);
void publish_shutdown(struct poller *p);
int publish_sync_raw(struct device *d, const char *since_in) WARN_UNUSED;
void publish_poll_state(struct device *d);

/* prom.c: the metrics registry and its listener (README, Metrics) */
void prom_init(struct poller *p);
void prom_response(struct poller *p, long status, long long ms);
void prom_shutdown(struct poller *p);

#endif
