/*
 * Text that Postgres parses out of query parameters, built from data so
 * that no SQL is ever built from it: array literals ({"a","b",NULL}) for
 * unnest($n::text[]) and = ANY($n), rows of COPY ... FROM STDIN text
 * format, and int64 parameters. Shared by the accumulator's set-based
 * writes, the poller's lease flush and the api's room queries.
 */
#ifndef SYNCV3_PG_LIT_H
#define SYNCV3_PG_LIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Room for any int64 in decimal, sign and NUL included. */
#define PG_I64_LEN 24

/* Writes v in decimal into buf and returns buf, for a text parameter. */
const char *pg_i64(char buf[PG_I64_LEN], int64_t v);

/*
 * A growing buffer holding one array literal (pg_arr_*) or COPY rows
 * (pg_copy_*); count is the elements (fields of the current row) so far.
 * A zeroed struct is empty; pg_lit_free releases it.
 */
struct pg_lit {
	char *p;
	size_t n, cap;
	size_t count;
};

/* One array element, quoted and escaped; s NULL is SQL NULL. */
void pg_arr_strn(struct pg_lit *b, const char *s, size_t len);
void pg_arr_str(struct pg_lit *b, const char *s);
void pg_arr_i64(struct pg_lit *b, int64_t v);
void pg_arr_bool(struct pg_lit *b, bool v);
/* Closes the literal ("{}" when empty); borrowed until the next change. */
const char *pg_arr_end(struct pg_lit *b);

/* One field of a COPY text row; s NULL is \N. */
void pg_copy_strn(struct pg_lit *b, const char *s, size_t len);
void pg_copy_str(struct pg_lit *b, const char *s);
void pg_copy_i64(struct pg_lit *b, int64_t v);
void pg_copy_bool(struct pg_lit *b, bool v);
/* Ends the current row. */
void pg_copy_row_end(struct pg_lit *b);

/* Empties the buffer, keeping its memory. */
void pg_lit_reset(struct pg_lit *b);
void pg_lit_free(struct pg_lit *b);

/* The text[] literal of n strings (none NULL) in one allocation to free. */
char *pg_text_array(const char *const *v, size_t n);

#endif
