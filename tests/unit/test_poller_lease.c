/*
 * The poller's lease statements (poller/lease_sql.c) against a real
 * Postgres (SYNCV3_TEST_DB; skipped when unset), run concurrently with
 * accumulator-style batches over the same devices (issue #9): a batch
 * locks device rows in key order, group by group, inside one transaction
 * (the compare-and-set of accumulator/store.c, copied below), while the
 * poller renews its leases, claims and writes poll states. Each test
 * makes the bad interleaving happen on purpose: the batch holds the
 * first device, the poller statement starts, and once it is either done
 * or waiting on a lock the batch goes on to lock every device. Before
 * leases had their own table the renewal locked the devices in heap order
 * (the reverse of key order here) and Postgres reported a deadlock in
 * every round. Every statement is also prepared once, so a typo in one
 * fails here rather than in production.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "pg.h"
#include "pg_lit.h"
#include "poller.h"
#include "util.h"

#define NDEV 200
#define ROUNDS 5
#define OWNER "p1"

/* accumulator/store.c's S_CAS and S_SINCE, as they are there. */
static const char *acc_cas =
    "SELECT k.i, d.since, d.is_initial_done FROM "
    "unnest($1::text[], $2::text[]) WITH ORDINALITY AS k(u, dv, i) "
    "JOIN syncv3_devices d ON d.user_id = k.u AND d.device_id = k.dv "
    "ORDER BY d.user_id, d.device_id FOR UPDATE OF d";
static const char *acc_since =
    "UPDATE syncv3_devices d SET since = k.s, "
    "is_initial_done = true FROM unnest($1::text[], $2::text[], "
    "$3::text[]) AS k(u, dv, s) WHERE d.user_id = k.u AND "
    "d.device_id = k.dv";

static PGconn *acc, *pol, *mon;
static char *users[NDEV], *devs[NDEV];

static PGconn *
connect_one(const char *conninfo)
{
	PGconn *c = PQconnectdb(conninfo);

	if (PQstatus(c) != CONNECTION_OK)
		return NULL;
	PQsetNoticeProcessor(c, pg_quiet_notices, NULL);
	/* Bounded: a missed wake-up fails the test instead of hanging it. */
	PQclear(PQexec(c, "SET statement_timeout = '20s'"));
	/* Superuser only; without it detection takes the default 1 s. */
	PQclear(PQexec(c, "SET deadlock_timeout = '100ms'"));
	return c;
}

static void
exec_ok(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);

	assert_true(PQresultStatus(r) == PGRES_COMMAND_OK ||
	            PQresultStatus(r) == PGRES_TUPLES_OK);
	PQclear(r);
}

/*
 * Devices inserted in descending key order, so a sequential scan meets
 * them in the opposite order to the accumulator's ORDER BY.
 */
static void
add_devices(void)
{
	char sql[512];

	for (int i = NDEV - 1; i >= 0; i--) {
		snprintf(
		    sql, sizeof(sql),
		    "INSERT INTO syncv3_devices "
		    "(user_id, device_id, token_hash, token_enc, since) VALUES "
		    "('%s', '%s', 'h%03d', 'e', 's0')",
		    users[i], devs[i], i);
		exec_ok(acc, sql);
	}
}

static int
setup(void **state)
{
	const char *conn = getenv("SYNCV3_TEST_DB");

	(void)state;
	if (conn == NULL || *conn == '\0')
		return 0;
	if ((acc = connect_one(conn)) == NULL ||
	    (pol = connect_one(conn)) == NULL ||
	    (mon = connect_one(conn)) == NULL)
		return -1;
	PQclear(PQexec(acc, "DROP SCHEMA public CASCADE"));
	PQclear(PQexec(acc, "CREATE SCHEMA public"));
	if (pg_migrate(acc) == -1)
		return -1;
	for (int i = 0; i < NDEV; i++) {
		users[i] = xasprintf("@u%03d:hs", i);
		devs[i] = xasprintf("D%03d", i);
	}
	add_devices();
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	PQfinish(acc);
	PQfinish(pol);
	PQfinish(mon);
	for (int i = 0; i < NDEV; i++) {
		free(users[i]);
		free(devs[i]);
	}
	return 0;
}

