/*
 * ss_proto.c: sliding sync on the wire (pure: no request, no database,
 * so it is unit tested and fuzzed). Parses either dialect's request into
 * one struct ss_request (ss.h) and writes one struct ss_response back in
 * either dialect; also the room config rules the MSC states (matching,
 * combining) and the connection's pos token. The dialects differ in:
 *   Synapse: pos/timeout/set_presence in the query, required_state as
 *	[type, state_key] pairs with "*", "$LAZY", "$ME", "ranges",
 *	is_invite, invite_state, unstable_expanded_timeline;
 *   v4: pos/timeout/conn_id/set_presence in the body, required_state
 *	{include, exclude, lazy_members}, "range", is_invited,
 *	stripped_state, expanded_timeline, StateStubs, lists/membership
 *	in a room, no notification counts.
 * Unknown fields are ignored (Synapse ignores them too, and clients send
 * MSC3575 leftovers such as sort and include_old_rooms).
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "json_util.h"
#include "ss.h"
#include "util.h"

const char *
ss_dialect_name(enum ss_dialect d)
{
	return d == SS_V4 ? "v4" : "synapse";
}

static int fail(struct ss_parse_err *, const char *, const char *, ...)
    __attribute__((format(printf, 3, 4)));

/* Records a refusal (400 unless the caller changes it); returns -1. */
static int
fail(struct ss_parse_err *e, const char *errcode, const char *fmt, ...)
{
	va_list ap;

	e->status = 400;
	e->errcode = errcode;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
	va_end(ap);
	return -1;
}

/* The MSC's "opaque identifiers": 1-255 of [A-Za-z0-9._~-]. */
static bool
is_opaque_id(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > SS_KEY_MAX)
		return false;
	return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	                 "0123456789._~-") == n;
}

static char *
dup_or_null(const char *s)
{
	return s != NULL ? xstrdup(s) : NULL;
}

