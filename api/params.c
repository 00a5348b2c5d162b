/*
 * params.c: sticky per-stream parameters. A client body is a delta: a
 * stream left out continues as it was, a field left out keeps its value, a
 * field set to null (or next_page set to "") is cleared, and a stream set
 * to null is dropped. Every field is validated here, before anything is
 * stored, so the stored object is always valid. Negotiation (defaults and
 * caps) happens in params_parse() and is echoed in responses, never stored.
 * Every string is strict UTF-8 without NUL and at most ID_MAX bytes, so
 * neither C (which would cut it at a NUL) nor Postgres (which refuses bad
 * UTF-8) sees anything but what the client sent.
 */
#include <string.h>

#include "api.h"
#include "json_util.h"

enum ftype {
	F_STR,		/* string */
	F_UINT,		/* non-negative integer */
	F_PAGE,		/* decimal string; "" clears */
	F_MSORT,	/* "by_pl" | "by_name" */
	F_LSORT,	/* string or array of "by_recency" | "by_name" */
	F_STATE,	/* [[type, state_key], ...] */
	F_STRARR,	/* [string, ...] */
};

/* The Matrix spec's size limit for room ids, event types and state keys. */
#define ID_MAX 255
#define STR_(x) #x
#define STR(x) STR_(x)

struct field {
	const char *name;
	enum ftype type;
	const char *bad_str;	/* errors naming the field */
	const char *too_long;
};
#define FIELD(stream, name, type)                                              \
	{                                                                      \
		name, type, stream "." name ": not valid UTF-8, or has a NUL", \
		    stream "." name ": longer than " STR(ID_MAX) " bytes"      \
	}

static const struct field f_typing[] = {FIELD("typing", "room_id", F_STR),
    {NULL, 0, NULL, NULL}};
static const struct field f_to_device[] = {
    FIELD("to_device", "limit", F_UINT), {NULL, 0, NULL, NULL}};
static const struct field f_member[] = {
    FIELD("room_member", "room_id", F_STR),
    FIELD("room_member", "limit", F_UINT),
    FIELD("room_member", "sort", F_MSORT),
    FIELD("room_member", "next_page", F_PAGE), {NULL, 0, NULL, NULL}};
static const struct field f_list[] = {FIELD("room_list", "limit", F_UINT),
    FIELD("room_list", "sort", F_LSORT),
    FIELD("room_list", "timeline_limit", F_UINT),
    FIELD("room_list", "state_events", F_STATE),
    FIELD("room_list", "spaces", F_STRARR),
    FIELD("room_list", "next_page", F_PAGE), {NULL, 0, NULL, NULL}};

/* alias: the stream's other spelling, accepted in request bodies */
static const struct {
	const char *name;
	const char *alias;
	const struct field *fields;
} streams[] = {
	{"typing", NULL, f_typing},
	{"to_device", NULL, f_to_device},
	{"room_member", "room_members", f_member},
	{"room_list", NULL, f_list},
};

bool
params_stream_get(struct json_object *delta, const char *name,
    struct json_object **v)
{
	if (json_object_object_get_ex(delta, name, v))
		return true;
	for (size_t i = 0; i < sizeof(streams) / sizeof(streams[0]); i++)
		if (streams[i].alias != NULL &&
		    strcmp(streams[i].name, name) == 0)
			return json_object_object_get_ex(delta,
			    streams[i].alias, v);
	return false;
}

const char *
sort_name(int s)
{
	switch (s) {
	case SORT_BY_PL:
		return "by_pl";
	case SORT_BY_NAME:
		return "by_name";
	case SORT_BY_RECENCY:
		return "by_recency";
	}
	return "unknown";
}

static int
sort_parse(const char *s)
{
	if (strcmp(s, "by_pl") == 0)
		return SORT_BY_PL;
	if (strcmp(s, "by_name") == 0)
		return SORT_BY_NAME;
	if (strcmp(s, "by_recency") == 0)
		return SORT_BY_RECENCY;
	return 0;
}

#define BAD(code, msg)                                                         \
	do {                                                                   \
		*errcode = (code);                                             \
		*err = (msg);                                                  \
		return -1;                                                     \
	} while (0)

/*
 * Strict UTF-8 (RFC 3629). json-c 0.16's JSON_TOKENER_VALIDATE_UTF8 only
 * checks that continuation bytes follow a lead byte: it passes overlong
 * forms (C0 AF, E0 80 AF), UTF-16 surrogates (ED A0 80) and code points
 * past U+10FFFF (F4 90 80 80), all of which Postgres refuses (a 503 for
 * the client where a 400 was due).
 */
