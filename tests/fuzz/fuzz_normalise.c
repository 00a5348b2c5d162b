/*
 * libFuzzer target for the v2 body parser (normalise.c + jscan.c): any
 * input must either fail cleanly or give a change set whose spans lie
 * inside the input. Seed corpus: tests/fuzz/corpus/normalise/.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "accumulator.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct acc_changes c;
	const char *body = (const char *)data;

	if (normalise(body, size, "@alice:hs", &c, NULL) == 0) {
		for (size_t i = 0; i < c.nrooms; i++)
			for (size_t j = 0; j < c.rooms[i].timeline.n; j++) {
				const struct acc_event *e =
				    &c.rooms[i].timeline.v[j];
				if (e->raw < body || e->raw + e->raw_len >
				    body + size)
					abort();
			}
		normalise_free(&c);
	}
	return 0;
}
