/*
 * The proto codec: round trips of every message over a real ZeroMQ pair,
 * and rejection of truncated, oversized, wrong-version, wrong-magic and
 * wrong-frame-count input without crashing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "proto.h"

struct pair {
	void *ctx, *a, *b;
};

static int
pair_setup(void **state)
{
	static int n;
	char ep[64];
	struct pair *p = calloc(1, sizeof(*p));

	snprintf(ep, sizeof(ep), "inproc://t%d", n++);
	p->ctx = zmq_ctx_new();
	p->b = zmq_socket(p->ctx, ZMQ_PAIR);
	p->a = zmq_socket(p->ctx, ZMQ_PAIR);
	assert_int_equal(zmq_bind(p->b, ep), 0);
	assert_int_equal(zmq_connect(p->a, ep), 0);
	*state = p;
	return 0;
}

static int
pair_teardown(void **state)
{
	struct pair *p = *state;

	zmq_close(p->a);
	zmq_close(p->b);
	zmq_ctx_term(p->ctx);
	free(p);
	return 0;
}

static void
test_hdr_roundtrip(void **state)
{
	struct proto_hdr h = {PROTO_MAGIC, PROTO_VERSION, 3, PROTO_SYNC_ACK,
	    0, 0x0102030405060708ull, 1234567890123ull}, g;
	uint8_t buf[PROTO_HDR_LEN];

	(void)state;
	proto_hdr_encode(&h, buf);
	/* Big-endian on the wire, field by field. */
	assert_int_equal(buf[0], 0x4D);
	assert_int_equal(buf[1], 0x58);
	assert_int_equal(buf[4], PROTO_SYNC_ACK >> 8);
	assert_int_equal(buf[8], 0x01);
	assert_int_equal(buf[15], 0x08);
	assert_int_equal(proto_hdr_decode(buf, sizeof(buf), &g), PROTO_OK);
	assert_int_equal(g.type, PROTO_SYNC_ACK);
	assert_int_equal(g.flags, 3);
	assert_true(g.seq == h.seq && g.sent_ms == h.sent_ms);
}

static void
test_hdr_rejects(void **state)
{
	struct proto_hdr h = {PROTO_MAGIC, PROTO_VERSION, 0, PROTO_SYNC_RAW,
	    0, 1, 2}, g;
	uint8_t buf[PROTO_HDR_LEN + 1];

	(void)state;
	proto_hdr_encode(&h, buf);
	for (size_t n = 0; n < PROTO_HDR_LEN; n++)
		assert_int_equal(proto_hdr_decode(buf, n, &g), PROTO_ESHORT);
	assert_int_equal(proto_hdr_decode(buf, PROTO_HDR_LEN + 1, &g),
	    PROTO_ESIZE);
	buf[2] = PROTO_VERSION + 1;
	assert_int_equal(proto_hdr_decode(buf, PROTO_HDR_LEN, &g),
	    PROTO_EVERSION);
	buf[2] = PROTO_VERSION;
	buf[0] = 0;
	assert_int_equal(proto_hdr_decode(buf, PROTO_HDR_LEN, &g),
	    PROTO_EMAGIC);
	buf[0] = 0x4D;
	buf[4] = 0x7f;
	assert_int_equal(proto_hdr_decode(buf, PROTO_HDR_LEN, &g),
	    PROTO_ETYPE);
}

static void
test_sync_raw_roundtrip(void **state)
{
	struct pair *p = *state;
	/* The body may contain NULs and is forwarded byte for byte. */
	static const char body[] = "{\"next_batch\":\"s1\"}\0tail";
	struct proto_sync_raw in = {"@a:hs", "DEV",        "", "s1",
	                            body,    sizeof(body), "", 0},
	                      out;
	struct proto_msg msg;

	assert_int_equal(proto_send_sync_raw(p->a, 7, &in), PROTO_OK);
	assert_int_equal(proto_recv(p->b, false, &msg), PROTO_OK);
	assert_int_equal(msg.hdr.seq, 7);
	assert_int_equal(proto_recv_sync_raw(&msg, &out), PROTO_OK);
	assert_string_equal(out.user_id, "@a:hs");
	assert_string_equal(out.device_id, "DEV");
	assert_string_equal(out.since_in, "");
	assert_string_equal(out.next_batch, "s1");
	assert_int_equal(out.body_len, sizeof(body));
	assert_memory_equal(out.body, body, sizeof(body));
	/* Decoding as another message type fails cleanly. */
	struct proto_sync_ack ack;
	assert_int_equal(proto_recv_sync_ack(&msg, &ack), PROTO_ETYPE);
	proto_msg_close(&msg);
}