#define NEED_DB()                                                              \
	do {                                                                   \
		if (acc == NULL)                                               \
			skip();                                                \
	} while (0)

static PGresult *
run(PGconn *c, const char *sql, int n, const char *const *params)
{
	return PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
}

static bool
is_deadlock(const PGresult *r)
{
	const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);

	return st != NULL && strcmp(st, "40P01") == 0;
}

/* The accumulator's compare-and-set over devices [from, to). */
static PGresult *
acc_lock(int from, int to)
{
	char *u = pg_text_array((const char *const *)users + from,
	                        (size_t)(to - from));
	char *dv = pg_text_array((const char *const *)devs + from,
	                         (size_t)(to - from));
	const char *p[2] = {u, dv};
	PGresult *r = run(acc, acc_cas, 2, p);

	free(u);
	free(dv);
	return r;
}

static void
acc_commit_all(void)
{
	const char *s[NDEV];
	char *u = pg_text_array((const char *const *)users, NDEV);
	char *dv = pg_text_array((const char *const *)devs, NDEV);
	char *sa;
	PGresult *r;

	for (int i = 0; i < NDEV; i++)
		s[i] = "s1";
	sa = pg_text_array(s, NDEV);
	const char *p[3] = {u, dv, sa};
	r = run(acc, acc_since, 3, p);
	assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
	PQclear(r);
	exec_ok(acc, "COMMIT");
	free(u);
	free(dv);
	free(sa);
}

/* What an earlier failed test or round may have left behind. */
static void
reset(void)
{
	PGresult *x;

	while ((x = PQgetResult(pol)) != NULL)
		PQclear(x);
	if (PQtransactionStatus(acc) != PQTRANS_IDLE)
		exec_ok(acc, "ROLLBACK");
}

/* Until pol's statement is done or waits on a lock (5 s at most). */
static void
wait_done_or_blocked(void)
{
	char pid[16];
	const char *p[1] = {pid};
	struct timespec ts = {0, 5 * 1000 * 1000};

	snprintf(pid, sizeof(pid), "%d", PQbackendPID(pol));
	for (int i = 0; i < 1000; i++) {
		PGresult *r;
		bool is_waiting;

		assert_int_equal(PQconsumeInput(pol), 1);
		if (!PQisBusy(pol))
			return;
		r = run(mon,
		        "SELECT wait_event_type = 'Lock' FROM "
		        "pg_stat_activity WHERE pid = $1::int",
		        1, p);
		is_waiting =
		    PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), "t") == 0;
		PQclear(r);
		if (is_waiting)
			return;
		nanosleep(&ts, NULL);
	}
	fail_msg("poller statement neither done nor waiting after 5 s");
}

/*
 * One round: the batch locks device 0, the poller statement starts, the
 * batch locks them all (a second group) and commits. Returns the poller
 * statement's result; fails on a deadlock on either side.
 */
static PGresult *
crossing(enum lease_stmt_id id, int n, const char *const *params)
{
	PGresult *r, *pr = NULL, *x;

	reset();
	exec_ok(acc, "BEGIN");
	r = acc_lock(0, 1);
	assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
	PQclear(r);
	assert_int_equal(PQsendQueryParams(pol, lease_stmts[id].sql, n, NULL,
	                                   params, NULL, NULL, 0),
	                 1);
	wait_done_or_blocked();
	r = acc_lock(0, NDEV);
	if (is_deadlock(r))
		fail_msg("%s: deadlock (accumulator side): %s",
		         lease_stmts[id].name, PQresultErrorMessage(r));
	assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
	assert_int_equal(PQntuples(r), NDEV);
	PQclear(r);
	acc_commit_all();
	while ((x = PQgetResult(pol)) != NULL) {
		if (pr == NULL)
			pr = x;
		else
			PQclear(x);
	}
	assert_non_null(pr);
	if (is_deadlock(pr))
		fail_msg("%s: deadlock (poller side): %s", lease_stmts[id].name,
		         PQresultErrorMessage(pr));
	if (PQresultStatus(pr) != PGRES_TUPLES_OK &&
	    PQresultStatus(pr) != PGRES_COMMAND_OK)
		fail_msg("%s: %s", lease_stmts[id].name,
		         PQresultErrorMessage(pr));
	return pr;
}

