/*
 * A JSON validator fed in pieces that builds no tree (issue #13): a /sync
 * body of tens of megabytes is checked as it arrives with a few hundred
 * bytes of state. It accepts RFC 8259 JSON whose top level is an object,
 * strict UTF-8 (RFC 3629), at most JSONV_DEPTH levels of nesting; all of
 * that json-c (json_parse_bounded) accepts too (tests/fuzz). Of the top
 * level it keeps what a caller needs without a tree: each member's key,
 * whether its value has anything but null, [] and {} (has_news), and the
 * value when it is a string.
 */
#ifndef SYNCV3_JSONV_H
#define SYNCV3_JSONV_H

#include <stdbool.h>
#include <stddef.h>

#include "json_util.h"

#define JSONV_DEPTH JSON_MAX_DEPTH /* containers open at once, as json-c */

struct jsonv_member {
	char *key;      /* decoded, as json-c keys are: up to a first NUL */
	bool has_news;  /* the value is not null, [], {} or such objects */
	char *str;      /* the decoded value when a string, else NULL */
	size_t str_len; /* its length (it may hold a NUL) */
};

struct jsonv {
	int st;                 /* what the next byte may be (jsonv.c) */
	int sub;                /* a number's part; bytes of \u left */
	const char *lit;        /* the rest of true, false or null */
	unsigned utf8_left;     /* continuation bytes still due */
	unsigned char lo, hi;   /* the range of the next continuation byte */
	bool is_key;            /* the string being read is a key */
	int depth;              /* containers open */
	char kind[JSONV_DEPTH]; /* '{' or '[' each */
	char *cap;              /* a top-level key or string value, raw */
	size_t ncap, capsz;
	bool is_capturing;
	struct jsonv_member
	    *mem; /* the top level's members, first seen first */
	size_t nmem, memsz, cur;
	const char *err; /* why refused; NULL: fine so far */
};

void jsonv_init(struct jsonv *);
void jsonv_feed(struct jsonv *, const char *, size_t);
int jsonv_end(struct jsonv *);
const struct jsonv_member *jsonv_get(const struct jsonv *, const char *);
void jsonv_free(struct jsonv *);

#endif
