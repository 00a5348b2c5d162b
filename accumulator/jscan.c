/*
 * Exact byte spans inside a JSON text. The body is validated once by
 * json_parse_bounded(); this scanner then walks the raw text so each event
 * can be stored with the bytes the homeserver sent (json-c would
 * re-serialise it). It never reads outside [p, end) even on invalid input.
 */
#include <stdlib.h>
#include <string.h>

#include "accumulator.h"
#include "json_util.h"
#include "util.h"

static const char *
ws(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

/*
 * p at the opening quote; returns the byte after the closing quote. Most
 * of a body is string bytes and every nesting level scans them again, so
 * quotes are found with memchr: a quote closes the string when an even
 * number of backslashes precedes it.
 */
static const char *
skip_string(const char *p, const char *end)
{
	const char *q = p + 1, *e, *b;

	for (;;) {
		if ((e = memchr(q, '"', (size_t)(end - q))) == NULL)
			return NULL;
		for (b = e; b > p + 1 && b[-1] == '\\'; b--)
			;
		if (((e - b) & 1) == 0)
			return e + 1;
		q = e + 1;
	}
}

/* Returns the end of the value starting at p (after whitespace). */
const char *
jscan_skip(const char *p, const char *end)
{
	const char *s;
	int depth = 0;

	p = ws(p, end);
	if (p >= end)
		return NULL;
	if (*p == '"')
		return skip_string(p, end);
	if (*p == '{' || *p == '[') {
		while (p < end) {
			if (*p == '"') {
				if ((p = skip_string(p, end)) == NULL)
					return NULL;
				continue;
			}
			if (*p == '{' || *p == '[')
				depth++;
			else if ((*p == '}' || *p == ']') && --depth == 0)
				return p + 1;
			p++;
		}
		return NULL;
	}
	for (s = p; p < end && strchr(",:}] \t\r\n\"{[", *p) == NULL; p++)
		;
	return p > s ? p : NULL;
}

bool
jscan_is(struct jspan v, char c)
{
	const char *p = ws(v.p, v.p + v.len);

	return p < v.p + v.len && *p == c;
}

int
jscan_open(struct jscan_it *it, struct jspan v, char open)
{
	const char *p = ws(v.p, v.p + v.len);

	if (p >= v.p + v.len || *p != open)
		return -1;
	it->p = p + 1;
	it->end = v.p + v.len;
	it->close = open == '{' ? '}' : ']';
	it->first = true;
	return 0;
}

/* Moves past the separator; 1 if a value follows, 0 at the end, -1 bad. */
static int
it_step(struct jscan_it *it)
{
	it->p = ws(it->p, it->end);
	if (it->p >= it->end)
		return -1;
	if (*it->p == it->close)
		return 0;
	if (!it->first) {
		if (*it->p != ',')
			return -1;
		it->p = ws(it->p + 1, it->end);
	}
	it->first = false;
	return it->p < it->end ? 1 : -1;
}

/*
 * The next member's key, the iterator left at its value, unread: the
 * caller goes on with jscan_value (its span) or jscan_enter (into it).
 * Reading a span skips the value, and a container's span read before its
 * members is a pass of its own over every byte in it: a 30 MB body's
 * rooms are three levels down ("rooms", "join", the room), so the
 * normaliser enters those levels instead, and each byte is read once.
 */
int
jscan_key(struct jscan_it *it, struct jspan *key)
{
	const char *k;
	int rc;

	if ((rc = it_step(it)) != 1)
		return rc;
	if (*it->p != '"' || (k = skip_string(it->p, it->end)) == NULL)
		return -1;
	key->p = it->p;
	key->len = (size_t)(k - it->p);
	k = ws(k, it->end);
	if (k >= it->end || *k != ':')
		return -1;
	it->p = ws(k + 1, it->end);
	return it->p < it->end ? 1 : -1;
}

/* The value after jscan_key, skipped: 1 with val set, -1 if broken. */
int
jscan_value(struct jscan_it *it, struct jspan *val)
{
	const char *v;

	if ((v = jscan_skip(it->p, it->end)) == NULL)
		return -1;
	val->p = it->p;
	val->len = (size_t)(v - it->p);
	it->p = v;
	return 1;
}

/* Is the value after jscan_key a container opening with open? */
bool
jscan_at(const struct jscan_it *it, char open)
{
	return it->p < it->end && *it->p == open;
}

/*
 * Iterates the value after jscan_key (jscan_at(it, open) holds) with
 * child, bounded by it's end. Once child's iteration has returned 0 (at
 * its close), jscan_leave moves it past the value; until then it must
 * not be used.
 */
void
jscan_enter(struct jscan_it *it, char open, struct jscan_it *child)
{
	child->p = it->p + 1;
	child->end = it->end;
	child->close = open == '{' ? '}' : ']';
	child->first = true;
}

/* 0, or -1 if child did not end at its close (then it is broken too). */
int
jscan_leave(struct jscan_it *it, const struct jscan_it *child)
{
	if (child->p >= child->end || *child->p != child->close)
		return -1;
	it->p = child->p + 1;
	return 0;
}

int
jscan_member(struct jscan_it *it, struct jspan *key, struct jspan *val)
{
	int rc;

	if ((rc = jscan_key(it, key)) != 1)
		return rc;
	return jscan_value(it, val);
}

int
jscan_elem(struct jscan_it *it, struct jspan *val)
{
	const char *v;
	int rc;

	if ((rc = it_step(it)) != 1)
		return rc;
	if ((v = jscan_skip(it->p, it->end)) == NULL)
		return -1;
	val->p = it->p;
	val->len = (size_t)(v - it->p);
	it->p = v;
	return 1;
}

/*
 * The bytes to remove so that obj no longer has the member key and stays
 * valid JSON: from the end of the previous value through this one, or,
 * for the first member, from its key up to the next key. 1 with cut set,
 * 0 if obj has no such member, -1 if obj is not an object.
 */
int
jscan_cut(struct jspan obj, const char *key, struct jspan *cut)
{
	struct jscan_it it;
	struct jspan k, v;
	const char *prev = NULL, *e;
	int rc;

	if (jscan_open(&it, obj, '{') == -1)
		return -1;
	while ((rc = jscan_member(&it, &k, &v)) == 1) {
		e = v.p + v.len;
		if (!jscan_key_eq(k, key)) {
			prev = e;
			continue;
		}
		if (prev != NULL) {
			cut->p = prev;
			cut->len = (size_t)(e - prev);
			return 1;
		}
		e = ws(e, it.end);
		if (e < it.end && *e == ',')
			e = ws(e + 1, it.end);
		cut->p = k.p;
		cut->len = (size_t)(e - k.p);
		return 1;
	}
	return rc;
}

/* Decodes a string span (with quotes); NULL if not a string or has NUL. */
char *
jscan_str(struct jspan s)
{
	struct json_object *o;
	char *out = NULL;

	if (s.len < 2 || s.p[0] != '"')
		return NULL;
	if (memchr(s.p, '\\', s.len) == NULL)
		return xstrndup(s.p + 1, s.len - 2);
	o = json_parse_bounded(s.p, s.len, NULL);
	if (o != NULL && json_object_is_type(o, json_type_string) &&
	    strlen(json_object_get_string(o)) ==
		(size_t)json_object_get_string_len(o))
		out = xstrdup(json_object_get_string(o));
	json_object_put(o);
	return out;
}

bool
jscan_key_eq(struct jspan key, const char *s)
{
	size_t n = strlen(s);
	char *d;
	bool eq;

	if (key.len < 2)
		return false;
	if (memchr(key.p, '\\', key.len) == NULL)
		return key.len == n + 2 && memcmp(key.p + 1, s, n) == 0;
	if ((d = jscan_str(key)) == NULL)
		return false;
	eq = strcmp(d, s) == 0;
	free(d);
	return eq;
}