/* The optional first and catchup meta keys: sent, read, checked. */
static void
test_sync_raw_first(void **state)
{
	struct pair *p = *state;
	struct proto_sync_raw in = {"@a:hs", "DEV", "",        "s1",
	                            "{}",    2,     "sibling", 42},
	                      out;
	struct proto_msg msg;
	struct proto_hdr h = {
	    PROTO_MAGIC, PROTO_VERSION, 0, PROTO_SYNC_RAW, 0, 1, 2};
	uint8_t hdr[PROTO_HDR_LEN];
	static const char *bad[] = {
	    "{\"user_id\":\"u\",\"device_id\":\"d\",\"since_in\":\"\","
	    "\"next_batch\":\"s\",\"first\":\"other\"}",
	    "{\"user_id\":\"u\",\"device_id\":\"d\",\"since_in\":\"\","
	    "\"next_batch\":\"s\",\"catchup\":\"7\"}",
	    "{\"user_id\":\"u\",\"device_id\":\"d\",\"since_in\":\"\","
	    "\"next_batch\":\"s\",\"catchup\":-1}",
	};
	const char *f[4];
	size_t l[4];

	assert_int_equal(proto_send_sync_raw(p->a, 7, &in), PROTO_OK);
	assert_int_equal(proto_recv(p->b, false, &msg), PROTO_OK);
	assert_int_equal(proto_recv_sync_raw(&msg, &out), PROTO_OK);
	assert_string_equal(out.first, "sibling");
	assert_int_equal(out.catchup, 42);
	proto_msg_close(&msg);
	/* absent: "" and 0 */
	in.first = "";
	in.catchup = 0;
	assert_int_equal(proto_send_sync_raw(p->a, 8, &in), PROTO_OK);
	assert_int_equal(proto_recv(p->b, false, &msg), PROTO_OK);
	assert_false(json_object_object_get_ex(msg.meta, "first", NULL));
	assert_int_equal(proto_recv_sync_raw(&msg, &out), PROTO_OK);
	assert_string_equal(out.first, "");
	assert_int_equal(out.catchup, 0);
	proto_msg_close(&msg);
	proto_hdr_encode(&h, hdr);
	f[0] = "sync.raw", l[0] = 8;
	f[1] = (const char *)hdr, l[1] = sizeof(hdr);
	f[3] = "", l[3] = 0;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		f[2] = bad[i], l[2] = strlen(bad[i]);
		for (int k = 0; k < 4; k++)
			zmq_send(p->a, f[k], l[k], k < 3 ? ZMQ_SNDMORE : 0);
		assert_int_equal(proto_recv(p->b, false, &msg), PROTO_OK);
		assert_int_equal(proto_recv_sync_raw(&msg, &out), PROTO_EMETA);
		proto_msg_close(&msg);
	}
}

static void
test_ack_and_state_roundtrip(void **state)
{
	struct pair *p = *state;
	struct proto_sync_ack a = {"@a:hs", "D", false, "s9", "since mismatch"},
			      ga;
	struct proto_poll_state s = {"@a:hs", "D", "expired", "401", 0,
	    "0123456789abcdef"}, gs;
	struct proto_msg msg;

	assert_int_equal(proto_send_sync_ack(p->a, NULL, 0, 1, &a), PROTO_OK);
	assert_int_equal(proto_recv(p->b, false, &msg), PROTO_OK);
	assert_int_equal(proto_recv_sync_ack(&msg, &ga), PROTO_OK);
	assert_false(ga.ok);
	assert_string_equal(ga.since, "s9");
	assert_string_equal(ga.error, "since mismatch");
	proto_msg_close(&msg);

	assert_int_equal(proto_send_poll_state(p->a, 2, &s), PROTO_OK);
	assert_int_equal(proto_recv(p->b, false, &msg), PROTO_OK);
	assert_int_equal(proto_recv_poll_state(&msg, &gs), PROTO_OK);
	assert_string_equal(gs.state, "expired");
	assert_string_equal(gs.token_fp, "0123456789abcdef");
	proto_msg_close(&msg);
}

