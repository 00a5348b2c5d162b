/* Postgres array literals built column by column, and COPY rows (sqlarr.c). */
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

/* COPY ... FROM STDIN text format rows (count: fields in the row). */
void cp_strn(struct abuf *b, const char *s, size_t len); /* NULL -> \N */
void cp_str(struct abuf *b, const char *s);
void cp_i64(struct abuf *b, int64_t v);
void cp_bool(struct abuf *b, bool v);
void cp_row_end(struct abuf *b);

struct cols {
	struct abuf c[SQLARR_COLS_MAX];
	int ncols;
	size_t rows;
};

void cols_init(struct cols *c, int ncols);
void cols_free(struct cols *c);
void cols_params(struct cols *c, const char **params);

#endif
