/*
 * Change notices, accumulator -> api over PUB/SUB. They are hints: the api
 * re-reads Postgres for the data (contract 3), but for what a notice
 * carries whole (a typing list, a device's to-device messages). Which ids
 * a notice carries depends on its type; the table below is the single
 * source of that.
 */
#include <string.h>

#include <json-c/json.h>

#include "json_util.h"
#include "proto.h"

enum {
	N_ROOM = 0x1,
	N_USER = 0x2,
	N_DEVICE = 0x4,
	N_MEMBERSHIP = 0x8,
	N_STATE = 0x10,
	N_TYPING = 0x20,
	N_EARLY = 0x40, /* meta.early */
	N_TD = 0x80,    /* meta.after and the messages in the payload */
};

static int typing_ids_encode(struct json_object *meta, const char *ids);
static int typing_ids_decode(struct json_object *meta, const char **out);
static int td_decode(const struct proto_msg *msg, struct proto_notice *out);

static int
notice_keys(int type)
{
	switch (type) {
	case PROTO_NOTICE_ROOM:
		return N_ROOM;
	case PROTO_NOTICE_TYPING:
		return N_ROOM | N_TYPING | N_EARLY;
	case PROTO_NOTICE_TYPING_EARLY:
		return N_ROOM | N_TYPING;
	case PROTO_NOTICE_TO_DEVICE:
		return N_USER | N_DEVICE | N_TD;
	case PROTO_NOTICE_ACCOUNT_DATA:
		return N_USER | N_ROOM;
	case PROTO_NOTICE_MEMBERSHIP:
		return N_USER | N_ROOM | N_MEMBERSHIP;
	case PROTO_NOTICE_DEVICE:
		return N_USER | N_DEVICE | N_STATE;
	case PROTO_NOTICE_HEARTBEAT:
		return 0;
	}
	return -1;
}

static void
add_opt(struct json_object *o, int keys, int bit, const char *k,
    const char *v)
{
	if (keys & bit)
		json_object_object_add(o, k,
		    json_object_new_string(v ? v : ""));
}

/* meta.lsn (version 4), kept apart so other fields merge cleanly. */
static void
notice_lsn_put(struct json_object *meta, const struct proto_notice *n)
{
	json_object_object_add(meta, "lsn", json_object_new_int64(n->lsn));
}

static int
notice_lsn_get(struct json_object *meta, struct proto_notice *out)
{
	if (!json_get_int(meta, "lsn", &out->lsn) || out->lsn < 0)
		return -1;
	return 0;
}

int
proto_send_notice(void *sock, const struct proto_notice *n)
{
	struct json_object *meta;
	int keys = notice_keys(n->type), rc;

	if (keys < 0)
		return PROTO_ETYPE;
	meta = json_object_new_object();
	json_object_object_add(meta, "epoch", json_object_new_int64(n->epoch));
	json_object_object_add(meta, "pos", json_object_new_int64(n->pos));
	add_opt(meta, keys, N_ROOM, "room_id", n->room_id);
	add_opt(meta, keys, N_USER, "user_id", n->user_id);
	add_opt(meta, keys, N_DEVICE, "device_id", n->device_id);
	add_opt(meta, keys, N_MEMBERSHIP, "membership", n->membership);
	add_opt(meta, keys, N_STATE, "state", n->state);
	if ((keys & N_TYPING) && typing_ids_encode(meta, n->user_ids) != 0) {
		json_object_put(meta);
		return PROTO_EMETA;
	}
	notice_lsn_put(meta, n);
	if (keys & N_EARLY)
		json_object_object_add(meta, "early",
		                       json_object_new_int64(n->early));
	if (keys & N_TD)
		json_object_object_add(meta, "after",
		                       json_object_new_int64(n->after));
	rc = proto_send(sock, NULL, 0, n->type, n->seq, meta,
	                (keys & N_TD) ? n->td : NULL,
	                (keys & N_TD) ? n->td_len : 0, NULL);
	json_object_put(meta);
	return rc;
}

