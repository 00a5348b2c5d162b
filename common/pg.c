/*
 * Blocking helpers and migrations. The asynchronous pool is in pg_pool.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pg.h"
#include "util.h"

/* Any constant distinct from other applications' locks on the database. */
#define MIGRATE_LOCK_KEY "7370796e637633" /* "syncv3" */

/* libpq's NOTICEs ("relation exists, skipping") are noise in our logs. */
void
pg_quiet_notices(void *arg, const char *msg)
{
	(void)arg;
	(void)msg;
}

PGconn *
pg_connect_wait(const char *conninfo, int max_wait_s)
{
	PGconn *c;
	int waited = 0;

	for (;;) {
		c = PQconnectdb(conninfo);
		if (PQstatus(c) == CONNECTION_OK)
			break;
		if (waited == 0 || waited % 10 == 0)
			log_warnx("postgres: %s", PQerrorMessage(c));
		PQfinish(c);
		if (max_wait_s == 0 || waited >= max_wait_s)
			return NULL;
		sleep(1);
		waited++;
	}
	PQsetNoticeProcessor(c, pg_quiet_notices, NULL);
	return c;
}

/*
 * The simple query protocol (PQexec), so a migration file with several
 * statements runs as one call; pg_query is for parameterised statements.
 */
int
pg_exec(PGconn *c, const char *tag, const char *sql)
{
	PGresult *r = PQexec(c, sql);
	ExecStatusType st = PQresultStatus(r);

	if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
		PQclear(r);
		return 0;
	}
	log_warnx("%s: %s", tag,
	    r ? PQresultErrorMessage(r) : PQerrorMessage(c));
	PQclear(r);
	return -1;
}

/* r if it succeeded, else NULL with r cleared and the error logged */
static PGresult *
query_result(PGconn *c, const char *tag, PGresult *r)
{
	ExecStatusType st = PQresultStatus(r);

	if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
		return r;
	log_warnx("%s: %s", tag,
	    r ? PQresultErrorMessage(r) : PQerrorMessage(c));
	PQclear(r);
	return NULL;
}

PGresult *
pg_query(PGconn *c, const char *tag, const char *sql, int nparams,
    const char *const *params)
{
	return query_result(c, tag,
	    PQexecParams(c, sql, nparams, NULL, params, NULL, NULL, 0));
}

/*
 * A prepared statement the server no longer has (26000: e.g. a pooler
 * reset the session, or the connection was reset) or whose result type
 * changed under it (0A000: a migration altered a table) fails every
 * later execution on this connection.
 */
bool
pg_is_stale(const PGresult *res)
{
	const char *code;

	if (res == NULL || PQresultStatus(res) != PGRES_FATAL_ERROR ||
	    (code = PQresultErrorField(res, PG_DIAG_SQLSTATE)) == NULL)
		return false;
	return strcmp(code, "26000") == 0 || strcmp(code, "0A000") == 0;
}

PGresult *
pg_query_prepared(PGconn *c, const char *tag, const char *name,
    const char *sql, int nparams, const char *const *params)
{
	PGresult *r;

	r = PQexecPrepared(c, name, nparams, params, NULL, NULL, 0);
	if (pg_is_stale(r)) {
		/* 0A000: still there, to be replaced */
		if (strcmp(PQresultErrorField(r, PG_DIAG_SQLSTATE), "0A000") ==
		    0) {
			char q[96];

			snprintf(q, sizeof(q), "DEALLOCATE %s", name);
			PQclear(PQexec(c, q));
		}
		PQclear(r);
		r = PQprepare(c, name, sql, 0, NULL);
		if (PQresultStatus(r) == PGRES_COMMAND_OK) {
			PQclear(r);
			r = PQexecPrepared(c, name, nparams, params, NULL, NULL,
			    0);
		}
	}
	return query_result(c, tag, r);
}

