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

#include <stdbool.h>
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
/*
 * Frees a large body's remains on a detached thread of their own:
 * free_fn(arg), then mem_release(len). Freeing the parsed tree or change
 * set of a 10,000-room body, and the trim after it, take seconds on a
 * loaded machine, and an event loop held that long stops answering
 * everyone else (pollers' acks, liveness renewals). Nothing else may
 * refer to arg; malloc is thread-safe. True if a thread took it, false
 * if none could be started and it was done here, as before.
 */
bool mem_free_detached(void (*free_fn)(void *), void *arg, size_t len);

#endif
