/*
 * Every message between syncv3 daemons is declared here; this file is the
 * protocol's documentation. Bump PROTO_VERSION on ANY change to this file
 * or to a meta schema below.
 *
 * Envelope: a ZeroMQ multipart message of four frames (a ROUTER socket
 * adds the peer's routing id in front):
 *   1. topic: short ASCII string, for SUB prefix filtering ("notice.room")
 *   2. header: 24 bytes, big-endian, written field by field:
 *        magic u16 (0x4D58) | version u8 | flags u8 | type u16 |
 *        reserved u16 | seq u64 | sent_ms u64
 *   3. meta: a small JSON object (at most PROTO_META_MAX bytes)
 *   4. payload: raw bytes, possibly empty (at most PROTO_PAYLOAD_MAX)
 * Frames are not NUL-terminated; decoders always work from lengths.
 */
#ifndef SYNCV3_PROTO_H
#define SYNCV3_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>
#include <zmq.h>

#define PROTO_VERSION 8
#define PROTO_MAGIC 0x4D58
#define PROTO_HDR_LEN 24
#define PROTO_META_MAX (64 * 1024)
#define PROTO_PAYLOAD_MAX ((size_t)512 * 1024 * 1024)
#define PROTO_ROUTE_MAX 256
#define PROTO_TYPING_MAX 1024	/* user ids in a typing notice */
/* bytes of to-device messages a PROTO_NOTICE_TO_DEVICE carries, at most */
#define PROTO_TD_BYTES (16 * 1024)

enum proto_type {
	/*
	 * 100s: poller -> accumulator, DEALER -> ROUTER.
	 *
	 * PROTO_SYNC_RAW: one v2 /sync response, forwarded untouched.
	 * meta {user_id: str, device_id: str, since_in: str ("" for an
	 * initial sync), next_batch: str}; payload: the response body.
	 * Answered by exactly one PROTO_SYNC_ACK (contract 1). The
	 * accumulator applies it only if the device's stored since equals
	 * since_in, so a resend is harmless.
	 * Optional meta (docs/DESIGN.md, "Sibling devices"): first: str,
	 * "sibling" for a first sync asked without rooms because another
	 * device of the user is stored (the accumulator then waits for a
	 * sibling to catch up before the device counts as synced), or
	 * "refill" for a full initial sync whose rooms and account data are
	 * stored while the device's since and to-device stay as they are
	 * (next_batch then equals since_in); absent or "" otherwise.
	 * catchup: int, a PROTO_PG_CATCHUP_CHANNEL position this request was
	 * started after (0 or absent: none).
	 */
	PROTO_SYNC_RAW = 100,
	/*
	 * PROTO_POLL_STATE: the poller's view of a device changed.
	 * meta {user_id, device_id, state: "polling"|"backoff"|"expired",
	 * error: str (may be ""), retry_at_ms: int (wall clock, 0 if none),
	 * token_fp: str (the first 16 hex digits of the token_hash of the
	 * token that was polled with: a state learnt with a token the
	 * device no longer has, e.g. a 401 for a replaced token, is
	 * dropped)};
	 * no payload, no answer. The accumulator records it and publishes
	 * PROTO_NOTICE_DEVICE so waiting api requests learn of expiry.
	 */
	PROTO_POLL_STATE,

