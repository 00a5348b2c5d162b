/*
 * api/sql.c against the migrated schema: every statement the api runs is
 * PREPAREd in a scratch schema and Postgres must agree with the table on
 * its parameter count, so a migration that breaks one of the api's
 * statements fails here, not in a scenario. The table's own shape (every
 * slot filled, names unique) is checked without a database too.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "api.h"

static void
test_table(void **state)
{
	(void)state;
	for (int i = 0; i < Q_COUNT; i++) {
		assert_non_null(api_stmts[i].name);
		assert_non_null(api_stmts[i].sql);
		assert_true(api_stmts[i].nparams >= 0);
		for (int j = 0; j < i; j++)
			assert_string_not_equal(api_stmts[i].name,
			                        api_stmts[j].name);
	}
}

static void
test_prepare(void **state)
{
	const char *db = getenv("SYNCV3_TEST_DB");
	PGresult *res;
	PGconn *c;

	(void)state;
	if (db == NULL)
		skip();
	c = pg_connect_wait(db, 5);
	assert_non_null(c);
	PQsetNoticeProcessor(c, pg_quiet_notices, NULL);
	assert_int_equal(
	    pg_exec(c, "t",
	            "DROP SCHEMA IF EXISTS apisql CASCADE;"
	            "CREATE SCHEMA apisql; SET search_path TO apisql"),
	    0);
	assert_int_equal(pg_migrate(c), 0);
	for (int i = 0; i < Q_COUNT; i++) {
		res =
		    PQprepare(c, api_stmts[i].name, api_stmts[i].sql, 0, NULL);
		if (PQresultStatus(res) != PGRES_COMMAND_OK)
			fail_msg("%s: %s", api_stmts[i].name,
			         PQerrorMessage(c));
		PQclear(res);
		res = PQdescribePrepared(c, api_stmts[i].name);
		assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
		if (PQnparams(res) != api_stmts[i].nparams)
			fail_msg("%s: %d parameters, the table says %d",
			         api_stmts[i].name, PQnparams(res),
			         api_stmts[i].nparams);
		PQclear(res);
	}
	assert_int_equal(pg_exec(c, "t", "DROP SCHEMA apisql CASCADE"), 0);
	PQfinish(c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_table),
	    cmocka_unit_test(test_prepare),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
