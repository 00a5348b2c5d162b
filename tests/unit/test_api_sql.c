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
#include <stdio.h>
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

/*
 * A connection to the scratch database (the test skips without one) in
 * a fresh schema of that name, migrated.
 */
static PGconn *
scratch(const char *schema)
{
	const char *db = getenv("SYNCV3_TEST_DB");
	char sql[256];
	PGconn *c;

	if (db == NULL)
		skip();
	c = pg_connect_wait(db, 5);
	assert_non_null(c);
	PQsetNoticeProcessor(c, pg_quiet_notices, NULL);
	snprintf(sql, sizeof(sql),
	         "DROP SCHEMA IF EXISTS %s CASCADE; CREATE SCHEMA %s; "
	         "SET search_path TO %s", schema, schema, schema);
	assert_int_equal(pg_exec(c, "t", sql), 0);
	assert_int_equal(pg_migrate(c), 0);
	return c;
}

static void
test_prepare(void **state)
{
	PGresult *res;
	PGconn *c;

	(void)state;
	c = scratch("apisql");
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
	c = scratch("apisql");
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

/*
 * Q_TO_DEVICE reads several requests' to_device streams at once
 * (s_to_device.c batches the rounds one loop pass started): each
 * request's rows, tagged with its index, are its own device's messages
 * after its own position, up to its own, at most its limit. a/A1 has
 * 1-4, a/A2 has 5, b/B1 has 6; a second A1 request from 2 with a limit
 * of 1 gets 3 only, and a/A2 up to 4 gets nothing.
 */
static void
test_to_device_batch(void **state)
{
	const char *params[5] = {"{@a,@b,@a,@a}", "{A1,B1,A1,A2}",
	                         "{0,0,2,0}", "{9,9,9,4}", "{100,100,1,100}"};
	char got[512] = "";
	PGresult *res;
	PGconn *c;

	(void)state;
	c = scratch("apitd");
	assert_int_equal(
	    pg_exec(c, "t",
	            "INSERT INTO syncv3_to_device (user_id, device_id, pos, "
	            "json) VALUES ('@a', 'A1', 1, '1'), ('@a', 'A1', 2, '2'), "
	            "('@a', 'A1', 3, '3'), ('@a', 'A1', 4, '4'), "
	            "('@a', 'A2', 5, '5'), ('@b', 'B1', 6, '6')"),
	    0);
	res = PQexecParams(c, api_stmts[Q_TO_DEVICE].sql, 5, NULL, params,
	                   NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		fail_msg("%s", PQerrorMessage(c));
	for (int i = 0; i < PQntuples(res); i++) {
		strcat(got, PQgetvalue(res, i, 0));
		strcat(got, ":");
		strcat(got, PQgetvalue(res, i, 2));
		strcat(got, " ");
	}
	PQclear(res);
	assert_string_equal(got, "1:1 1:2 1:3 1:4 2:6 3:3 ");
	assert_int_equal(pg_exec(c, "t", "DROP SCHEMA apitd CASCADE"), 0);
	PQfinish(c);
}

/*
 * Q_SESSION_LOAD, which every request with a since runs, updates its
 * session row as a HOT update (033_session_hot.sql): no index covers a
 * column it sets, so it writes no index entries. Counted within one
 * transaction (pg_stat_get_xact_tuples_hot_updated).
 */
static void
test_session_load_hot(void **state)
{
	const char *params[6] = {"1", "@a", "A1", "5", "600", "h"};
	PGresult *res;
	PGconn *c;

	(void)state;
	c = scratch("apises");
	assert_int_equal(
	    pg_exec(c, "t",
	            "INSERT INTO syncv3_devices (user_id, device_id, "
	            "token_hash, token_enc) VALUES ('@a', 'A1', 'h', 'e');"
	            "INSERT INTO syncv3_sessions (session_id, user_id, "
	            "device_id, last_used) VALUES (1, '@a', 'A1', now() - "
	            "interval '1 minute')"),
	    0);
	assert_int_equal(pg_exec(c, "t", "BEGIN"),
	    0);
	res = PQexecParams(c, api_stmts[Q_SESSION_LOAD].sql, 6, NULL, params,
	                   NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		fail_msg("%s", PQerrorMessage(c));
	assert_int_equal(PQntuples(res), 1);
	assert_string_equal(PQgetvalue(res, 0, 0), "t");
	assert_string_equal(PQgetvalue(res, 0, 2), "5");
	PQclear(res);
	res = PQexec(c, "SELECT pg_stat_get_xact_tuples_updated(x), "
	                "pg_stat_get_xact_tuples_hot_updated(x) FROM (SELECT "
	                "'syncv3_sessions'::regclass::oid AS x) t");
	assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
	assert_string_equal(PQgetvalue(res, 0, 0), "1");
	assert_string_equal(PQgetvalue(res, 0, 1), "1");
	PQclear(res);
	assert_int_equal(pg_exec(c, "t", "COMMIT; DROP SCHEMA apises CASCADE"),
	                 0);
	PQfinish(c);
}

/* Q_LIST_DETAIL's rows of kind k for lower bound f, as one string. */
/* PREPAREs api statement id as name. */
static void
prep(PGconn *c, const char *name, int id)
{
	PGresult *res = PQprepare(c, name, api_stmts[id].sql, 0, NULL);

	assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
	PQclear(res);
}

static void
detail_rows(PGconn *c, const char *f, char kind, char *out, size_t len)
{
	const char *p[8] = {"{!r}", f, "100000", "5", "{}", "{}", "@u:x", "D"};
	PGresult *res = PQexecPrepared(c, "det", 8, p, NULL, NULL, 0);

	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		fail_msg("detail: %s", PQerrorMessage(c));
	out[0] = '\0';
	for (int i = 0; i < PQntuples(res); i++)
		if (PQgetvalue(res, i, 0)[0] == kind) {
			strncat(out, PQgetisnull(res, i, 3) ? "l" :
			        PQgetvalue(res, i, 3), len - strlen(out) - 1);
			strncat(out, " ", len - strlen(out) - 1);
		}
	PQclear(res);
}

/*
 * The timeline window in the room's order (031_order.sql) over a room of
 * 5,000 events: events placed late sort by ord, the window is read by
 * index (no sequential scan, few rows filtered away), and a bound inside
 * a gap reads the room afresh ('l'), one before the anchor does not.
 */
static void
test_window_order(void **state)
{
	char got[1024], plan[65536] = "";
	long removed = 0;
	PGresult *res;
	PGconn *c;

	(void)state;
	c = scratch("apiord");
	assert_int_equal(
	    pg_exec(c, "t",
	            "INSERT INTO syncv3_events (nid, event_id, room_id, type, "
	            "state_key, sender, membership, json) VALUES (1, '$1', "
	            "'!r', 'm.room.create', '', '@u:x', NULL, '{}'), (2, '$2', "
	            "'!r', 'm.room.member', '@u:x', '@u:x', 'join', "
	            "'{\"content\":{\"membership\":\"join\"}}');"
	            "INSERT INTO syncv3_events (nid, event_id, room_id, type, "
	            "sender, json, ord) SELECT n, '$' || n, '!r', "
	            "'m.room.message', '@u:x', '\"' || n || '\"', CASE WHEN n > "
	            "5002 THEN 4999 + (n - 5002) / 4.0 END FROM "
	            "generate_series(3, 5005) n;"
	            "INSERT INTO syncv3_state VALUES ('!r', 'm.room.create', "
	            "'', 1, 1, NULL, NULL), ('!r', 'm.room.member', '@u:x', 2, "
	            "2, NULL, 'join');"
	            "INSERT INTO syncv3_order_gaps VALUES ('!r', 5000, 5003);"
	            "ANALYZE"),
	    0);
	prep(c, "det", Q_LIST_DETAIL);
	detail_rows(c, "{0}", 't', got, sizeof(got));
	assert_string_equal(got, "\"5004\" \"5005\" \"5000\" \"5001\" \"5002\" ");
	detail_rows(c, "{5001}", 'l', got, sizeof(got));
	assert_string_equal(got, "l ");
	detail_rows(c, "{5001}", 't', got, sizeof(got));
	assert_string_equal(got, "\"5004\" \"5005\" \"5000\" \"5001\" \"5002\" ");
	detail_rows(c, "{4000}", 'l', got, sizeof(got));
	assert_string_equal(got, "");
	detail_rows(c, "{5003}", 'l', got, sizeof(got));
	assert_string_equal(got, "");
	res = PQexec(c, "EXPLAIN (ANALYZE, COSTS OFF) EXECUTE det('{!r}', "
	                "'{0}', 100000, 5, '{}', '{}', '@u:x', 'D')");
	assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
	for (int i = 0; i < PQntuples(res); i++) {
		const char *l = PQgetvalue(res, i, 0), *m;
		strncat(plan, l, sizeof(plan) - strlen(plan) - 2);
		strcat(plan, "\n");
		if ((m = strstr(l, "Rows Removed by Filter: ")) != NULL)
			removed += strtol(m + 24, NULL, 10);
	}
	PQclear(res);
	if (strstr(plan, "Seq Scan on syncv3_events") != NULL || removed > 200)
		fail_msg("window plan reads the room (%ld rows filtered):\n%s",
		         removed, plan);
	assert_int_equal(pg_exec(c, "t", "DROP SCHEMA apiord CASCADE"), 0);
	PQfinish(c);
}

/* Statement s's rows as one string: every column, NULL as "-". */
static void
list_rows(PGconn *c, const char *s, int n, const char *const *p, char *out,
          size_t len)
{
	PGresult *res = PQexecPrepared(c, s, n, p, NULL, NULL, 0);

	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		fail_msg("%s: %s", s, PQerrorMessage(c));
	out[0] = '\0';
	for (int i = 0; i < PQntuples(res); i++) {
		for (int j = 0; j < PQnfields(res); j++) {
			strncat(out, PQgetisnull(res, i, j) ? "-" :
			        PQgetvalue(res, i, j), len - strlen(out) - 1);
			strncat(out, "|", len - strlen(out) - 1);
		}
		strncat(out, "\n", len - strlen(out) - 1);
	}
	PQclear(res);
}

/* The nodes of statement s's generic plan (EXPLAIN, subplans too). */
static int
generic_nodes(PGconn *c, const char *s, int np)
{
	char sql[256];
	const char *m;
	PGresult *res;
	int n = 0;

	snprintf(sql, sizeof(sql),
	         "EXPLAIN (FORMAT JSON, COSTS OFF) EXECUTE %s('@u', 0, 0, "
	         "NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, '{0}', "
	         "'{9}', 10, 'D'%s)",
	         s, np == 17 ? ", 1, ''" : "");
	res = PQexec(c, sql);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		fail_msg("%s: %s", s, PQerrorMessage(c));
	for (m = PQgetvalue(res, 0, 0); (m = strstr(m, "\"Node Type\"")) != NULL;
	     m++)
		n++;
	PQclear(res);
	return n;
}

/*
 * A list without filters runs Q_SS_LIST_ROOMS_PLAIN (ss_rooms.c): with
 * every filter NULL it answers exactly what Q_SS_LIST_ROOMS does (joined,
 * invited, a kick shown, a leave of one's own and a ban without a join
 * not), and its generic plan, set up whole at each Bind, leaves the
 * filters' branches out. So do Q_SS_LIST_PLAIN and Q_SS_LIST (several
 * lists, or lists and subscriptions).
 */
static void
test_list_rooms_plain(void **state)
{
	const char *p[17] = {"@u", "0",  "0",  NULL, NULL, NULL,
	                     NULL, NULL, NULL, NULL, NULL, "{0}",
	                     "{9}", "10", "D",  "1",  ""};
	char all[4096], plain[4096];
	int n_all, n_plain;
	PGresult *res;
	PGconn *c;

	(void)state;
	c = scratch("apiplain");
	assert_int_equal(
	    pg_exec(c, "t",
	            "SET plan_cache_mode = force_generic_plan;"
	            "UPDATE syncv3_position SET pos = 9;"
	            "INSERT INTO syncv3_events (nid, event_id, room_id, type, "
	            "state_key, sender, membership, json) VALUES (1, '$1', "
	            "'!k', 'm.room.member', '@u', '@x', 'leave', '{}'), (2, "
	            "'$2', '!l', 'm.room.member', '@u', '@u', 'leave', '{}');"
	            "INSERT INTO syncv3_state VALUES ('!k', 'm.room.member', "
	            "'@u', 1, 1, NULL, 'leave'), ('!l', 'm.room.member', '@u', "
	            "2, 2, NULL, 'leave');"
	            "INSERT INTO syncv3_rooms (room_id, updated_pos) VALUES "
	            "('!a', 3), ('!b', 4), ('!i', 5), ('!k', 1), ('!l', 2), "
	            "('!z', 6);"
	            "INSERT INTO syncv3_user_rooms (user_id, room_id, "
	            "membership, pos, updated_pos) VALUES "
	            "('@u', '!a', 'join', 3, 3), ('@u', '!b', 'join', 4, 4), "
	            "('@u', '!i', 'invite', 5, 5), ('@u', '!k', 'leave', 1, 1), "
	            "('@u', '!l', 'leave', 2, 2), ('@u', '!z', 'ban', 6, 6), "
	            "('@v', '!a', 'join', 3, 3)"),
	    0);
	for (int i = 0; i < 4; i++) {
		static const char *const names[] = {"filtered", "plain",
		                                    "lfiltered", "lplain"};
		static const enum api_sql q[] = {
		    Q_SS_LIST_ROOMS, Q_SS_LIST_ROOMS_PLAIN, Q_SS_LIST,
		    Q_SS_LIST_PLAIN};
		res = PQprepare(c, names[i], api_stmts[q[i]].sql, 0, NULL);
		assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
		PQclear(res);
	}
	/* SS_LIST: the same rows without SS_ROOMS' columns ($16, $17) */
	list_rows(c, "lfiltered", 15, p, all, sizeof(all));
	list_rows(c, "lplain", 15, p, plain, sizeof(plain));
	assert_string_equal(plain, all);
	assert_int_equal(strncmp(all, "9|4|", 4), 0);
	n_all = generic_nodes(c, "lfiltered", 15);
	n_plain = generic_nodes(c, "lplain", 15);
	print_message("SS_LIST generic plan nodes: %d filtered, %d plain\n",
	              n_all, n_plain);
	if (n_plain + 50 > n_all)
		fail_msg("SS_LIST plain plan %d nodes, filtered %d", n_plain,
		         n_all);
	list_rows(c, "filtered", 17, p, all, sizeof(all));
	list_rows(c, "plain", 17, p, plain, sizeof(plain));
	assert_string_equal(plain, all);
	/* count 4 (!a, !b, !i and the kick from !k), a row each */
	assert_int_equal(strncmp(all, "9|4|", 4), 0);
	for (const char *r = "abik"; *r != '\0'; r++) {
		char id[8];
		snprintf(id, sizeof(id), "|!%c|", *r);
		if (strstr(all, id) == NULL)
			fail_msg("room !%c missing:\n%s", *r, all);
	}
	assert_null(strstr(all, "|!l|"));
	assert_null(strstr(all, "|!z|"));
	n_all = generic_nodes(c, "filtered", 17);
	n_plain = generic_nodes(c, "plain", 17);
	print_message("generic plan nodes: %d filtered, %d plain\n", n_all,
	              n_plain);
	/* the filters' branches are most of the difference (175 / ~100) */
	if (n_plain + 50 > n_all)
		fail_msg("plain plan %d nodes, filtered %d", n_plain, n_all);
	assert_int_equal(pg_exec(c, "t", "DROP SCHEMA apiplain CASCADE"), 0);
	PQfinish(c);
}

/* The event json of Q_MEMBER_STREAM's rows after since, space separated. */
static void
member_stream(PGconn *c, const char *since, char *out, size_t len)
{
	const char *p[5] = {"!r", "@u:x", "100", since, "10"};
	PGresult *res = PQexecPrepared(c, "ms", 5, p, NULL, NULL, 0);

	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		fail_msg("member stream: %s", PQerrorMessage(c));
	out[0] = '\0';
	for (int i = 0; i < PQntuples(res); i++) {
		if (PQgetvalue(res, i, 0)[0] == '1')
			continue;
		strncat(out, PQgetvalue(res, i, 3), len - strlen(out) - 1);
		strncat(out, " ", len - strlen(out) - 1);
	}
	PQclear(res);
}

/*
 * The room_member stream sends member events in position order, which a
 * client applies as changes to the member set: a member event placed late
 * (031_order.sql) before one of the same member already stored never
 * became the member's state, and sent after it, it would undo the newer
 * one (carol left; her older rename, arriving last, showed her joined).
 * Only events that were state are streamed.
 */
static void
test_member_stream_late(void **state)
{
	char got[1024];
	PGconn *c;

	(void)state;
	c = scratch("apimem");
	assert_int_equal(
	    pg_exec(c, "t",
	            "INSERT INTO syncv3_events (nid, event_id, room_id, type, "
	            "state_key, sender, membership, json, ord) VALUES "
	            "(1, '$1', '!r', 'm.room.create', '', '@u:x', NULL, '{}', "
	            "NULL), (2, '$2', '!r', 'm.room.member', '@u:x', '@u:x', "
	            "'join', '\"u-join\"', NULL), (3, '$3', '!r', "
	            "'m.room.member', '@c:x', '@c:x', 'join', '\"c-join\"', "
	            "NULL), (4, '$4', '!r', 'm.room.member', '@c:x', '@c:x', "
	            "'leave', '\"c-leave\"', NULL), (6, '$6', '!r', "
	            "'m.room.member', '@c:x', '@c:x', 'join', '\"c-rename\"', "
	            "3.5);"
	            "INSERT INTO syncv3_state VALUES ('!r', 'm.room.create', "
	            "'', 1, 1, NULL, NULL), ('!r', 'm.room.member', '@u:x', 2, "
	            "2, NULL, 'join'), ('!r', 'm.room.member', '@c:x', 3, 3, 4, "
	            "'join'), ('!r', 'm.room.member', '@c:x', 4, 4, NULL, "
	            "'leave');"
	            "UPDATE syncv3_position SET pos = 100"),
	    0);
	prep(c, "ms", Q_MEMBER_STREAM);
	member_stream(c, "4", got, sizeof(got));
	assert_string_equal(got, "");
	member_stream(c, "2", got, sizeof(got));
	assert_string_equal(got, "\"c-join\" \"c-leave\" ");
	assert_int_equal(pg_exec(c, "t", "DROP SCHEMA apimem CASCADE"), 0);
	PQfinish(c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_table),
	    cmocka_unit_test(test_prepare),
	    cmocka_unit_test(test_list_stream_batch),
	    cmocka_unit_test(test_to_device_batch),
	    cmocka_unit_test(test_session_load_hot),
	    cmocka_unit_test(test_window_order),
	    cmocka_unit_test(test_list_rooms_plain),
	    cmocka_unit_test(test_member_stream_late),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
