/*
 * jsonv.c: a JSON validator fed in pieces, without a tree (jsonv.h). One
 * state per byte position, so a body split anywhere, even inside a UTF-8
 * sequence or a \u escape, is judged as if it came whole. The poller runs
 * it on each /sync body as it arrives; json-c's tokener did the same job
 * but built the whole tree, hundreds of megabytes for a 30 MB body.
 */
#include <stdlib.h>
#include <string.h>

#include "jsonv.h"
#include "log.h"
#include "util.h"

enum {
	S_VALUE,        /* a value (after ':' or ',' in an array) */
	S_VALUE_OR_END, /* after '[': a value or ']' */
	S_KEY,          /* after ',' in an object: a key */
	S_KEY_OR_END,   /* after '{': a key or '}' */
	S_COLON,        /* after a key */
	S_AFTER,        /* after a value inside a container: ',' or its end */
	S_STR,          /* inside a string */
	S_ESC,          /* after a backslash */
	S_HEX,          /* inside \uXXXX; sub: digits left */
	S_UTF8,         /* inside a multibyte sequence */
	S_NUM,          /* inside a number; sub: which part */
	S_LIT,          /* inside true, false or null */
	S_DONE          /* the top-level value has ended */
};

/* A number's parts (RFC 8259 section 6); the starred ones may end it. */
enum {
	N_MINUS,
	N_ZERO /* * */,
	N_INT /* * */,
	N_DOT,
	N_FRAC /* * */,
	N_E,
	N_ESIGN,
	N_EXP /* * */
};

void
jsonv_init(struct jsonv *v)
{
	memset(v, 0, sizeof(*v));
	v->st = S_VALUE;
}

void
jsonv_free(struct jsonv *v)
{
	for (size_t i = 0; i < v->nmem; i++) {
		free(v->mem[i].key);
		free(v->mem[i].str);
	}
	free(v->mem);
	free(v->cap);
	memset(v, 0, sizeof(*v));
}

static void
fail(struct jsonv *v, const char *why)
{
	if (v->err == NULL)
		v->err = why;
}