static void
test_notice_roundtrip(void **state)
{
	struct pair *p = *state;
	struct proto_notice n = {.type = PROTO_NOTICE_MEMBERSHIP, .seq = 42,
	    .epoch = 5, .pos = 99, .room_id = "!r:hs", .user_id = "@u:hs",
	    .membership = "join"}, g;
	struct proto_msg msg;

	assert_int_equal(proto_send_notice(p->a, &n), PROTO_OK);
	assert_int_equal(proto_recv(p->b, false, &msg), PROTO_OK);
	assert_int_equal(msg.topic_len, strlen("notice.membership"));
	assert_memory_equal(msg.topic, "notice.membership", msg.topic_len);
	assert_int_equal(proto_recv_notice(&msg, &g), PROTO_OK);
	assert_int_equal(g.seq, 42);
	assert_int_equal(g.pos, 99);
	assert_int_equal(g.epoch, 5);
	assert_string_equal(g.room_id, "!r:hs");
	assert_string_equal(g.membership, "join");
	assert_null(g.device_id);
	proto_msg_close(&msg);
}

/* A typing notice carries the room's whole list; its decoder is strict. */
static void
test_notice_typing(void **state)
{
	struct pair *p = *state;
	struct proto_notice n = {.type = PROTO_NOTICE_TYPING, .seq = 3,
	    .epoch = 5, .pos = 12, .room_id = "!r:hs",
	    .user_ids = "[\"@a:hs\",\"@b/c:hs\"]"}, g;
	struct proto_msg msg;
	static const char *const bad[] = {NULL, "", "{}", "[1]",
	    "[\"@a:hs\",null]", "\"@a:hs\"", "[\"@a:hs\""};

	assert_int_equal(proto_send_notice(p->a, &n), PROTO_OK);
	assert_int_equal(proto_recv(p->b, false, &msg), PROTO_OK);
	assert_int_equal(proto_recv_notice(&msg, &g), PROTO_OK);
	assert_int_equal(g.pos, 12);
	assert_string_equal(g.room_id, "!r:hs");
	assert_string_equal(g.user_ids, "[\"@a:hs\",\"@b/c:hs\"]");
	assert_int_equal(g.early, 0);
	proto_msg_close(&msg);
	/* meta.early names the early notice of the same list */
	n.early = 41;
	assert_int_equal(proto_send_notice(p->a, &n), PROTO_OK);
	assert_int_equal(proto_recv(p->b, false, &msg), PROTO_OK);
	assert_int_equal(proto_recv_notice(&msg, &g), PROTO_OK);
	assert_int_equal(g.early, 41);
	proto_msg_close(&msg);
	/* the early notice: the list, its seq, no meta.early */
	n.type = PROTO_NOTICE_TYPING_EARLY;
	assert_int_equal(proto_send_notice(p->a, &n), PROTO_OK);
	assert_int_equal(proto_recv(p->b, false, &msg), PROTO_OK);
	assert_string_equal(proto_type_name(msg.hdr.type),
	                    "notice.typing_early");
	assert_int_equal(proto_recv_notice(&msg, &g), PROTO_OK);
	assert_int_equal(g.type, PROTO_NOTICE_TYPING_EARLY);
	assert_int_equal(g.seq, 3);
	assert_string_equal(g.room_id, "!r:hs");
	assert_string_equal(g.user_ids, "[\"@a:hs\",\"@b/c:hs\"]");
	assert_int_equal(g.early, 0);
	assert_null(json_object_object_get(msg.meta, "early"));
	proto_msg_close(&msg);
	n.type = PROTO_NOTICE_TYPING;
	n.early = 0;
	n.user_ids = "[]";
	assert_int_equal(proto_send_notice(p->a, &n), PROTO_OK);
	assert_int_equal(proto_recv(p->b, false, &msg), PROTO_OK);
	assert_int_equal(proto_recv_notice(&msg, &g), PROTO_OK);
	assert_string_equal(g.user_ids, "[]");
	proto_msg_close(&msg);
	/* a list that is not one is refused by the sender... */
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		n.user_ids = bad[i];
		assert_int_equal(proto_send_notice(p->a, &n), PROTO_EMETA);
	}
}

