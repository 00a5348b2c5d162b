/*
 * A small string -> int64 hash map (open addressing, linear probing) for
 * per-message lookups: event ids to nids, state keys to entries. Keys are
 * copied; there is no delete.
 */
#include <stdlib.h>
#include <string.h>

#include "accumulator.h"
#include "util.h"

static uint64_t
hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

void
smap_init(struct smap *m)
{
	memset(m, 0, sizeof(*m));
}

void
smap_free(struct smap *m)
{
	for (size_t i = 0; i < m->cap; i++)
		free(m->keys[i]);
	free(m->keys);
	free(m->vals);
	memset(m, 0, sizeof(*m));
}

static size_t
slot(const struct smap *m, const char *key)
{
	size_t i = hash(key) & (m->cap - 1);

	while (m->keys[i] != NULL && strcmp(m->keys[i], key) != 0)
		i = (i + 1) & (m->cap - 1);
	return i;
}

static void
grow(struct smap *m)
{
	struct smap n;

	n.cap = m->cap ? m->cap * 2 : 64;
	n.n = m->n;
	n.keys = xcalloc(n.cap, sizeof(*n.keys));
	n.vals = xcalloc(n.cap, sizeof(*n.vals));
	for (size_t i = 0; i < m->cap; i++) {
		if (m->keys[i] == NULL)
			continue;
		size_t j = slot(&n, m->keys[i]);
		n.keys[j] = m->keys[i];
		n.vals[j] = m->vals[i];
	}
	free(m->keys);
	free(m->vals);
	*m = n;
}

void
smap_put(struct smap *m, const char *key, int64_t val)
{
	size_t i;

	if ((m->n + 1) * 2 > m->cap)
		grow(m);
	i = slot(m, key);
	if (m->keys[i] == NULL) {
		m->keys[i] = xstrdup(key);
		m->n++;
	}
	m->vals[i] = val;
}

bool
smap_get(const struct smap *m, const char *key, int64_t *val)
{
	size_t i;

	if (m->cap == 0)
		return false;
	i = slot(m, key);
	if (m->keys[i] == NULL)
		return false;
	if (val != NULL)
		*val = m->vals[i];
	return true;
}

/* Length-prefixed, so no choice of separator can make two keys meet. */
char *
smap_key3(const char *a, const char *b, const char *c)
{
	return xasprintf("%zu:%zu:%s%s%s", strlen(a), strlen(b), a, b,
	    c ? c : "");
}