static bool
utf8_valid(const unsigned char *s, size_t n)
{
	size_t i = 0, k;
	unsigned char lo, hi;

	while (i < n) {
		lo = 0x80;
		hi = 0xbf;
		if (s[i] < 0x80) {
			i++;
			continue;
		}
		if (s[i] >= 0xc2 && s[i] <= 0xdf)
			k = 1;
		else if (s[i] >= 0xe0 && s[i] <= 0xef) {
			k = 2;
			lo = s[i] == 0xe0 ? 0xa0 : 0x80;
			hi = s[i] == 0xed ? 0x9f : 0xbf;
		} else if (s[i] >= 0xf0 && s[i] <= 0xf4) {
			k = 3;
			lo = s[i] == 0xf0 ? 0x90 : 0x80;
			hi = s[i] == 0xf4 ? 0x8f : 0xbf;
		} else
			return false;
		if (n - i - 1 < k || s[i + 1] < lo || s[i + 1] > hi)
			return false;
		for (size_t j = 2; j <= k; j++)
			if ((s[i + j] & 0xc0) != 0x80)
				return false;
		i += k + 1;
	}
	return true;
}

/* A string of field f (its type already checked). */
static int
check_str(const struct field *f, struct json_object *v, const char **errcode,
    const char **err)
{
	const char *s = json_object_get_string(v);
	size_t n = (size_t)json_object_get_string_len(v);

	if (memchr(s, '\0', n) != NULL ||
	    !utf8_valid((const unsigned char *)s, n))
		BAD("M_BAD_JSON", f->bad_str);
	if (n > ID_MAX)
		BAD("M_INVALID_PARAM", f->too_long);
	return 0;
}

/*
 * room_list.sort: a sort name or an array of them, at most
 * PARAMS_MAX_SORTS, each one known.
 */
static int
check_lsort(const struct field *f, struct json_object *v,
    const char **errcode, const char **err)
{
	size_t n;

	if (json_object_is_type(v, json_type_string)) {
		if (check_str(f, v, errcode, err) == -1)
			return -1;
		if (sort_parse(json_object_get_string(v)) < SORT_BY_NAME)
			BAD("M_INVALID_PARAM", "room_list.sort: unknown sort");
		return 0;
	}
	if (!json_object_is_type(v, json_type_array))
		BAD("M_BAD_JSON", "room_list.sort must be an array of strings");
	n = json_object_array_length(v);
	if (n > PARAMS_MAX_SORTS)
		BAD("M_INVALID_PARAM", "room_list.sort: too many sorts");
	for (size_t i = 0; i < n; i++) {
		struct json_object *e = json_object_array_get_idx(v, i);
		if (!json_object_is_type(e, json_type_string))
			BAD("M_BAD_JSON", "room_list.sort must be strings");
		if (check_str(f, e, errcode, err) == -1)
			return -1;
		if (sort_parse(json_object_get_string(e)) < SORT_BY_NAME)
			BAD("M_INVALID_PARAM", "room_list.sort: unknown sort");
	}
	return 0;
}

/*
 * An array field (state_events pairs, spaces): bounded in length, each
 * element of the field's shape and length.
 */
static int
check_arr(const struct field *f, struct json_object *v, const char **errcode,
    const char **err)
{
	enum ftype t = f->type;
	size_t n;

	if (!json_object_is_type(v, json_type_array))
		BAD("M_BAD_JSON", "expected an array");
	n = json_object_array_length(v);
	if (n > (t == F_STATE ? PARAMS_MAX_STATE : PARAMS_MAX_SPACES))
		BAD("M_INVALID_PARAM", "array too long");
	for (size_t i = 0; i < n; i++) {
		struct json_object *e = json_object_array_get_idx(v, i);
		if (t == F_STRARR) {
			if (!json_object_is_type(e, json_type_string))
				BAD("M_BAD_JSON", "expected strings");
			if (check_str(f, e, errcode, err) == -1)
				return -1;
			continue;
		}
		if (!json_object_is_type(e, json_type_array) ||
		    json_object_array_length(e) != 2 ||
		    !json_object_is_type(json_object_array_get_idx(e, 0),
			json_type_string) ||
		    !json_object_is_type(json_object_array_get_idx(e, 1),
			json_type_string))
			BAD("M_BAD_JSON",
			    "state_events must be [[type, state_key], ...]");
		if (check_str(f, json_object_array_get_idx(e, 0), errcode,
		    err) == -1 || check_str(f, json_object_array_get_idx(e, 1),
		    errcode, err) == -1)
			return -1;
	}
	return 0;
}

