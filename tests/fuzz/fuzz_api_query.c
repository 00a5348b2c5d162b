/*
 * libFuzzer target for the /sync query string (api/query.c): timeout,
 * since and the access_token refusal. Any input parses cleanly or fails
 * with an errcode; a parsed timeout is within [0, cap]. Seed corpus:
 * tests/fuzz/corpus/api_query/.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct query q;
	const char *ec = NULL, *em = NULL;
	char *s;

	s = malloc(size + 1);
	memcpy(s, data, size);
	s[size] = '\0';
	if (query_parse(s, 60000, &q, &ec, &em) == 0) {
		if (q.timeout_ms < -1 || q.timeout_ms > 60000)
			abort();
		if (q.since != NULL && (q.from.sid <= 0 || *q.since == '\0'))
			abort();
		query_free(&q);
	} else if (ec == NULL || em == NULL || q.since != NULL)
		abort();
	free(s);
	return 0;
}