int
pg_schema_current(PGconn *c)
{
	PGresult *r;
	int v = -1;

	r = PQexec(c, "SELECT coalesce(max(version), 0) FROM "
		      "syncv3_schema_migrations");
	if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
		v = atoi(PQgetvalue(r, 0, 0));
	else if (PQresultStatus(r) == PGRES_FATAL_ERROR &&
	    strcmp(PQresultErrorField(r, PG_DIAG_SQLSTATE), "42P01") == 0)
		v = 0; /* undefined_table: nothing migrated yet */
	PQclear(r);
	return v;
}

/*
 * One migration and its row in syncv3_schema_migrations in one
 * transaction, so a failed migration leaves neither behind and is
 * retried whole by the next start.
 */
static int
migrate_one(PGconn *c, const struct pg_migration *m)
{
	char ver[16];
	const char *p[2] = {ver, m->name};

	snprintf(ver, sizeof(ver), "%d", m->version);
	if (pg_exec(c, "migrate", "BEGIN") == -1)
		return -1;
	if (pg_exec(c, m->name, m->sql) == -1)
		goto fail;
	PGresult *r = pg_query(c, "migrate",
	    "INSERT INTO syncv3_schema_migrations (version, name) "
	    "VALUES ($1, $2)", 2, p);
	if (r == NULL)
		goto fail;
	PQclear(r);
	if (pg_exec(c, "migrate", "COMMIT") == -1)
		return -1;
	log_info("schema: applied migration %d %s", m->version, m->name);
	return 0;
fail:
	if (pg_exec(c, "migrate", "ROLLBACK") == -1)
		log_warnx("migrate: rollback failed");
	return -1;
}

/*
 * Applies the pending migrations (the accumulator, the schema's owner, at
 * startup; the others wait with pg_wait_schema). The advisory lock makes
 * two starting at once apply each migration once: the second waits, then
 * finds nothing to do. A database newer than the binary is refused rather
 * than used with a schema this code does not know.
 */
int
pg_migrate(PGconn *c)
{
	int cur, rc = -1;

	if (pg_exec(c, "migrate", "SELECT pg_advisory_lock(x'"
	    MIGRATE_LOCK_KEY "'::bigint)") == -1)
		return -1;
	if (pg_exec(c, "migrate",
	    "CREATE TABLE IF NOT EXISTS syncv3_schema_migrations ("
	    " version int PRIMARY KEY, name text NOT NULL,"
	    " applied_at timestamptz NOT NULL DEFAULT now())") == -1)
		goto out;
	if ((cur = pg_schema_current(c)) < 0)
		goto out;
	if (cur > pg_schema_version) {
		log_warnx("schema: database is at version %d, newer than "
		    "this binary's %d; refusing to run", cur,
		    pg_schema_version);
		goto out;
	}
	for (int i = 0; i < pg_migrations_count; i++)
		if (pg_migrations[i].version > cur &&
		    migrate_one(c, &pg_migrations[i]) == -1)
			goto out;
	rc = 0;
out:
	if (pg_exec(c, "migrate", "SELECT pg_advisory_unlock(x'"
	    MIGRATE_LOCK_KEY "'::bigint)") == -1)
		log_warnx("migrate: cannot release the advisory lock");
	return rc;
}

int
pg_wait_schema(PGconn *c, int version, int max_wait_s)
{
	int waited = 0, cur;

	while ((cur = pg_schema_current(c)) < version) {
		if (cur < 0 && pg_check_reset(c))
			log_warnx("schema: cannot read version");
		if (waited % 10 == 0)
			log_info("schema: waiting for version %d (have %d)",
			    version, cur < 0 ? 0 : cur);
		if (max_wait_s > 0 && waited >= max_wait_s)
			return -1;
		sleep(1);
		waited++;
	}
	return 0;
}

bool
pg_check_reset(PGconn *c)
{
	if (PQstatus(c) == CONNECTION_OK)
		return false;
	log_warnx("postgres: connection lost, resetting");
	PQreset(c);
	return PQstatus(c) != CONNECTION_OK;
}
