/*
 * filter.c: Matrix filters as Synapse applies them. A filter is kept as
 * the client's JSON (stored filters by id, inline ones parsed per
 * request); callers ask it questions: does this section let an event of
 * this type, sender and room through, what is the timeline limit, is
 * lazy loading on. Validation follows Synapse's schema for the fields we
 * honour: a wrong type is 400 M_UNKNOWN, as jsonschema errors are there.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "simhs.h"

/* Synapse's filter_timeline_limit default; inline filters only. */
#define FILTER_TIMELINE_CAP 100

static const char *list_keys[] = {"types",       "not_types", "senders",
                                  "not_senders", "rooms",     "not_rooms"};
static const char *bool_keys[] = {"lazy_load_members",
                                  "include_redundant_members", "contains_url",
                                  "include_leave"};

/* One event filter section: lists of strings, booleans, a number. */
static const char *
section_check(struct json_object *sec, const char *name)
{
	static char msg[160];
	struct json_object *v, *it;
	size_t i, j;

	if (sec == NULL)
		return NULL;
	if (!json_object_is_type(sec, json_type_object)) {
		snprintf(msg, sizeof(msg), "'%s' is not of type 'object'",
		         name);
		return msg;
	}
	for (i = 0; i < sizeof(list_keys) / sizeof(list_keys[0]); i++) {
		if (!json_object_object_get_ex(sec, list_keys[i], &v))
			continue;
		if (!json_object_is_type(v, json_type_array))
			goto bad_list;
		for (j = 0; j < json_object_array_length(v); j++) {
			it = json_object_array_get_idx(v, j);
			if (!json_object_is_type(it, json_type_string))
				goto bad_list;
		}
		continue;
	bad_list:
		snprintf(msg, sizeof(msg), "%s.%s: not an array of strings",
		         name, list_keys[i]);
		return msg;
	}
	for (i = 0; i < sizeof(bool_keys) / sizeof(bool_keys[0]); i++)
		if (json_object_object_get_ex(sec, bool_keys[i], &v) &&
		    !json_object_is_type(v, json_type_boolean)) {
			snprintf(msg, sizeof(msg),
			         "%s.%s: is not of type 'boolean'", name,
			         bool_keys[i]);
			return msg;
		}
	if (json_object_object_get_ex(sec, "limit", &v) &&
	    !json_object_is_type(v, json_type_int) &&
	    !json_object_is_type(v, json_type_double)) {
		snprintf(msg, sizeof(msg), "%s.limit: is not of type 'number'",
		         name);
		return msg;
	}
	return NULL;
}

/* NULL when f is a filter Synapse would accept, else why not. */
const char *
filter_validate(struct json_object *f)
{
	static const char *top[] = {"presence", "account_data"};
	static const char *room[] = {"timeline", "state", "ephemeral",
	                             "account_data"};
	struct json_object *r = NULL, *fmt;
	const char *err;
	size_t i;

	if (!json_object_is_type(f, json_type_object))
		return "filter is not of type 'object'";
	for (i = 0; i < sizeof(top) / sizeof(top[0]); i++)
		if (json_object_object_get_ex(f, top[i], &r) &&
		    (err = section_check(r, top[i])) != NULL)
			return err;
	if (json_object_object_get_ex(f, "event_format", &fmt) &&
	    (!json_object_is_type(fmt, json_type_string) ||
	     (strcmp(json_object_get_string(fmt), "client") != 0 &&
	      strcmp(json_object_get_string(fmt), "federation") != 0)))
		return "event_format: is not one of ['client', 'federation']";
	if (!json_object_object_get_ex(f, "room", &r))
		return NULL;
	if ((err = section_check(r, "room")) != NULL)
		return err;
	for (i = 0; i < sizeof(room) / sizeof(room[0]); i++) {
		struct json_object *sec;

		if (json_object_object_get_ex(r, room[i], &sec) &&
		    (err = section_check(sec, room[i])) != NULL)
			return err;
	}
	return NULL;
}

/*
 * The filter named by the query's `filter` (inline JSON or a stored id)
 * into *out (one reference). Replies with Synapse's error and returns -1
 * when it cannot be used.
 */