/* ...and by the receiver, whatever a peer sends. */
static void
test_notice_typing_strict(void **state)
{
	struct pair *p = *state;
	struct proto_hdr h = {PROTO_MAGIC, PROTO_VERSION, 0,
	    PROTO_NOTICE_TYPING, 0, 1, 2};
	uint8_t hdr[PROTO_HDR_LEN];
	static const char *const metas[] = {
	    /* no meta.early, or a negative one */
	    "{\"epoch\":1,\"pos\":2,\"lsn\":0,\"room_id\":\"!r\",\"user_ids\":["
	    "]}",
	    "{\"epoch\":1,\"pos\":2,\"lsn\":0,\"early\":-1,\"room_id\":\"!r\","
	    "\"user_ids\":[]}",
	    "{\"epoch\":1,\"pos\":2,\"lsn\":0,\"room_id\":\"!r\"}",
	    "{\"epoch\":1,\"pos\":2,\"lsn\":0,\"room_id\":\"!r\",\"user_ids\":"
	    "\"@a\"}",
	    "{\"epoch\":1,\"pos\":2,\"lsn\":0,\"room_id\":\"!r\",\"user_ids\":["
	    "1]}",
	    "{\"epoch\":1,\"pos\":2,\"lsn\":0,\"room_id\":\"!r\",\"user_ids\":["
	    "[]]}",
	};
	struct proto_notice g;
	struct proto_msg msg;
	char *big;
	size_t off;

	proto_hdr_encode(&h, hdr);
	for (size_t i = 0; i < sizeof(metas) / sizeof(metas[0]); i++) {
		zmq_send(p->a, "notice.typing", 13, ZMQ_SNDMORE);
		zmq_send(p->a, hdr, sizeof(hdr), ZMQ_SNDMORE);
		zmq_send(p->a, metas[i], strlen(metas[i]), ZMQ_SNDMORE);
		zmq_send(p->a, "", 0, 0);
		assert_int_equal(proto_recv(p->b, false, &msg), PROTO_OK);
		assert_int_equal(proto_recv_notice(&msg, &g), PROTO_EMETA);
		proto_msg_close(&msg);
	}
	/* more than PROTO_TYPING_MAX ids */
	big = malloc(64 + (PROTO_TYPING_MAX + 1) * 4);
	off = (size_t)sprintf(
	    big, "{\"epoch\":1,\"pos\":2,\"lsn\":0,\"early\":0,\"room_id\":"
	         "\"!r\",\"user_ids\":[");
	for (int i = 0; i <= PROTO_TYPING_MAX; i++)
		off += (size_t)sprintf(big + off, "%s\"\"", i ? "," : "");
	off += (size_t)sprintf(big + off, "]}");
	zmq_send(p->a, "notice.typing", 13, ZMQ_SNDMORE);
	zmq_send(p->a, hdr, sizeof(hdr), ZMQ_SNDMORE);
	zmq_send(p->a, big, off, ZMQ_SNDMORE);
	zmq_send(p->a, "", 0, 0);
	assert_int_equal(proto_recv(p->b, false, &msg), PROTO_OK);
	assert_int_equal(proto_recv_notice(&msg, &g), PROTO_EMETA);
	proto_msg_close(&msg);
	free(big);
}

