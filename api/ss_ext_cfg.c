/*
 * ss_ext_cfg.c: the pure half of the sliding sync extensions. The
 * request's extensions are checked here before the core stores anything
 * (a bad to_device.since is Synapse's 400 M_INVALID_PARAM); the merged
 * sticky configs are read into struct ss_ext_cfg; each room-scoped
 * extension's scope follows the MSCs' lists/rooms rule (default "*":
 * every list's window and every room subscription); and the blob the
 * connection keeps says which rooms each extension covered, so a room
 * new to the scope gets everything once and then only changes.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_util.h"
#include "ss_ext.h"
#include "util.h"

static const char *const names[SX_COUNT] = {
    [SX_TO_DEVICE] = "to_device",       [SX_E2EE] = "e2ee",
    [SX_ACCOUNT_DATA] = "account_data", [SX_TYPING] = "typing",
    [SX_RECEIPTS] = "receipts",
};

/* The blob's key per extension whose being on is kept (with its rooms). */
static const char *const blob_keys[SX_COUNT] = {
    [SX_TO_DEVICE] = "td", /* no rooms: whether it holds messages */
    [SX_ACCOUNT_DATA] = "ad",
    [SX_TYPING] = "ty",
    [SX_RECEIPTS] = "rc",
};

const char *
ss_ext_name(enum ss_ext_kind k)
{
	return k < SX_COUNT ? names[k] : "?";
}

/* 400: "extensions.<ext>.<field> <what>" (field NULL: the object). */
static int
bad(struct ss_parse_err *err, const char *errcode, const char *ext,
    const char *field, const char *what)
{
	err->status = 400;
	err->errcode = errcode;
	snprintf(err->msg, sizeof(err->msg), "extensions%s%s%s%s %s",
	         ext ? "." : "", ext ? ext : "", field ? "." : "",
	         field ? field : "", what);
	return -1;
}

/* Synapse's test is int(): optional sign, digits, nothing else. */
static bool
looks_like_int(const char *s, int64_t *out)
{
	char *end;
	long long v;

	if (s == NULL || *s == '\0')
		return false;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0' || end == s || s[0] == ' ')
		return false;
	if (out != NULL)
		*out = v;
	return true;
}

static bool
is_str_array(struct json_object *v)
{
	if (v == NULL)
		return true;
	if (!json_object_is_type(v, json_type_array))
		return false;
	for (size_t i = 0; i < json_object_array_length(v); i++)
		if (!json_object_is_type(json_object_array_get_idx(v, i),
		                         json_type_string))
			return false;
	return true;
}

/*
 * One known extension's object: the fields we read, typed. Checking the
 * request (ss.h: before the core changes any state) and, again, the
 * merged config.
 */
static int
check_one(enum ss_ext_kind k, struct json_object *o, struct ss_parse_err *err)
{
	struct json_object *v;
	const char *n = names[k];

	if (!json_object_is_type(o, json_type_object))
		return bad(err, "M_BAD_JSON", n, NULL, "must be an object");
	if (json_object_object_get_ex(o, "enabled", &v) && v != NULL &&
	    !json_object_is_type(v, json_type_boolean))
		return bad(err, "M_BAD_JSON", n, "enabled",
		           "must be a boolean");
	if (json_object_object_get_ex(o, "lists", &v) && !is_str_array(v))
		return bad(err, "M_BAD_JSON", n, "lists",
		           "must be a list of strings");
	if (json_object_object_get_ex(o, "rooms", &v) && !is_str_array(v))
		return bad(err, "M_BAD_JSON", n, "rooms",
		           "must be a list of strings");
	if (k != SX_TO_DEVICE)
		return 0;
	if (json_object_object_get_ex(o, "since", &v) && v != NULL &&
	    (!json_object_is_type(v, json_type_string) ||
	     !looks_like_int(json_object_get_string(v), NULL)))
		return bad(err, "M_INVALID_PARAM", n, "since",
		           "is invalid (should look like an int)");
	if (json_object_object_get_ex(o, "limit", &v) && v != NULL &&
	    !json_object_is_type(v, json_type_int))
		return bad(err, "M_BAD_JSON", n, "limit", "must be an integer");
	return 0;
}

