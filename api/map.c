/*
 * map.c: a small string-keyed chained hash map (FNV-1a), used for the
 * token cache, the long-poll interest index and per-user room sets.
 */
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "util.h"

static size_t
map_hash(const char *s)
{
	size_t h = 1469598103934665603ULL;

	for (; *s != '\0'; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

void
map_init(struct map *m)
{
	m->nb = 64;
	m->n = 0;
	m->b = xcalloc(m->nb, sizeof(*m->b));
}

void *
map_get(const struct map *m, const char *key)
{
	struct map_ent *e;

	if (m->b == NULL)
		return NULL;
	for (e = m->b[map_hash(key) % m->nb]; e != NULL; e = e->next)
		if (strcmp(e->key, key) == 0)
			return e->val;
	return NULL;
}

static void
map_grow(struct map *m)
{
	struct map_ent **nb, *e, *next;
	size_t n = m->nb * 2;

	nb = xcalloc(n, sizeof(*nb));
	for (size_t i = 0; i < m->nb; i++)
		for (e = m->b[i]; e != NULL; e = next) {
			next = e->next;
			e->next = nb[map_hash(e->key) % n];
			nb[map_hash(e->key) % n] = e;
		}
	free(m->b);
	m->b = nb;
	m->nb = n;
}

void *
map_put(struct map *m, const char *key, void *val)
{
	struct map_ent *e;
	size_t h;
	void *old;

	if (m->b == NULL)
		map_init(m);
	h = map_hash(key) % m->nb;
	for (e = m->b[h]; e != NULL; e = e->next)
		if (strcmp(e->key, key) == 0) {
			old = e->val;
			e->val = val;
			return old;
		}
	e = xmalloc(sizeof(*e));
	e->key = xstrdup(key);
	e->val = val;
	e->next = m->b[h];
	m->b[h] = e;
	if (++m->n > m->nb * 2)
		map_grow(m);
	return NULL;
}

void *
map_del(struct map *m, const char *key)
{
	struct map_ent **pp, *e;
	void *val;

	if (m->b == NULL)
		return NULL;
	for (pp = &m->b[map_hash(key) % m->nb]; (e = *pp) != NULL;
	    pp = &e->next)
		if (strcmp(e->key, key) == 0) {
			*pp = e->next;
			val = e->val;
			free(e->key);
			free(e);
			m->n--;
			return val;
		}
	return NULL;
}

void
map_each(struct map *m, void (*fn)(const char *, void *, void *), void *arg)
{
	if (m->b == NULL)
		return;
	for (size_t i = 0; i < m->nb; i++)
		for (struct map_ent *e = m->b[i]; e != NULL; e = e->next)
			fn(e->key, e->val, arg);
}

void
map_free(struct map *m, void (*fn)(void *))
{
	struct map_ent *e, *next;

	if (m->b == NULL)
		return;
	for (size_t i = 0; i < m->nb; i++)
		for (e = m->b[i]; e != NULL; e = next) {
			next = e->next;
			if (fn != NULL)
				fn(e->val);
			free(e->key);
			free(e);
		}
	free(m->b);
	m->b = NULL;
	m->n = m->nb = 0;
}