/* A heartbeat's meta as given: what proto_recv_notice makes of it. */
static int
notice_meta(struct pair *p, const char *meta, struct proto_notice *g)
{
	struct proto_hdr h = {
	    PROTO_MAGIC, PROTO_VERSION, 0, PROTO_NOTICE_HEARTBEAT, 0, 1, 2};
	uint8_t hdr[PROTO_HDR_LEN];
	struct proto_msg msg;
	int rc;

	proto_hdr_encode(&h, hdr);
	zmq_send(p->a, "notice.heartbeat", 16, ZMQ_SNDMORE);
	zmq_send(p->a, hdr, sizeof(hdr), ZMQ_SNDMORE);
	zmq_send(p->a, meta, strlen(meta), ZMQ_SNDMORE);
	zmq_send(p->a, "", 0, 0);
	assert_int_equal(proto_recv(p->b, false, &msg), PROTO_OK);
	rc = proto_recv_notice(&msg, g);
	proto_msg_close(&msg);
	return rc;
}

/* Version 4: every notice carries the commit's LSN, a non-negative int. */
static void
test_notice_lsn(void **state)
{
	struct pair *p = *state;
	struct proto_notice n = {.type = PROTO_NOTICE_ROOM,
	                         .seq = 3,
	                         .epoch = 5,
	                         .pos = 99,
	                         .room_id = "!r:hs",
	                         .lsn = 0x16B374D848LL};
	struct proto_notice g;
	struct proto_msg msg;

	assert_int_equal(proto_send_notice(p->a, &n), PROTO_OK);
	assert_int_equal(proto_recv(p->b, false, &msg), PROTO_OK);
	assert_int_equal(proto_recv_notice(&msg, &g), PROTO_OK);
	assert_int_equal(g.lsn, 0x16B374D848LL);
	proto_msg_close(&msg);
	assert_int_equal(
	    notice_meta(p, "{\"epoch\":1,\"pos\":2,\"lsn\":7}", &g), PROTO_OK);
	assert_int_equal(g.lsn, 7);
	assert_int_equal(notice_meta(p, "{\"epoch\":1,\"pos\":2}", &g),
	                 PROTO_EMETA);
	assert_int_equal(
	    notice_meta(p, "{\"epoch\":1,\"pos\":2,\"lsn\":-1}", &g),
	    PROTO_EMETA);
	assert_int_equal(
	    notice_meta(p, "{\"epoch\":1,\"pos\":2,\"lsn\":\"0/16B3\"}", &g),
	    PROTO_EMETA);
}

/* A to-device notice as given (meta, payload): what the decoder says. */
static int
td_meta(struct pair *p, const char *meta, const char *pl, size_t pl_len,
        struct proto_notice *g, struct proto_msg *msg)
{
	struct proto_hdr h = {
	    PROTO_MAGIC, PROTO_VERSION, 0, PROTO_NOTICE_TO_DEVICE, 0, 1, 2};
	uint8_t hdr[PROTO_HDR_LEN];

	proto_hdr_encode(&h, hdr);
	zmq_send(p->a, "notice.to_device", 16, ZMQ_SNDMORE);
	zmq_send(p->a, hdr, sizeof(hdr), ZMQ_SNDMORE);
	zmq_send(p->a, meta, strlen(meta), ZMQ_SNDMORE);
	zmq_send(p->a, pl, pl_len, 0);
	assert_int_equal(proto_recv(p->b, false, msg), PROTO_OK);
	return proto_recv_notice(msg, g);
}

/*
 * Version 8: a to-device notice carries the device's messages at
 * (after, pos], each followed by a NUL; the decoder is strict.
 */