static bool
is_ws(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static void
cap_add(struct jsonv *v, const char *p, size_t n)
{
	if (v->ncap + n + 1 > v->capsz) {
		v->capsz = (v->ncap + n + 1) * 2;
		v->cap = xrealloc(v->cap, v->capsz);
	}
	memcpy(v->cap + v->ncap, p, n);
	v->ncap += n;
	v->cap[v->ncap] = '\0';
}

/*
 * The string in v->cap (quotes included, already validated) decoded by
 * json-c itself, so escapes mean exactly what they mean to the accumulator.
 */
static char *
cap_decode(struct jsonv *v, size_t *len)
{
	struct json_tokener *tok;
	struct json_object *o;
	char *s = NULL;

	if ((tok = json_tokener_new()) == NULL)
		fatalx("json_tokener_new: out of memory");
	o = json_tokener_parse_ex(tok, v->cap, (int)v->ncap);
	if (o != NULL && json_object_is_type(o, json_type_string)) {
		*len = (size_t)json_object_get_string_len(o);
		s = xmalloc(*len + 1);
		memcpy(s, json_object_get_string(o), *len + 1);
	} else
		fail(v, "string json-c does not take");
	json_object_put(o);
	json_tokener_free(tok);
	v->ncap = 0;
	v->is_capturing = false;
	return s;
}

/* A top-level key has ended: its member, new or seen before (json-c keeps
 * the last value of a repeated key). */
static void
member_start(struct jsonv *v)
{
	struct jsonv_member *m;
	size_t len;
	char *key;

	if ((key = cap_decode(v, &len)) == NULL)
		return;
	for (v->cur = 0; v->cur < v->nmem; v->cur++)
		if (strcmp(v->mem[v->cur].key, key) == 0)
			break;
	if (v->cur == v->nmem) {
		if (v->nmem == v->memsz) {
			v->memsz = v->memsz ? v->memsz * 2 : 8;
			v->mem = xrealloc(v->mem, v->memsz * sizeof(*v->mem));
		}
		v->nmem++;
		memset(&v->mem[v->cur], 0, sizeof(v->mem[v->cur]));
		v->mem[v->cur].key = key;
	} else
		free(key);
	m = &v->mem[v->cur];
	free(m->str);
	m->str = NULL;
	m->str_len = 0;
	m->has_news = false;
}

/* A value has ended: what may follow it. */
static void
value_end(struct jsonv *v)
{
	v->st = v->depth == 0 ? S_DONE : S_AFTER;
}

static void
string_end(struct jsonv *v)
{
	struct jsonv_member *m;

	if (v->is_key) {
		if (v->depth == 1)
			member_start(v);
		v->st = S_COLON;
		return;
	}
	if (v->is_capturing) {
		m = &v->mem[v->cur];
		m->str = cap_decode(v, &m->str_len);
	}
	value_end(v);
}

static void
push(struct jsonv *v, char c)
{
	if (v->depth == JSONV_DEPTH) {
		fail(v, "nesting too deep");
		return;
	}
	v->kind[v->depth++] = c;
	v->st = c == '{' ? S_KEY_OR_END : S_VALUE_OR_END;
}

static void
pop(struct jsonv *v, char c)
{
	if (v->kind[v->depth - 1] != (c == '}' ? '{' : '[')) {
		fail(v, "mismatched bracket");
		return;
	}
	v->depth--;
	value_end(v);
}

static void
string_begin(struct jsonv *v, bool is_key)
{
	v->st = S_STR;
	v->is_key = is_key;
	/* top-level keys, and the string values of top-level members */
	v->is_capturing = v->depth == 1;
	v->ncap = 0;
	if (v->is_capturing)
		cap_add(v, "\"", 1);
}

/* The first byte of a value. */
static void
value_begin(struct jsonv *v, unsigned char c)
{
	if (v->depth == 0 && c != '{') {
		fail(v, "top level is not an object");
		return;
	}
	/* news: a scalar other than null, or any element of an array */
	if (v->depth >= 1 && ((v->kind[v->depth - 1] == '[') ||
	                      (c != 'n' && c != '{' && c != '[')))
		v->mem[v->cur].has_news = true;
	switch (c) {
	case '{':
	case '[':
		push(v, (char)c);
		return;
	case '"':
		string_begin(v, false);
		return;
	case 't':
		v->lit = "rue";
		break;
	case 'f':
		v->lit = "alse";
		break;
	case 'n':
		v->lit = "ull";
		break;
	case '-':
		v->st = S_NUM;
		v->sub = N_MINUS;
		return;
	default:
		if (c >= '0' && c <= '9') {
			v->st = S_NUM;
			v->sub = c == '0' ? N_ZERO : N_INT;
			return;
		}
		fail(v, "unexpected character");
		return;
	}
	v->st = S_LIT;
}

/* One more byte of a number; false when c ends it (c not used). */
static bool
number_step(struct jsonv *v, unsigned char c)
{
	bool is_digit = c >= '0' && c <= '9';

	switch (v->sub) {
	case N_MINUS:
		if (!is_digit)
			break;
		v->sub = c == '0' ? N_ZERO : N_INT;
		return true;
	case N_INT:
		if (is_digit)
			return true;
		/* FALLTHROUGH */
	case N_ZERO:
		if (c == '.')
			v->sub = N_DOT;
		else if (c == 'e' || c == 'E')
			v->sub = N_E;
		else
			return false;
		return true;
	case N_DOT:
	case N_FRAC:
		if (is_digit) {
			v->sub = N_FRAC;
			return true;
		}
		if (v->sub == N_FRAC && (c == 'e' || c == 'E')) {
			v->sub = N_E;
			return true;
		}
		if (v->sub == N_FRAC)
			return false;
		break;
	case N_E:
		if (c == '+' || c == '-') {
			v->sub = N_ESIGN;
			return true;
		}
		/* FALLTHROUGH */
	case N_ESIGN:
	case N_EXP:
		if (is_digit) {
			v->sub = N_EXP;
			return true;
		}
		if (v->sub == N_EXP)
			return false;
		break;
	}
	fail(v, "malformed number");
	return true;
}

/* The lead byte of a UTF-8 sequence: how many follow, the next's range. */
static void
utf8_begin(struct jsonv *v, unsigned char c)
{
	v->lo = 0x80;
	v->hi = 0xbf;
	if (c >= 0xc2 && c <= 0xdf)
		v->utf8_left = 1;
	else if (c >= 0xe0 && c <= 0xef) {
		v->utf8_left = 2;
		if (c == 0xe0)
			v->lo = 0xa0; /* no overlong form */
		else if (c == 0xed)
			v->hi = 0x9f; /* no surrogate */
	} else if (c >= 0xf0 && c <= 0xf4) {
		v->utf8_left = 3;
		if (c == 0xf0)
			v->lo = 0x90;
		else if (c == 0xf4)
			v->hi = 0x8f; /* nothing above U+10FFFF */
	} else {
		fail(v, "invalid UTF-8");
		return;
	}
	v->st = S_UTF8;
}

/* The bytes of a string up to a quote, backslash, control or non-ASCII. */
static size_t
plain_run(const unsigned char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (p[i] == '"' || p[i] == '\\' || p[i] < 0x20 || p[i] >= 0x80)
			break;
	return i;
}

/* One byte outside a string, a number or a literal. */
static void
structural(struct jsonv *v, unsigned char c)
{
	if (is_ws(c))
		return;
	switch (v->st) {
	case S_VALUE_OR_END:
		if (c == ']') {
			pop(v, ']');
			return;
		}
		/* FALLTHROUGH */
	case S_VALUE:
		value_begin(v, c);
		return;
	case S_KEY_OR_END:
		if (c == '}') {
			pop(v, '}');
			return;
		}
		/* FALLTHROUGH */
	case S_KEY:
		if (c == '"')
			string_begin(v, true);
		else
			fail(v, "expected a key");
		return;
	case S_COLON:
		if (c == ':')
			v->st = S_VALUE;
		else
			fail(v, "expected ':'");
		return;
	case S_AFTER:
		if (c == ',')
			v->st = v->kind[v->depth - 1] == '{' ? S_KEY : S_VALUE;
		else if (c == '}' || c == ']')
			pop(v, (char)c);
		else
			fail(v, "expected ',' or the container's end");
		return;
	default:
		fail(v, "trailing data after JSON value");
		return;
	}
}

void
jsonv_feed(struct jsonv *v, const char *buf, size_t len)
{
	const unsigned char *p = (const unsigned char *)buf;
	const unsigned char *end = p + len;
	size_t n;

	while (p < end && v->err == NULL) {
		unsigned char c = *p;

		switch (v->st) {
		case S_STR:
			if ((n = plain_run(p, (size_t)(end - p))) > 0) {
				if (v->is_capturing)
					cap_add(v, (const char *)p, n);
				p += n;
				continue;
			}
			if (v->is_capturing)
				cap_add(v, (const char *)p, 1);
			if (c == '"')
				string_end(v);
			else if (c == '\\')
				v->st = S_ESC;
			else if (c < 0x20)
				fail(v, "control character in string");
			else
				utf8_begin(v, c);
			break;
		case S_ESC:
			if (v->is_capturing)
				cap_add(v, (const char *)p, 1);
			if (c == 'u') {
				v->st = S_HEX;
				v->sub = 4;
			} else if (strchr("\"\\/bfnrt", c) != NULL && c != '\0')
				v->st = S_STR;
			else
				fail(v, "invalid escape");
			break;
		case S_HEX:
			if (v->is_capturing)
				cap_add(v, (const char *)p, 1);
			if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
			    (c >= 'A' && c <= 'F')) {
				if (--v->sub == 0)
					v->st = S_STR;
			} else
				fail(v, "invalid \\u escape");
			break;
		case S_UTF8:
			if (v->is_capturing)
				cap_add(v, (const char *)p, 1);
			if (c < v->lo || c > v->hi) {
				fail(v, "invalid UTF-8");
				break;
			}
			v->lo = 0x80;
			v->hi = 0xbf;
			if (--v->utf8_left == 0)
				v->st = S_STR;
			break;
		case S_NUM:
			if (!number_step(v, c)) {
				value_end(v);
				continue; /* c is the next token's */
			}
			break;
		case S_LIT:
			if (c != (unsigned char)*v->lit) {
				fail(v, "invalid literal");
				break;
			}
			if (*++v->lit == '\0')
				value_end(v);
			break;
		default:
			structural(v, c);
			break;
		}
		p++;
	}
}

/*
 * The body has ended: 0 when it was one complete JSON object, -1 (v->err
 * says why) when not.
 */
int
jsonv_end(struct jsonv *v)
{
	if (v->err == NULL && v->st != S_DONE)
		v->err = "truncated JSON";
	return v->err == NULL ? 0 : -1;
}

/* The top-level member named key (its last value), or NULL. */
const struct jsonv_member *
jsonv_get(const struct jsonv *v, const char *key)
{
	for (size_t i = 0; i < v->nmem; i++)
		if (strcmp(v->mem[i].key, key) == 0)
			return &v->mem[i];
	return NULL;
}