int
filter_resolve(struct creq *c, const char *f, struct json_object **out)
{
	struct user *u = c->tok->device->user;
	struct json_object *obj, *tl, *lim;
	const char *err;
	char *end;
	long id;

	*out = NULL;
	if (f[0] != '{') {
		id = strtol(f, &end, 10);
		if (*f == '\0' || *end != '\0' || id < 0 ||
		    (size_t)id >= u->filters.n) {
			creq_error(c, 400, "M_INVALID_PARAM", "No such filter");
			return -1;
		}
		*out = json_object_get(u->filters.v[id]);
		return 0;
	}
	if ((obj = json_parse(f, strlen(f))) == NULL) {
		creq_error(c, 400, "M_NOT_JSON", "Invalid filter JSON");
		return -1;
	}
	if ((err = filter_validate(obj)) != NULL) {
		json_object_put(obj);
		creq_error(c, 400, "M_UNKNOWN", err);
		return -1;
	}
	/* Synapse caps inline filters only: a stored one keeps its limit. */
	tl = json_get(json_get(obj, "room", json_type_object), "timeline",
	              json_type_object);
	if ((lim = json_get(tl, "limit", json_type_int)) != NULL &&
	    json_object_get_int64(lim) > FILTER_TIMELINE_CAP)
		json_add_int(tl, "limit", FILTER_TIMELINE_CAP);
	*out = obj;
	return 0;
}

/* filter.<name> at the top level (account_data, presence). */
struct json_object *
filter_top(struct json_object *f, const char *name)
{
	return json_get(f, name, json_type_object);
}

/* filter.room.<room_sec>, or filter.room itself when room_sec is NULL. */
struct json_object *
filter_section(struct json_object *f, const char *room_sec)
{
	struct json_object *room = json_get(f, "room", json_type_object);

	if (room_sec == NULL)
		return room;
	return json_get(room, room_sec, json_type_object);
}

static bool
list_has(struct json_object *arr, const char *v, bool is_glob)
{
	const char *p;
	size_t i, len;

	if (v == NULL)
		return false;
	for (i = 0; i < json_object_array_length(arr); i++) {
		p = json_object_get_string(json_object_array_get_idx(arr, i));
		len = strlen(p);
		if (is_glob && len > 0 && p[len - 1] == '*') {
			if (strncmp(v, p, len - 1) == 0)
				return true;
		} else if (strcmp(v, p) == 0)
			return true;
	}
	return false;
}

/* One key pair: not_<key> wins, then <key> (when present) must match. */
static bool
pair_allows(struct json_object *sec, const char *key, const char *v,
            bool is_glob)
{
	struct json_object *yes, *no;
	char not_key[32];

	snprintf(not_key, sizeof(not_key), "not_%s", key);
	if ((no = json_get(sec, not_key, json_type_array)) != NULL &&
	    list_has(no, v, is_glob))
		return false;
	if ((yes = json_get(sec, key, json_type_array)) != NULL &&
	    !list_has(yes, v, is_glob))
		return false;
	return true;
}

/* Synapse's Filter.check: types take a trailing '*' as a prefix match. */
bool
filter_allows(struct json_object *sec, const char *type, const char *sender,
              const char *room_id)
{
	if (sec == NULL)
		return true;
	if (room_id != NULL && !pair_allows(sec, "rooms", room_id, false))
		return false;
	if (!pair_allows(sec, "senders", sender, false))
		return false;
	return type == NULL || pair_allows(sec, "types", type, true);
}

bool
filter_room_allowed(struct json_object *f, const char *room_id)
{
	return filter_allows(filter_section(f, NULL), NULL, NULL, room_id);
}

static bool
flag(struct json_object *sec, const char *key)
{
	struct json_object *v = json_get(sec, key, json_type_boolean);

	return v != NULL && json_object_get_boolean(v);
}

bool
filter_lazy_members(struct json_object *f)
{
	return flag(filter_section(f, "state"), "lazy_load_members");
}

bool
filter_redundant_members(struct json_object *f)
{
	return flag(filter_section(f, "state"), "include_redundant_members");
}

bool
filter_include_leave(struct json_object *f)
{
	return flag(filter_section(f, NULL), "include_leave");
}

/* room.timeline.limit, Synapse's default 10; negative counts as 0. */
int
filter_timeline_limit(struct json_object *f)
{
	struct json_object *lim =
	    json_get(filter_section(f, "timeline"), "limit", json_type_int);
	int64_t n;

	if (lim == NULL)
		return SIMHS_DEFAULT_LIMIT;
	n = json_object_get_int64(lim);
	if (n < 0)
		return 0;
	return n > INT32_MAX ? INT32_MAX : (int)n;
}