/*
 * The claim's parameters: owner, batch, idle and lease secs, held, cap.
 * CLAIM_ANY holds so few that the share never limits the claim.
 */
#define CLAIM_ANY "-1000000"

static PGresult *
claim_all(void)
{
	const char *p[6] = {OWNER, "100000", "3600", "30", CLAIM_ANY, "0"};

	return run(pol, lease_stmts[LS_CLAIM].sql, 6, p);
}

/* Every statement parses and plans. */
static void
test_prepare(void **state)
{
	char name[32];

	(void)state;
	NEED_DB();
	for (int i = 0; i < LS_COUNT; i++) {
		PGresult *r;

		assert_non_null(lease_stmts[i].sql);
		snprintf(name, sizeof(name), "ls%d", i);
		r = PQprepare(pol, name, lease_stmts[i].sql, 0, NULL);
		if (PQresultStatus(r) != PGRES_COMMAND_OK)
			fail_msg("%s: %s", lease_stmts[i].name,
			         PQresultErrorMessage(r));
		PQclear(r);
	}
	exec_ok(pol, "DEALLOCATE ALL");
}

/*
 * A claim does not wait for devices the accumulator holds, and still
 * claims them (their lease rows are not the rows it locks).
 */
static void
test_claim_while_locked(void **state)
{
	PGresult *r;

	(void)state;
	NEED_DB();
	reset();
	exec_ok(acc, "BEGIN");
	r = acc_lock(0, NDEV);
	assert_int_equal(PQntuples(r), NDEV);
	PQclear(r);
	r = claim_all();
	assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
	assert_int_equal(PQntuples(r), NDEV);
	PQclear(r);
	exec_ok(acc, "COMMIT");
	/* Held now: a second claim finds nothing. */
	r = claim_all();
	assert_int_equal(PQntuples(r), 0);
	PQclear(r);
}

/* Lease renewal crossing accumulator batches, round after round. */
static void
test_heartbeat_vs_batch(void **state)
{
	const char *p[3] = {OWNER, "30", "3600"};

	(void)state;
	NEED_DB();
	reset();
	PQclear(claim_all()); /* held already, unless the test runs alone */
	for (int round = 0; round < ROUNDS; round++) {
		PGresult *r = crossing(LS_HEARTBEAT, 3, p);

		/* every lease renewed, none reported lost */
		assert_int_equal(PQntuples(r), NDEV);
		PQclear(r);
	}
}

/*
 * The poll-state flush crossing a batch: it skips the device the batch
 * holds (and says which, so it is written next time) instead of waiting.
 */
