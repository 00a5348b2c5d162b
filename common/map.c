/*
 * map.c: see map.h. Each entry is one allocation (the key is stored
 * inline) and keeps its full hash, so growing never rehashes a key and a
 * lookup compares strings only on a hash match. The table doubles when
 * the load passes 2 per bucket.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "map.h"
#include "util.h"

#define MAP_NB_INIT 64

struct map_ent {
	struct map_ent *next;
	void *val;
	int64_t num;
	uint64_t hash;
	char key[];
};

void
map_init(struct map *m)
{
	m->nb = MAP_NB_INIT;
	m->n = 0;
	m->b = xcalloc(m->nb, sizeof(*m->b));
}

static struct map_ent *
ent_find(const struct map *m, const char *key)
{
	uint64_t h;
	struct map_ent *e;

	if (m->b == NULL)
		return NULL;
	h = hash_fnv1a(key, strlen(key));
	for (e = m->b[h % m->nb]; e != NULL; e = e->next)
		if (e->hash == h && strcmp(e->key, key) == 0)
			return e;
	return NULL;
}

static void
map_grow(struct map *m)
{
	size_t n = m->nb * 2;
	struct map_ent **nb = xcalloc(n, sizeof(*nb)), *e, *next;

	for (size_t i = 0; i < m->nb; i++)
		for (e = m->b[i]; e != NULL; e = next) {
			next = e->next;
			e->next = nb[e->hash % n];
			nb[e->hash % n] = e;
		}
	free(m->b);
	m->b = nb;
	m->nb = n;
}

/* The entry for key, created (val NULL, num 0) when absent. */
static struct map_ent *
ent_get_or_add(struct map *m, const char *key)
{
	struct map_ent *e;
	size_t len = strlen(key);
	uint64_t h;

	if ((e = ent_find(m, key)) != NULL)
		return e;
	if (m->b == NULL)
		map_init(m);
	h = hash_fnv1a(key, len);
	e = xmalloc(sizeof(*e) + len + 1);
	memcpy(e->key, key, len + 1);
	e->hash = h;
	e->val = NULL;
	e->num = 0;
	e->next = m->b[h % m->nb];
	m->b[h % m->nb] = e;
	if (++m->n > m->nb * 2)
		map_grow(m);
	return e;
}

void *
map_get(const struct map *m, const char *key)
{
	struct map_ent *e = ent_find(m, key);

	return e != NULL ? e->val : NULL;
}

void *
map_put(struct map *m, const char *key, void *val)
{
	struct map_ent *e = ent_get_or_add(m, key);
	void *old = e->val;

	e->val = val;
	return old;
}

void
map_put_i64(struct map *m, const char *key, int64_t val)
{
	ent_get_or_add(m, key)->num = val;
}

bool
map_get_i64(const struct map *m, const char *key, int64_t *val)
{
	struct map_ent *e = ent_find(m, key);

	if (e == NULL)
		return false;
	if (val != NULL)
		*val = e->num;
	return true;
}

void *
map_del(struct map *m, const char *key)
{
	struct map_ent **pp, *e;
	uint64_t h;
	void *val;

	if (m->b == NULL)
		return NULL;
	h = hash_fnv1a(key, strlen(key));
	for (pp = &m->b[h % m->nb]; (e = *pp) != NULL; pp = &e->next)
		if (e->hash == h && strcmp(e->key, key) == 0) {
			*pp = e->next;
			val = e->val;
			free(e);
			m->n--;
			return val;
		}
	return NULL;
}

void
map_each(const struct map *m, void (*fn)(const char *, void *, void *),
         void *arg)
{
	if (m->b == NULL)
		return;
	for (size_t i = 0; i < m->nb; i++)
		for (struct map_ent *e = m->b[i]; e != NULL; e = e->next)
			fn(e->key, e->val, arg);
}

void
map_free(struct map *m, void (*val_free)(void *))
{
	struct map_ent *e, *next;

	if (m->b == NULL)
		return;
	for (size_t i = 0; i < m->nb; i++)
		for (e = m->b[i]; e != NULL; e = next) {
			next = e->next;
			if (val_free != NULL)
				val_free(e->val);
			free(e);
		}
	free(m->b);
	m->b = NULL;
	m->n = m->nb = 0;
}

size_t
map_count(const struct map *m)
{
	return m->n;
}

char *
map_key3(const char *a, const char *b, const char *c)
{
	return xasprintf("%zu:%zu:%s%s%s", strlen(a), strlen(b), a, b,
	                 c != NULL ? c : "");
}