	/*
	 * 200s: accumulator -> api, PUB -> SUB. Hints only (contract 3):
	 * header seq counts notices per accumulator run (starting at 1), and
	 * meta.epoch identifies the run, so a subscriber can detect a gap
	 * and re-read positions from Postgres.
	 *
	 * All notices: meta {epoch: int, pos: int, lsn: int} plus the ids
	 * below. lsn (version 4) is the WAL insert position, in bytes, the
	 * primary had after the COMMIT that made pos current (0 before the
	 * run's first commit): an api reading a streaming replica
	 * (SYNCV3_DB_READ) reads there once the replica has replayed that
	 * far (docs/INTERNALS.md, "Reads on a replica").
	 */
	PROTO_NOTICE_ROOM = 200, /* {room_id}: events in a room */
	/*
	 * {room_id, user_ids}: user_ids is the room's whole typing list
	 * (an array of at most PROTO_TYPING_MAX user id strings) as stored
	 * at pos, the typing row's position; the api answers typing from it
	 * without re-reading Postgres (contract 3, ephemeral data). Also
	 * early (version 7): the header seq of the PROTO_NOTICE_TYPING_EARLY
	 * that sent this list before the commit, 0 when none did.
	 */
	PROTO_NOTICE_TYPING,
	/*
	 * {user_id, device_id, after} (after: version 8): the device has
	 * to-device messages or device list changes up to pos. The payload
	 * (version 8) is the device's to-device messages at positions
	 * (after, pos], each as stored (syncv3_to_device.json, never with a
	 * NUL) and followed by one NUL, at the consecutive positions
	 * pos - k + 1 .. pos for k messages: the api answers a waiting
	 * client from it without reading them back. Those are all of the
	 * device's messages in (after, pos]; after == pos when the notice
	 * carries none (a device list change, or messages over
	 * PROTO_TD_BYTES in all), which says nothing about any position.
	 * 0 <= after <= pos - k.
	 */
	PROTO_NOTICE_TO_DEVICE,
	PROTO_NOTICE_ACCOUNT_DATA, /* {user_id, room_id ("" = global)} */
	PROTO_NOTICE_MEMBERSHIP,   /* {user_id, room_id, membership} */
	PROTO_NOTICE_DEVICE,       /* {user_id, device_id, state} */
	PROTO_NOTICE_HEARTBEAT,    /* {}: sent every second when idle */
	/*
	 * {room_id, user_ids} (version 7): a room's typing list as a body
	 * just parsed reports it, sent before that body's batch commits
	 * (docs/DESIGN.md contract 3, the exception for typing). pos is the
	 * last committed position, as a heartbeat's, not one of its own;
	 * the header seq orders the list, and the PROTO_NOTICE_TYPING that
	 * later stores it names that seq in meta.early.
	 */
	PROTO_NOTICE_TYPING_EARLY,

	/*
	 * 300s: accumulator -> poller, ROUTER -> DEALER.
	 *
	 * PROTO_SYNC_ACK: answer to PROTO_SYNC_RAW.
	 * meta {user_id, device_id, ok: bool, since: str, error: str}.
	 * ok=true: the response carrying `since` (its next_batch) is
	 * committed. ok=false (nack): nothing was stored; `since` is the
	 * device's committed since ("" if unknown) and `error` says why
	 * ("since mismatch", "bad body", "db error", ...). A poller reloads
	 * the since on a mismatch and retries with backoff otherwise.
	 */
	PROTO_SYNC_ACK = 300,
};

/*
 * A device's poll state: the text stored in syncv3_devices.poll_state
 * (written by the poller's lease flush, reset to "new" by the api when a
 * token is registered again), carried in PROTO_POLL_STATE.state and in
 * PROTO_NOTICE_DEVICE.state, and read by the api to answer an expired
 * device with M_UNKNOWN_TOKEN. The names are the stored values: never
 * rename one. dev_state_name() and dev_state_parse() convert.
 */
enum dev_state {
	DEV_STATE_NEW,     /* "new": registered, no poller has reported */
	DEV_STATE_POLLING, /* "polling": a poller holds it and polls */
	DEV_STATE_BACKOFF, /* "backoff": the last poll failed; retry_at */
	DEV_STATE_EXPIRED, /* "expired": the homeserver refused the token */
	DEV_STATE_IDLE,    /* "idle": unused past SYNCV3_IDLE_SECS */
	/*
	 * "synced": never stored; a PROTO_NOTICE_DEVICE the accumulator sends
	 * when it has committed a device's (non-initial) response.
	 */
	DEV_STATE_SYNCED,
};

/*
 * Postgres NOTIFY, api -> pollers (not ZeroMQ: it rides on the database
 * both already use, so a device registered while no poller runs is still
 * found by the next claim). The api sends it in the transaction that
 * registers or re-registers a device, so it is delivered only on COMMIT;
 * payload "<user_id> <device_id>". Every poller LISTENs and answers any
 * notification with an immediate claim round; the payload is for logs,
 * the claim reads syncv3_devices. A hint only, like the notices: a lost
 * one costs at most the claim interval.
 */
#define PROTO_PG_DEVICES_CHANNEL "syncv3_devices"

/*
 * Postgres NOTIFY, accumulator -> pollers: a device's first sync was
 * stored without rooms (PROTO_SYNC_RAW first "sibling"), and it waits for
 * a sibling's poll that started after this commit. Payload
 * "<user_id> <pos>", pos being the device's syncv3_devices.cover_pos. A
 * poller holding another device of the user restarts its poll at once
 * (timeout 0) and sends the body with meta catchup = pos. Sent in the
 * committing transaction, so it is delivered only on COMMIT.
 */
#define PROTO_PG_CATCHUP_CHANNEL "syncv3_catchup"

