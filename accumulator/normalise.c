/*
 * v2 /sync body -> change set (struct acc_changes). Pure: no I/O, no
 * positions. The body is validated as a whole with jsonv (no tree);
 * each event is then taken as its exact byte span (jscan.c) and parsed on
 * its own, so one bad event is dropped and counted while the rest of the
 * response is kept. Everything the store needs is extracted here, and
 * each event's tree freed once it is.
 */
#include <stdlib.h>
#include <string.h>

#include "accumulator.h"
#include "json_util.h"
#include "jsonv.h"
#include "util.h"

enum { F_OK = -1 };

const char *
acc_bad_name(int kind)
{
	static const char *const names[] = {"not an object", "no event_id",
	    "wrong types", "too big", "bad encoding", "wrong room"};

	return kind >= 0 && kind < ACC_BAD__MAX ? names[kind] : "unknown";
}

const char *
acc_section_name(int s)
{
	static const char *const names[] = {"join", "invite", "leave",
	    "knock"};

	return s >= 0 && s <= ACC_KNOCK ? names[s] : "unknown";
}

/*
 * Strict UTF-8 (no overlong forms, surrogates or NUL): indexed strings go
 * into text columns, and Postgres would reject what this rejects, failing
 * the whole message instead of dropping one event.
 */