static int
get_opt(struct json_object *meta, int keys, int bit, const char *k,
    const char **out)
{
	if (!(keys & bit))
		return 0;
	return (*out = json_get_str(meta, k)) == NULL ? -1 : 0;
}

int
proto_recv_notice(const struct proto_msg *msg, struct proto_notice *out)
{
	int keys = notice_keys(msg->hdr.type);

	memset(out, 0, sizeof(*out));
	if (keys < 0)
		return PROTO_ETYPE;
	out->type = msg->hdr.type;
	out->seq = msg->hdr.seq;
	if (!json_get_int(msg->meta, "epoch", &out->epoch) ||
	    !json_get_int(msg->meta, "pos", &out->pos) || out->pos < 0 ||
	    get_opt(msg->meta, keys, N_ROOM, "room_id", &out->room_id) ||
	    get_opt(msg->meta, keys, N_USER, "user_id", &out->user_id) ||
	    get_opt(msg->meta, keys, N_DEVICE, "device_id", &out->device_id) ||
	    get_opt(msg->meta, keys, N_MEMBERSHIP, "membership",
	            &out->membership) ||
	    get_opt(msg->meta, keys, N_STATE, "state", &out->state) ||
	    ((keys & N_TYPING) &&
	     typing_ids_decode(msg->meta, &out->user_ids) != 0) ||
	    notice_lsn_get(msg->meta, out) == -1 ||
	    ((keys & N_EARLY) &&
	     (!json_get_int(msg->meta, "early", &out->early) ||
	      out->early < 0)) ||
	    ((keys & N_TD) && td_decode(msg, out) != 0))
		return PROTO_EMETA;
	return PROTO_OK;
}

/*
 * A to-device notice's messages (version 8): each one ends with a NUL, at
 * most PROTO_TD_BYTES in all, and (after, pos] has room for them.
 */
static int
td_decode(const struct proto_msg *msg, struct proto_notice *out)
{
	const char *p = msg->payload, *end = p + msg->payload_len;
	const char *z;

	if (!json_get_int(msg->meta, "after", &out->after) ||
	    out->after < 0 || msg->payload_len > PROTO_TD_BYTES ||
	    (msg->payload_len > 0 && end[-1] != '\0'))
		return -1;
	for (; p < end; p = z + 1, out->td_count++)
		if ((z = memchr(p, '\0', (size_t)(end - p))) == p)
			return -1; /* an empty message */
	if (out->after > out->pos - (int64_t)out->td_count)
		return -1;
	out->td = msg->payload_len > 0 ? msg->payload : NULL;
	out->td_len = msg->payload_len;
	return 0;
}

/* A typing list: a JSON array of at most PROTO_TYPING_MAX strings. */
static bool
typing_ids_valid(struct json_object *a)
{
	size_t n;

	if (!json_object_is_type(a, json_type_array) ||
	    (n = json_object_array_length(a)) > PROTO_TYPING_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!json_object_is_type(json_object_array_get_idx(a, i),
		    json_type_string))
			return false;
	return true;
}

/*
 * PROTO_NOTICE_TYPING's user_ids: the stored list (JSON text, as in
 * syncv3_typing.user_ids) goes into meta as an array, so a receiver
 * checks it like any other meta key. 0, or -1 when it is not a list.
 */
static int
typing_ids_encode(struct json_object *meta, const char *ids)
{
	struct json_object *a;

	if (ids == NULL || (a = json_tokener_parse(ids)) == NULL)
		return -1;
	if (!typing_ids_valid(a)) {
		json_object_put(a);
		return -1;
	}
	json_object_object_add(meta, "user_ids", a);
	return 0;
}

/* The list back as compact JSON text, borrowed from meta. */
static int
typing_ids_decode(struct json_object *meta, const char **out)
{
	struct json_object *a = json_get_arr(meta, "user_ids");

	if (a == NULL || !typing_ids_valid(a))
		return -1;
	*out = json_object_to_json_string_ext(a,
	    JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	return *out != NULL ? 0 : -1;
}
