/*
 * Column buffers for set-based statements: each column of a multi-row
 * write is one Postgres array literal, passed as a text parameter and
 * expanded with unnest() on the server. One round trip per statement
 * whatever the number of rows; no SQL is built from data. Insert-only
 * tables are written with COPY instead (cp_*): no array parsing, no
 * planning, no materialised function scan on the server.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "accumulator.h"
#include "sqlarr.h"
#include "util.h"

static void
ab_reserve(struct abuf *b, size_t more)
{
	if (b->n + more + 2 <= b->cap)
		return;
	b->cap = (b->n + more + 2) * 2;
	if (b->cap < 256)
		b->cap = 256;
	b->p = xrealloc(b->p, b->cap);
}

static void
ab_sep(struct abuf *b)
{
	ab_reserve(b, 1);
	b->p[b->n++] = b->count++ ? ',' : '{';
}

void
ab_strn(struct abuf *b, const char *s, size_t len)
{
	ab_sep(b);
	if (s == NULL) {
		ab_reserve(b, 4);
		memcpy(b->p + b->n, "NULL", 4);
		b->n += 4;
		return;
	}
	ab_reserve(b, len * 2 + 2);
	b->p[b->n++] = '"';
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '"' || s[i] == '\\')
			b->p[b->n++] = '\\';
		b->p[b->n++] = s[i];
	}
	b->p[b->n++] = '"';
}

void
ab_str(struct abuf *b, const char *s)
{
	ab_strn(b, s, s ? strlen(s) : 0);
}

void
ab_i64(struct abuf *b, int64_t v)
{
	ab_sep(b);
	ab_reserve(b, 24);
	b->n += (size_t)snprintf(b->p + b->n, 24, "%" PRId64, v);
}

void
ab_bool(struct abuf *b, bool v)
{
	ab_sep(b);
	ab_reserve(b, 1);
	b->p[b->n++] = v ? 't' : 'f';
}

const char *
ab_end(struct abuf *b)
{
	ab_reserve(b, 2);
	if (b->count == 0)
		b->p[b->n++] = '{';
	b->p[b->n++] = '}';
	b->p[b->n] = '\0';
	return b->p;
}

void
ab_reset(struct abuf *b)
{
	b->n = 0;
	b->count = 0;
}

void
ab_free(struct abuf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

void
cols_init(struct cols *c, int ncols)
{
	memset(c, 0, sizeof(*c));
	c->ncols = ncols;
}

void
cols_free(struct cols *c)
{
	for (int i = 0; i < SQLARR_COLS_MAX; i++)
		ab_free(&c->c[i]);
	c->rows = 0;
}

void
cols_params(struct cols *c, const char **params)
{
	for (int i = 0; i < c->ncols; i++)
		params[i] = ab_end(&c->c[i]);
}

static void
cp_sep(struct abuf *b)
{
	ab_reserve(b, 1);
	if (b->count++ > 0)
		b->p[b->n++] = '\t';
}

/*
 * One field of a COPY text-format row: backslash, newline, carriage
 * return and tab are escaped, NULL is \N; every other byte, NUL-free
 * UTF-8 included, goes through as it is.
 */
void
cp_strn(struct abuf *b, const char *s, size_t len)
{
	cp_sep(b);
	if (s == NULL) {
		ab_reserve(b, 2);
		memcpy(b->p + b->n, "\\N", 2);
		b->n += 2;
		return;
	}
	ab_reserve(b, len * 2);
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		switch (c) {
		case '\\': c = '\\'; break;
		case '\n': c = 'n'; break;
		case '\r': c = 'r'; break;
		case '\t': c = 't'; break;
		default:
			b->p[b->n++] = c;
			continue;
		}
		b->p[b->n++] = '\\';
		b->p[b->n++] = c;
	}
}

void
cp_str(struct abuf *b, const char *s)
{
	cp_strn(b, s, s ? strlen(s) : 0);
}

void
cp_i64(struct abuf *b, int64_t v)
{
	cp_sep(b);
	ab_reserve(b, 24);
	b->n += (size_t)snprintf(b->p + b->n, 24, "%" PRId64, v);
}

void
cp_bool(struct abuf *b, bool v)
{
	cp_sep(b);
	ab_reserve(b, 1);
	b->p[b->n++] = v ? 't' : 'f';
}

void
cp_row_end(struct abuf *b)
{
	ab_reserve(b, 1);
	b->p[b->n++] = '\n';
	b->count = 0;
}
