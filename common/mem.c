/*
 * mem.c: hands freed memory back to the kernel where glibc would keep it,
 * and frees what a large body cost off the caller's thread (mem.h says
 * why). Elsewhere than glibc the trim does nothing.
 */
#include <pthread.h>
#include <stdlib.h> /* defines __GLIBC__ on glibc */
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "log.h"
#include "mem.h"
#include "util.h"

/*
 * glibc's default threshold; fixing it (any mallopt of it does) turns off
 * the raise after each free, so a 15 MB body is always its own mapping.
 */
#define MEM_MMAP_THRESHOLD (128 * 1024)

struct mem_garbage {
	void (*free_fn)(void *);
	void *arg;
	size_t len;
};

void
mem_init(void)
{
#ifdef __GLIBC__
	(void)mallopt(M_MMAP_THRESHOLD, MEM_MMAP_THRESHOLD);
#endif
}

void
mem_release(size_t len)
{
	if (len < MEM_TRIM_BYTES)
		return;
#ifdef __GLIBC__
	(void)malloc_trim(0);
#endif
}

static void *
garbage_main(void *arg)
{
	struct mem_garbage *g = arg;
	long long t0 = now_us(), t1;

	g->free_fn(g->arg);
	t1 = now_us();
	mem_release(g->len);
	log_debug(
	    "mem: %zu bytes' remains freed in %lld ms, trimmed in %lld ms",
	    g->len, (t1 - t0) / 1000, (now_us() - t1) / 1000);
	free(g);
	return NULL;
}

bool
mem_free_detached(void (*free_fn)(void *), void *arg, size_t len)
{
	struct mem_garbage *g = xcalloc(1, sizeof(*g));
	pthread_t t;

	g->free_fn = free_fn;
	g->arg = arg;
	g->len = len;
	if (pthread_create(&t, NULL, garbage_main, g) == 0) {
		pthread_detach(t);
		return true;
	}
	/* no thread to be had: the caller's, as before */
	garbage_main(g);
	return false;
}