static void
test_notice_to_device(void **state)
{
	struct pair *p = *state;
	static const char msgs[] = "{\"type\":\"m.a\"}\0{\"n\":\"x\\u0000\"}";
	struct proto_notice n = {.type = PROTO_NOTICE_TO_DEVICE, .seq = 4,
	    .epoch = 5, .pos = 20, .after = 11, .user_id = "@u:hs",
	    .device_id = "D", .td = msgs, .td_len = sizeof(msgs)}, g;
	struct proto_msg msg;
	static const char *const m =
	    "{\"epoch\":1,\"pos\":5,\"lsn\":0,\"user_id\":\"@u\",\"device_id\":"
	    "\"D\",\"after\":";
	static const struct {
		const char *after, *pl;
		size_t len;
		int rc;
	} cases[] = {
	    {"3}", "{}\0{}", 6, PROTO_OK}, /* (3, 5]: two */
	    {"4}", "{}\0{}", 6, PROTO_EMETA}, /* two do not fit in (4, 5] */
	    {"5}", "", 0, PROTO_OK},          /* none */
	    {"3}", "{}\0{}", 5, PROTO_EMETA}, /* the last without its NUL */
	    {"3}", "{}\0\0", 4, PROTO_EMETA}, /* an empty one */
	    {"-1}", "", 0, PROTO_EMETA},
	    {"\"3\"}", "", 0, PROTO_EMETA},
	};
	char *meta, *big;

	assert_int_equal(proto_send_notice(p->a, &n), PROTO_OK);
	assert_int_equal(proto_recv(p->b, false, &msg), PROTO_OK);
	assert_int_equal(proto_recv_notice(&msg, &g), PROTO_OK);
	assert_int_equal(g.pos, 20);
	assert_int_equal(g.after, 11);
	assert_string_equal(g.device_id, "D");
	assert_int_equal(g.td_count, 2);
	assert_int_equal(g.td_len, sizeof(msgs));
	assert_memory_equal(g.td, msgs, sizeof(msgs));
	proto_msg_close(&msg);
	/* a device list notice: nothing carried, after == pos */
	n.td = NULL;
	n.td_len = 0;
	n.after = n.pos;
	assert_int_equal(proto_send_notice(p->a, &n), PROTO_OK);
	assert_int_equal(proto_recv(p->b, false, &msg), PROTO_OK);
	assert_int_equal(proto_recv_notice(&msg, &g), PROTO_OK);
	assert_int_equal(g.td_count, 0);
	assert_null(g.td);
	proto_msg_close(&msg);
	meta = malloc(strlen(m) + 16);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		sprintf(meta, "%s%s", m, cases[i].after);
		assert_int_equal(td_meta(p, meta, cases[i].pl, cases[i].len,
		                         &g, &msg), cases[i].rc);
		proto_msg_close(&msg);
	}
	/* no meta.after (a version 7 sender's), and over PROTO_TD_BYTES */
	sprintf(meta, "%.*s}", (int)strlen(m) - 9, m);
	assert_int_equal(td_meta(p, meta, "", 0, &g, &msg), PROTO_EMETA);
	proto_msg_close(&msg);
	big = malloc(PROTO_TD_BYTES + 2);
	memset(big, 'x', PROTO_TD_BYTES + 1);
	big[PROTO_TD_BYTES + 1] = '\0';
	sprintf(meta, "%s0}", m);
	assert_int_equal(td_meta(p, meta, big, PROTO_TD_BYTES + 2, &g, &msg),
	                 PROTO_EMETA);
	proto_msg_close(&msg);
	free(big);
	free(meta);
}

/* Sends raw frames as given and returns what proto_recv makes of them. */
static int
recv_raw(struct pair *p, const char **frames, const size_t *lens, int n)
{
	struct proto_msg msg;
	int rc;

	for (int i = 0; i < n; i++)
		zmq_send(p->a, frames[i], lens[i], i < n - 1 ? ZMQ_SNDMORE : 0);
	rc = proto_recv(p->b, false, &msg);
	proto_msg_close(&msg);
	return rc;
}

