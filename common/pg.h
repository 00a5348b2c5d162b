/*
 * PostgreSQL helpers. Blocking calls are for the accumulator's single
 * writer connection, the poller's lease queries and startup; the api uses
 * the asynchronous pool, which never blocks the libevent loop: queries are
 * sent with PQsendQueryParams and completed from an event on PQsocket.
 */
#ifndef SYNCV3_PG_H
#define SYNCV3_PG_H

#include <stdbool.h>
#include <stdint.h>

#include <event2/event.h>
#include <libpq-fe.h>

#include "log.h"

struct pg_migration {
	int version;
	const char *name;
	const char *sql;
};

/* The migrations compiled into the binaries from deploy/sql (schema.c). */
extern const struct pg_migration pg_migrations[];
extern const int pg_migrations_count;
extern const int pg_schema_version;

/* A notice processor that drops notices. */
void pg_quiet_notices(void *arg, const char *msg);
/* Connects, retrying every second for up to max_wait_s (0: once). */
PGconn *pg_connect_wait(const char *conninfo, int max_wait_s);
/* Runs one or more statements without parameters; 0 or -1 (logged). */
int pg_exec(PGconn *c, const char *tag, const char *sql) WARN_UNUSED;
/*
 * PQexecParams with text params. Returns the result when it is
 * TUPLES_OK/COMMAND_OK (caller PQclears), else logs and returns NULL.
 */
PGresult *pg_query(PGconn *c, const char *tag, const char *sql, int nparams,
    const char *const *params) WARN_UNUSED;
/*
 * pg_query of a statement prepared on c as name: prepared on its first
 * use (and again when the server no longer has it, pg_is_stale), so a
 * statement run often is parsed and planned once per session. Outside a
 * transaction block: a failed first try would abort the transaction.
 */
PGresult *pg_query_prepared(PGconn *c, const char *tag, const char *name,
    const char *sql, int nparams, const char *const *params) WARN_UNUSED;
/* A prepared statement the server lost (26000) or must re-plan (0A000). */
bool pg_is_stale(const PGresult *res);
/* Applies pending migrations under an advisory lock. 0 or -1. */
int pg_migrate(PGconn *c) WARN_UNUSED;
/* Current schema version, 0 when no migration has run, -1 on error. */
int pg_schema_current(PGconn *c);
/* Blocks until the schema is at least `version` (max_wait_s, 0=forever). */
int pg_wait_schema(PGconn *c, int version, int max_wait_s) WARN_UNUSED;
/* True if the connection is bad; tries one reset. */
bool pg_check_reset(PGconn *c);

/* Asynchronous pool for the api. */
struct pg_pool;
struct pg_job;
/*
 * Called once per query: res is NULL when the query failed or the
 * connection broke (already logged). The pool clears res after the
 * callback returns; copy what you keep.
 */
typedef void (*pg_cb)(PGresult *res, void *arg);

struct pg_pool_stats {
	unsigned long long refused;	/* queue full or Postgres unreachable */
	unsigned long long timed_out; /* past, or too close to, the deadline */
	unsigned long long cancelled; /* of those, running: cancelled */
	int pending;	/* queued now */
	int up;	/* connections up now */
	/* a replica's reads (pg_pool_query_read) */
	unsigned long long read_replica; /* sent to the replica */
	unsigned long long read_primary; /* sent to the primary instead */
	unsigned long long read_waited;  /* waited for the replica's replay */
	/* statement texts hashed: once per address (pg_pool_query) */
	unsigned long long hashed;
};

struct pg_pool *pg_pool_new(struct event_base *base, const char *conninfo,
    int nconns);
/*
 * Bounds the pool's work: at most max_queue jobs wait (0: no limit), and a
 * job not answered within timeout_ms of being queued fails (0: never): one
 * with less than a tenth of that left is not sent, and one running past it
 * is cancelled on the server, its connection kept.
 */
void pg_pool_set_limits(struct pg_pool *pool, int max_queue,
    long long timeout_ms);
/*
 * Queues a query; params are copied, sql is not: it must be a constant
 * (a string literal or a static table's), which the pool knows by its
 * address for as long as it lives. Never blocks, never calls back from
 * inside: a job refused (queue full, Postgres unreachable) or timed out
 * gets its callback with NULL from the loop.
 */
struct pg_job *pg_pool_query(struct pg_pool *pool, const char *sql,
    int nparams, const char *const *params, pg_cb cb, void *arg);
/*
 * The callback of a queued or running job will not be called. The handle
 * is only valid until its callback has run: clear it there.
 */
void pg_job_cancel(struct pg_job *job);
int pg_pool_pending(const struct pg_pool *pool);
/* False while Postgres is unreachable (and before the first connection). */
bool pg_pool_is_up(const struct pg_pool *pool);
void pg_pool_get_stats(const struct pg_pool *pool, struct pg_pool_stats *st);

/*
 * Makes replica a pool on a streaming replica of primary's server: its
 * reads (below) wait at most wait_ms for the replica's replay, then go
 * to primary. Both pools stay the caller's; free replica first.
 */
void pg_pool_set_replica(struct pg_pool *replica, struct pg_pool *primary,
                         long long wait_ms);
/*
 * A read that must see every commit up to the primary's WAL position
 * min_lsn (bytes, as pg_current_wal_insert_lsn() - '0/0'): queued on the
 * replica once it has replayed that far, on the primary if it has not
 * within the bound or is unreachable. Otherwise as pg_pool_query; on a
 * pool that is no replica, it is pg_pool_query.
 */
struct pg_job *pg_pool_query_read(struct pg_pool *replica, int64_t min_lsn,
                                  const char *sql, int nparams,
                                  const char *const *params, pg_cb cb,
                                  void *arg);
void pg_pool_free(struct pg_pool *pool);

#endif
