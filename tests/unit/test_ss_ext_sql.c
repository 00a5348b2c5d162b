/*
 * The sliding sync extensions' statement (sql.c Q_SS_EXT) and the v3
 * release it shares the to-device rule with, run against the migrated
 * schema (SYNCV3_TEST_DB; skipped without): a to-device message is
 * deleted only once every live v3 session and every sliding connection
 * of the device acknowledged it, an expired connection holds nothing;
 * room data only for rooms the user is joined to; private receipts only
 * their owner's; device lists only after a position.
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

static PGconn *c;

static void
sqlx(const char *sql)
{
	assert_int_equal(pg_exec(c, "t", sql), 0);
}

static long
count(const char *sql)
{
	PGresult *res = PQexec(c, sql);
	long n;

	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		fail_msg("%s: %s", sql, PQerrorMessage(c));
	n = strtol(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	return n;
}

struct run {
	const char *conn, *from, *to, *td_on, *td_was, *since, *e2ee, *gmode;
	const char *ad_fresh, *ad_live, *ty_fresh, *ty_live, *rc_fresh;
	const char *rc_live, *ev_rooms, *ev_ids;
};

/* Runs Q_SS_EXT for @u:x/D and returns the rows "kind:room:c2," */
static char *
run(const struct run *r)
{
	const char *p[22] = {"@u:x",
	                     "D",
	                     r->conn,
	                     r->from ? r->from : "0",
	                     r->to ? r->to : "100",
	                     r->td_on ? r->td_on : "f",
	                     r->since ? r->since : "-1",
	                     "100",
	                     "300",
	                     r->e2ee ? r->e2ee : "f",
	                     r->gmode ? r->gmode : "0",
	                     r->ad_fresh ? r->ad_fresh : "{}",
	                     r->ad_live ? r->ad_live : "{}",
	                     r->ty_fresh ? r->ty_fresh : "{}",
	                     r->ty_live ? r->ty_live : "{}",
	                     r->rc_fresh ? r->rc_fresh : "{}",
	                     r->ev_rooms ? r->ev_rooms : "{}",
	                     r->ev_ids ? r->ev_ids : "{}",
	                     r->rc_live ? r->rc_live : "{}",
	                     r->td_was ? r->td_was : "f",
	                     "{}",
	                     "{}"};
	PGresult *res = PQexecParams(c, api_stmts[Q_SS_EXT].sql, 22, NULL, p,
	                             NULL, NULL, 0);
	char *out = calloc(1, 4096);

	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		fail_msg("ss_ext: %s", PQerrorMessage(c));
	for (int i = 0; i < PQntuples(res); i++) {
		char one[256];
		snprintf(one, sizeof(one), "%s:%s:%s,", PQgetvalue(res, i, 0),
		         PQgetvalue(res, i, 1), PQgetvalue(res, i, 2));
		strcat(out, one);
	}
	PQclear(res);
	return out;
}

static void
expect(const struct run *r, const char *want)
{
	char *got = run(r);

	if (strcmp(got, want) != 0)
		fail_msg("got [%s] want [%s]", got, want);
	free(got);
}

static void
release(void)
{
	const char *p[3] = {"@u:x", "D", "300"};
	PGresult *res = PQexecParams(c, api_stmts[Q_SESSION_RELEASE].sql, 3,
	                             NULL, p, NULL, NULL, 0);

	assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
	PQclear(res);
}

#define LEFT "SELECT count(*) FROM syncv3_to_device"

static void
test_to_device(void **state)
{
	(void)state;
	sqlx(
	    "INSERT INTO syncv3_ss_conns (conn, user_id, device_id, "
	    "conn_id, dialect) VALUES (1, '@u:x', 'D', 'a', 's'), "
	    "(2, '@u:x', 'D', 'b', 's');"
	    "INSERT INTO syncv3_sessions (user_id, device_id) VALUES "
	    "('@u:x', 'D');"
	    "INSERT INTO syncv3_to_device VALUES (1, '@u:x', 'D', '{\"n\":1}'),"
	    "(2, '@u:x', 'D', '{\"n\":2}'), (3, '@u:x', 'D', '{\"n\":3}'),"
	    "(4, '@o:x', 'D', '{\"n\":4}')");
	/* a first request: everything, and connection 1 now holds them */
	expect(&(struct run){.conn = "1", .td_on = "t"},
	       "d::{\"n\":1},d::{\"n\":2},d::{\"n\":3},");
	/* the v3 session acks all: connection 1 still holds them */
	sqlx("UPDATE syncv3_sessions SET acked_to_device = 3");
	release();
	assert_int_equal(count(LEFT), 4);
	/* connection 2 joins (acked nothing), connection 1 acks 2 */
	expect(&(struct run){.conn = "2", .td_on = "t"},
	       "d::{\"n\":1},d::{\"n\":2},d::{\"n\":3},");
	expect(&(struct run){.conn = "1", .td_on = "t", .since = "2"},
	       "d::{\"n\":3},");
	assert_int_equal(count(LEFT), 4);
	/* a retried older since is not an ack backwards: from the ack on */
	expect(&(struct run){.conn = "1", .td_on = "t", .since = "1"},
	       "d::{\"n\":3},");
	/* connection 2 acks 3: min(v3 3, c1 2, c2 3) = 2 are deleted */
	expect(&(struct run){.conn = "2", .td_on = "t", .since = "3"}, "");
	assert_int_equal(count(LEFT " WHERE user_id = '@u:x'"), 1);
	/* connection 1 turns to_device off: it holds nothing from then on */
	expect(&(struct run){.conn = "1", .td_was = "t"}, "");
	assert_int_equal(count(LEFT " WHERE user_id = '@u:x'"), 0);
	assert_int_equal(
	    count(
	        "SELECT count(*) FROM syncv3_ss_to_device_acks WHERE conn = 1"),
	    0);
	/* connection 2 expires (its row goes): the v3 release frees 5 */
	sqlx("INSERT INTO syncv3_to_device VALUES (5, '@u:x', 'D', '{}');"
	     "UPDATE syncv3_sessions SET acked_to_device = 5");
	release();
	assert_int_equal(count(LEFT " WHERE user_id = '@u:x'"), 1);
	sqlx("DELETE FROM syncv3_ss_conns WHERE conn = 2");
	release();
	assert_int_equal(count(LEFT " WHERE user_id = '@u:x'"), 0);
	assert_int_equal(count(LEFT), 1);
	/* to_device off: no rows, no ack row for connection 3 */
	sqlx("INSERT INTO syncv3_ss_conns (conn, user_id, device_id, "
	     "conn_id, dialect) VALUES (3, '@u:x', 'D', 'c', 's')");
	expect(&(struct run){.conn = "3"}, "");
	assert_int_equal(
	    count(
	        "SELECT count(*) FROM syncv3_ss_to_device_acks WHERE conn = 3"),
	    0);
}

