/*
 * util.c: the small helpers every simhs file leans on: allocation that
 * dies on OOM, a string-keyed hash map, a pointer vector, random ids in the
 * shapes Synapse uses, JSON accessors and the sync stream token codec.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/rand.h>

#include "simhs.h"

void *
xcalloc(size_t n, size_t size)
{
	void *p;

	if ((p = calloc(n ? n : 1, size ? size : 1)) == NULL) {
		fprintf(stderr, "simhs: out of memory\n");
		exit(1);
	}
	return p;
}

void *
xreallocarray(void *p, size_t n, size_t size)
{
	if (size && n > SIZE_MAX / size) {
		fprintf(stderr, "simhs: allocation overflow\n");
		exit(1);
	}
	if ((p = realloc(p, n * size > 0 ? n * size : 1)) == NULL) {
		fprintf(stderr, "simhs: out of memory\n");
		exit(1);
	}
	return p;
}

char *
xstrdup(const char *s)
{
	char *p;

	if ((p = strdup(s)) == NULL) {
		fprintf(stderr, "simhs: out of memory\n");
		exit(1);
	}
	return p;
}

char *
xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *p;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0) {
		fprintf(stderr, "simhs: bad format\n");
		exit(1);
	}
	p = xcalloc(1, (size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(p, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return p;
}

void
log_warnx(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "simhs: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

void
log_debug(struct simhs *ctx, const char *fmt, ...)
{
	va_list ap;

	if (!ctx->is_verbose)
		return;
	fprintf(stderr, "simhs: debug: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static uint64_t
map_hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

void
map_init(struct map *m)
{
	m->nbuckets = 16;
	m->count = 0;
	m->buckets = xcalloc(m->nbuckets, sizeof(*m->buckets));
}

void *
map_get(const struct map *m, const char *key)
{
	struct map_entry *e;

	e = m->buckets[map_hash(key) & (m->nbuckets - 1)];
	for (; e != NULL; e = e->next)
		if (strcmp(e->key, key) == 0)
			return e->val;
	return NULL;
}

static void
map_grow(struct map *m)
{
	struct map_entry **nb, *e, *next;
	size_t i, n = m->nbuckets * 2, h;

	nb = xcalloc(n, sizeof(*nb));
	for (i = 0; i < m->nbuckets; i++) {
		for (e = m->buckets[i]; e != NULL; e = next) {
			next = e->next;
			h = map_hash(e->key) & (n - 1);
			e->next = nb[h];
			nb[h] = e;
		}
	}
	free(m->buckets);
	m->buckets = nb;
	m->nbuckets = n;
}

/* Insert or replace; the map keeps its own copy of the key. */
void
map_put(struct map *m, const char *key, void *val)
{
	struct map_entry *e;
	size_t h = map_hash(key) & (m->nbuckets - 1);

	for (e = m->buckets[h]; e != NULL; e = e->next) {
		if (strcmp(e->key, key) == 0) {
			e->val = val;
			return;
		}
	}
	e = xcalloc(1, sizeof(*e));
	e->key = xstrdup(key);
	e->val = val;
	e->next = m->buckets[h];
	m->buckets[h] = e;
	if (++m->count > m->nbuckets)
		map_grow(m);
}

void
map_clear(struct map *m, void (*freefn)(void *))
{
	struct map_entry *e, *next;
	size_t i;

	if (m->buckets == NULL)
		return;
	for (i = 0; i < m->nbuckets; i++) {
		for (e = m->buckets[i]; e != NULL; e = next) {
			next = e->next;
			if (freefn != NULL)
				freefn(e->val);
			free(e->key);
			free(e);
		}
	}
	free(m->buckets);
	m->buckets = NULL;
	m->count = m->nbuckets = 0;
}

void
vec_push(struct ptrvec *v, void *p)
{
	if (v->n == v->cap) {
		v->cap = v->cap ? v->cap * 2 : 8;
		v->v = xreallocarray(v->v, v->cap, sizeof(*v->v));
	}
	v->v[v->n++] = p;
}

/* Order-preserving removal. */
void
vec_remove(struct ptrvec *v, size_t i)
{
	if (i >= v->n)
		return;
	memmove(&v->v[i], &v->v[i + 1], (v->n - i - 1) * sizeof(*v->v));
	v->n--;
}

