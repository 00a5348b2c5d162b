/*
 * pg_lit.c: see pg_lit.h. Array elements are always double-quoted, with
 * backslash and double quote escaped, so no element text can be read as
 * NULL, a separator or a nested array. COPY fields escape backslash,
 * newline, carriage return and tab; every other byte, NUL-free UTF-8
 * included, goes through as it is.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pg_lit.h"
#include "util.h"

const char *
pg_i64(char buf[PG_I64_LEN], int64_t v)
{
	snprintf(buf, PG_I64_LEN, "%" PRId64, v);
	return buf;
}

/* Room for more bytes plus the closing brace and NUL of pg_arr_end. */
static void
lit_reserve(struct pg_lit *b, size_t more)
{
	if (b->n + more + 2 <= b->cap)
		return;
	b->cap = (b->n + more + 2) * 2;
	if (b->cap < 256)
		b->cap = 256;
	b->p = xrealloc(b->p, b->cap);
}

static void
lit_i64(struct pg_lit *b, int64_t v)
{
	lit_reserve(b, PG_I64_LEN);
	b->n += strlen(pg_i64(b->p + b->n, v));
}

static void
lit_bool(struct pg_lit *b, bool v)
{
	lit_reserve(b, 1);
	b->p[b->n++] = v ? 't' : 'f';
}

static void
arr_sep(struct pg_lit *b)
{
	lit_reserve(b, 1);
	b->p[b->n++] = b->count++ ? ',' : '{';
}

void
pg_arr_strn(struct pg_lit *b, const char *s, size_t len)
{
	arr_sep(b);
	if (s == NULL) {
		lit_reserve(b, 4);
		memcpy(b->p + b->n, "NULL", 4);
		b->n += 4;
		return;
	}
	lit_reserve(b, len * 2 + 2);
	b->p[b->n++] = '"';
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '"' || s[i] == '\\')
			b->p[b->n++] = '\\';
		b->p[b->n++] = s[i];
	}
	b->p[b->n++] = '"';
}

void
pg_arr_str(struct pg_lit *b, const char *s)
{
	pg_arr_strn(b, s, s ? strlen(s) : 0);
}

void
pg_arr_i64(struct pg_lit *b, int64_t v)
{
	arr_sep(b);
	lit_i64(b, v);
}

void
pg_arr_bool(struct pg_lit *b, bool v)
{
	arr_sep(b);
	lit_bool(b, v);
}

const char *
pg_arr_end(struct pg_lit *b)
{
	lit_reserve(b, 2);
	if (b->count == 0)
		b->p[b->n++] = '{';
	b->p[b->n++] = '}';
	b->p[b->n] = '\0';
	return b->p;
}

static void
copy_sep(struct pg_lit *b)
{
	lit_reserve(b, 1);
	if (b->count++ > 0)
		b->p[b->n++] = '\t';
}

/*
 * One field of a COPY text-format row: backslash, newline, carriage
 * return and tab are escaped, NULL is \N; other bytes go through as they
 * are (COPY reads the connection's encoding, UTF-8).
 */
void
pg_copy_strn(struct pg_lit *b, const char *s, size_t len)
{
	copy_sep(b);
	if (s == NULL) {
		lit_reserve(b, 2);
		memcpy(b->p + b->n, "\\N", 2);
		b->n += 2;
		return;
	}
	lit_reserve(b, len * 2);
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		switch (c) {
		case '\\':
			c = '\\';
			break;
		case '\n':
			c = 'n';
			break;
		case '\r':
			c = 'r';
			break;
		case '\t':
			c = 't';
			break;
		default:
			b->p[b->n++] = c;
			continue;
		}
		b->p[b->n++] = '\\';
		b->p[b->n++] = c;
	}
}

void
pg_copy_str(struct pg_lit *b, const char *s)
{
	pg_copy_strn(b, s, s ? strlen(s) : 0);
}

void
pg_copy_i64(struct pg_lit *b, int64_t v)
{
	copy_sep(b);
	lit_i64(b, v);
}

void
pg_copy_bool(struct pg_lit *b, bool v)
{
	copy_sep(b);
	lit_bool(b, v);
}

void
pg_copy_row_end(struct pg_lit *b)
{
	lit_reserve(b, 1);
	b->p[b->n++] = '\n';
	b->count = 0;
}

void
pg_lit_reset(struct pg_lit *b)
{
	b->n = 0;
	b->count = 0;
}

void
pg_lit_free(struct pg_lit *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

char *
pg_text_array(const char *const *v, size_t n)
{
	struct pg_lit b = {0};

	for (size_t i = 0; i < n; i++)
		pg_arr_str(&b, v[i]);
	pg_arr_end(&b);
	return b.p;
}
