/*
 * The envelope codec: header encode/decode through a bounds-checked cursor,
 * and multipart send/receive. Per-message meta lives in proto_<msg>.c.
 */
#include <errno.h>
#include <string.h>

#include "json_util.h"
#include "util.h"
#include "proto.h"

struct cursor {
	const uint8_t *pos;
	const uint8_t *end;
};

static int
get_u8(struct cursor *c, uint8_t *v)
{
	if (c->end - c->pos < 1)
		return -1;
	*v = *c->pos++;
	return 0;
}

static int
get_u16(struct cursor *c, uint16_t *v)
{
	if (c->end - c->pos < 2)
		return -1;
	*v = (uint16_t)(c->pos[0] << 8 | c->pos[1]);
	c->pos += 2;
	return 0;
}

static int
get_u64(struct cursor *c, uint64_t *v)
{
	if (c->end - c->pos < 8)
		return -1;
	*v = 0;
	for (int i = 0; i < 8; i++)
		*v = *v << 8 | c->pos[i];
	c->pos += 8;
	return 0;
}

static uint8_t *
put_u16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
	return p + 2;
}

static uint8_t *
put_u64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--)
		*p++ = (uint8_t)(v >> (8 * i));
	return p;
}

void
proto_hdr_encode(const struct proto_hdr *h, uint8_t out[PROTO_HDR_LEN])
{
	uint8_t *p = out;

	p = put_u16(p, h->magic);
	*p++ = h->version;
	*p++ = h->flags;
	p = put_u16(p, h->type);
	p = put_u16(p, h->reserved);
	p = put_u64(p, h->seq);
	put_u64(p, h->sent_ms);
}

int
proto_hdr_decode(const uint8_t *buf, size_t len, struct proto_hdr *h)
{
	struct cursor c = {buf, buf + len};

	if (get_u16(&c, &h->magic) == -1 || get_u8(&c, &h->version) == -1 ||
	    get_u8(&c, &h->flags) == -1 || get_u16(&c, &h->type) == -1 ||
	    get_u16(&c, &h->reserved) == -1 || get_u64(&c, &h->seq) == -1 ||
	    get_u64(&c, &h->sent_ms) == -1)
		return PROTO_ESHORT;
	if (c.pos != c.end)
		return PROTO_ESIZE;
	if (h->magic != PROTO_MAGIC)
		return PROTO_EMAGIC;
	if (h->version != PROTO_VERSION)
		return PROTO_EVERSION;
	if (proto_type_name(h->type)[0] == '?')
		return PROTO_ETYPE;
	return PROTO_OK;
}

const char *
proto_type_name(int type)
{
	switch (type) {
	case PROTO_SYNC_RAW:
		return "sync.raw";
	case PROTO_POLL_STATE:
		return "poll.state";
	case PROTO_NOTICE_ROOM:
		return "notice.room";
	case PROTO_NOTICE_TYPING:
		return "notice.typing";
	case PROTO_NOTICE_TO_DEVICE:
		return "notice.to_device";
	case PROTO_NOTICE_ACCOUNT_DATA:
		return "notice.account_data";
	case PROTO_NOTICE_MEMBERSHIP:
		return "notice.membership";
	case PROTO_NOTICE_DEVICE:
		return "notice.device";
	case PROTO_NOTICE_HEARTBEAT:
		return "notice.heartbeat";
	case PROTO_NOTICE_TYPING_EARLY:
		return "notice.typing_early";
	case PROTO_SYNC_ACK:
		return "sync.ack";
	}
	return "?";
}

/* Indexed by enum dev_state; the names are stored values (proto.h). */
static const char *const dev_state_names[] = {
	[DEV_STATE_NEW] = "new",
	[DEV_STATE_POLLING] = "polling",
	[DEV_STATE_BACKOFF] = "backoff",
	[DEV_STATE_EXPIRED] = "expired",
	[DEV_STATE_IDLE] = "idle",
	[DEV_STATE_SYNCED] = "synced",
};

#define DEV_STATE_COUNT (sizeof(dev_state_names) / sizeof(dev_state_names[0]))

const char *
dev_state_name(enum dev_state s)
{
	if ((size_t)s >= DEV_STATE_COUNT)
		return "?";
	return dev_state_names[s];
}

int
dev_state_parse(const char *name)
{
	for (size_t i = 0; i < DEV_STATE_COUNT; i++)
		if (strcmp(name, dev_state_names[i]) == 0)
			return (int)i;
	return -1;
}

/* The topic frame is the type's name: SUB filters on "notice." prefixes. */
const char *
proto_topic(int type)
{
	return proto_type_name(type);
}

const char *
proto_strerror(int err)
{
	switch (err) {
	case PROTO_OK:
		return "ok";
	case PROTO_ESHORT:
		return "short frame";
	case PROTO_EMAGIC:
		return "bad magic";
	case PROTO_EVERSION:
		return "unsupported version";
	case PROTO_ETYPE:
		return "unknown type";
	case PROTO_EMETA:
		return "bad meta";
	case PROTO_ESIZE:
		return "frame too large";
	case PROTO_EFRAMES:
		return "wrong frame count";
	case PROTO_EIO:
		return "i/o error";
	}
	return "unknown error";
}

