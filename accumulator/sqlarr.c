/*
 * Column buffers for set-based statements: each column of a multi-row
 * write is one Postgres array literal (common/pg_lit.c), passed as a text
 * parameter and expanded with unnest() on the server. One round trip per
 * statement whatever the number of rows; no SQL is built from data.
 * Insert-only tables are written with COPY instead (pg_copy_*): no array
 * parsing, no planning, no materialised function scan on the server.
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
