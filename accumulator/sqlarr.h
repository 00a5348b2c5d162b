/*
 * Column buffers for set-based statements (sqlarr.c): one array literal
 * per column of a multi-row write, built with common/pg_lit.h.
 */
#ifndef SYNCV3_ACC_SQLARR_H
#define SYNCV3_ACC_SQLARR_H

#include "pg_lit.h"

#define SQLARR_COLS_MAX 16

struct cols {
	struct pg_lit c[SQLARR_COLS_MAX];
	int ncols;
	size_t rows;
};

/*
 * The rows of an insert-only table, for one statement: below
 * ROWS_COPY_MIN rows as columns of an INSERT ... unnest (it joins the
 * group's pipeline), from then on as COPY rows (no array parsing on the
 * server, but two waits and a wait for the pipeline before it; db.c,
 * db_rows). Fields are given in column order, NULL strings included.
 */
#define ROWS_COPY_MIN 64

struct rows {
	struct cols c;   /* !is_copy: one literal per column */
	struct pg_lit b; /* is_copy: the COPY rows */
	bool is_copy;
	int col; /* the current row's next column */
};

void rows_init(struct rows *r, int ncols, size_t nrows);
void rows_strn(struct rows *r, const char *s, size_t len);
void rows_str(struct rows *r, const char *s);
void rows_i64(struct rows *r, int64_t v);
void rows_bool(struct rows *r, bool v);
void rows_end(struct rows *r);
void rows_free(struct rows *r);

void cols_init(struct cols *c, int ncols);
void cols_free(struct cols *c);
void cols_params(struct cols *c, const char **params);

#endif
