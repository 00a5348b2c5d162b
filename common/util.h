/*
 * Small helpers every daemon needs: allocation that cannot fail (out of
 * memory is fatal), clocks, and a growable byte buffer.
 */
#ifndef SYNCV3_UTIL_H
#define SYNCV3_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Monotonic milliseconds (for timers) and wall-clock milliseconds. */
long long now_ms(void);
long long now_us(void); /* monotonic microseconds */
long long wall_ms(void);

/* Parses a whole decimal int64; 0 on success, -1 on any junk or overflow. */
int parse_i64(const char *s, long long *out);

/*
 * 64-bit FNV-1a of len bytes: cheap and stable across runs and builds, for
 * hash tables and names derived from text (never for anything an attacker
 * must not be able to collide).
 */
uint64_t hash_fnv1a(const void *p, size_t len);

/* Random jitter in [0, max). */
uint32_t rand_u32(uint32_t max);

/*
 * For a timer of tick_ms: how late this tick ran (the loop was held that
 * long by something), 0 at the first; max_ms keeps the longest, last_us
 * (0 at first) the tick's time. A daemon's loop stall gauge.
 */
long long lag_tick(long long *last_us, long long *max_ms, long long tick_ms);

/*
 * syncv3_devices.poll_error of a device whose token the homeserver
 * refused with "soft_logout": true (an expired token, not a revoked one)
 * ends with a space and this word; the poller writes it, the api's
 * statements read it to answer the device's client the same way.
 */
#define POLL_ERROR_SOFT_LOGOUT "soft_logout"
/*
 * poll_error's start when the homeserver refused the token because its
 * user is locked (Synapse: 401 M_USER_LOCKED, "soft_logout": true): the
 * api answers the client that errcode, not M_UNKNOWN_TOKEN.
 */
#define POLL_ERROR_USER_LOCKED "http 401 M_USER_LOCKED"

#endif