enum proto_err {
	PROTO_OK = 0,
	PROTO_ESHORT = -1,	/* a frame is missing or too short */
	PROTO_EMAGIC = -2,	/* not our magic */
	PROTO_EVERSION = -3,	/* another protocol version */
	PROTO_ETYPE = -4,	/* unknown or unexpected type */
	PROTO_EMETA = -5,	/* meta not a JSON object or key missing */
	PROTO_ESIZE = -6,	/* a frame is over its limit */
	PROTO_EFRAMES = -7,	/* wrong number of frames */
	PROTO_EIO = -8,		/* zmq send/recv failed (errno set) */
};

struct proto_hdr {
	uint16_t magic;
	uint8_t version;
	uint8_t flags;
	uint16_t type;
	uint16_t reserved;
	uint64_t seq;
	uint64_t sent_ms;
};

/* A received message; pointers borrow from the zmq frames. */
struct proto_msg {
	zmq_msg_t frames[5];
	int nframes;
	bool has_route;
	struct proto_hdr hdr;
	const char *topic;
	size_t topic_len;
	struct json_object *meta; /* owned, released by proto_msg_close */
	const char *payload;
	size_t payload_len;
};

struct proto_sync_raw {
	const char *user_id;
	const char *device_id;
	const char *since_in;
	const char *next_batch;
	const char *body;
	size_t body_len;
	const char *first;	/* "", "sibling" or "refill" (meta first) */
	int64_t catchup;	/* meta catchup, 0: none */
};

struct proto_poll_state {
	const char *user_id;
	const char *device_id;
	const char *state;
	const char *error;
	int64_t retry_at_ms;
	const char *token_fp;	/* token_hash prefix of the token polled with */
};

struct proto_sync_ack {
	const char *user_id;
	const char *device_id;
	bool ok;
	const char *since;
	const char *error;
};

struct proto_notice {
	enum proto_type type;
	uint64_t seq;		/* from the header */
	int64_t epoch;
	int64_t pos;
	const char *room_id;	/* NULL when not part of the type */
	const char *user_id;
	const char *device_id;
	const char *membership;
	const char *state;
	/* PROTO_NOTICE_TYPING: a JSON array of user id strings (text) */
	const char *user_ids;
	int64_t lsn; /* meta.lsn, >= 0 */
	/* PROTO_NOTICE_TYPING: meta.early, >= 0 */
	int64_t early;
	/* PROTO_NOTICE_TO_DEVICE: meta.after, and the messages in the
	 * payload (NUL after each, td_count of them) */
	int64_t after;
	const char *td;
	size_t td_len;
	size_t td_count;
};

/* proto.c: envelope */
const char *proto_type_name(int type);
/* The stored name of a device state ("new", "expired", ...), "?" if none. */
const char *dev_state_name(enum dev_state s);
/* The state a stored name means, or -1 when it names none. */
int dev_state_parse(const char *name);
const char *proto_topic(int type);
const char *proto_strerror(int err);
void proto_hdr_encode(const struct proto_hdr *h, uint8_t out[PROTO_HDR_LEN]);
int proto_hdr_decode(const uint8_t *buf, size_t len, struct proto_hdr *h);
/* Decodes frames already in msg->frames (used by proto_recv and fuzzing). */
int proto_decode(struct proto_msg *msg);
/*
 * Sends one message. route/route_len: the ROUTER peer id, or NULL. The
 * payload is copied unless free_fn is given, in which case zmq owns it.
 */
int proto_send(void *sock, const void *route, size_t route_len, int type,
    uint64_t seq, struct json_object *meta, const void *payload,
    size_t payload_len, zmq_free_fn *free_fn);
/* Receives one message without blocking; PROTO_EIO with EAGAIN if none. */
int proto_recv(void *sock, bool has_route, struct proto_msg *msg);
void proto_msg_close(struct proto_msg *msg);

/* proto_sync.c: poller <-> accumulator */
int proto_send_sync_raw(void *sock, uint64_t seq,
    const struct proto_sync_raw *m);
int proto_recv_sync_raw(const struct proto_msg *msg, struct proto_sync_raw *out);
int proto_send_poll_state(void *sock, uint64_t seq,
    const struct proto_poll_state *m);
int proto_recv_poll_state(const struct proto_msg *msg,
    struct proto_poll_state *out);
int proto_send_sync_ack(void *sock, const void *route, size_t route_len,
    uint64_t seq, const struct proto_sync_ack *m);
int proto_recv_sync_ack(const struct proto_msg *msg, struct proto_sync_ack *out);

/* proto_notice.c: accumulator -> api */
int proto_send_notice(void *sock, const struct proto_notice *n);
int proto_recv_notice(const struct proto_msg *msg, struct proto_notice *out);

#endif