static void
test_flush_vs_batch(void **state)
{
	const char *s[NDEV], *e[NDEV], *fp[NDEV];
	char *a[5], fps[NDEV][8];

	(void)state;
	NEED_DB();
	for (int i = 0; i < NDEV; i++) {
		snprintf(fps[i], sizeof(fps[i]), "h%03d", i);
		s[i] = "backoff";
		e[i] = "http 500";
		fp[i] = fps[i];
	}
	a[0] = pg_text_array((const char *const *)users, NDEV);
	a[1] = pg_text_array((const char *const *)devs, NDEV);
	a[2] = pg_text_array(s, NDEV);
	a[3] = pg_text_array(e, NDEV);
	a[4] = pg_text_array(fp, NDEV);
	const char *p[6] = {OWNER, a[0], a[1], a[2], a[3], a[4]};
	for (int round = 0; round < ROUNDS; round++) {
		PGresult *r = crossing(LS_FLUSH, 6, p), *c;

		/* device 0 was held: skipped and named; the rest written */
		assert_int_equal(PQntuples(r), 1);
		assert_string_equal(PQgetvalue(r, 0, 0), users[0]);
		PQclear(r);
		c = PQexec(mon, "SELECT count(*) FROM syncv3_devices "
		                "WHERE poll_state = 'backoff'");
		assert_int_equal(atoi(PQgetvalue(c, 0, 0)), NDEV - 1);
		PQclear(c);
		exec_ok(mon, "UPDATE syncv3_devices SET poll_state = 'new'");
	}
	for (int i = 0; i < 5; i++)
		free(a[i]);
}

/* Runs statement id of lease_sql.c on c; the result is the caller's. */
static PGresult *
ls(PGconn *c, enum lease_stmt_id id, int n, const char *const *params)
{
	PGresult *r = run(c, lease_stmts[id].sql, n, params);

	if (PQresultStatus(r) != PGRES_TUPLES_OK &&
	    PQresultStatus(r) != PGRES_COMMAND_OK)
		fail_msg("%s: %s", lease_stmts[id].name,
		         PQresultErrorMessage(r));
	return r;
}

/* Renews id's row of incarnation inc: "" (superseded), or live, peer. */
static char *
renew(const char *id, const char *inc)
{
	const char *p[3] = {id, inc, "1200"};
	PGresult *r = ls(pol, LS_LIVE_RENEW, 3, p);
	char *v = PQntuples(r) == 0 ? xstrdup("")
	                            : xasprintf("%s%s", PQgetvalue(r, 0, 0),
	                                        PQgetvalue(r, 0, 1));

	PQclear(r);
	return v;
}

static void
assert_renew(const char *id, const char *inc, const char *want)
{
	char *v = renew(id, inc);

	assert_string_equal(v, want);
	free(v);
}

/*
 * Claims as id holding held devices, at most batch, capped at max;
 * returns how many it took and, in *share, the share it reported (-1:
 * none, nothing taken).
 */
static int
claim_n(const char *id, const char *batch, const char *held, const char *max,
        long long *share)
{
	const char *p[6] = {id, batch, "3600", "30", held, max};
	PGresult *r = ls(pol, LS_CLAIM, 6, p);
	int n = PQntuples(r);

	*share = n > 0 ? atoll(PQgetvalue(r, 0, 8)) : -1;
	for (int i = 1; i < n; i++)
		assert_int_equal(atoll(PQgetvalue(r, i, 8)), *share);
	PQclear(r);
	return n;
}

static int
claim_as(const char *id)
{
	long long share;

	return claim_n(id, "100000", CLAIM_ANY, "0", &share);
}

static long long
begin(const char *id)
{
	const char *p[2] = {id, "1200"};
	PGresult *r = ls(pol, LS_LIVE_BEGIN, 2, p);
	long long inc = atoll(PQgetvalue(r, 0, 0));

	PQclear(r);
	return inc;
}

/*
 * Issue #15: leases of a poller whose liveness row expired are taken at
 * once (long before the 30 s lease), a live one's never; the late owner's
 * renewal says it expired, a superseded incarnation's finds no row, and
 * the id lock admits one session.
 */
