/*
 * mem.c: hands freed memory back to the kernel where glibc would keep it
 * (mem.h says why). Elsewhere both calls do nothing.
 */
#include <stdlib.h> /* defines __GLIBC__ on glibc */
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "mem.h"

/*
 * glibc's default threshold; fixing it (any mallopt of it does) turns off
 * the raise after each free, so a 15 MB body is always its own mapping.
 */
#define MEM_MMAP_THRESHOLD (128 * 1024)

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
