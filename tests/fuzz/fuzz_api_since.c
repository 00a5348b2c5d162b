/*
 * libFuzzer target for since tokens (api/sincetok.c): any string must
 * parse cleanly or fail; a parsed token re-formats to one that parses to
 * the same values and verifies; verification of arbitrary input never
 * reads out of bounds. Seed corpus: tests/fuzz/corpus/api_since/.
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
	struct since s, s2;
	char *tok, out[SINCE_MAX];

	tok = malloc(size + 1);
	memcpy(tok, data, size);
	tok[size] = '\0';
	(void)since_verify(tok, "secret", "@alice:hs", "DEV");
	if (since_parse(tok, &s) == 0) {
		since_format(&s, "secret", "@alice:hs", "DEV", out);
		if (strlen(out) >= SINCE_MAX || since_parse(out, &s2) != 0 ||
		    memcmp(&s, &s2, sizeof(s)) != 0 ||
		    !since_verify(out, "secret", "@alice:hs", "DEV") ||
		    since_verify(out, "secret", "@alice:hs", "DEV2"))
			abort();
	}
	free(tok);
	return 0;
}