static void
test_rooms(void **state)
{
	(void)state;
	sqlx("INSERT INTO syncv3_ss_conns (conn, user_id, device_id, "
	     "conn_id, dialect) VALUES (10, '@u:x', 'D', 'r', 's');"
	     "INSERT INTO syncv3_user_rooms (user_id, room_id, membership, "
	     "pos) VALUES ('@u:x', '!j', 'join', 1), ('@u:x', '!i', 'invite', "
	     "1), ('@u:x', '!l', 'leave', 1);"
	     "INSERT INTO syncv3_typing VALUES ('!j', '[\"@a:x\"]', 5), "
	     "('!i', '[\"@a:x\"]', 5), ('!l', '[\"@a:x\"]', 5);"
	     "INSERT INTO syncv3_account_data VALUES "
	     "('@u:x', '', 'm.direct', '{\"g\":1}', 6), "
	     "('@u:x', '!j', 'm.tag', '{\"j\":1}', 7), "
	     "('@u:x', '!i', 'm.tag', '{\"i\":1}', 7), "
	     "('@u:x', '', 'm.old', '{\"o\":1}', 2);"
	     "INSERT INTO syncv3_receipts VALUES "
	     "('!j', '@a:x', 'm.read', '', '$e1', 2, 8), "
	     "('!j', '@b:x', 'm.read.private', '', '$e1', 1, 8), "
	     "('!j', '@u:x', 'm.read.private', '', '$e0', 1, 3), "
	     "('!j', '@c:x', 'm.read', '', '$e9', 1, 3), "
	     "('!i', '@a:x', 'm.read', '', '$e1', 1, 8);"
	     "INSERT INTO syncv3_device_lists VALUES "
	     "(4, '@u:x', 'D', '@a:x', 'changed'), "
	     "(9, '@u:x', 'D', '@b:x', 'left');"
	     "INSERT INTO syncv3_device_keys VALUES ('@u:x', 'D', "
	     "'{\"signed_curve25519\":5}', '[]', 9)");
	/* fresh: current typing, all account data, receipts on the sent
	 * events plus the user's own; only the joined room */
	expect(&(struct run){.conn = "10",
	                     .gmode = "1",
	                     .ad_fresh = "{!j,!i,!l}",
	                     .ty_fresh = "{!j,!i,!l}",
	                     .rc_fresh = "{!j,!i}",
	                     .ev_rooms = "{!j,!i}",
	                     .ev_ids = "{$e1,$e1}"},
	       "a:!j:m.tag,g::m.old,g::m.direct,r:!j:$e0,r:!j:$e1,"
	       "t:!j:[\"@a:x\"],");
	/* live after 5: only what changed after it */
	expect(&(struct run){.conn = "10",
	                     .from = "5",
	                     .gmode = "2",
	                     .ad_live = "{!j}",
	                     .ty_live = "{!j}",
	                     .rc_live = "{!j}",
	                     .e2ee = "t"},
	       "a:!j:m.tag,g::m.direct,k::{\"signed_curve25519\":5},"
	       "l::@b:x,r:!j:$e1,");
	/* nothing after 9 but the key counts, which are always there */
	expect(&(struct run){.conn = "10",
	                     .from = "9",
	                     .gmode = "2",
	                     .ad_live = "{!j}",
	                     .ty_live = "{!j}",
	                     .rc_live = "{!j}",
	                     .e2ee = "t"},
	       "k::{\"signed_curve25519\":5},");
	/* a new connection gets no device lists */
	expect(&(struct run){.conn = "10", .e2ee = "t"},
	       "k::{\"signed_curve25519\":5},");
}

static int
setup(void **state)
{
	const char *db = getenv("SYNCV3_TEST_DB");

	(void)state;
	if (db == NULL)
		return 0;
	c = pg_connect_wait(db, 5);
	assert_non_null(c);
	PQsetNoticeProcessor(c, pg_quiet_notices, NULL);
	sqlx("DROP SCHEMA IF EXISTS ssext CASCADE; CREATE SCHEMA ssext; "
	     "SET search_path TO ssext");
	assert_int_equal(pg_migrate(c), 0);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	if (c == NULL)
		return 0;
	sqlx("DROP SCHEMA ssext CASCADE");
	PQfinish(c);
	return 0;
}

static void
test_db(void **state)
{
	if (c == NULL)
		skip();
	test_to_device(state);
	test_rooms(state);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_db),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
