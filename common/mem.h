/*
 * Giving memory back after large bodies (issue #13, item 6). glibc keeps
 * what a process freed: a buffer above its mmap threshold is a mapping of
 * its own, but freeing one raises the threshold to its size, so the next
 * large bodies come from the heap; and the small objects of a parsed body
 * stay in the arenas as free chunks. A poller or accumulator that took one
 * 15 MB initial sync then held its high-water mark for good.
 */
#ifndef SYNCV3_MEM_H
#define SYNCV3_MEM_H

#include <stddef.h>

/* Bodies at least this large are followed by a trim (mem_release). */
#define MEM_TRIM_BYTES ((size_t)1 << 20)

/* At startup: a fixed mmap threshold, so large buffers stay mappings. */
void mem_init(void);
/*
 * After freeing what a body of len bytes cost: from MEM_TRIM_BYTES up,
 * the arenas' free pages go back to the kernel (malloc_trim); smaller
 * bodies cost nothing here.
 */
void mem_release(size_t len);

#endif
