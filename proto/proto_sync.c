/*
 * Messages between pollers and the accumulator: PROTO_SYNC_RAW and its
 * PROTO_SYNC_ACK, and PROTO_POLL_STATE (see proto.h for the meta keys).
 */
#include <string.h>

#include "json_util.h"
#include "proto.h"

static void
add_str(struct json_object *o, const char *k, const char *v)
{
	json_object_object_add(o, k, json_object_new_string(v ? v : ""));
}

static int
need_str(struct json_object *meta, const char *key, const char **out)
{
	if ((*out = json_get_str(meta, key)) == NULL)
		return PROTO_EMETA;
	return PROTO_OK;
}

static int
check_type(const struct proto_msg *msg, int type)
{
	return msg->hdr.type == type ? PROTO_OK : PROTO_ETYPE;
}

int
proto_send_sync_raw(void *sock, uint64_t seq, const struct proto_sync_raw *m)
{
	struct json_object *meta = json_object_new_object();
	int rc;

	add_str(meta, "user_id", m->user_id);
	add_str(meta, "device_id", m->device_id);
	add_str(meta, "since_in", m->since_in);
	add_str(meta, "next_batch", m->next_batch);
	if (m->first != NULL && m->first[0] != '\0')
		add_str(meta, "first", m->first);
	if (m->catchup > 0)
		json_object_object_add(meta, "catchup",
		                       json_object_new_int64(m->catchup));
	rc = proto_send(sock, NULL, 0, PROTO_SYNC_RAW, seq, meta, m->body,
	    m->body_len, NULL);
	json_object_put(meta);
	return rc;
}

int
proto_recv_sync_raw(const struct proto_msg *msg, struct proto_sync_raw *out)
{
	memset(out, 0, sizeof(*out));
	if (check_type(msg, PROTO_SYNC_RAW) != PROTO_OK)
		return PROTO_ETYPE;
	if (need_str(msg->meta, "user_id", &out->user_id) ||
	    need_str(msg->meta, "device_id", &out->device_id) ||
	    need_str(msg->meta, "since_in", &out->since_in) ||
	    need_str(msg->meta, "next_batch", &out->next_batch) ||
	    out->user_id[0] == '\0' || out->device_id[0] == '\0')
		return PROTO_EMETA;
	if ((out->first = json_get_str(msg->meta, "first")) == NULL)
		out->first = "";
	else if (strcmp(out->first, "") != 0 &&
	         strcmp(out->first, "sibling") != 0 &&
	         strcmp(out->first, "refill") != 0)
		return PROTO_EMETA;
	if (json_object_object_get_ex(msg->meta, "catchup", NULL) &&
	    (!json_get_int(msg->meta, "catchup", &out->catchup) ||
	     out->catchup < 0))
		return PROTO_EMETA;
	out->body = msg->payload;
	out->body_len = msg->payload_len;
	return PROTO_OK;
}

int
proto_send_poll_state(void *sock, uint64_t seq,
    const struct proto_poll_state *m)
{
	struct json_object *meta = json_object_new_object();
	int rc;

	add_str(meta, "user_id", m->user_id);
	add_str(meta, "device_id", m->device_id);
	add_str(meta, "state", m->state);
	add_str(meta, "error", m->error);
	json_object_object_add(meta, "retry_at_ms",
	    json_object_new_int64(m->retry_at_ms));
	add_str(meta, "token_fp", m->token_fp);
	rc = proto_send(sock, NULL, 0, PROTO_POLL_STATE, seq, meta, NULL, 0,
	    NULL);
	json_object_put(meta);
	return rc;
}

int
proto_recv_poll_state(const struct proto_msg *msg,
    struct proto_poll_state *out)
{
	memset(out, 0, sizeof(*out));
	if (check_type(msg, PROTO_POLL_STATE) != PROTO_OK)
		return PROTO_ETYPE;
	if (need_str(msg->meta, "user_id", &out->user_id) ||
	    need_str(msg->meta, "device_id", &out->device_id) ||
	    need_str(msg->meta, "state", &out->state) ||
	    need_str(msg->meta, "error", &out->error) ||
	    need_str(msg->meta, "token_fp", &out->token_fp) ||
	    !json_get_int(msg->meta, "retry_at_ms", &out->retry_at_ms))
		return PROTO_EMETA;
	switch (dev_state_parse(out->state)) {
	case DEV_STATE_POLLING:
	case DEV_STATE_BACKOFF:
	case DEV_STATE_EXPIRED:
		break;
	default:
		return PROTO_EMETA;
	}
	return PROTO_OK;
}

int
proto_send_sync_ack(void *sock, const void *route, size_t route_len,
    uint64_t seq, const struct proto_sync_ack *m)
{
	struct json_object *meta = json_object_new_object();
	int rc;

	add_str(meta, "user_id", m->user_id);
	add_str(meta, "device_id", m->device_id);
	json_object_object_add(meta, "ok", json_object_new_boolean(m->ok));
	add_str(meta, "since", m->since);
	add_str(meta, "error", m->error);
	rc = proto_send(sock, route, route_len, PROTO_SYNC_ACK, seq, meta,
	    NULL, 0, NULL);
	json_object_put(meta);
	return rc;
}

int
proto_recv_sync_ack(const struct proto_msg *msg, struct proto_sync_ack *out)
{
	memset(out, 0, sizeof(*out));
	if (check_type(msg, PROTO_SYNC_ACK) != PROTO_OK)
		return PROTO_ETYPE;
	if (need_str(msg->meta, "user_id", &out->user_id) ||
	    need_str(msg->meta, "device_id", &out->device_id) ||
	    need_str(msg->meta, "since", &out->since) ||
	    need_str(msg->meta, "error", &out->error) ||
	    !json_get_bool(msg->meta, "ok", &out->ok))
		return PROTO_EMETA;
	return PROTO_OK;
}