static bool
utf8_ok(const unsigned char *s, size_t n)
{
	size_t i = 0, k;
	uint32_t cp;

	while (i < n) {
		unsigned char c = s[i];
		if (c < 0x80) {
			if (c == 0)
				return false;
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			k = 1, cp = c & 0x1f;
		else if (c >= 0xe0 && c <= 0xef)
			k = 2, cp = c & 0x0f;
		else if (c >= 0xf0 && c <= 0xf4)
			k = 3, cp = c & 0x07;
		else
			return false;
		if (i + k >= n)
			return false;
		for (size_t j = 1; j <= k; j++) {
			if ((s[i + j] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + j] & 0x3f);
		}
		if ((k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) ||
		    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += k + 1;
	}
	return true;
}

/* A string fit for an indexed text column: no NUL, valid UTF-8. */
static bool
str_ok(struct json_object *v, size_t max)
{
	const char *s = json_object_get_string(v);
	size_t n = (size_t)json_object_get_string_len(v);

	return n <= max && strlen(s) == n &&
	    utf8_ok((const unsigned char *)s, n);
}

/* Gets a string field; returns F_OK or the acc_bad kind. */
static int
get_field(struct json_object *o, const char *key, bool required,
    const char **out)
{
	struct json_object *v;

	*out = NULL;
	if (!json_object_object_get_ex(o, key, &v))
		return required ? ACC_BAD_TYPES : F_OK;
	if (!json_object_is_type(v, json_type_string))
		return ACC_BAD_TYPES;
	if ((size_t)json_object_get_string_len(v) > ACC_ID_MAX)
		return ACC_BAD_TOO_BIG;
	if (!str_ok(v, ACC_ID_MAX))
		return ACC_BAD_ENCODING;
	*out = json_object_get_string(v);
	return F_OK;
}

const char *
acc_summary_key(const char *type)
{
	static const char *const map[][2] = {{"m.room.name", "name"},
	    {"m.room.topic", "topic"}, {"m.room.canonical_alias", "alias"},
	    {"m.room.avatar", "url"}, {"m.room.create", "type"},
	    {"m.room.encryption", "algorithm"}};

	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (strcmp(type, map[i][0]) == 0)
			return map[i][1];
	return NULL;
}

/*
 * Fills ev's indexed fields from its parsed object (the strings stay
 * owned by ev->obj until event_detach) and says why an event is
 * unusable, as an acc_bad kind; an event of another room, or a
 * state-block event without a state key, is dropped rather than stored
 * under the wrong key.
 */
static int
event_fields(struct acc_event *ev, const char *room_id, bool need_state)
{
	struct json_object *o = ev->obj, *content, *v;
	const char *rid, *sk;
	int rc;

	if (!json_object_object_get_ex(o, "event_id", &v) ||
	    (json_object_is_type(v, json_type_string) &&
		json_object_get_string_len(v) == 0))
		return ACC_BAD_NO_ID;
	if ((rc = get_field(o, "event_id", true, &ev->event_id)) != F_OK ||
	    (rc = get_field(o, "type", true, &ev->type)) != F_OK ||
	    (rc = get_field(o, "sender", true, &ev->sender)) != F_OK ||
	    (rc = get_field(o, "state_key", false, &ev->state_key)) != F_OK ||
	    (rc = get_field(o, "room_id", false, &rid)) != F_OK)
		return rc;
	if (rid != NULL && strcmp(rid, room_id) != 0)
		return ACC_BAD_ROOM;
	if (need_state && ev->state_key == NULL)
		return ACC_BAD_TYPES;
	if ((content = json_get_obj(o, "content")) == NULL)
		return ACC_BAD_TYPES;
	if (json_object_object_get_ex(o, "origin_server_ts", &v)) {
		if (!json_object_is_type(v, json_type_int))
			return ACC_BAD_TYPES;
		ev->ts = json_object_get_int64(v);
	}
	if ((sk = ev->state_key) == NULL)
		return F_OK;
	if (strcmp(ev->type, "m.room.member") == 0 &&
	    json_object_object_get_ex(content, "membership", &v)) {
		if (!json_object_is_type(v, json_type_string))
			return ACC_BAD_TYPES;
		if (!str_ok(v, ACC_ID_MAX))
			return ACC_BAD_ENCODING;
		ev->membership = json_object_get_string(v);
	}
	if (sk[0] == '\0' && acc_summary_key(ev->type) != NULL &&
	    json_object_object_get_ex(content, acc_summary_key(ev->type), &v) &&
	    json_object_is_type(v, json_type_string) && str_ok(v, 64 * 1024))
		ev->summary = json_object_get_string(v);
	return F_OK;
}

static void
bad(struct acc_changes *c, int kind, const char *where)
{
	c->bad[kind]++;
	c->nbad++;
	log_warnx_rl("normalise: %s: dropped event: %s", where,
	    acc_bad_name(kind));
}

/*
 * unsigned.transaction_id is the sending device's alone (014_txn.sql), so
 * it is cut from the bytes stored for everyone, whoever delivered the
 * event, every other byte kept; ev->txn_id keeps it when it is a string
 * Postgres can store. Each cut is looked for again in the shortened
 * copy, so duplicate keys go too.
 */
static void
txn_strip(struct acc_event *ev)
{
	struct json_object *u, *t;
	struct jscan_it it;
	struct jspan k, v, cut;
	size_t n = ev->raw_len, off;
	bool again = true;
	char *b;

	if (!json_object_object_get_ex(ev->obj, "unsigned", &u) ||
	    !json_object_object_get_ex(u, "transaction_id", &t))
		return;
	if (json_object_is_type(t, json_type_string) && str_ok(t, 4096))
		ev->txn_id = json_object_get_string(t);
	b = xmalloc(n);
	memcpy(b, ev->raw, n);
	while (again) {
		again = false;
		if (jscan_open(&it, (struct jspan){b, n}, '{') == -1)
			break;
		while (jscan_member(&it, &k, &v) == 1) {
			if (!jscan_key_eq(k, "unsigned") ||
			    jscan_cut(v, "transaction_id", &cut) != 1)
				continue;
			off = (size_t)(cut.p - b);
			memmove(b + off, b + off + cut.len, n - off - cut.len);
			n -= cut.len;
			again = true;
			break;
		}
	}
	ev->own = b;
	ev->raw = b;
	ev->raw_len = n;
}

static char *
pack(char *p, const char **s)
{
	size_t n;

	if (*s == NULL)
		return p;
	n = strlen(*s) + 1;
	memcpy(p, *s, n);
	*s = p;
	return p + n;
}

/*
 * Copies the fields the store reads out of ev's tree into one block
 * (ev->own, after the stripped bytes if any) and frees the tree: a
 * json-c tree takes several times its event's bytes, and a large body's
 * trees, all held until its transaction ends, were most of the
 * accumulator's peak. A redaction keeps its tree (redaction.c reads its
 * target from it); there are few of them.
 */
static void
event_detach(struct acc_event *ev)
{
	const char **f[] = {&ev->event_id, &ev->type,       &ev->state_key,
	                    &ev->sender,   &ev->membership, &ev->summary,
	                    &ev->txn_id};
	size_t n = ev->own != NULL ? ev->raw_len : 0;
	char *b, *p;

	if (strcmp(ev->type, "m.room.redaction") == 0)
		return;
	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++)
		if (*f[i] != NULL)
			n += strlen(*f[i]) + 1;
	p = b = xmalloc(n + 1);
	if (ev->own != NULL) {
		memcpy(p, ev->raw, ev->raw_len);
		ev->raw = p;
		p += ev->raw_len;
	}
	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++)
		p = pack(p, f[i]);
	free(ev->own);
	ev->own = b;
	json_object_put(ev->obj);
	ev->obj = NULL;
}