static void
test_liveness_takeover(void **state)
{
	const char *id[1] = {"p1"};
	PGresult *r;

	(void)state;
	NEED_DB();
	reset();
	exec_ok(acc, "DELETE FROM syncv3_leases; DELETE FROM syncv3_pollers");
	assert_int_equal(begin("p1"), 1);
	assert_int_equal(begin("p2"), 1);
	assert_int_equal(claim_as("p1"), NDEV);
	assert_int_equal(claim_as("p2"), 0);
	assert_renew("p2", "1", "tf");
	exec_ok(acc, "UPDATE syncv3_pollers SET expires = now() - "
	             "interval '1 ms' WHERE id = 'p1'");
	assert_renew("p2", "1", "tt"); /* p1 is dead and holds leases */
	assert_int_equal(claim_as("p2"), NDEV);
	assert_renew("p2", "1", "tf");
	assert_renew("p1", "1", "ff"); /* too late: p1 must stop */
	assert_int_equal(begin("p1"), 2);
	assert_renew("p1", "1", ""); /* superseded under its own id */
	assert_renew("p1", "2", "tf");
	r = ls(pol, LS_LIVE_LOCK, 1, id);
	assert_string_equal(PQgetvalue(r, 0, 0), "t");
	PQclear(r);
	r = ls(mon, LS_LIVE_LOCK, 1, id);
	assert_string_equal(PQgetvalue(r, 0, 0), "f");
	PQclear(r);
	exec_ok(pol, "SELECT pg_advisory_unlock_all()");
	exec_ok(acc, "DELETE FROM syncv3_leases; DELETE FROM syncv3_pollers");
}

/*
 * Issue #13: the claim computes the fair share itself (it used to be a
 * statement of its own before every claim). The share it reports is
 * policy_share's of what the share statement counts, and it takes no
 * more than share - held, the batch, or the cap.
 */
static void
test_claim_share(void **state)
{
	const char *idle[1] = {"3600"};
	char held[PG_I64_LEN];
	long long share, live, active, want;
	PGresult *r;

	(void)state;
	NEED_DB();
	reset();
	exec_ok(acc, "DELETE FROM syncv3_leases; DELETE FROM syncv3_pollers");
	for (int i = 1; i <= 3; i++) {
		char id[8];

		snprintf(id, sizeof(id), "s%d", i);
		assert_true(begin(id) >= 1);
	}
	r = ls(pol, LS_SHARE, 1, idle);
	live = atoll(PQgetvalue(r, 0, 0));
	active = atoll(PQgetvalue(r, 0, 1));
	PQclear(r);
	assert_true(live >= 3);
	want = policy_share(active, live, 0);
	assert_true(want > 10 && want < active);

	/* holding the whole share: nothing */
	pg_i64(held, want);
	assert_int_equal(claim_n("s1", "100000", held, "0", &share), 0);
	/* five short of it: five, and the share */
	pg_i64(held, want - 5);
	assert_int_equal(claim_n("s1", "100000", held, "0", &share), 5);
	assert_int_equal(share, want);
	/* the batch limits */
	assert_int_equal(claim_n("s2", "3", "0", "0", &share), 3);
	assert_int_equal(share, want);
	/* and the cap: the share is the cap's */
	assert_int_equal(claim_n("s3", "100000", "0", "7", &share), 7);
	assert_int_equal(share, policy_share(active, live, 7));
	/* the leases taken are the ones reported */
	r = run(pol,
	        "SELECT owner, count(*) FROM syncv3_leases GROUP BY owner"
	        " ORDER BY owner",
	        0, NULL);
	assert_int_equal(PQntuples(r), 3);
	assert_int_equal(atoll(PQgetvalue(r, 0, 1)), 5);
	assert_int_equal(atoll(PQgetvalue(r, 1, 1)), 3);
	assert_int_equal(atoll(PQgetvalue(r, 2, 1)), 7);
	PQclear(r);
	exec_ok(acc, "DELETE FROM syncv3_leases; DELETE FROM syncv3_pollers");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_prepare),
	    cmocka_unit_test(test_claim_while_locked),
	    cmocka_unit_test(test_heartbeat_vs_batch),
	    cmocka_unit_test(test_flush_vs_batch),
	    cmocka_unit_test(test_liveness_takeover),
	    cmocka_unit_test(test_claim_share),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
