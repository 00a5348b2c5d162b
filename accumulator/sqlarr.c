/*
 * Column buffers for set-based statements: each column of a multi-row
 * write is one Postgres array literal (common/pg_lit.c), passed as a text
 * parameter and expanded with unnest() on the server. One round trip per
 * statement whatever the number of rows; no SQL is built from data.
 * Insert-only tables are written with COPY instead (pg_copy_*) once a
 * statement has ROWS_COPY_MIN rows: no array parsing, no planning, no
 * materialised function scan on the server (struct rows picks).
 */
#include <string.h>

#include "sqlarr.h"

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
		pg_lit_free(&c->c[i]);
	c->rows = 0;
}

void
cols_params(struct cols *c, const char **params)
{
	for (int i = 0; i < c->ncols; i++)
		params[i] = pg_arr_end(&c->c[i]);
}

void
rows_init(struct rows *r, int ncols, size_t nrows)
{
	memset(r, 0, sizeof(*r));
	cols_init(&r->c, ncols);
	r->is_copy = nrows >= ROWS_COPY_MIN;
}

/* the literal the next field goes to: the COPY rows or its column's */
static struct pg_lit *
rows_field(struct rows *r)
{
	return r->is_copy ? &r->b : &r->c.c[r->col++];
}

void
rows_strn(struct rows *r, const char *s, size_t len)
{
	if (r->is_copy)
		pg_copy_strn(rows_field(r), s, len);
	else
		pg_arr_strn(rows_field(r), s, len);
}

void
rows_str(struct rows *r, const char *s)
{
	rows_strn(r, s, s != NULL ? strlen(s) : 0); /* NULL: a NULL field */
}

void
rows_i64(struct rows *r, int64_t v)
{
	if (r->is_copy)
		pg_copy_i64(rows_field(r), v);
	else
		pg_arr_i64(rows_field(r), v);
}

void
rows_bool(struct rows *r, bool v)
{
	if (r->is_copy)
		pg_copy_bool(rows_field(r), v);
	else
		pg_arr_bool(rows_field(r), v);
}

void
rows_end(struct rows *r)
{
	if (r->is_copy)
		pg_copy_row_end(&r->b);
	r->col = 0;
	r->c.rows++;
}

void
rows_free(struct rows *r)
{
	cols_free(&r->c);
	pg_lit_free(&r->b);
}