/*
 * One field of a stream object against its declared type and bounds;
 * sets the Matrix error naming the field on failure.
 */
static int
check_field(const struct field *f, struct json_object *v,
    const char **errcode, const char **err)
{
	const char *s;

	switch (f->type) {
	case F_STR:
		if (!json_object_is_type(v, json_type_string))
			BAD("M_BAD_JSON", "room_id must be a string");
		return check_str(f, v, errcode, err);
	case F_UINT:
		if (!json_object_is_type(v, json_type_int) ||
		    json_object_get_int64(v) < 0)
			BAD("M_INVALID_PARAM",
			    "limits must be non-negative integers");
		return 0;
	case F_PAGE:
		if (!json_object_is_type(v, json_type_string))
			BAD("M_INVALID_PARAM", "next_page must be a string");
		if (check_str(f, v, errcode, err) == -1)
			return -1;
		s = json_object_get_string(v);
		if (strlen(s) > 9)
			BAD("M_INVALID_PARAM", "next_page out of range");
		for (; *s != '\0'; s++)
			if (*s < '0' || *s > '9')
				BAD("M_INVALID_PARAM", "next_page is invalid");
		return 0;
	case F_MSORT:
		if (!json_object_is_type(v, json_type_string))
			BAD("M_BAD_JSON", "room_member.sort must be a string");
		if (check_str(f, v, errcode, err) == -1)
			return -1;
		if (sort_parse(json_object_get_string(v)) != SORT_BY_PL &&
		    sort_parse(json_object_get_string(v)) != SORT_BY_NAME)
			BAD("M_INVALID_PARAM", "room_member.sort: unknown sort");
		return 0;
	case F_LSORT:
		return check_lsort(f, v, errcode, err);
	case F_STATE:
	case F_STRARR:
		return check_arr(f, v, errcode, err);
	}
	return 0;
}

/* Validates one stream object of the delta. */
static int
check_stream(const struct field *fields, struct json_object *obj,
    const char **errcode, const char **err)
{
	json_object_object_foreach(obj, key, v)
	{
		for (const struct field *f = fields; f->name != NULL; f++)
			if (strcmp(f->name, key) == 0 && v != NULL &&
			    check_field(f, v, errcode, err) == -1)
				return -1;
	}
	return 0;
}

static void
merge_stream(struct json_object *stored, const char *name,
    const struct field *fields, struct json_object *delta)
{
	struct json_object *cur;

	if (!json_object_object_get_ex(stored, name, &cur) ||
	    !json_object_is_type(cur, json_type_object)) {
		cur = json_object_new_object();
		json_object_object_add(stored, name, cur);
	}
	for (const struct field *f = fields; f->name != NULL; f++) {
		struct json_object *v;

		if (!json_object_object_get_ex(delta, f->name, &v))
			continue;
		if (v == NULL || (f->type == F_PAGE &&
		    *json_object_get_string(v) == '\0'))
			json_object_object_del(cur, f->name);
		else
			json_object_object_add(cur, f->name,
			    json_object_get(v));
	}
}

/*
 * Each stream object in delta is checked field by field, then replaces
 * or updates the stored one (sticky: absent fields keep their value, a
 * null stream removes it); *changed reports whether stored moved.
 */
int
params_merge(struct json_object *stored, struct json_object *delta,
    bool *changed, const char **errcode, const char **err)
{
	struct json_object *before, *v;

	*changed = false;
	if (!json_object_is_type(delta, json_type_object))
		BAD("M_BAD_JSON", "request body must be a JSON object");
	for (size_t i = 0; i < sizeof(streams) / sizeof(streams[0]); i++) {
		const char *name = streams[i].name;
		bool has = params_stream_get(delta, name, &v);

		if (!has || v == NULL)
			continue;
		if (!json_object_is_type(v, json_type_object)) {
			*errcode = "M_BAD_JSON";
			*err = "each stream must be an object or null";
			return -1;
		}
		if (check_stream(streams[i].fields, v, errcode, err) == -1)
			return -1;
	}
	before = NULL;
	if (json_object_deep_copy(stored, &before, NULL) != 0)
		BAD("M_UNKNOWN", "out of memory");
	for (size_t i = 0; i < sizeof(streams) / sizeof(streams[0]); i++) {
		const char *name = streams[i].name;
		bool has = params_stream_get(delta, name, &v);

		if (!has)
			continue;
		if (v == NULL)
			json_object_object_del(stored, name);
		else
			merge_stream(stored, name, streams[i].fields, v);
	}
	*changed = !json_object_equal(before, stored);
	json_object_put(before);
	return 0;
}

