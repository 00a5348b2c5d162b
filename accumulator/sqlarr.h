/* Postgres array literals built column by column (sqlarr.c). */
#ifndef SYNCV3_ACC_SQLARR_H
#define SYNCV3_ACC_SQLARR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SQLARR_COLS_MAX 16

struct abuf {
	char *p;
	size_t n, cap;
	size_t count;
};

void ab_strn(struct abuf *b, const char *s, size_t len);
void ab_str(struct abuf *b, const char *s);	/* NULL -> SQL NULL */
void ab_i64(struct abuf *b, int64_t v);
void ab_bool(struct abuf *b, bool v);
const char *ab_end(struct abuf *b);		/* NUL-terminated literal */
void ab_reset(struct abuf *b);
void ab_free(struct abuf *b);

struct cols {
	struct abuf c[SQLARR_COLS_MAX];
	int ncols;
	size_t rows;
};

void cols_init(struct cols *c, int ncols);
void cols_free(struct cols *c);
void cols_params(struct cols *c, const char **params);

#endif
