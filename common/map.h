/*
 * A string-keyed chained hash map, the one every daemon uses: the api's
 * token cache and long-poll indexes, the accumulator's per-message lookups
 * (event id -> nid, state key -> row), the poller's device table. Keys are
 * copied into the entry; a value is either a pointer the caller owns (the
 * map frees it only through the destructor given to map_free) or an int64
 * (map_put_i64), never both meaningfully at once.
 */
#ifndef SYNCV3_MAP_H
#define SYNCV3_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct map_ent;

/* A zeroed struct map is an empty map; map_init is optional. */
struct map {
	struct map_ent **b; /* nb buckets, NULL until the first put */
	size_t nb, n;
};

void map_init(struct map *m);
/* The value stored under key, or NULL when absent. */
void *map_get(const struct map *m, const char *key);
/* Stores val under key; returns the value it replaced, or NULL. */
void *map_put(struct map *m, const char *key, void *val);
/* Removes key; returns its value (the caller frees it), or NULL. */
void *map_del(struct map *m, const char *key);
/* Calls fn(key, val, arg) for each entry; fn may not modify the map. */
void map_each(const struct map *m, void (*fn)(const char *, void *, void *),
              void *arg);
/* Frees every entry, calling val_free(val) first if val_free is not NULL. */
void map_free(struct map *m, void (*val_free)(void *));
/* Number of entries. */
size_t map_count(const struct map *m);

/* int64 values: stored beside the pointer, so 0 and negatives are fine. */
void map_put_i64(struct map *m, const char *key, int64_t val);
/* True if key is present; *val (when not NULL) gets its int64. */
bool map_get_i64(const struct map *m, const char *key, int64_t *val);

/*
 * A key made of three strings (c may be NULL, read as ""), length-prefixed
 * so that no choice of separator can make two different triples meet.
 * The caller frees it.
 */
char *map_key3(const char *a, const char *b, const char *c);

#endif
