/*
 * Asynchronous Postgres pool for the api's event loop. Each connection runs
 * one query at a time from a shared FIFO; a connection is driven by a read
 * event on PQsocket (results) and, while its output is not flushed, a write
 * event. Broken connections fail their query (callback with NULL) and are
 * re-established from a timer with PQconnectStart/PQconnectPoll, so nothing
 * here ever blocks the loop.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "pg.h"
#include "util.h"

struct pg_job {
	TAILQ_ENTRY(pg_job) entry;
	char *sql;
	int nparams;
	char **params;
	pg_cb cb;
	void *arg;
	bool is_cancelled;
};
TAILQ_HEAD(pg_jobq, pg_job);

enum pg_conn_state {
	PGC_DOWN,
	PGC_CONNECTING,
	PGC_IDLE,
	PGC_BUSY,
};

struct pg_pool;

struct pg_pconn {
	struct pg_pool *pool;
	PGconn *conn;
	enum pg_conn_state state;
	struct event *ev;	/* on PQsocket; re-created on reconnect */
	struct event *retry;	/* reconnect timer */
	struct pg_job *job;	/* running query */
	PGresult *last;		/* last non-NULL result of the job */
};

struct pg_pool {
	struct event_base *base;
	char *conninfo;
	int n;
	struct pg_pconn *conns;
	struct pg_jobq queue;
	int pending;
};

static void pconn_start(struct pg_pconn *pc);
static void pool_dispatch(struct pg_pool *pool);

static void
job_free(struct pg_job *job)
{
	for (int i = 0; i < job->nparams; i++)
		free(job->params[i]);
	free(job->params);
	free(job->sql);
	free(job);
}

static void
job_finish(struct pg_job *job, PGresult *res)
{
	if (!job->is_cancelled && job->cb != NULL)
		job->cb(res, job->arg);
	job_free(job);
}

static void
pconn_watch(struct pg_pconn *pc, short what, event_callback_fn fn)
{
	if (pc->ev != NULL)
		event_free(pc->ev);
	pc->ev = event_new(pc->pool->base, PQsocket(pc->conn), what, fn, pc);
	event_add(pc->ev, NULL);
}

static void
pconn_down(struct pg_pconn *pc, const char *why)
{
	struct timeval tv = {1, 0};

	log_warnx_rl("postgres pool: %s: %s", why,
	    pc->conn ? PQerrorMessage(pc->conn) : "");
	if (pc->job != NULL) {
		job_finish(pc->job, NULL);
		pc->job = NULL;
	}
	PQclear(pc->last);
	pc->last = NULL;
	if (pc->ev != NULL) {
		event_free(pc->ev);
		pc->ev = NULL;
	}
	PQfinish(pc->conn);
	pc->conn = NULL;
	pc->state = PGC_DOWN;
	evtimer_add(pc->retry, &tv);
}

static void
pconn_io_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pg_pconn *pc = arg;
	PGresult *r;
	ExecStatusType st;

	(void)fd;
	if ((what & EV_WRITE) && PQflush(pc->conn) == 0)
		pconn_watch(pc, EV_READ | EV_PERSIST, pconn_io_cb);
	if (!(what & EV_READ))
		return;
	if (PQconsumeInput(pc->conn) == 0) {
		pconn_down(pc, "consume input");
		pool_dispatch(pc->pool);
		return;
	}
	while (!PQisBusy(pc->conn)) {
		if ((r = PQgetResult(pc->conn)) == NULL) {
			/* The job is complete. */
			struct pg_job *job = pc->job;
			PGresult *last = pc->last;

			pc->job = NULL;
			pc->last = NULL;
			pc->state = PGC_IDLE;
			if (job != NULL) {
				st = PQresultStatus(last);
				if (st != PGRES_TUPLES_OK &&
				    st != PGRES_COMMAND_OK) {
					log_warnx_rl("postgres pool: %s",
					    last ? PQresultErrorMessage(last)
						 : "no result");
					job_finish(job, NULL);
				} else
					job_finish(job, last);
			}
			PQclear(last);
			pool_dispatch(pc->pool);
			return;
		}
		PQclear(pc->last);
		pc->last = r;
	}
}

