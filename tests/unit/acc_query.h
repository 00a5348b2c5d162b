/* Reader-side queries over the accumulator's tables (acc_query.c). */
#ifndef SYNCV3_TESTS_ACC_QUERY_H
#define SYNCV3_TESTS_ACC_QUERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

struct vlog {
	int64_t pos;
	const char *membership;
};
struct vrange {
	int64_t start, end;
};
int query_state_at(PGconn *c, const char *room, int64_t pos, int64_t **nids,
    size_t *n);
int query_joined_at(PGconn *c, const char *user, int64_t pos, char ***rooms,
    size_t *n);
size_t query_visible_ranges(const struct vlog *logs, size_t n, bool joined,
    int64_t from, int64_t to, struct vrange *out);
int query_visible_db(PGconn *c, const char *user, const char *room,
    int64_t from, int64_t to, struct vrange *out, size_t max, size_t *n);

#endif