/* Parses one event span into ev; false (counted) if it is bad. */
static bool
event_parse(struct acc_changes *c, struct jspan sp, const char *room_id,
    bool need_state, struct acc_event *ev)
{
	int rc;

	memset(ev, 0, sizeof(*ev));
	if (sp.len > ACC_EVENT_MAX) {
		bad(c, ACC_BAD_TOO_BIG, room_id);
		return false;
	}
	if (!jscan_is(sp, '{') ||
	    (ev->obj = json_parse_bounded(sp.p, sp.len, NULL)) == NULL) {
		bad(c, ACC_BAD_NOT_OBJECT, room_id);
		return false;
	}
	ev->raw = sp.p;
	ev->raw_len = sp.len;
	if ((rc = event_fields(ev, room_id, need_state)) != F_OK) {
		json_object_put(ev->obj);
		ev->obj = NULL;
		bad(c, rc, room_id);
		return false;
	}
	txn_strip(ev);
	event_detach(ev);
	return true;
}

static void
evlist_push(struct acc_evlist *l, const struct acc_event *ev)
{
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 8;
		l->v = xrealloc(l->v, l->cap * sizeof(*l->v));
	}
	l->v[l->n++] = *ev;
}

/* {"events": [...]} -> list; other keys go to other(). */
static void
norm_events(struct acc_changes *c, struct jspan v, const char *room_id,
    bool need_state, struct acc_evlist *out)
{
	struct jscan_it it, ai;
	struct jspan k, val, e;
	struct acc_event ev;

	if (jscan_open(&it, v, '{') == -1)
		return;
	while (jscan_member(&it, &k, &val) == 1) {
		if (!jscan_key_eq(k, "events") || jscan_open(&ai, val, '[') == -1)
			continue;
		while (jscan_elem(&ai, &e) == 1)
			if (event_parse(c, e, room_id, need_state, &ev)) {
				evlist_push(out, &ev);
				c->nevents++;
			}
	}
}

static void
norm_timeline(struct acc_changes *c, struct jspan v, struct acc_room *r)
{
	struct jscan_it it;
	struct jspan k, val;
	struct json_object *o;

	norm_events(c, v, r->room_id, false, &r->timeline);
	if (jscan_open(&it, v, '{') == -1)
		return;
	/* Only the small keys: the events were taken above. */
	while (jscan_member(&it, &k, &val) == 1) {
		if (jscan_key_eq(k, "limited"))
			r->limited = val.len == 4 && memcmp(val.p, "true", 4) == 0;
		else if (jscan_key_eq(k, "prev_batch")) {
			o = json_parse_bounded(val.p, val.len, NULL);
			if (json_object_is_type(o, json_type_string) &&
			    str_ok(o, 4096)) {
				free(r->prev_batch);
				r->prev_batch = xstrdup(json_object_get_string(o));
			}
			json_object_put(o);
		}
	}
}