static void
pconn_connect_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pg_pconn *pc = arg;

	(void)fd;
	(void)what;
	switch (PQconnectPoll(pc->conn)) {
	case PGRES_POLLING_READING:
		pconn_watch(pc, EV_READ, pconn_connect_cb);
		break;
	case PGRES_POLLING_WRITING:
		pconn_watch(pc, EV_WRITE, pconn_connect_cb);
		break;
	case PGRES_POLLING_OK:
		if (PQsetnonblocking(pc->conn, 1) == -1) {
			pconn_down(pc, "setnonblocking");
			break;
		}
		PQsetNoticeProcessor(pc->conn, pg_quiet_notices, NULL);
		pc->state = PGC_IDLE;
		pconn_watch(pc, EV_READ | EV_PERSIST, pconn_io_cb);
		pool_dispatch(pc->pool);
		break;
	default:
		pconn_down(pc, "connect");
		break;
	}
}

static void
pconn_start(struct pg_pconn *pc)
{
	pc->conn = PQconnectStart(pc->pool->conninfo);
	if (pc->conn == NULL || PQstatus(pc->conn) == CONNECTION_BAD) {
		pconn_down(pc, "connect start");
		return;
	}
	pc->state = PGC_CONNECTING;
	pconn_watch(pc, EV_WRITE, pconn_connect_cb);
}

static void
pconn_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	pconn_start(arg);
}

static void
pconn_send(struct pg_pconn *pc, struct pg_job *job)
{
	pc->job = job;
	pc->state = PGC_BUSY;
	if (PQsendQueryParams(pc->conn, job->sql, job->nparams, NULL,
	    (const char *const *)job->params, NULL, NULL, 0) == 0) {
		pconn_down(pc, "send query");
		return;
	}
	if (PQflush(pc->conn) == 1)
		pconn_watch(pc, EV_READ | EV_WRITE | EV_PERSIST, pconn_io_cb);
}

static void
pool_dispatch(struct pg_pool *pool)
{
	struct pg_job *job;

	for (int i = 0; i < pool->n; i++) {
		struct pg_pconn *pc = &pool->conns[i];

		while (pc->state == PGC_IDLE &&
		    (job = TAILQ_FIRST(&pool->queue)) != NULL) {
			TAILQ_REMOVE(&pool->queue, job, entry);
			pool->pending--;
			if (job->is_cancelled) {
				job_free(job);
				continue;
			}
			pconn_send(pc, job);
		}
	}
}

struct pg_pool *
pg_pool_new(struct event_base *base, const char *conninfo, int nconns)
{
	struct pg_pool *pool = xcalloc(1, sizeof(*pool));

	pool->base = base;
	pool->conninfo = xstrdup(conninfo);
	pool->n = nconns > 0 ? nconns : 1;
	pool->conns = xcalloc((size_t)pool->n, sizeof(*pool->conns));
	TAILQ_INIT(&pool->queue);
	for (int i = 0; i < pool->n; i++) {
		struct pg_pconn *pc = &pool->conns[i];

		pc->pool = pool;
		pc->retry = evtimer_new(base, pconn_retry_cb, pc);
		pconn_start(pc);
	}
	return pool;
}

struct pg_job *
pg_pool_query(struct pg_pool *pool, const char *sql, int nparams,
    const char *const *params, pg_cb cb, void *arg)
{
	struct pg_job *job = xcalloc(1, sizeof(*job));

	job->sql = xstrdup(sql);
	job->nparams = nparams;
	job->params = xcalloc((size_t)nparams + 1, sizeof(char *));
	for (int i = 0; i < nparams; i++)
		job->params[i] = params[i] ? xstrdup(params[i]) : NULL;
	job->cb = cb;
	job->arg = arg;
	TAILQ_INSERT_TAIL(&pool->queue, job, entry);
	pool->pending++;
	pool_dispatch(pool);
	return job;
}

void
pg_job_cancel(struct pg_job *job)
{
	if (job != NULL)
		job->is_cancelled = true;
}

int
pg_pool_pending(const struct pg_pool *pool)
{
	return pool->pending;
}

void
pg_pool_free(struct pg_pool *pool)
{
	struct pg_job *job;

	if (pool == NULL)
		return;
	for (int i = 0; i < pool->n; i++) {
		struct pg_pconn *pc = &pool->conns[i];

		if (pc->job != NULL)
			job_finish(pc->job, NULL);
		PQclear(pc->last);
		if (pc->ev != NULL)
			event_free(pc->ev);
		event_free(pc->retry);
		PQfinish(pc->conn);
	}
	while ((job = TAILQ_FIRST(&pool->queue)) != NULL) {
		TAILQ_REMOVE(&pool->queue, job, entry);
		job_finish(job, NULL);
	}
	free(pool->conns);
	free(pool->conninfo);
	free(pool);
}
