/*
 * libFuzzer target for the poller's /sync body scan (poller/policy.c,
 * policy_scan_*). The first two bytes seed the split points; the rest is
 * the body. Checks: no crash; the body fed whole and fed in chunks cut at
 * random points get the same verdict, next_batch and emptiness; that
 * verdict is the one json_parse_bounded on the whole body gives (what
 * the poller did before it scanned bodies as they arrived). Seed corpus:
 * tests/fuzz/corpus/poller_scan/.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json_util.h"
#include "poller.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const always[] = {
    "next_batch", "device_one_time_keys_count",
    "device_unused_fallback_key_types",
    "org.matrix.msc2732.device_unused_fallback_key_types"};

/* The tree's view of news: anything but null, [], {} and such objects. */
static bool
has_news(struct json_object *v)
{
	switch (json_object_get_type(v)) {
	case json_type_null:
		return false;
	case json_type_array:
		return json_object_array_length(v) > 0;
	case json_type_object: {
		json_object_object_foreach(v, key, child)
		{
			(void)key;
			if (has_news(child))
				return true;
		}
		return false;
	}
	default:
		return true;
	}
}

static bool
tree_is_empty(struct json_object *o)
{
	json_object_object_foreach(o, key, v)
	{
		size_t i;

		for (i = 0; i < sizeof(always) / sizeof(always[0]); i++)
			if (strcmp(key, always[i]) == 0)
				break;
		if (i == sizeof(always) / sizeof(always[0]) && has_news(v))
			return false;
	}
	return true;
}

/*
 * What the whole parse says: -1 not a JSON object, 0 a next_batch, -2
 * not; *nb the next_batch, *is_empty the emptiness.
 */
static int
reference(const char *buf, size_t len, char **nb_out, bool *is_empty)
{
	struct json_object *o, *nb;
	int rc;

	*nb_out = NULL;
	*is_empty = false;
	if ((o = json_parse_bounded(buf, len, NULL)) == NULL)
		return -1;
	if (!json_object_is_type(o, json_type_object))
		rc = -1;
	else if (json_object_object_get_ex(o, "next_batch", &nb) &&
	         json_object_is_type(nb, json_type_string) &&
	         json_object_get_string_len(nb) > 0 &&
	         strlen(json_object_get_string(nb)) ==
	             (size_t)json_object_get_string_len(nb)) {
		*nb_out = strdup(json_object_get_string(nb));
		rc = 0;
	} else
		rc = -2;
	if (rc != -1)
		*is_empty = tree_is_empty(o);
	json_object_put(o);
	return rc;
}

static bool
same_str(const char *a, const char *b)
{
	return a == b || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct body_scan whole, part;
	char *nb_whole, *nb_part, *nb_ref;
	bool e_whole = false, e_part = false, e_ref;
	const char *buf;
	unsigned seed;
	size_t len, at = 0;
	int rc_whole, rc_part, rc_ref;

	if (size < 2)
		return 0;
	seed = (unsigned)data[0] << 8 | data[1];
	buf = (const char *)data + 2;
	len = size - 2;
	policy_scan_init(&whole);
	policy_scan_feed(&whole, buf, len);
	rc_whole = policy_scan_end(&whole, &nb_whole, &e_whole);
	/* Chunks of 0 to 16 bytes (a zero-length feed must be harmless). */
	policy_scan_init(&part);
	while (at < len) {
		size_t n;

		seed = seed * 1103515245u + 12345u;
		n = (seed >> 16) % 17;
		if (n > len - at)
			n = len - at;
		policy_scan_feed(&part, buf + at, n);
		at += n;
	}
	rc_part = policy_scan_end(&part, &nb_part, &e_part);
	rc_ref = reference(buf, len, &nb_ref, &e_ref);
	if (rc_whole != rc_part || !same_str(nb_whole, nb_part) ||
	    e_whole != e_part || (rc_whole == 0) != (nb_whole != NULL))
		abort();
	/*
	 * A key repeated below the top level keeps its first value's news
	 * (json-c keeps the last value): the scan may see news where the
	 * tree has none, never the other way.
	 */
	if (rc_whole != -1 &&
	    (rc_whole != rc_ref || !same_str(nb_whole, nb_ref) ||
	     (e_whole && !e_ref)))
		abort();
	free(nb_whole);
	free(nb_part);
	free(nb_ref);
	return 0;
}