int
ss_ext_check(struct json_object *ext, struct ss_parse_err *err)
{
	struct json_object *o;

	if (ext == NULL)
		return 0;
	if (!json_object_is_type(ext, json_type_object))
		return bad(err, "M_BAD_JSON", NULL, NULL, "must be an object");
	for (int k = 0; k < SX_COUNT; k++)
		if (json_object_object_get_ex(ext, names[k], &o) && o != NULL &&
		    check_one(k, o, err) == -1)
			return -1;
	return 0;
}

void
ss_ext_cfg_load(struct json_object *cfg, struct ss_ext_cfg *out)
{
	struct json_object *o;
	const char *since;
	int64_t lim;
	bool on;

	memset(out, 0, sizeof(*out));
	out->td_since = -1;
	out->td_limit = SS_TD_LIMIT_DEFAULT;
	for (int k = 0; k < SX_COUNT; k++) {
		o = json_get_obj(cfg, names[k]);
		if (o == NULL)
			continue;
		out->x[k].is_on = json_get_bool(o, "enabled", &on) && on;
		out->x[k].lists = json_get_arr(o, "lists");
		out->x[k].rooms = json_get_arr(o, "rooms");
	}
	o = json_get_obj(cfg, names[SX_TO_DEVICE]);
	since = json_get_str(o, "since");
	if (looks_like_int(since, &out->td_since) && out->td_since < 0)
		out->td_since = 0;
	if (json_get_int(o, "limit", &lim))
		out->td_limit = lim < 1                 ? 1
		                : lim > SS_TD_LIMIT_MAX ? SS_TD_LIMIT_MAX
		                                        : lim;
}

/* Does the string array a (NULL: the default ["*"]) name s or "*"? */
static bool
names_it(struct json_object *a, const char *s)
{
	if (a == NULL)
		return true;
	for (size_t i = 0; i < json_object_array_length(a); i++) {
		const char *v =
		    json_object_get_string(json_object_array_get_idx(a, i));
		if (v != NULL && (strcmp(v, "*") == 0 || strcmp(v, s) == 0))
			return true;
	}
	return false;
}

bool
ss_ext_scoped(const struct ss_ext_one *e, const struct ss_ctx *c,
              const struct ss_ext_room *room)
{
	if (room->is_sub && names_it(e->rooms, room->room_id))
		return true;
	for (int i = 0; i < room->nlists; i++) {
		int l = room->lists[i];
		if (l >= 0 && l < c->nlists &&
		    names_it(e->lists, c->list_keys[l]))
			return true;
	}
	return false;
}

static void
copy_key_cb(const char *key, void *val, void *arg)
{
	map_put(arg, key, val);
}

/* The blob's "ro": {room_id: position} into m (anything else dropped). */
static void
rc_out_parse(struct json_object *ro, struct map *m)
{
	if (ro == NULL)
		return;
	json_object_object_foreach(ro, id, v)
	{
		if (json_object_is_type(v, json_type_int) &&
		    map_count(m) < SS_RC_OUT_MAX)
			map_put_i64(m, id, json_object_get_int64(v));
	}
}

void
ss_ext_state_parse(const char *blob, struct ss_ext_state *st)
{
	struct json_object *o = NULL, *a;
	const char *ref;

	memset(st, 0, sizeof(*st));
	for (int k = 0; k < SX_COUNT; k++)
		map_init(&st->scope[k]);
	map_init(&st->rc_out);
	if (blob != NULL)
		o = json_parse_bounded(blob, strlen(blob), NULL);
	for (int k = 0; o != NULL && k < SX_COUNT; k++) {
		if (blob_keys[k] == NULL)
			continue;
		if ((ref = json_get_str(o, blob_keys[k])) != NULL) {
			for (int e = 0; e < k; e++)
				if (blob_keys[e] != NULL &&
				    strcmp(ref, blob_keys[e]) == 0 &&
				    st->was_on[e]) {
					st->was_on[k] = true;
					map_each(&st->scope[e], copy_key_cb,
					         &st->scope[k]);
				}
			continue;
		}
		if ((a = json_get_arr(o, blob_keys[k])) == NULL)
			continue;
		st->was_on[k] = true;
		for (size_t i = 0; i < json_object_array_length(a); i++) {
			const char *id = json_object_get_string(
			    json_object_array_get_idx(a, i));
			if (id != NULL)
				map_put(&st->scope[k], id, (void *)1);
		}
	}
	rc_out_parse(json_get_obj(o, "ro"), &st->rc_out);
	json_object_put(o);
}