static int
strcmp_p(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* m.typing content -> sorted, de-duplicated JSON array of user ids. */
static char *
typing_list(struct json_object *content)
{
	struct json_object *ids = json_get_arr(content, "user_ids"), *arr, *v;
	const char **u;
	size_t n = 0, len;
	char *out;

	if (ids == NULL)
		return NULL;
	u = xcalloc(json_object_array_length(ids) + 1, sizeof(*u));
	for (size_t i = 0; i < json_object_array_length(ids); i++) {
		v = json_object_array_get_idx(ids, i);
		if (json_object_is_type(v, json_type_string) &&
		    json_object_get_string_len(v) > 0 && str_ok(v, ACC_ID_MAX))
			u[n++] = json_object_get_string(v);
	}
	qsort(u, n, sizeof(*u), strcmp_p);
	arr = json_object_new_array();
	for (size_t i = 0; i < n; i++)
		if (i == 0 || strcmp(u[i], u[i - 1]) != 0)
			json_object_array_add(arr, json_object_new_string(u[i]));
	out = xstrdup(json_plain(arr, &len));
	json_object_put(arr);
	free(u);
	return out;
}

static void
receipt_add(struct acc_room *r, const char *eid, const char *rtype,
    const char *user, struct json_object *info)
{
	struct acc_receipt *rc;
	const char *thread = json_get_str(info, "thread_id");
	int64_t ts = 0;

	if (r->nreceipts >= ACC_RECEIPTS_MAX)
		return;
	if (thread != NULL && (strlen(thread) > ACC_ID_MAX ||
	    !utf8_ok((const unsigned char *)thread, strlen(thread))))
		return;
	json_get_int(info, "ts", &ts);
	r->receipts = xrealloc(r->receipts,
	    (r->nreceipts + 1) * sizeof(*r->receipts));
	rc = &r->receipts[r->nreceipts++];
	rc->event_id = xstrdup(eid);
	rc->rtype = xstrdup(rtype);
	rc->user_id = xstrdup(user);
	rc->thread_id = xstrdup(thread ? thread : "");
	rc->ts = ts;
}

static bool
key_ok(const char *k)
{
	size_t n = strlen(k);

	return n > 0 && n <= ACC_ID_MAX && utf8_ok((const unsigned char *)k, n);
}

/* m.receipt content: {event_id: {type: {user: {ts, thread_id}}}} */
static void
receipts(struct acc_room *r, struct json_object *content)
{
	json_object_object_foreach(content, eid, types)
	{
		if (!key_ok(eid) || !json_object_is_type(types,
		    json_type_object))
			continue;
		json_object_object_foreach(types, rtype, users)
		{
			if (!key_ok(rtype) || !json_object_is_type(users,
			    json_type_object))
				continue;
			json_object_object_foreach(users, user, info)
			{
				if (key_ok(user) && json_object_is_type(info,
				    json_type_object))
					receipt_add(r, eid, rtype, user, info);
			}
		}
	}
}

/*
 * A room's ephemeral events: typing (the last m.typing of the body wins)
 * and receipts; anything else is ignored, as it is not stored.
 */
static void
norm_ephemeral(struct jspan v, struct acc_room *r)
{
	struct json_object *o = json_parse_bounded(v.p, v.len, NULL), *evs;
	struct json_object *e, *content;
	const char *type;

	if ((evs = json_get_arr(o, "events")) == NULL)
		goto out;
	for (size_t i = 0; i < json_object_array_length(evs); i++) {
		e = json_object_array_get_idx(evs, i);
		type = json_get_str(e, "type");
		if (type == NULL || (content = json_get_obj(e, "content")) ==
		    NULL)
			continue;
		if (strcmp(type, "m.typing") == 0) {
			char *t = typing_list(content);
			if (t != NULL) {
				free(r->typing);
				r->typing = t;
			}
		} else if (strcmp(type, "m.receipt") == 0)
			receipts(r, content);
	}
out:
	json_object_put(o);
}

/* {"events": [{type, content}...]} -> account data entries, raw bytes. */
static void
norm_adata(struct acc_changes *c, struct jspan v, struct acc_adata **out,
    size_t *n)
{
	struct jscan_it it, ai;
	struct jspan k, val, e;
	struct json_object *o;
	const char *type;

	if (jscan_open(&it, v, '{') == -1)
		return;
	while (jscan_member(&it, &k, &val) == 1) {
		if (!jscan_key_eq(k, "events") || jscan_open(&ai, val, '[') == -1)
			continue;
		while (jscan_elem(&ai, &e) == 1) {
			o = e.len <= ACC_ADATA_MAX ?
			    json_parse_bounded(e.p, e.len, NULL) : NULL;
			if (get_field(o, "type", true, &type) != F_OK ||
			    type == NULL || type[0] == '\0' ||
			    json_get_obj(o, "content") == NULL) {
				bad(c, o ? ACC_BAD_TYPES : ACC_BAD_TOO_BIG,
				    "account_data");
				json_object_put(o);
				continue;
			}
			*out = xrealloc(*out, (*n + 1) * sizeof(**out));
			(*out)[*n].type = xstrdup(type);
			(*out)[*n].json = xstrndup(e.p, e.len);
			(*n)++;
			json_object_put(o);
		}
	}
}

static void
norm_unread(struct jspan v, struct acc_room *r)
{
	struct json_object *o = json_parse_bounded(v.p, v.len, NULL);

	if (json_object_is_type(o, json_type_object)) {
		r->has_unread = true;
		json_get_int(o, "notification_count", &r->notif);
		json_get_int(o, "highlight_count", &r->highlight);
	}
	json_object_put(o);
}

static void
norm_summary(struct jspan v, struct acc_room *r)
{
	struct json_object *o = json_parse_bounded(v.p, v.len, NULL), *h, *arr;
	size_t len;

	if ((h = json_get_arr(o, "m.heroes")) != NULL) {
		arr = json_object_new_array();
		for (size_t i = 0; i < json_object_array_length(h); i++) {
			struct json_object *u = json_object_array_get_idx(h, i);
			if (json_object_is_type(u, json_type_string) &&
			    str_ok(u, ACC_ID_MAX))
				json_object_array_add(arr, json_object_get(u));
		}
		free(r->heroes);
		r->heroes = xstrdup(json_plain(arr, &len));
		json_object_put(arr);
	}
	json_get_int(o, "m.joined_member_count", &r->joined_count);
	json_get_int(o, "m.invited_member_count", &r->invited_count);
	json_object_put(o);
}

/* invite_state / knock_state: keep the stripped events array as is. */
static void
norm_stripped(struct jspan v, struct acc_room *r)
{
	struct jscan_it it;
	struct jspan k, val;

	if (jscan_open(&it, v, '{') == -1)
		return;
	while (jscan_member(&it, &k, &val) == 1)
		if (jscan_key_eq(k, "events") && jscan_is(val, '[')) {
			free(r->invite_state);
			r->invite_state = xstrndup(val.p, val.len);
		}
}

/* The syncing user's membership, from their own latest member event. */
static const char *
my_membership(struct acc_room *r, const char *user_id)
{
	static const char *const fixed[] = {"join", "invite", NULL, "knock"};
	const char *m = "leave";

	if (r->section != ACC_LEAVE)
		return fixed[r->section];
	if (user_id == NULL)
		return m;
	for (int pass = 0; pass < 2; pass++) {
		struct acc_evlist *l = pass ? &r->timeline : &r->state;
		for (size_t i = 0; i < l->n; i++)
			if (l->v[i].membership != NULL &&
			    strcmp(l->v[i].state_key, user_id) == 0 &&
			    (strcmp(l->v[i].membership, "ban") == 0 ||
				strcmp(l->v[i].membership, "leave") == 0))
				m = strcmp(l->v[i].membership, "ban") == 0 ?
				    "ban" : "leave";
	}
	return m;
}

/*
 * One room of one section: adds an acc_room (owning copies of what it
 * keeps) and fills it from the room's members; the user's own membership
 * is derived last, from the section and the state it saw.
 */
static int
norm_room_it(struct acc_changes *c, const char *room_id, int section,
             struct jscan_it *it, const char *user_id, bool is_light)
{
	struct acc_room *r;
	struct jspan k, val;
	int rc;

	if (c->nrooms == c->caprooms) {
		c->caprooms = c->caprooms ? c->caprooms * 2 : 8;
		c->rooms = xrealloc(c->rooms, c->caprooms * sizeof(*c->rooms));
	}
	r = &c->rooms[c->nrooms++];
	memset(r, 0, sizeof(*r));
	r->room_id = xstrdup(room_id);
	r->section = section;
	r->joined_count = r->invited_count = -1;
	r->span.p = it->p - 1; /* its opening brace */
	while ((rc = jscan_member(it, &k, &val)) == 1) {
		if (is_light) {
			/* all a window's choice reads (store_window_choose) */
			if (jscan_key_eq(k, "timeline"))
				norm_events(c, val, room_id, false,
				            &r->timeline);
			continue;
		}
		if (jscan_key_eq(k, "state"))
			norm_events(c, val, room_id, true, &r->state);
		else if (jscan_key_eq(k, "timeline"))
			norm_timeline(c, val, r);
		else if (jscan_key_eq(k, "ephemeral"))
			norm_ephemeral(val, r);
		else if (jscan_key_eq(k, "account_data"))
			norm_adata(c, val, &r->adata, &r->nadata);
		else if (jscan_key_eq(k, "unread_notifications"))
			norm_unread(val, r);
		else if (jscan_key_eq(k, "summary"))
			norm_summary(val, r);
		else if (jscan_key_eq(k, "invite_state") ||
		    jscan_key_eq(k, "knock_state"))
			norm_stripped(val, r);
	}
	/* through its closing brace, where the walk ended */
	r->span.len = (size_t)(it->p - r->span.p) + (rc == 0);
	r->my_membership = my_membership(r, user_id);
	return rc;
}

/* The room whose value is v (normalise_pick: a span of the light pass). */
static void
norm_room(struct acc_changes *c, const char *room_id, int section,
          struct jspan v, const char *user_id, bool is_light)
{
	struct jscan_it it;

	if (jscan_open(&it, v, '{') == 0)
		(void)norm_room_it(c, room_id, section, &it, user_id,
		                   is_light);
}

/*
 * rooms.{join,invite,leave,knock}: a room id that is not a usable key is
 * counted as bad and its room skipped, the other rooms stay.
 */
static int
section_of(struct jspan k)
{
	static const char *const sections[] = {"join", "invite", "leave",
	    "knock"};

	for (int s = 0; s <= ACC_KNOCK; s++)
		if (jscan_key_eq(k, sections[s]))
			return s;
	return -1;
}

/* One section's rooms, entered from up (at its value, an object). */
static int
norm_section(struct acc_changes *c, struct jscan_it *up, int s,
             const char *user_id, bool is_light)
{
	struct jscan_it ri, rm;
	struct jspan rk, rv;
	char *room_id;
	int rc;

	jscan_enter(up, '{', &ri);
	while ((rc = jscan_key(&ri, &rk)) == 1) {
		room_id = jscan_str(rk);
		if (room_id == NULL || !key_ok(room_id) || !jscan_at(&ri, '{')) {
			if (room_id == NULL || !key_ok(room_id))
				bad(c, ACC_BAD_ENCODING, "room id");
			free(room_id);
			if (jscan_value(&ri, &rv) == -1)
				return -1;
			continue;
		}
		jscan_enter(&ri, '{', &rm);
		rc = norm_room_it(c, room_id, s, &rm, user_id, is_light);
		free(room_id);
		if (rc != 0 || jscan_leave(&ri, &rm) == -1)
			return -1;
	}
	return rc == 0 ? jscan_leave(up, &ri) : -1;
}

/*
 * rooms.{join,invite,leave,knock}, entered from up (jscan_key: rooms),
 * not skipped first (jscan.c). A room id that is not a usable key is
 * counted as bad and its room skipped, the other rooms stay. -1 if the
 * text is broken (a validated body never is), up then unusable.
 */
static int
norm_rooms(struct acc_changes *c, struct jscan_it *up, const char *user_id,
           bool is_light)
{
	struct jscan_it it;
	struct jspan k, val;
	int rc, s;

	if (!jscan_at(up, '{'))
		return jscan_value(up, &val) == 1 ? 0 : -1;
	jscan_enter(up, '{', &it);
	while ((rc = jscan_key(&it, &k)) == 1) {
		if ((s = section_of(k)) >= 0 && jscan_at(&it, '{')) {
			if (norm_section(c, &it, s, user_id, is_light) == -1)
				return -1;
		} else if (jscan_value(&it, &val) == -1)
			return -1;
	}
	return rc == 0 ? jscan_leave(up, &it) : -1;
}

static void
str_push(char ***v, size_t *n, const char *s)
{
	*v = xrealloc(*v, (*n + 1) * sizeof(**v));
	(*v)[(*n)++] = xstrdup(s);
}

/*
 * to_device.events: each event is kept as its exact bytes (the api
 * serves them as they came); one without a type or content, or over
 * ACC_TO_DEVICE_MAX, is counted as bad and dropped.
 */
static void
norm_to_device(struct acc_changes *c, struct jspan v)
{
	struct jscan_it it, ai;
	struct jspan k, val, e;
	struct json_object *o;

	if (jscan_open(&it, v, '{') == -1)
		return;
	while (jscan_member(&it, &k, &val) == 1) {
		if (!jscan_key_eq(k, "events") || jscan_open(&ai, val, '[') == -1)
			continue;
		while (jscan_elem(&ai, &e) == 1) {
			o = e.len <= ACC_TO_DEVICE_MAX ?
			    json_parse_bounded(e.p, e.len, NULL) : NULL;
			if (json_get_str(o, "type") == NULL ||
			    json_get_obj(o, "content") == NULL) {
				bad(c, o ? ACC_BAD_TYPES : ACC_BAD_TOO_BIG,
				    "to_device");
				json_object_put(o);
				continue;
			}
			json_object_put(o);
			c->to_device = xrealloc(c->to_device,
			    (c->nto_device + 1) * sizeof(*c->to_device));
			c->to_device[c->nto_device++] = xstrndup(e.p, e.len);
		}
	}
}

static void
user_list(struct json_object *o, const char *key, char ***v, size_t *n)
{
	struct json_object *a = json_get_arr(o, key), *u;

	for (size_t i = 0; a != NULL && i < json_object_array_length(a); i++) {
		u = json_object_array_get_idx(a, i);
		if (json_object_is_type(u, json_type_string) &&
		    json_object_get_string_len(u) > 0 && str_ok(u, ACC_ID_MAX))
			str_push(v, n, json_object_get_string(u));
	}
}

/*
 * device_unused_fallback_key_types, also under its MSC2732 name (older
 * Synapse, ruma's alias): the stable one wins, whatever the order. Left
 * NULL when the body has neither, which the e2ee extension passes on as
 * absent: to matrix-rust-sdk (Account::update_key_counts) absent means
 * the server has no fallback keys, [] that it has none unused.
 */
#define FALLBACK_UNSTABLE "org.matrix.msc2732.device_unused_fallback_key_types"

static void
norm_device(struct acc_changes *c, struct jspan k, struct jspan v)
{
	struct json_object *o = json_parse_bounded(v.p, v.len, NULL);

	if (jscan_key_eq(k, "device_lists")) {
		user_list(o, "changed", &c->dl_changed, &c->ndl_changed);
		user_list(o, "left", &c->dl_left, &c->ndl_left);
	} else if (jscan_key_eq(k, "device_one_time_keys_count") &&
	    json_object_is_type(o, json_type_object)) {
		free(c->otk_counts);
		c->otk_counts = xstrndup(v.p, v.len);
	} else if ((jscan_key_eq(k, "device_unused_fallback_key_types") ||
	    (jscan_key_eq(k, FALLBACK_UNSTABLE) && !c->has_fallback_stable)) &&
	    json_object_is_type(o, json_type_array)) {
		free(c->fallback_types);
		c->fallback_types = xstrndup(v.p, v.len);
		c->has_fallback_stable = !jscan_key_eq(k, FALLBACK_UNSTABLE);
	}
	json_object_put(o);
}

/*
 * The body's members, it opened at its top: rooms entered (norm_rooms),
 * the rest skipped to their spans; a light pass keeps only the global
 * account data besides the rooms.
 */
static void
norm_top(struct acc_changes *c, struct jscan_it *it, const char *user_id,
         bool is_light)
{
	struct jspan k, v;

	while (jscan_key(it, &k) == 1) {
		if (jscan_key_eq(k, "rooms")) {
			if (norm_rooms(c, it, user_id, is_light) == -1)
				break;
			continue;
		}
		if (jscan_value(it, &v) == -1)
			break;
		if (jscan_key_eq(k, "account_data"))
			norm_adata(c, v, &c->adata, &c->nadata);
		else if (is_light)
			continue;
		else if (jscan_key_eq(k, "to_device"))
			norm_to_device(c, v);
		else
			norm_device(c, k, v);
	}
}

/*
 * The body is validated as a whole by jsonv, the poller's validator,
 * which builds no tree: json-c's tree of a large body takes many times
 * its bytes, only to be thrown away (with the events' trees, the peak of
 * a 16 MB initial sync went from 478 to 117 MiB). It refuses what the
 * poller refuses, surrogates and overlong UTF-8 included, which Postgres
 * would refuse later, failing the whole transaction. The parts are then
 * located with jscan, so raw event bytes can be stored exactly as they
 * came.
 */
int
normalise(const char *body, size_t len, const char *user_id,
    struct acc_changes *c, const char **err)
{
	struct jsonv jv;
	struct jscan_it it;
	struct jspan whole = {body, len};
	int rc;

	memset(c, 0, sizeof(*c));
	jsonv_init(&jv);
	jsonv_feed(&jv, body, len);
	rc = jsonv_end(&jv);
	if (rc == -1 && err != NULL)
		*err = jv.err;
	jsonv_free(&jv);
	if (rc == -1)
		return -1;
	if (jscan_open(&it, whole, '{') == -1) {
		if (err != NULL)
			*err = "scan failed";
		return -1;
	}
	norm_top(c, &it, user_id, false);
	return 0;
}

/*
 * No json-c tree of the whole body here: building and freeing one costs
 * most of normalise's time at 10,000 rooms, and the window needs a tenth
 * of a percent of them. jscan never reads outside the body, and the
 * events kept are parsed one by one as normalise parses them; the fill's
 * normalise validates the body whole before the since moves.
 */
int
normalise_light(const char *body, size_t len, const char *user_id,
                struct acc_changes *c)
{
	struct jscan_it it;
	struct jspan whole = {body, len};

	memset(c, 0, sizeof(*c));
	c->is_light = true;
	if (jscan_open(&it, whole, '{') == -1)
		return -1;
	norm_top(c, &it, user_id, true);
	return 0;
}

void
normalise_pick(const struct acc_changes *light, const bool *sel,
               const char *user_id, struct acc_changes *c)
{
	memset(c, 0, sizeof(*c));
	c->is_picked = true;
	for (size_t i = 0; i < light->nrooms; i++) {
		const struct acc_room *r = &light->rooms[i];

		if (sel[i])
			norm_room(c, r->room_id, (int)r->section, r->span,
			          user_id, false);
	}
	c->adata = light->adata;
	c->nadata = light->nadata;
}

static void
evlist_free(struct acc_evlist *l)
{
	for (size_t i = 0; i < l->n; i++) {
		json_object_put(l->v[i].obj);
		free(l->v[i].own);
	}
	free(l->v);
}

static void
adata_free(struct acc_adata *a, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(a[i].type);
		free(a[i].json);
	}
	free(a);
}

static void
strv_free(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* Frees everything normalise() allocated in c; c may be reused after. */
void
normalise_free(struct acc_changes *c)
{
	for (size_t i = 0; i < c->nrooms; i++) {
		struct acc_room *r = &c->rooms[i];
		free(r->room_id);
		evlist_free(&r->state);
		evlist_free(&r->timeline);
		free(r->prev_batch);
		free(r->typing);
		for (size_t j = 0; j < r->nreceipts; j++) {
			free(r->receipts[j].event_id);
			free(r->receipts[j].rtype);
			free(r->receipts[j].user_id);
			free(r->receipts[j].thread_id);
		}
		free(r->receipts);
		adata_free(r->adata, r->nadata);
		free(r->heroes);
		free(r->invite_state);
	}
	free(c->rooms);
	if (!c->is_picked)
		adata_free(c->adata, c->nadata);
	strv_free(c->to_device, c->nto_device);
	strv_free(c->dl_changed, c->ndl_changed);
	strv_free(c->dl_left, c->ndl_left);
	free(c->otk_counts);
	free(c->fallback_types);
	memset(c, 0, sizeof(*c));
}