static int64_t
negotiate(struct json_object *o, const char *key, int64_t def, int64_t max)
{
	int64_t v;

	if (!json_get_int(o, key, &v) || v <= 0)
		return def;
	return v > max ? max : v;
}

static int64_t
page_of(struct json_object *o)
{
	const char *s = json_get_str(o, "next_page");
	int64_t v = 0;

	if (s == NULL || *s == '\0')
		return -1;
	for (; *s != '\0'; s++)
		v = v * 10 + (*s - '0');
	return v;
}

/*
 * The room_list parameters with their negotiated limits, sorts (by_recency
 * by default), state_events pairs, spaces and next_page.
 */
static void
parse_list(struct json_object *o, struct params *p)
{
	struct json_object *v;

	p->has_list = true;
	p->l_limit = negotiate(o, "limit", L_LIMIT_DEFAULT, L_LIMIT_MAX);
	p->l_timeline = negotiate(o, "timeline_limit", L_TIMELINE_DEFAULT,
	    L_TIMELINE_MAX);
	if (json_get_int(o, "timeline_limit", &p->l_timeline) &&
	    p->l_timeline > L_TIMELINE_MAX)
		p->l_timeline = L_TIMELINE_MAX;
	p->l_page = page_of(o);
	p->l_nsorts = 0;
	if (json_object_object_get_ex(o, "sort", &v) && v != NULL) {
		if (json_object_is_type(v, json_type_string))
			p->l_sorts[p->l_nsorts++] =
			    sort_parse(json_object_get_string(v));
		else
			for (size_t i = 0; i < json_object_array_length(v);
			    i++)
				p->l_sorts[p->l_nsorts++] = sort_parse(
				    json_object_get_string(
					json_object_array_get_idx(v, i)));
	}
	if (p->l_nsorts == 0)
		p->l_sorts[p->l_nsorts++] = SORT_BY_RECENCY;
	if ((v = json_get_arr(o, "state_events")) != NULL)
		for (size_t i = 0; i < json_object_array_length(v); i++) {
			struct json_object *e = json_object_array_get_idx(v, i);
			p->l_st_type[p->l_nst] = json_object_get_string(
			    json_object_array_get_idx(e, 0));
			p->l_st_key[p->l_nst++] = json_object_get_string(
			    json_object_array_get_idx(e, 1));
		}
	if ((v = json_get_arr(o, "spaces")) != NULL)
		for (size_t i = 0; i < json_object_array_length(v); i++)
			p->l_spaces[p->l_nspaces++] = json_object_get_string(
			    json_object_array_get_idx(v, i));
}

/*
 * Fills p from a merged parameters object, one stream at a time, with
 * the defaults and caps of the negotiation applied.
 */
void
params_parse(struct json_object *obj, struct params *p)
{
	struct json_object *o;
	const char *s;

	memset(p, 0, sizeof(*p));
	p->m_page = p->l_page = -1;
	if ((o = json_get_obj(obj, "typing")) != NULL) {
		p->has_typing = true;
		s = json_get_str(o, "room_id");
		p->typing_room = s != NULL ? s : "";
	}
	if ((o = json_get_obj(obj, "to_device")) != NULL) {
		p->has_to_device = true;
		p->td_limit = negotiate(o, "limit", TD_LIMIT_DEFAULT,
		    TD_LIMIT_MAX);
	}
	if ((o = json_get_obj(obj, "room_member")) != NULL) {
		p->has_member = true;
		s = json_get_str(o, "room_id");
		p->m_room = s != NULL ? s : "";
		p->m_limit = negotiate(o, "limit", M_LIMIT_DEFAULT,
		    M_LIMIT_MAX);
		s = json_get_str(o, "sort");
		p->m_sort = s != NULL && strcmp(s, "by_name") == 0 ?
		    SORT_BY_NAME : SORT_BY_PL;
		p->m_page = page_of(o);
	}
	if ((o = json_get_obj(obj, "room_list")) != NULL)
		parse_list(o, p);
}