static void
add_key_cb(const char *key, void *val, void *arg)
{
	(void)val;
	json_object_array_add(arg, json_object_new_string(key));
}

struct subset {
	const struct map *of;
	bool is_in;
};

static void
in_cb(const char *key, void *val, void *arg)
{
	struct subset *x = arg;

	(void)val;
	if (map_get(x->of, key) == NULL)
		x->is_in = false;
}

static bool
same_set(const struct map *a, const struct map *b)
{
	struct subset x = {b, true};

	if (map_count(a) != map_count(b))
		return false;
	map_each(a, in_cb, &x);
	return x.is_in;
}

static int
str_cmp(const void *a, const void *b)
{
	return strcmp(json_object_get_string(*(struct json_object *const *)a),
	              json_object_get_string(*(struct json_object *const *)b));
}

/* rc_out as the blob's "ro", its rooms sorted (same rooms, same blob). */
static void
rc_out_text(const struct map *m, struct json_object *o)
{
	struct json_object *keys, *ro;

	if (map_count(m) == 0)
		return;
	keys = json_object_new_array();
	map_each(m, add_key_cb, keys);
	json_object_array_sort(keys, str_cmp);
	ro = json_object_new_object();
	for (size_t i = 0; i < json_object_array_length(keys); i++) {
		const char *id =
		    json_object_get_string(json_object_array_get_idx(keys, i));
		int64_t pos = 0;
		map_get_i64(m, id, &pos);
		json_object_object_add(ro, id, json_object_new_int64(pos));
	}
	json_object_put(keys);
	json_object_object_add(o, "ro", ro);
}

char *
ss_ext_state_text(const struct ss_ext_state *st)
{
	struct json_object *o = json_object_new_object();
	char *s;

	for (int k = 0; k < SX_COUNT; k++) {
		struct json_object *a;
		int e;
		if (blob_keys[k] == NULL || !st->was_on[k])
			continue;
		/* the same rooms as an earlier extension: name it instead */
		for (e = 0; e < k; e++)
			if (blob_keys[e] != NULL && st->was_on[e] &&
			    same_set(&st->scope[e], &st->scope[k]))
				break;
		if (e < k) {
			json_object_object_add(
			    o, blob_keys[k],
			    json_object_new_string(blob_keys[e]));
			continue;
		}
		a = json_object_new_array();
		map_each(&st->scope[k], add_key_cb, a);
		/* sorted: the same rooms are the same blob (the core answers a
		 * long-poll when the blob changes) */
		json_object_array_sort(a, str_cmp);
		json_object_object_add(o, blob_keys[k], a);
	}
	rc_out_text(&st->rc_out, o);
	s = xstrdup(json_plain(o, NULL));
	json_object_put(o);
	return s;
}

void
ss_ext_state_free(struct ss_ext_state *st)
{
	for (int k = 0; k < SX_COUNT; k++)
		map_free(&st->scope[k], NULL);
	map_free(&st->rc_out, NULL);
}

/*
 * A room the core sends from scratch (initial: first sent, or its
 * membership became a join) replaces what the client had of it, so each
 * room extension starts over for it too: an invite in the window was in
 * scope but got nothing, and once joined it must get its account data
 * and receipts from before the join. Receipts also start over when the
 * timeline was expanded (the older events' receipts), as Synapse does.
 */
static bool
restarts(enum ss_ext_kind k, const struct ss_ext_room *room)
{
	return room->is_initial || (k == SX_RECEIPTS && room->is_expanded);
}

void
ss_ext_sort(enum ss_ext_kind k, const struct ss_ext_cfg *cfg,
            const struct ss_ctx *c, const struct ss_ext_state *prev,
            struct ss_ext_rooms *out, struct map *now)
{
	const struct ss_ext_one *e = &cfg->x[k];
	int64_t since;

