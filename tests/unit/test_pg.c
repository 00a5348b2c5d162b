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

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_migrate),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
