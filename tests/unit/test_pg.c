/*
 * common/pg.c against a real Postgres (SYNCV3_TEST_DB; skipped without):
 * migrations apply from scratch with multi-statement files, are recorded,
 * are idempotent, and a database newer than the binary is refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "pg.h"

static void
test_migrate(void **state)
{
	const char *db = getenv("SYNCV3_TEST_DB");
	PGconn *c;
	PGresult *r;

	(void)state;
	if (db == NULL)
		skip();
	c = pg_connect_wait(db, 5);
	assert_non_null(c);
	assert_int_equal(pg_exec(c, "t", "DROP SCHEMA IF EXISTS pgtest CASCADE;"
	    "CREATE SCHEMA pgtest; SET search_path TO pgtest"), 0);
	assert_int_equal(pg_schema_current(c), 0);
	assert_int_equal(pg_migrate(c), 0);
	assert_int_equal(pg_schema_current(c), pg_schema_version);
	r = pg_query(c, "t", "SELECT count(*) FROM syncv3_schema_migrations",
	    0, NULL);
	assert_non_null(r);
	assert_int_equal(atoi(PQgetvalue(r, 0, 0)), pg_migrations_count);
	PQclear(r);
	/* The core schema is really there, sequence included. */
	assert_int_equal(pg_exec(c, "t", "SELECT nextval('syncv3_pos_seq'); "
	    "SELECT pos FROM syncv3_position"), 0);
	/* Idempotent. */
	assert_int_equal(pg_migrate(c), 0);
	assert_int_equal(pg_wait_schema(c, pg_schema_version, 1), 0);
	/* A database from a newer release is refused. */
	assert_int_equal(pg_exec(c, "t", "INSERT INTO syncv3_schema_migrations "
	    "VALUES (9999, 'future')"), 0);
	assert_int_equal(pg_migrate(c), -1);
	/* Bad SQL is an error, not a crash. */
	assert_int_equal(pg_exec(c, "t", "SELEC nonsense"), -1);
	assert_int_equal(pg_exec(c, "t", "DROP SCHEMA pgtest CASCADE"), 0);
	PQfinish(c);
}

struct pool_t {
	int done, failed, sum, cancelled_calls;
	struct event_base *base;
	int expect;
};

static void
pool_cb(PGresult *res, void *arg)
{
	struct pool_t *t = arg;

	if (res == NULL)
		t->failed++;
	else
		t->sum += atoi(PQgetvalue(res, 0, 0));
	if (++t->done == t->expect)
		event_base_loopexit(t->base, NULL);
}

static void
never_cb(PGresult *res, void *arg)
{
	struct pool_t *t = arg;

	(void)res;
	t->cancelled_calls++;
}

/*
 * The async pool: many queries over two connections, statements prepared
 * once and reused with other parameters, a failing statement reported as
 * NULL without disturbing the others, and a cancelled job never called.
 */
static void
test_pool(void **state)
{
	const char *db = getenv("SYNCV3_TEST_DB");
	struct pool_t t = {0};
	struct pg_pool *pool;
	struct timeval limit = {20, 0};
	char num[16];
	const char *p[1] = {num};
	int want = 0;

	(void)state;
	if (db == NULL)
		skip();
	t.base = event_base_new();
	pool = pg_pool_new(t.base, db, 2);
	for (int i = 1; i <= 100; i++) {
		snprintf(num, sizeof(num), "%d", i);
		/* Two statements alternate, each prepared once per conn. */
		pg_pool_query(pool, i % 2 ? "SELECT $1::int + 1"
					  : "SELECT $1::int * 2", 1, p, pool_cb, &t);
		want += i % 2 ? i + 1 : i * 2;
	}
	pg_pool_query(pool, "SELECT no_such_column FROM pg_class", 0, NULL,
	    pool_cb, &t);
	pg_job_cancel(pg_pool_query(pool, "SELECT 1", 0, NULL, never_cb, &t));
	snprintf(num, sizeof(num), "%d", 1000);
	pg_pool_query(pool, "SELECT $1::int + 1", 1, p, pool_cb, &t);
	want += 1001;
	t.expect = 102;
	event_base_loopexit(t.base, &limit);
	event_base_dispatch(t.base);
	assert_int_equal(t.done, 102);
	assert_int_equal(t.failed, 1);
	assert_int_equal(t.sum, want);
	assert_int_equal(t.cancelled_calls, 0);
	assert_int_equal(pg_pool_pending(pool), 0);

	/*
	 * A table changes under a prepared statement (as a migration during
	 * a rolling upgrade would): one failure at most, then the pool
	 * re-prepares on a fresh connection and answers again.
	 */
	PGconn *c = pg_connect_wait(db, 5);
	assert_int_equal(pg_exec(c, "t", "DROP TABLE IF EXISTS pool_t;"
	    "CREATE TABLE pool_t (a int); INSERT INTO pool_t VALUES (7)"), 0);
	t.done = t.failed = t.sum = 0;
	t.expect = 2;
	for (int i = 0; i < 2; i++)
		pg_pool_query(pool, "SELECT * FROM pool_t", 0, NULL, pool_cb,
		    &t);
	event_base_dispatch(t.base);
	assert_int_equal(t.sum, 14);
	assert_int_equal(pg_exec(c, "t", "ALTER TABLE pool_t ADD b int"), 0);
	int rounds = 0;
	do {
		struct timeval later = {1, 200000};

		t.done = t.failed = t.sum = 0;
		t.expect = 2;
		for (int i = 0; i < 2; i++)
			pg_pool_query(pool, "SELECT * FROM pool_t", 0, NULL,
			    pool_cb, &t);
		event_base_loopexit(t.base, &later);
		event_base_dispatch(t.base);
	} while (t.failed > 0 && ++rounds < 10);
	assert_true(rounds <= 2);
	assert_int_equal(t.failed, 0);
	assert_int_equal(t.sum, 14);
	assert_int_equal(pg_exec(c, "t", "DROP TABLE pool_t"), 0);
	PQfinish(c);
	pg_pool_free(pool);
	event_base_free(t.base);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_migrate),
		cmocka_unit_test(test_pool),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