	memset(out, 0, sizeof(*out));
	if (!e->is_on)
		return;
	out->fresh = xcalloc((size_t)c->nrooms + 1, sizeof(*out->fresh));
	out->live = xcalloc((size_t)c->nrooms + 1, sizeof(*out->live));
	out->back = xcalloc((size_t)c->nrooms + 1, sizeof(*out->back));
	out->back_since =
	    xcalloc((size_t)c->nrooms + 1, sizeof(*out->back_since));
	for (int i = 0; i < c->nrooms; i++) {
		const struct ss_ext_room *room = &c->rooms[i];
		if (!ss_ext_scoped(e, c, room) || map_get(now, room->room_id))
			continue;
		map_put(now, room->room_id, (void *)1);
		if (c->is_new_conn || !prev->was_on[k] || restarts(k, room))
			out->fresh[out->nfresh++] = room->room_id;
		else if (map_get(&prev->scope[k], room->room_id))
			out->live[out->nlive++] = room->room_id;
		else if (k == SX_RECEIPTS &&
		         map_get_i64(&prev->rc_out, room->room_id, &since)) {
			out->back[out->nback] = room->room_id;
			out->back_since[out->nback++] = since;
		} else
			out->fresh[out->nfresh++] = room->room_id;
	}
}

struct rc_out_ctx {
	const struct map *scope; /* receipts' scope now */
	const struct map *was;   /* the confirmed rc_out */
	struct map *out;
	int64_t pos; /* -1: the room's position in was */
};

/* A room out of the scope now is kept, with the position it left at. */
static void
rc_out_cb(const char *room_id, void *val, void *arg)
{
	struct rc_out_ctx *x = arg;
	int64_t pos = x->pos;

	(void)val;
	if (map_get(x->scope, room_id) != NULL ||
	    map_get_i64(x->out, room_id, NULL) ||
	    map_count(x->out) >= SS_RC_OUT_MAX)
		return;
	if (pos < 0 && !map_get_i64(x->was, room_id, &pos))
		return;
	map_put_i64(x->out, room_id, pos);
}

void
ss_ext_rc_out(const struct ss_ctx *c, const struct ss_ext_state *prev,
              struct ss_ext_state *now)
{
	struct rc_out_ctx x = {&now->scope[SX_RECEIPTS], &prev->rc_out,
	                       &now->rc_out, -1};

	if (c->is_new_conn || !prev->was_on[SX_RECEIPTS] ||
	    !now->was_on[SX_RECEIPTS])
		return;
	/* still out: as they were */
	map_each(&prev->rc_out, rc_out_cb, &x);
	/* just left: the last response sent their receipts up to its pos */
	x.pos = c->from_pos;
	map_each(&prev->scope[SX_RECEIPTS], rc_out_cb, &x);
}

void
ss_ext_rooms_free(struct ss_ext_rooms *r)
{
	free(r->fresh);
	free(r->live);
	free(r->back);
	free(r->back_since);
	memset(r, 0, sizeof(*r));
}

/* o without its member name: a new object sharing the other values. */
static struct json_object *
without(struct json_object *o, const char *name)
{
	struct json_object *n = json_object_new_object();

	if (!json_object_is_type(o, json_type_object))
		return n;
	json_object_object_foreach(o, k, v)
	{
		if (strcmp(k, name) != 0)
			json_object_object_add(n, k, json_object_get(v));
	}
	return n;
}

/*
 * to_device.since is an acknowledgement (kept in
 * syncv3_ss_to_device_acks), not a setting: every request of a client
 * carries a new one, and counting it as a sticky change answered every
 * long-poll at once.
 */
bool
ss_ext_sticky_same(struct json_object *a, struct json_object *b)
{
	struct json_object *x = without(a, names[SX_TO_DEVICE]);
	struct json_object *y = without(b, names[SX_TO_DEVICE]);
	struct json_object *tx =
	    without(json_get_obj(a, names[SX_TO_DEVICE]), "since");
	struct json_object *ty =
	    without(json_get_obj(b, names[SX_TO_DEVICE]), "since");
	bool same = json_object_equal(x, y) && json_object_equal(tx, ty);

	json_object_put(x);
	json_object_put(y);
	json_object_put(tx);
	json_object_put(ty);
	return same;
}