/*
 * Checks the envelope of received frames: frame count, header, topic
 * matching the type (a SUB filter must not be fooled), meta a bounded JSON
 * object, sizes. msg keeps the frames; topic and payload borrow from them.
 */
int
proto_decode(struct proto_msg *msg)
{
	int first = msg->has_route ? 1 : 0, rc;
	zmq_msg_t *f;
	const char *err;

	if (msg->nframes != first + 4)
		return PROTO_EFRAMES;
	f = &msg->frames[first];
	msg->topic = zmq_msg_data(&f[0]);
	msg->topic_len = zmq_msg_size(&f[0]);
	if ((rc = proto_hdr_decode(zmq_msg_data(&f[1]), zmq_msg_size(&f[1]),
	    &msg->hdr)) != PROTO_OK)
		return rc;
	if (msg->topic_len != strlen(proto_topic(msg->hdr.type)) ||
	    memcmp(msg->topic, proto_topic(msg->hdr.type),
		msg->topic_len) != 0)
		return PROTO_ETYPE;
	if (zmq_msg_size(&f[2]) > PROTO_META_MAX)
		return PROTO_ESIZE;
	msg->meta = json_parse_bounded(zmq_msg_data(&f[2]),
	    zmq_msg_size(&f[2]), &err);
	if (msg->meta == NULL ||
	    !json_object_is_type(msg->meta, json_type_object))
		return PROTO_EMETA;
	if (zmq_msg_size(&f[3]) > PROTO_PAYLOAD_MAX)
		return PROTO_ESIZE;
	msg->payload = zmq_msg_data(&f[3]);
	msg->payload_len = zmq_msg_size(&f[3]);
	return PROTO_OK;
}

static int
send_frame(void *sock, const void *data, size_t len, int more)
{
	if (zmq_send(sock, data, len, (more ? ZMQ_SNDMORE : 0) |
	    ZMQ_DONTWAIT) == -1)
		return PROTO_EIO;
	return PROTO_OK;
}

/*
 * Sends the four frames without blocking (a full peer is the caller's
 * retry, never a stall of the loop). With free_fn the payload is handed
 * to zmq without a copy (a poller's /sync body), and it is released here
 * on every failure path, so the caller never frees it after the call.
 */
int
proto_send(void *sock, const void *route, size_t route_len, int type,
    uint64_t seq, struct json_object *meta, const void *payload,
    size_t payload_len, zmq_free_fn *free_fn)
{
	struct proto_hdr h = {PROTO_MAGIC, PROTO_VERSION, 0, (uint16_t)type,
	    0, seq, (uint64_t)wall_ms()};
	uint8_t hdr[PROTO_HDR_LEN];
	const char *topic = proto_topic(type), *m;
	size_t mlen;
	zmq_msg_t pm;

	proto_hdr_encode(&h, hdr);
	m = json_plain(meta, &mlen);
	if (route != NULL && send_frame(sock, route, route_len, 1) != 0)
		goto fail;
	if (send_frame(sock, topic, strlen(topic), 1) != 0 ||
	    send_frame(sock, hdr, sizeof(hdr), 1) != 0 ||
	    send_frame(sock, m, mlen, 1) != 0)
		goto fail;
	if (free_fn != NULL) {
		if (zmq_msg_init_data(&pm, (void *)(uintptr_t)payload,
		    payload_len, free_fn, NULL) == -1)
			return PROTO_EIO;
		if (zmq_msg_send(&pm, sock, ZMQ_DONTWAIT) == -1) {
			/* zmq did not take the buffer: release it. */
			int saved = errno;
			zmq_msg_close(&pm);
			errno = saved;
			return PROTO_EIO;
		}
		return PROTO_OK;
	}
	return send_frame(sock, payload, payload_len, 0);
fail:
	if (free_fn != NULL)
		free_fn((void *)(uintptr_t)payload, NULL);
	return PROTO_EIO;
}

/*
 * Reads one multipart message without blocking on its first frame. Extra
 * frames beyond five are read and dropped so the next message starts on a
 * frame boundary; the message is then rejected (PROTO_EFRAMES).
 */
int
proto_recv(void *sock, bool has_route, struct proto_msg *msg)
{
	int more = 1;
	size_t len = sizeof(more);
	int rc = PROTO_OK;

	memset(msg, 0, sizeof(*msg));
	msg->has_route = has_route;
	while (more) {
		zmq_msg_t scratch, *f;

		f = msg->nframes < 5 ? &msg->frames[msg->nframes] : &scratch;
		zmq_msg_init(f);
		if (zmq_msg_recv(f, sock, msg->nframes ? 0 : ZMQ_DONTWAIT) ==
		    -1) {
			zmq_msg_close(f);
			return PROTO_EIO;
		}
		if (zmq_getsockopt(sock, ZMQ_RCVMORE, &more, &len) == -1)
			more = 0;
		if (f == &scratch) {
			/* Too many frames: drain and reject. */
			zmq_msg_close(f);
			rc = PROTO_EFRAMES;
		} else
			msg->nframes++;
	}
	if (rc != PROTO_OK)
		return rc;
	return proto_decode(msg);
}

void
proto_msg_close(struct proto_msg *msg)
{
	for (int i = 0; i < msg->nframes; i++)
		zmq_msg_close(&msg->frames[i]);
	msg->nframes = 0;
	json_object_put(msg->meta);
	msg->meta = NULL;
}