static void
strv_free(char **v, int n)
{
	for (int i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/*
 * A filter's array of strings (with nulls allowed when is_nullable: the
 * room_types "no type"). Absent: *has false.
 */
static int
parse_strv(struct json_object *o, const char *key, bool is_nullable, bool *has,
           char ***v, int *n, struct ss_parse_err *e)
{
	struct json_object *a, *x;
	size_t len;

	*has = false;
	if (!json_object_object_get_ex(o, key, &a) || a == NULL)
		return 0;
	if (!json_object_is_type(a, json_type_array))
		return fail(e, "M_BAD_JSON", "filters.%s must be an array",
		            key);
	len = json_object_array_length(a);
	if (len > SS_MAX_FILTER)
		return fail(e, "M_INVALID_PARAM",
		            "filters.%s: too many "
		            "entries",
		            key);
	*v = xcalloc(len + 1, sizeof(**v));
	*has = true;
	for (size_t i = 0; i < len; i++) {
		x = json_object_array_get_idx(a, i);
		if (x == NULL && is_nullable) {
			(*v)[(*n)++] = NULL;
			continue;
		}
		if (!json_object_is_type(x, json_type_string))
			return fail(e, "M_BAD_JSON",
			            "filters.%s entries must "
			            "be strings",
			            key);
		(*v)[(*n)++] = xstrdup(json_object_get_string(x));
	}
	return 0;
}

static int
parse_tri(struct json_object *o, const char *key, enum ss_tri *t,
          struct ss_parse_err *e)
{
	struct json_object *v;

	*t = SS_UNSET;
	if (!json_object_object_get_ex(o, key, &v) || v == NULL)
		return 0;
	if (!json_object_is_type(v, json_type_boolean))
		return fail(e, "M_BAD_JSON", "filters.%s must be a boolean",
		            key);
	*t = json_object_get_boolean(v) ? SS_YES : SS_NO;
	return 0;
}

static int
parse_filters(enum ss_dialect d, struct json_object *o, struct ss_filters *f,
              struct ss_parse_err *e)
{
	struct json_object *fo;

	f->is_dm = f->is_invite = f->is_encrypted = SS_UNSET;
	if (!json_object_object_get_ex(o, "filters", &fo) || fo == NULL)
		return 0;
	if (!json_object_is_type(fo, json_type_object))
		return fail(e, "M_BAD_JSON", "%s must be an object", "filters");
	if (parse_tri(fo, "is_dm", &f->is_dm, e) == -1 ||
	    parse_tri(fo, d == SS_V4 ? "is_invited" : "is_invite",
	              &f->is_invite, e) == -1 ||
	    parse_tri(fo, "is_encrypted", &f->is_encrypted, e) == -1 ||
	    parse_strv(fo, "spaces", false, &f->has_spaces, &f->spaces,
	               &f->nspaces, e) == -1 ||
	    parse_strv(fo, "room_types", true, &f->has_room_types,
	               &f->room_types, &f->nroom_types, e) == -1 ||
	    parse_strv(fo, "not_room_types", true, &f->has_not_room_types,
	               &f->not_room_types, &f->nnot_room_types, e) == -1 ||
	    parse_strv(fo, "tags", false, &f->has_tags, &f->tags, &f->ntags,
	               e) == -1 ||
	    parse_strv(fo, "not_tags", false, &f->has_not_tags, &f->not_tags,
	               &f->nnot_tags, e) == -1)
		return -1;
	return 0;
}

static void
filters_free(struct ss_filters *f)
{
	strv_free(f->spaces, f->nspaces);
	strv_free(f->room_types, f->nroom_types);
	strv_free(f->not_room_types, f->nnot_room_types);
	strv_free(f->tags, f->ntags);
	strv_free(f->not_tags, f->nnot_tags);
	memset(f, 0, sizeof(*f));
}

static void
rs_add(struct ss_rs_elem **v, int *n, const char *type, const char *key,
       int group)
{
	*v = xrealloc(*v, sizeof(**v) * (size_t)(*n + 1));
	(*v)[*n].type = dup_or_null(type);
	(*v)[*n].state_key = dup_or_null(key);
	(*v)[*n].group = group;
	(*n)++;
}

/* Synapse: [[type, state_key], ...] with "*", "$LAZY" and "$ME". */
static int
parse_rs_pairs(struct json_object *a, struct ss_required_state *rs,
               struct ss_parse_err *e)
{
	struct json_object *p, *t, *k;
	const char *ts, *ks;
	size_t len = json_object_array_length(a);

	if (len > SS_MAX_RS)
		return fail(e, "M_INVALID_PARAM", "%s: too many entries",
		            "required_state");
	for (size_t i = 0; i < len; i++) {
		p = json_object_array_get_idx(a, i);
		if (!json_object_is_type(p, json_type_array) ||
		    json_object_array_length(p) != 2 ||
		    !json_object_is_type(t = json_object_array_get_idx(p, 0),
		                         json_type_string) ||
		    !json_object_is_type(k = json_object_array_get_idx(p, 1),
		                         json_type_string))
			return fail(e, "M_BAD_JSON",
			            "%s entries must be "
			            "[type, state_key] string pairs",
			            "required_state");
		ts = json_object_get_string(t);
		ks = json_object_get_string(k);
		if (strcmp(ts, "m.room.member") == 0 &&
		    strcmp(ks, "$LAZY") == 0) {
			rs->lazy_members = true;
			continue;
		}
		rs_add(&rs->include, &rs->ninclude,
		       strcmp(ts, "*") == 0 ? NULL : ts,
		       strcmp(ks, "*") == 0 ? NULL : ks, 0);
	}
	return 0;
}

/* v4: [{type?, state_key?}, ...] */
static int
parse_rs_elems(struct json_object *o, const char *key, struct ss_rs_elem **v,
               int *n, struct ss_parse_err *e)
{
	struct json_object *a, *x, *t, *k;
	size_t len;

	if (!json_object_object_get_ex(o, key, &a) || a == NULL)
		return 0;
	if (!json_object_is_type(a, json_type_array))
		return fail(e, "M_BAD_JSON",
		            "required_state.%s must be an "
		            "array",
		            key);
	if ((len = json_object_array_length(a)) > SS_MAX_RS)
		return fail(e, "M_INVALID_PARAM",
		            "required_state.%s: too "
		            "many entries",
		            key);
	for (size_t i = 0; i < len; i++) {
		x = json_object_array_get_idx(a, i);
		t = k = NULL;
		if (!json_object_is_type(x, json_type_object) ||
		    (json_object_object_get_ex(x, "type", &t) &&
		     !json_object_is_type(t, json_type_string)) ||
		    (json_object_object_get_ex(x, "state_key", &k) &&
		     !json_object_is_type(k, json_type_string)))
			return fail(
			    e, "M_BAD_JSON",
			    "required_state.%s "
			    "entries must be {type?, state_key?} strings",
			    key);
		rs_add(v, n, t ? json_object_get_string(t) : NULL,
		       k ? json_object_get_string(k) : NULL, 0);
	}
	return 0;
}

static int
parse_rs(enum ss_dialect d, struct json_object *o, struct ss_required_state *rs,
         struct ss_parse_err *e)
{
	struct json_object *v, *lz;

	if (!json_object_object_get_ex(o, "required_state", &v) || v == NULL)
		return 0;
	if (d == SS_SYNAPSE) {
		if (!json_object_is_type(v, json_type_array))
			return fail(e, "M_BAD_JSON",
			            "%s must be an array of "
			            "[type, state_key] pairs",
			            "required_state");
		return parse_rs_pairs(v, rs, e);
	}
	if (!json_object_is_type(v, json_type_object))
		return fail(e, "M_BAD_JSON",
		            "%s must be an object {include, "
		            "exclude, lazy_members}",
		            "required_state");
	if (json_object_object_get_ex(v, "lazy_members", &lz) && lz != NULL) {
		if (!json_object_is_type(lz, json_type_boolean))
			return fail(e, "M_BAD_JSON", "%s must be a boolean",
			            "required_state.lazy_members");
		rs->lazy_members = json_object_get_boolean(lz);
	}
	if (parse_rs_elems(v, "include", &rs->include, &rs->ninclude, e) ==
	        -1 ||
	    parse_rs_elems(v, "exclude", &rs->exclude, &rs->nexclude, e) == -1)
		return -1;
	/* a config with excludes is a group of its own (ss.h) */
	for (int i = 0; rs->nexclude > 0 && i < rs->ninclude; i++)
		rs->include[i].group = 1;
	for (int i = 0; i < rs->nexclude; i++)
		rs->exclude[i].group = 1;
	return 0;
}

int
ss_room_config_parse(enum ss_dialect d, struct json_object *o,
                     struct ss_room_config *cfg, struct ss_parse_err *e)
{
	struct json_object *v;
	int64_t n;

	memset(cfg, 0, sizeof(*cfg));
	if (!json_object_is_type(o, json_type_object))
		return fail(e, "M_BAD_JSON", "%s must be an object",
		            "a room config");
	if (json_object_object_get_ex(o, "timeline_limit", &v) && v != NULL) {
		if (!json_object_is_type(v, json_type_int))
			return fail(e, "M_BAD_JSON", "%s must be an integer",
			            "timeline_limit");
		n = json_object_get_int64(v);
		if (n < 0)
			return fail(e, "M_INVALID_PARAM",
			            "%s must not be "
			            "negative",
			            "timeline_limit");
		cfg->timeline_limit = n > SS_TIMELINE_MAX ? SS_TIMELINE_MAX : n;
	}
	return parse_rs(d, o, &cfg->rs, e);
}

static void
rs_elems_free(struct ss_rs_elem *v, int n)
{
	for (int i = 0; i < n; i++) {
		free(v[i].type);
		free(v[i].state_key);
	}
	free(v);
}

void
ss_room_config_free(struct ss_room_config *cfg)
{
	ss_rs_free(&cfg->rs);
	memset(cfg, 0, sizeof(*cfg));
}

static int
parse_range(struct json_object *a, struct ss_range *r, struct ss_parse_err *e)
{
	struct json_object *lo, *hi;

	if (!json_object_is_type(a, json_type_array) ||
	    json_object_array_length(a) != 2 ||
	    !json_object_is_type(lo = json_object_array_get_idx(a, 0),
	                         json_type_int) ||
	    !json_object_is_type(hi = json_object_array_get_idx(a, 1),
	                         json_type_int))
		return fail(e, "M_BAD_JSON", "%s must be [start, end] integers",
		            "a range");
	r->lo = json_object_get_int64(lo);
	r->hi = json_object_get_int64(hi);
	if (r->lo < 0 || r->hi < r->lo)
		return fail(e, "M_INVALID_PARAM", "%s: need 0 <= start <= end",
		            "a range");
	return 0;
}

static int
parse_ranges(enum ss_dialect d, struct json_object *o, struct ss_list *l,
             struct ss_parse_err *e)
{
	struct json_object *v;
	size_t len;

	if (d == SS_V4) {
		if (!json_object_object_get_ex(o, "range", &v) || v == NULL)
			return 0;
		l->nranges = 1;
		return parse_range(v, &l->ranges[0], e);
	}
	if (!json_object_object_get_ex(o, "ranges", &v) || v == NULL)
		return 0;
	if (!json_object_is_type(v, json_type_array))
		return fail(e, "M_BAD_JSON", "%s must be an array of ranges",
		            "ranges");
	if ((len = json_object_array_length(v)) > SS_MAX_RANGES)
		return fail(e, "M_INVALID_PARAM", "%s: too many ranges",
		            "ranges");
	for (size_t i = 0; i < len; i++)
		if (parse_range(json_object_array_get_idx(v, i),
		                &l->ranges[l->nranges++], e) == -1)
			return -1;
	/* Synapse: "ranges": [] selects no room at all */
	if (len == 0) {
		l->nranges = 1;
		l->ranges[0].lo = 1;
		l->ranges[0].hi = 0;
	}
	return 0;
}

static int
parse_lists(enum ss_dialect d, struct json_object *body, struct ss_request *q,
            struct ss_parse_err *e)
{
	struct json_object *lists;
	struct ss_list *l;
	int n;

	if (!json_object_object_get_ex(body, "lists", &lists) || lists == NULL)
		return 0;
	if (!json_object_is_type(lists, json_type_object))
		return fail(e, "M_BAD_JSON", "%s must be an object", "lists");
	if ((n = json_object_object_length(lists)) > SS_MAX_LISTS)
		return fail(e, "M_INVALID_PARAM", "too many %s (100 at most)",
		            "lists");
	q->lists = xcalloc((size_t)n + 1, sizeof(*q->lists));
	json_object_object_foreach(lists, key, val)
	{
		if (!is_opaque_id(key))
			return fail(e, "M_INVALID_PARAM",
			            "list key '%.64s' is "
			            "not an opaque identifier",
			            key);
		l = &q->lists[q->nlists++];
		l->key = xstrdup(key);
		l->f.is_dm = l->f.is_invite = l->f.is_encrypted = SS_UNSET;
		if (ss_room_config_parse(d, val, &l->cfg, e) == -1 ||
		    parse_ranges(d, val, l, e) == -1 ||
		    parse_filters(d, val, &l->f, e) == -1)
			return -1;
	}
	return 0;
}

static int
parse_subs(enum ss_dialect d, struct json_object *body, struct ss_request *q,
           struct ss_parse_err *e)
{
	struct json_object *subs;
	struct ss_sub *s;
	int n;

	if (!json_object_object_get_ex(body, "room_subscriptions", &subs) ||
	    subs == NULL)
		return 0;
	if (!json_object_is_type(subs, json_type_object))
		return fail(e, "M_BAD_JSON", "%s must be an object",
		            "room_subscriptions");
	if ((n = json_object_object_length(subs)) > SS_MAX_SUBS)
		return fail(e, "M_INVALID_PARAM", "too many %s (100 at most)",
		            "room_subscriptions");
	q->has_subs = true;
	q->subs = xcalloc((size_t)n + 1, sizeof(*q->subs));
	json_object_object_foreach(subs, key, val)
	{
		if (key[0] != '!' || strlen(key) > SS_KEY_MAX)
			return fail(e, "M_INVALID_PARAM",
			            "'%.64s' is not a "
			            "room id",
			            key);
		s = &q->subs[q->nsubs++];
		s->room_id = xstrdup(key);
		if (ss_room_config_parse(d, val, &s->cfg, e) == -1)
			return -1;
	}
	q->subs_json = json_object_get(subs);
	return 0;
}

static int
parse_unsub(struct json_object *body, struct ss_request *q,
            struct ss_parse_err *e)
{
	struct json_object *a, *x;
	size_t len;

	if (!json_object_object_get_ex(body, "unsubscribe_rooms", &a) ||
	    a == NULL)
		return 0;
	if (!json_object_is_type(a, json_type_array))
		return fail(e, "M_BAD_JSON", "%s must be an array of room ids",
		            "unsubscribe_rooms");
	if ((len = json_object_array_length(a)) > SS_MAX_UNSUB)
		return fail(e, "M_INVALID_PARAM", "%s: too many entries",
		            "unsubscribe_rooms");
	q->unsub = xcalloc(len + 1, sizeof(*q->unsub));
	for (size_t i = 0; i < len; i++) {
		x = json_object_array_get_idx(a, i);
		if (!json_object_is_type(x, json_type_string))
			return fail(e, "M_BAD_JSON",
			            "%s entries must be room "
			            "ids",
			            "unsubscribe_rooms");
		q->unsub[q->nunsub++] = xstrdup(json_object_get_string(x));
	}
	return 0;
}

static int
take_presence(struct ss_request *q, const char *v, struct ss_parse_err *e)
{
	if (v == NULL)
		return 0;
	if (strcmp(v, "online") != 0 && strcmp(v, "offline") != 0 &&
	    strcmp(v, "unavailable") != 0)
		return fail(e, "M_INVALID_PARAM",
		            "%s must be online, offline "
		            "or unavailable",
		            "set_presence");
	q->set_presence = xstrdup(v);
	return 0;
}

static int
take_timeout(struct ss_request *q, long long t, long long max,
             struct ss_parse_err *e)
{
	if (t < 0)
		return fail(e, "M_INVALID_PARAM",
		            "%s must be a non-negative "
		            "integer (ms)",
		            "timeout");
	q->timeout_ms = t > max ? max : t;
	return 0;
}

/*
 * Whether a query string has no other parameters than pos and timeout
 * (what the idle-poll key leaves out). A malformed one is not plain.
 */
static bool
query_is_plain(const char *qs, struct evkeyvalq *kv)
{
	struct evkeyvalq own;
	struct evkeyval *h;
	bool is_plain = true;

	if (kv == NULL) {
		if (qs == NULL || *qs == '\0')
			return true;
		TAILQ_INIT(&own);
		if (evhttp_parse_query_str(qs, &own) != 0)
			is_plain = false;
		kv = &own;
	}
	for (h = TAILQ_FIRST(kv); h != NULL; h = TAILQ_NEXT(h, next))
		if (strcmp(h->key, "pos") != 0 &&
		    strcmp(h->key, "timeout") != 0)
			is_plain = false;
	if (kv == &own)
		evhttp_clear_headers(&own);
	return is_plain;
}

/* Synapse dialect: pos, timeout and set_presence in the query string. */
static int
parse_query(const char *qs, long long max, struct ss_request *q,
            struct ss_parse_err *e, bool *is_plain)
{
	struct evkeyvalq kv;
	const char *v;
	long long t;
	int rc = -1;

	TAILQ_INIT(&kv);
	if (qs != NULL && evhttp_parse_query_str(qs, &kv) != 0) {
		fail(e, "M_INVALID_PARAM", "%s", "malformed query string");
		goto out;
	}
	*is_plain = query_is_plain(qs, &kv);
	if (evhttp_find_header(&kv, "access_token") != NULL) {
		fail(e, "M_MISSING_TOKEN", "%s",
		     "access_token in the query "
		     "string is not supported; send Authorization: Bearer");
		e->status = 401;
		goto out;
	}
	if ((v = evhttp_find_header(&kv, "timeout")) != NULL &&
	    ((v[0] < '0' || v[0] > '9' || parse_i64(v, &t) == -1)
	         ? fail(e, "M_INVALID_PARAM",
	                "%s must be a non-negative integer "
	                "(ms)",
	                "timeout")
	         : take_timeout(q, t, max, e)) == -1)
		goto out;
	/* present but empty is a bad pos, not none (a fresh start would
	 * drop the sticky settings unseen): M_UNKNOWN_POS, as Synapse */
	if ((v = evhttp_find_header(&kv, "pos")) != NULL)
		q->pos = xstrdup(v);
	if (take_presence(q, evhttp_find_header(&kv, "set_presence"), e) == -1)
		goto out;
	rc = 0;
out:
	evhttp_clear_headers(&kv);
	return rc;
}

/* A top-level string member: absent is fine, another type is not. */
static int
body_str(struct json_object *body, const char *key, const char **out,
         struct ss_parse_err *e)
{
	struct json_object *v;

	*out = NULL;
	if (!json_object_object_get_ex(body, key, &v) || v == NULL)
		return 0;
	if (!json_object_is_type(v, json_type_string))
		return fail(e, "M_BAD_JSON", "%s must be a string", key);
	*out = json_object_get_string(v);
	return 0;
}

/* Top-level members: v4 has pos/timeout/set_presence here; both conn_id. */
static int
parse_top(enum ss_dialect d, struct json_object *body, long long max,
          struct ss_request *q, struct ss_parse_err *e)
{
	struct json_object *v;
	const char *s;

	if (body_str(body, "conn_id", &s, e) == -1)
		return -1;
	if (s != NULL && *s != '\0' && !is_opaque_id(s))
		return fail(e, "M_INVALID_PARAM",
		            "%s is not an opaque "
		            "identifier",
		            "conn_id");
	q->conn_id = xstrdup(s != NULL ? s : "");
	if (d == SS_SYNAPSE)
		return 0;
	if (body_str(body, "pos", &s, e) == -1)
		return -1;
	if (s != NULL)
		q->pos = xstrdup(s);
	if (json_object_object_get_ex(body, "timeout", &v) && v != NULL &&
	    (!json_object_is_type(v, json_type_int)
	         ? fail(e, "M_BAD_JSON", "%s must be an integer", "timeout")
	         : take_timeout(q, json_object_get_int64(v), max, e)) == -1)
		return -1;
	if (body_str(body, "set_presence", &s, e) == -1)
		return -1;
	return take_presence(q, s, e);
}

static int
parse_ext(struct json_object *body, struct ss_request *q,
          struct ss_parse_err *e)
{
	struct json_object *v;

	if (!json_object_object_get_ex(body, "extensions", &v) || v == NULL)
		return 0;
	if (!json_object_is_type(v, json_type_object))
		return fail(e, "M_BAD_JSON", "%s must be an object",
		            "extensions");
	/* a non-object member is ss_ext_check's to refuse (a served name)
	 * or nobody's (an unknown one, ignored); ss_ext_merge skips it */
	q->extensions = json_object_get(v);
	return 0;
}

/*
 * The idle-poll key of a parsed body (struct ss_request key). Runs last:
 * pos and timeout go from the body, to_device's since only for the
 * text (q->extensions holds the same object, and ss_ext reads it).
 */
static char *
key_text(enum ss_dialect d, struct json_object *o)
{
	struct json_object *ext, *td, *since = NULL;
	char *key;

	json_object_object_del(o, "pos");
	json_object_object_del(o, "timeout");
	if (json_object_object_get_ex(o, "extensions", &ext) &&
	    json_object_is_type(ext, json_type_object) &&
	    json_object_object_get_ex(ext, "to_device", &td) &&
	    json_object_is_type(td, json_type_object) &&
	    json_object_object_get_ex(td, "since", &since)) {
		since = json_object_get(since);
		json_object_object_del(td, "since");
	} else
		td = NULL;
	key = xasprintf("%d%s", (int)d, json_plain(o, NULL));
	if (td != NULL)
		json_object_object_add(td, "since", since);
	return key;
}

int
ss_parse(enum ss_dialect d, const char *body, size_t len, const char *query,
         long long max_timeout_ms, struct ss_request *out,
         struct ss_parse_err *e)
{
	struct json_object *o = NULL;
	const char *perr;
	bool is_plain = false;
	int rc = -1;

	memset(out, 0, sizeof(*out));
	memset(e, 0, sizeof(*e));
	out->dialect = d;
	out->timeout_ms = -1;
	if (d == SS_SYNAPSE &&
	    parse_query(query, max_timeout_ms, out, e, &is_plain) == -1)
		goto out;
	if (d != SS_SYNAPSE)
		is_plain = query_is_plain(query, NULL);
	if (len == 0)
		o = json_object_new_object();
	else if ((o = json_parse_bounded(body, len, &perr)) == NULL) {
		fail(e, "M_NOT_JSON", "%s", "request body is not valid JSON");
		goto out;
	}
	if (!json_object_is_type(o, json_type_object)) {
		fail(e, "M_BAD_JSON", "%s", "request body must be an object");
		goto out;
	}
	if (parse_top(d, o, max_timeout_ms, out, e) == -1 ||
	    parse_lists(d, o, out, e) == -1 || parse_subs(d, o, out, e) == -1 ||
	    parse_unsub(o, out, e) == -1 || parse_ext(o, out, e) == -1)
		goto out;
	if (is_plain)
		out->key = key_text(d, o);
	rc = 0;
out:
	json_object_put(o);
	if (rc == -1)
		ss_request_free(out);
	return rc;
}

void
ss_request_free(struct ss_request *q)
{
	for (int i = 0; i < q->nlists; i++) {
		free(q->lists[i].key);
		ss_room_config_free(&q->lists[i].cfg);
		filters_free(&q->lists[i].f);
	}
	free(q->lists);
	for (int i = 0; i < q->nsubs; i++) {
		free(q->subs[i].room_id);
		ss_room_config_free(&q->subs[i].cfg);
	}
	free(q->subs);
	strv_free(q->unsub, q->nunsub);
	json_object_put(q->subs_json);
	json_object_put(q->extensions);
	free(q->conn_id);
	free(q->pos);
	free(q->set_presence);
	free(q->key);
	memset(q, 0, sizeof(*q));
	q->timeout_ms = -1;
}

static bool
elem_matches(const struct ss_rs_elem *x, const char *type, const char *key,
             const char *me)
{
	if (x->type != NULL && strcmp(x->type, type) != 0)
		return false;
	if (x->state_key == NULL)
		return true;
	if (strcmp(x->state_key, "$ME") == 0)
		return me != NULL && strcmp(key, me) == 0;
	return strcmp(x->state_key, key) == 0;
}

/* An include matches unless an exclude of its own group does. */
bool
ss_rs_matches(const struct ss_required_state *rs, const char *type,
              const char *key, const char *me)
{
	bool is_out;

	for (int i = 0; i < rs->ninclude; i++) {
		if (!elem_matches(&rs->include[i], type, key, me))
			continue;
		is_out = false;
		for (int j = 0; j < rs->nexclude && !is_out; j++)
			is_out = rs->exclude[j].group == rs->include[i].group &&
			         elem_matches(&rs->exclude[j], type, key, me);
		if (!is_out)
			return true;
	}
	return false;
}

static bool
elem_eq(const struct ss_rs_elem *a, const struct ss_rs_elem *b)
{
	return a->group == b->group &&
	       (a->type == NULL
	            ? b->type == NULL
	            : b->type != NULL && strcmp(a->type, b->type) == 0) &&
	       (a->state_key == NULL
	            ? b->state_key == NULL
	            : b->state_key != NULL &&
	                  strcmp(a->state_key, b->state_key) == 0);
}

static bool
rs_has(const struct ss_rs_elem *v, int n, const struct ss_rs_elem *x)
{
	for (int i = 0; i < n; i++)
		if (elem_eq(&v[i], x))
			return true;
	return false;
}

/*
 * The union of required_state (the MSC's "superset"), kept apart by
 * group so that one config's excludes never hide what another returns:
 * the includes of configs without excludes join group 0 (deduplicated),
 * a config with excludes becomes a new group. lazy_members: if any; a
 * config that also returns every member makes it merely redundant.
 */
static void
rs_merge(struct ss_required_state *into, const struct ss_required_state *from)
{
	int top = 0, g;

	for (int i = 0; i < into->ninclude; i++)
		if (into->include[i].group > top)
			top = into->include[i].group;
	g = from->nexclude > 0 ? top + 1 : 0;
	for (int i = 0; i < from->ninclude; i++) {
		struct ss_rs_elem x = from->include[i];
		x.group = g;
		if (g != 0 || !rs_has(into->include, into->ninclude, &x))
			rs_add(&into->include, &into->ninclude, x.type,
			       x.state_key, g);
	}
	for (int i = 0; i < from->nexclude; i++)
		rs_add(&into->exclude, &into->nexclude, from->exclude[i].type,
		       from->exclude[i].state_key, g);
	into->lazy_members = into->lazy_members || from->lazy_members;
}

void
ss_room_config_merge(struct ss_room_config *into,
                     const struct ss_room_config *from)
{
	if (from->timeline_limit > into->timeline_limit)
		into->timeline_limit = from->timeline_limit;
	rs_merge(&into->rs, &from->rs);
}

/* Canonical text: what was sent per room, compared on the next request. */
char *
ss_rs_canonical(const struct ss_required_state *rs)
{
	struct json_object *o = json_object_new_array(), *x;
	char *s;

	for (int i = 0; i < rs->ninclude; i++) {
		x = json_object_new_array();
		json_object_array_add(
		    x, json_object_new_int(rs->include[i].group));
		json_object_array_add(
		    x, rs->include[i].type
		           ? json_object_new_string(rs->include[i].type)
		           : NULL);
		json_object_array_add(
		    x, rs->include[i].state_key
		           ? json_object_new_string(rs->include[i].state_key)
		           : NULL);
		json_object_array_add(o, x);
	}
	for (int i = 0; i < rs->nexclude; i++) {
		x = json_object_new_array();
		json_object_array_add(x, json_object_new_string("-"));
		json_object_array_add(
		    x, json_object_new_int(rs->exclude[i].group));
		json_object_array_add(
		    x, rs->exclude[i].type
		           ? json_object_new_string(rs->exclude[i].type)
		           : NULL);
		json_object_array_add(
		    x, rs->exclude[i].state_key
		           ? json_object_new_string(rs->exclude[i].state_key)
		           : NULL);
		json_object_array_add(o, x);
	}
	if (rs->lazy_members)
		json_object_array_add(o, json_object_new_string("$LAZY"));
	s = xstrdup(json_plain(o, NULL));
	json_object_put(o);
	return s;
}

static const char *
str_or_null(struct json_object *o)
{
	return json_object_is_type(o, json_type_string)
	           ? json_object_get_string(o)
	           : NULL;
}

/* One canonical entry: [group, type, key] or ["-", group, type, key]. */
static int
canonical_elem(struct json_object *x, struct ss_required_state *rs)
{
	size_t n = json_object_array_length(x);
	bool is_ex = n == 4;

	if (!json_object_is_type(x, json_type_array) || (n != 3 && n != 4))
		return -1;
	if (is_ex)
		rs_add(&rs->exclude, &rs->nexclude,
		       str_or_null(json_object_array_get_idx(x, 2)),
		       str_or_null(json_object_array_get_idx(x, 3)),
		       json_object_get_int(json_object_array_get_idx(x, 1)));
	else
		rs_add(&rs->include, &rs->ninclude,
		       str_or_null(json_object_array_get_idx(x, 1)),
		       str_or_null(json_object_array_get_idx(x, 2)),
		       json_object_get_int(json_object_array_get_idx(x, 0)));
	return 0;
}

int
ss_rs_from_canonical(const char *text, struct ss_required_state *rs)
{
	struct json_object *o = json_parse_bounded(text, strlen(text), NULL);
	struct json_object *x;
	int rc = -1;

	memset(rs, 0, sizeof(*rs));
	if (o == NULL || !json_object_is_type(o, json_type_array))
		goto out;
	for (size_t i = 0; i < json_object_array_length(o); i++) {
		x = json_object_array_get_idx(o, i);
		if (json_object_is_type(x, json_type_string))
			rs->lazy_members = true;
		else if (canonical_elem(x, rs) == -1)
			goto out;
	}
	rc = 0;
out:
	json_object_put(o);
	if (rc == -1)
		ss_rs_free(rs);
	return rc;
}

void
ss_rs_free(struct ss_required_state *rs)
{
	rs_elems_free(rs->include, rs->ninclude);
	rs_elems_free(rs->exclude, rs->nexclude);
	memset(rs, 0, sizeof(*rs));
}

void
ss_ext_merge(struct json_object *stored, struct json_object *request)
{
	struct json_object *cur;

	if (request == NULL)
		return;
	json_object_object_foreach(request, name, cfg)
	{
		if (cfg == NULL || !json_object_is_type(cfg, json_type_object))
			continue;
		if (!json_object_object_get_ex(stored, name, &cur) ||
		    !json_object_is_type(cur, json_type_object)) {
			cur = json_object_new_object();
			json_object_object_add(stored, name, cur);
		}
		json_object_object_foreach(cfg, k, v)
		    json_object_object_add(cur, k, json_object_get(v));
	}
}

/* A JSON string literal, escaped by json-c. */
static void
put_str(struct evbuffer *b, const char *s)
{
	struct json_object *o = json_object_new_string(s);
	size_t n;
	const char *t = json_plain(o, &n);

	evbuffer_add(b, t, n);
	json_object_put(o);
}

static void
put_key(struct evbuffer *b, bool *first, const char *key)
{
	if (!*first)
		evbuffer_add(b, ",", 1);
	*first = false;
	put_str(b, key);
	evbuffer_add(b, ":", 1);
}

/*
 * A member name of this file's own (a literal of ASCII letters and
 * underscores: nothing to escape), written as it is: a json-c string and
 * its printbuf per name were a third of ss_write's time (perf, a new
 * connection's 20 rooms). Names from the request go through put_key.
 */
static void
put_name(struct evbuffer *b, bool *first, const char *name)
{
	if (!*first)
		evbuffer_add(b, ",", 1);
	*first = false;
	evbuffer_add(b, "\"", 1);
	evbuffer_add(b, name, strlen(name));
	evbuffer_add(b, "\":", 2);
}

static void
put_int(struct evbuffer *b, bool *first, const char *key, int64_t v)
{
	put_name(b, first, key);
	evbuffer_add_printf(b, "%" PRId64, v);
}

static void
put_raw_array(struct evbuffer *b, char *const *v, int n)
{
	evbuffer_add(b, "[", 1);
	for (int i = 0; i < n; i++) {
		if (i > 0)
			evbuffer_add(b, ",", 1);
		evbuffer_add(b, v[i], strlen(v[i]));
	}
	evbuffer_add(b, "]", 1);
}

static void
put_opt_str(struct evbuffer *b, bool *first, const char *key, bool has,
            const char *v)
{
	if (!has)
		return;
	put_name(b, first, key);
	if (v == NULL)
		evbuffer_add(b, "null", 4);
	else
		put_str(b, v);
}

/* The room's list names (v4) from the request's list indexes. */
static void
put_lists(struct evbuffer *b, bool *first, const struct ss_request *req,
          const struct ss_room_result *rr)
{
	if (rr->nlists == 0)
		return;
	put_name(b, first, "lists");
	evbuffer_add(b, "[", 1);
	for (int i = 0; i < rr->nlists; i++) {
		if (i > 0)
			evbuffer_add(b, ",", 1);
		if (rr->lists[i] >= 0 && rr->lists[i] < req->nlists)
			put_str(b, req->lists[rr->lists[i]].key);
	}
	evbuffer_add(b, "]", 1);
}

static void
put_bool(struct evbuffer *b, bool *first, const char *key, bool v)
{
	put_name(b, first, key);
	evbuffer_add_printf(b, "%s", v ? "true" : "false");
}

static void
write_timeline(enum ss_dialect d, struct evbuffer *b, bool *first,
               const struct ss_room_result *rr)
{
	if (rr->is_expanded)
		put_bool(b, first,
		         d == SS_V4 ? "expanded_timeline"
		                    : "unstable_expanded_timeline",
		         true);
	if (!rr->has_timeline)
		return;
	put_name(b, first, "timeline");
	put_raw_array(b, rr->timeline, rr->ntimeline);
	if (rr->is_limited)
		put_bool(b, first, "limited", true);
	if (rr->prev_batch != NULL) {
		put_name(b, first, "prev_batch");
		put_str(b, rr->prev_batch);
	}
	if (rr->num_live >= 0)
		put_int(b, first, "num_live", rr->num_live);
}

static void
write_room(enum ss_dialect d, struct evbuffer *b, const struct ss_request *req,
           const struct ss_room_result *rr)
{
	bool first = true;

	put_str(b, rr->room_id);
	evbuffer_add(b, ":{", 2);
	if (rr->is_initial)
		put_bool(b, &first, "initial", true);
	if (d == SS_V4 && rr->membership != NULL)
		put_opt_str(b, &first, "membership", true, rr->membership);
	if (d == SS_V4)
		put_lists(b, &first, req, rr);
	if (rr->bump_stamp > 0)
		put_int(b, &first, "bump_stamp", rr->bump_stamp);
	if (rr->stripped_state != NULL) {
		/*
		 * an invite: the stripped state and nothing of the room but
		 * the name and avatar read from it (ss_rooms.c)
		 */
		put_opt_str(b, &first, "name", rr->has_name, rr->name);
		put_opt_str(b, &first, "avatar", rr->has_avatar, rr->avatar);
		put_name(b, &first,
		         d == SS_V4 ? "stripped_state" : "invite_state");
		evbuffer_add(b, rr->stripped_state, strlen(rr->stripped_state));
		evbuffer_add(b, "}", 1);
		return;
	}
	put_opt_str(b, &first, "name", rr->has_name, rr->name);
	put_opt_str(b, &first, "avatar", rr->has_avatar, rr->avatar);
	if (rr->heroes != NULL) {
		put_name(b, &first, "heroes");
		evbuffer_add(b, rr->heroes, strlen(rr->heroes));
	}
	if (rr->is_dm != SS_UNSET)
		put_bool(b, &first, "is_dm", rr->is_dm == SS_YES);
	if (rr->nrequired_state > 0 || (rr->is_initial && rr->has_timeline)) {
		put_name(b, &first, "required_state");
		put_raw_array(b, rr->required_state, rr->nrequired_state);
	}
	write_timeline(d, b, &first, rr);
	if (rr->joined_count >= 0)
		put_int(b, &first, "joined_count", rr->joined_count);
	if (rr->invited_count >= 0)
		put_int(b, &first, "invited_count", rr->invited_count);
	if (d == SS_SYNAPSE && rr->notification_count >= 0)
		put_int(b, &first, "notification_count",
		        rr->notification_count);
	if (d == SS_SYNAPSE && rr->highlight_count >= 0)
		put_int(b, &first, "highlight_count", rr->highlight_count);
	evbuffer_add(b, "}", 1);
}

void
ss_write(enum ss_dialect d, const struct ss_request *req,
         const struct ss_response *resp, struct evbuffer *out)
{
	bool first = true;

	evbuffer_add(out, "{\"pos\":", 7);
	put_str(out, resp->pos);
	evbuffer_add(out, ",\"lists\":{", 10);
	for (int i = 0; i < req->nlists && i < resp->ncounts; i++) {
		bool f2 = true;

		put_key(out, &first, req->lists[i].key);
		evbuffer_add(out, "{", 1);
		put_int(out, &f2, "count", resp->counts[i]);
		evbuffer_add(out, "}", 1);
	}
	evbuffer_add(out, "},\"rooms\":{", 11);
	for (int i = 0; i < resp->nrooms; i++) {
		if (i > 0)
			evbuffer_add(out, ",", 1);
		write_room(d, out, req, &resp->rooms[i]);
	}
	evbuffer_add(out, "},\"extensions\":{", 16);
	if (resp->extensions != NULL)
		evbuffer_add(out, evbuffer_pullup(resp->extensions, -1),
		             evbuffer_get_length(resp->extensions));
	evbuffer_add(out, "}}\n", 3);
}

/* The room's result in resp, added (every count "not sent") if new. */
struct ss_room_result *
ss_response_room(struct ss_response *resp, const char *room_id)
{
	struct ss_room_result *rr;

	for (int i = 0; i < resp->nrooms; i++)
		if (strcmp(resp->rooms[i].room_id, room_id) == 0)
			return &resp->rooms[i];
	if (resp->nrooms == resp->caprooms) {
		resp->caprooms = resp->caprooms ? resp->caprooms * 2 : 16;
		resp->rooms = xrealloc(resp->rooms, sizeof(*resp->rooms) *
		                                        (size_t)resp->caprooms);
	}
	rr = &resp->rooms[resp->nrooms++];
	memset(rr, 0, sizeof(*rr));
	rr->room_id = xstrdup(room_id);
	rr->is_dm = SS_UNSET;
	rr->num_live = rr->joined_count = rr->invited_count = -1;
	rr->notification_count = rr->highlight_count = -1;
	return rr;
}

static void
room_result_free(struct ss_room_result *rr)
{
	free(rr->room_id);
	free(rr->membership);
	free(rr->lists);
	free(rr->name);
	free(rr->avatar);
	free(rr->heroes);
	strv_free(rr->required_state, rr->nrequired_state);
	strv_free(rr->timeline, rr->ntimeline);
	free(rr->prev_batch);
	free(rr->stripped_state);
}

void
ss_response_free(struct ss_response *resp)
{
	for (int i = 0; i < resp->nrooms; i++)
		room_result_free(&resp->rooms[i]);
	free(resp->rooms);
	free(resp->counts);
	if (resp->extensions != NULL)
		evbuffer_free(resp->extensions);
	memset(resp, 0, sizeof(*resp));
}

void
ss_pos_format(const struct ss_pos *p, const char *secret, const char *user_id,
              const char *device_id, char out[SS_POS_MAX])
{
	char mac[TOK_MAC_HEX + 1];
	int n;

	n = snprintf(out, SS_POS_MAX, "c%" PRId64 "_%" PRId64, p->conn, p->gen);
	tok_mac(out, (size_t)n, secret, user_id, device_id, mac);
	snprintf(out + n, SS_POS_MAX - (size_t)n, "_%s", mac);
}

int
ss_pos_parse(const char *tok, const char *secret, const char *user_id,
             const char *device_id, struct ss_pos *p)
{
	char mac[TOK_MAC_HEX + 1];
	const char *us;
	char num[24];
	size_t len = strlen(tok), n;
	long long v;

	if (len >= SS_POS_MAX || len < TOK_MAC_HEX + 5 || tok[0] != 'c' ||
	    tok[len - TOK_MAC_HEX - 1] != '_')
		return -1;
	tok_mac(tok, len - TOK_MAC_HEX - 1, secret, user_id, device_id, mac);
	if (!tok_mac_eq(mac, tok + len - TOK_MAC_HEX))
		return -1;
	if ((us = strchr(tok, '_')) == NULL ||
	    (n = (size_t)(us - tok - 1)) == 0 || n >= sizeof(num))
		return -1;
	memcpy(num, tok + 1, n);
	num[n] = '\0';
	if (parse_i64(num, &v) == -1 || v <= 0)
		return -1;
	p->conn = v;
	n = len - TOK_MAC_HEX - 1 - (size_t)(us + 1 - tok);
	if (n == 0 || n >= sizeof(num))
		return -1;
	memcpy(num, us + 1, n);
	num[n] = '\0';
	if (num[0] < '0' || num[0] > '9' || parse_i64(num, &v) == -1 || v < 0)
		return -1;
	p->gen = v;
	return 0;
}
