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

/* A connection to a scratch schema "apisql", migrated (skips without db). */
static PGconn *
scratch_schema(void)
{
	const char *db = getenv("SYNCV3_TEST_DB");
	PGconn *c;

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
	return c;
}

static void
test_prepare(void **state)
{
	PGresult *res;
	PGconn *c;

	(void)state;
	c = scratch_schema();
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

/*
 * Q_LIST_STREAM reads several requests' room_list streams at once
 * (s_room_list.c batches the clients one notice woke): each request's
 * rows, tagged with its index, are the rooms of its own user that changed
 * after its own since, never another's. a is in ra and rs, b in rb and
 * rs, all changed at 5; a third request, a's with a since past the
 * change, gets its one empty row.
 */
static void
test_list_stream_batch(void **state)
{
	const char *params[9] = {"{@a,@b,@a}", "{2,2,6}", NULL,
	                         "{9,9,9}",    "{1,2,1}", "{}",
	                         "{}",         "10",      "{A1,B1,A1}"};
	const int col_i = 19;
	char got[512] = "";
	PGresult *res;
	PGconn *c;

	(void)state;
	c = scratch_schema();
	assert_int_equal(
	    pg_exec(c, "t",
	            "UPDATE syncv3_position SET pos = 9;"
	            "INSERT INTO syncv3_rooms (room_id, updated_pos) VALUES "
	            "('!ra', 5), ('!rb', 5), ('!rs', 5);"
	            "INSERT INTO syncv3_user_rooms (user_id, room_id, "
	            "membership, pos, updated_pos) VALUES "
	            "('@a', '!ra', 'join', 1, 5), ('@a', '!rs', 'join', 1, 5),"
	            "('@b', '!rb', 'join', 1, 5), ('@b', '!rs', 'join', 1, 5);"
	            "INSERT INTO syncv3_sessions (session_id, user_id, "
	            "device_id) VALUES (1, '@a', 'A1'), (2, '@b', 'B1');"
	            "INSERT INTO syncv3_session_rooms VALUES (1, '!ra'), "
	            "(1, '!rs'), (2, '!rb'), (2, '!rs')"),
	    0);
	res = PQexecParams(c, api_stmts[Q_LIST_STREAM].sql, 9, NULL, params,
	                   NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		fail_msg("%s", PQerrorMessage(c));
	/* rows in request order; each request's rooms in any order */
	for (int i = 0; i < PQntuples(res); i++) {
		strcat(got, PQgetvalue(res, i, col_i));
		strcat(got,
		       PQgetisnull(res, i, 0) ? "-" : PQgetvalue(res, i, 0));
		strcat(got, " ");
	}
	PQclear(res);
	assert_true(strcmp(got, "1!ra 1!rs 2!rb 2!rs 3- ") == 0 ||
	            strcmp(got, "1!rs 1!ra 2!rb 2!rs 3- ") == 0 ||
	            strcmp(got, "1!ra 1!rs 2!rs 2!rb 3- ") == 0 ||
	            strcmp(got, "1!rs 1!ra 2!rs 2!rb 3- ") == 0);
	assert_int_equal(pg_exec(c, "t", "DROP SCHEMA apisql CASCADE"), 0);
	PQfinish(c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_table),
	    cmocka_unit_test(test_prepare),
	    cmocka_unit_test(test_list_stream_batch),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