static void
test_bad_frames(void **state)
{
	struct pair *p = *state;
	struct proto_hdr h = {PROTO_MAGIC, PROTO_VERSION, 0, PROTO_SYNC_RAW,
	    0, 1, 2};
	uint8_t hdr[PROTO_HDR_LEN];
	const char *f[6];
	size_t l[6];

	proto_hdr_encode(&h, hdr);
	f[0] = "sync.raw", l[0] = 8;
	f[1] = (const char *)hdr, l[1] = sizeof(hdr);
	f[2] = "{}", l[2] = 2;
	f[3] = "", l[3] = 0;
	f[4] = "x", l[4] = 1;
	f[5] = "y", l[5] = 1;
	/* Too few and too many frames. */
	assert_int_equal(recv_raw(p, f, l, 3), PROTO_EFRAMES);
	assert_int_equal(recv_raw(p, f, l, 6), PROTO_EFRAMES);
	/* Truncated header. */
	l[1] = 10;
	assert_int_equal(recv_raw(p, f, l, 4), PROTO_ESHORT);
	l[1] = sizeof(hdr);
	/* Meta that is not an object, or not JSON, or truncated. */
	f[2] = "[1]", l[2] = 3;
	assert_int_equal(recv_raw(p, f, l, 4), PROTO_EMETA);
	f[2] = "{\"a\":", l[2] = 5;
	assert_int_equal(recv_raw(p, f, l, 4), PROTO_EMETA);
	/* Topic that does not match the type. */
	f[2] = "{}", l[2] = 2;
	f[0] = "notice.room", l[0] = 11;
	assert_int_equal(recv_raw(p, f, l, 4), PROTO_ETYPE);
	/* Valid envelope, but required meta keys missing. */
	f[0] = "sync.raw", l[0] = 8;
	struct proto_msg msg;
	struct proto_sync_raw out;
	for (int i = 0; i < 4; i++)
		zmq_send(p->a, f[i], l[i], i < 3 ? ZMQ_SNDMORE : 0);
	assert_int_equal(proto_recv(p->b, false, &msg), PROTO_OK);
	assert_int_equal(proto_recv_sync_raw(&msg, &out), PROTO_EMETA);
	proto_msg_close(&msg);
	/* Wrong version. */
	hdr[2] = PROTO_VERSION + 1;
	assert_int_equal(recv_raw(p, f, l, 4), PROTO_EVERSION);
}

static void
test_oversized_meta(void **state)
{
	struct pair *p = *state;
	struct proto_hdr h = {PROTO_MAGIC, PROTO_VERSION, 0, PROTO_SYNC_RAW,
	    0, 1, 2};
	uint8_t hdr[PROTO_HDR_LEN];
	size_t big = PROTO_META_MAX + 1;
	char *meta = malloc(big);
	const char *f[4];
	size_t l[4];

	memset(meta, ' ', big);
	meta[0] = '{';
	meta[big - 1] = '}';
	proto_hdr_encode(&h, hdr);
	f[0] = "sync.raw", l[0] = 8;
	f[1] = (const char *)hdr, l[1] = sizeof(hdr);
	f[2] = meta, l[2] = big;
	f[3] = "", l[3] = 0;
	assert_int_equal(recv_raw(p, f, l, 4), PROTO_ESIZE);
	free(meta);
}

static void
test_nothing_waiting(void **state)
{
	struct pair *p = *state;
	struct proto_msg msg;

	assert_int_equal(proto_recv(p->b, false, &msg), PROTO_EIO);
	proto_msg_close(&msg);
	for (int t = 0; t < 400; t++)
		assert_non_null(proto_type_name(t));
	assert_string_equal(proto_type_name(12345), "?");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hdr_roundtrip),
		cmocka_unit_test(test_hdr_rejects),
		cmocka_unit_test_setup_teardown(test_sync_raw_roundtrip,
		    pair_setup, pair_teardown),
		cmocka_unit_test_setup_teardown(test_ack_and_state_roundtrip,
		    pair_setup, pair_teardown),
		cmocka_unit_test_setup_teardown(test_notice_roundtrip,
		    pair_setup, pair_teardown),
		cmocka_unit_test_setup_teardown(test_notice_typing,
		    pair_setup, pair_teardown),
		cmocka_unit_test_setup_teardown(test_notice_typing_strict,
		    pair_setup, pair_teardown),
		cmocka_unit_test_setup_teardown(test_bad_frames, pair_setup,
		    pair_teardown),
		cmocka_unit_test_setup_teardown(test_oversized_meta,
		    pair_setup, pair_teardown),
		cmocka_unit_test_setup_teardown(test_nothing_waiting,
		    pair_setup, pair_teardown),
		cmocka_unit_test_setup_teardown(test_notice_to_device,
		    pair_setup, pair_teardown),
		cmocka_unit_test_setup_teardown(test_notice_lsn, pair_setup,
		    pair_teardown),
		cmocka_unit_test_setup_teardown(test_sync_raw_first, pair_setup,
		    pair_teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
