/*
 * Reading the hand-written v2 bodies in tests/data/sync for the unit tests
 * that need them (test_normalise, test_store). Include after cmocka.h.
 */
#ifndef SYNCV3_TESTDATA_H
#define SYNCV3_TESTDATA_H

#include <stdio.h>
#include <stdlib.h>

#ifndef DATA_DIR
#define DATA_DIR "tests/data/sync"
#endif

/* The whole file DATA_DIR/name, NUL-terminated; *len excludes the NUL. */
static inline char *
slurp(const char *name, size_t *len)
{
	char path[512];
	FILE *fp;
	char *buf;
	long n;

	snprintf(path, sizeof(path), "%s/%s", DATA_DIR, name);
	fp = fopen(path, "rb");
	assert_non_null(fp);
	fseek(fp, 0, SEEK_END);
	n = ftell(fp);
	rewind(fp);
	buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
	buf[n] = '\0';
	fclose(fp);
	*len = (size_t)n;
	return buf;
}

#endif