void
vec_free(struct ptrvec *v, void (*freefn)(void *))
{
	size_t i;

	if (freefn != NULL)
		for (i = 0; i < v->n; i++)
			freefn(v->v[i]);
	free(v->v);
	v->v = NULL;
	v->n = v->cap = 0;
}

static void
random_fill(unsigned char *buf, size_t len)
{
	if (RAND_bytes(buf, (int)len) != 1) {
		fprintf(stderr, "simhs: RAND_bytes failed\n");
		exit(1);
	}
}

/* len letters plus a NUL: the shape of Synapse's room id localparts. */
void
random_letters(char *out, size_t len)
{
	static const char set[] =
	    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
	unsigned char buf[64];
	size_t i;

	if (len > sizeof(buf))
		len = sizeof(buf);
	random_fill(buf, len);
	for (i = 0; i < len; i++)
		out[i] = set[buf[i] % 52];
	out[len] = '\0';
}

/* len url-safe base64 characters plus a NUL, like v4 event ids. */
void
random_b64url(char *out, size_t len)
{
	static const char set[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	                          "abcdefghijklmnopqrstuvwxyz0123456789-_";
	unsigned char buf[64];
	size_t i;

	if (len > sizeof(buf))
		len = sizeof(buf);
	random_fill(buf, len);
	for (i = 0; i < len; i++)
		out[i] = set[buf[i] & 63];
	out[len] = '\0';
}

int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Parse untrusted JSON with a depth limit; NULL unless all of it parsed. */
struct json_object *
json_parse(const char *buf, size_t len)
{
	struct json_tokener *tok;
	struct json_object *obj;
	size_t end;

	if (len > INT32_MAX)
		return NULL;
	if ((tok = json_tokener_new_ex(SIMHS_JSON_DEPTH)) == NULL)
		return NULL;
	obj = json_tokener_parse_ex(tok, buf, (int)len);
	end = json_tokener_get_parse_end(tok);
	while (end < len && strchr(" \t\r\n", buf[end]) != NULL &&
	       buf[end] != '\0')
		end++;
	if (obj != NULL &&
	    (json_tokener_get_error(tok) != json_tokener_success ||
	     end != len)) {
		json_object_put(obj);
		obj = NULL;
	}
	json_tokener_free(tok);
	return obj;
}

/* A borrowed string member, or NULL when absent or not a string. */
const char *
json_str(struct json_object *obj, const char *key)
{
	struct json_object *v = json_get(obj, key, json_type_string);

	return v != NULL ? json_object_get_string(v) : NULL;
}

struct json_object *
json_get(struct json_object *obj, const char *key, enum json_type type)
{
	struct json_object *v;

	if (obj == NULL || !json_object_is_type(obj, json_type_object))
		return NULL;
	if (!json_object_object_get_ex(obj, key, &v) ||
	    !json_object_is_type(v, type))
		return NULL;
	return v;
}

void
json_add_str(struct json_object *obj, const char *key, const char *val)
{
	json_object_object_add(obj, key, json_object_new_string(val));
}

void
json_add_int(struct json_object *obj, const char *key, int64_t val)
{
	json_object_object_add(obj, key, json_object_new_int64(val));
}

/*
 * Our next_batch tokens have Synapse's ten-part shape:
 * s{room}_{presence}_{typing}_{receipt}_{account_data}_{push_rules}
 *   _{to_device}_{device_list}_{groups}_{un_partial_stated}.
 * Every stream shares one position except to-device, which lags when a
 * response carried only part of the queue.
 */
void
token_format(char *buf, size_t len, uint64_t pos, uint64_t td)
{
	snprintf(buf, len, "s%llu_0_%llu_%llu_%llu_1_%llu_%llu_0_1",
	         (unsigned long long)pos, (unsigned long long)pos,
	         (unsigned long long)pos, (unsigned long long)pos,
	         (unsigned long long)td, (unsigned long long)pos);
}

int
token_parse(const char *s, uint64_t *pos, uint64_t *td)
{
	unsigned long long v[10];
	const char *p = s;
	char *end;
	int i;

	if (*p++ != 's')
		return -1;
	for (i = 0; i < 10; i++) {
		if (*p < '0' || *p > '9')
			return -1;
		errno = 0;
		v[i] = strtoull(p, &end, 10);
		if (errno != 0)
			return -1;
		p = end;
		if (i < 9 && *p++ != '_')
			return -1;
	}
	if (*p != '\0')
		return -1;
	*pos = v[0];
	*td = v[6];
	return 0;
}
