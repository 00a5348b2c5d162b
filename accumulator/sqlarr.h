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

void cols_init(struct cols *c, int ncols);
void cols_free(struct cols *c);
void cols_params(struct cols *c, const char **params);

#endif
