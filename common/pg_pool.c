/*
 * Asynchronous Postgres pool for the api's event loop. Each connection runs
 * one query at a time from a shared FIFO; a connection is driven by a read
 * event on PQsocket (results) and, while its output is not flushed, a write
 * event. Broken connections fail their query (callback with NULL) and are
 * re-established from a timer with PQconnectStart/PQconnectPoll, so nothing
 * here ever blocks the loop.
 *
 * Every statement is prepared once per connection, named after a hash of
 * its text, and executed with PQsendQueryPrepared from then on: the api
 * sends the same few statements thousands of times a second, and parsing
 * and planning them afresh each time cost Postgres more than running them.
 * Callers pass constant SQL (pg.h), so the set of names stays small, and
 * the pool knows a statement by its address: its text is hashed once per
 * pool (stmt_hash), neither hashed nor copied per query (hashing the
 * api's statements of several kilobytes cost it a tenth of its CPU).
 *
 * Work is bounded (pg_pool_set_limits): a job not answered within the
 * deadline of being queued fails, a full queue refuses new jobs, and
 * while Postgres is unreachable (no connection up and the last attempt
 * failed) every job fails at once instead of waiting for a reconnect.
 * Under load the deadline must not cost connections: a job with less than
 * a tenth of the deadline left is refused rather than sent (it would only
 * be cancelled), and a running job past its deadline is answered at once
 * and cancelled on the server, keeping its connection; only a connection
 * that does not answer within a grace period after the cancel (a hung
 * server) is dropped. Failures are delivered from the loop, never from
 * inside pg_pool_query, so callers need not expect re-entry.
 *
 * A pool may stand for a streaming replica of another (SYNCV3_DB_READ,
 * pg_pool_set_replica): a read names the WAL position it must see
 * (pg_pool_query_read) and goes to the replica once the replica has
 * replayed that far, which the pool learns by asking it
 * (pg_last_wal_replay_lsn) while reads wait; one that waited the bound
 * goes to the primary instead, as does every read while the replica is
 * unreachable. A replica that is not in recovery (a primary named as
 * its own replica) has replayed everything.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "pg.h"
#include "util.h"

struct pg_job {
	TAILQ_ENTRY(pg_job) entry;
	uint64_t hash;		/* of sql: the prepared statement's name */
	const char *sql;        /* borrowed: a constant (pg.h) */
	int nparams;
	char **params;
	pg_cb cb;
	void *arg;
	long long deadline_ms;	/* monotonic; 0: none */
	bool is_cancelled;
	int64_t min_lsn; /* a replica read: the WAL it must have replayed */
	long long lsn_until_ms; /* then the primary's, if not by then */
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
	long long since_ms;	/* connect attempt started */
	PGresult *last;		/* last non-NULL result of the job */
	bool is_preparing;	/* job's statement is being prepared */
	uint64_t *prepared;	/* hashes of statements prepared here */
	size_t nprepared;
	uint64_t prep_hash;  /* of the statement being prepared */
	long long cancel_ms; /* job answered early and cancelled; 0: no */
};

/* A statement's address and the hash of its text (stmt_hash). */
struct stmt_memo {
	const char *sql;
	uint64_t hash;
};

struct pg_pool {
	struct event_base *base;
	struct stmt_memo *memo; /* open addressing, a power of 2 slots */
	size_t nmemo, capmemo;
	char *conninfo;
	int n;
	struct pg_pconn *conns;
	struct pg_jobq queue;
	int pending;
	struct pg_jobq failq;	/* refused or timed out, to call back */
	struct event *fail_ev;	/* drains failq from the loop */
	struct event *tick;	/* deadlines and connect timeouts */
	int max_queue;	/* 0: no limit */
	long long timeout_ms;	/* 0: no deadline */
	int nup;	/* connections IDLE or BUSY */
	bool is_down;	/* none up and the last connect failed */
	struct pg_pool_stats stats;
	/* a replica's (pg_pool_set_replica) */
	struct pg_pool *primary;
	long long lsn_wait_ms;
	int64_t replay_lsn;  /* replayed at least this far */
	struct pg_jobq lsnq; /* reads waiting for replay_lsn */
	int nlsnq;
	bool is_probing;        /* a replay position query in flight */
	bool is_freeing;        /* pg_pool_free: the probe's answer is moot */
	struct event *lsn_tick; /* while reads wait: probe, expire */
};

static void pconn_start(struct pg_pconn *pc);
static void pool_dispatch(struct pg_pool *pool);
static void pool_fail_queue(struct pg_pool *pool);
static void pool_refuse(struct pg_pool *pool, struct pg_job *job);
static void lsn_tick_cb(evutil_socket_t fd, short what, void *arg);

static void
job_free(struct pg_job *job)
{
	for (int i = 0; i < job->nparams; i++)
		free(job->params[i]);
	free(job->params);
	free(job);
}

static void
job_finish(struct pg_job *job, PGresult *res)
{
	if (!job->is_cancelled && job->cb != NULL)
		job->cb(res, job->arg);
	job_free(job);
}

/* FNV-1a: stable, cheap, and collisions only cost a failed prepare. */
static uint64_t
sql_hash(const char *sql)
{
	return hash_fnv1a(sql, strlen(sql));
}

static size_t
memo_slot(const struct stmt_memo *m, size_t cap, const char *sql)
{
	/* Fibonacci hashing of the address; its low bits are alignment */
	size_t i = (size_t)(((uintptr_t)sql * 0x9E3779B97F4A7C15ULL) >> 20);

	for (i &= cap - 1; m[i].sql != NULL && m[i].sql != sql;
	     i = (i + 1) & (cap - 1))
		;
	return i;
}

/* The hash of a constant statement, its text hashed on first sight. */
static uint64_t
stmt_hash(struct pg_pool *pool, const char *sql)
{
	struct stmt_memo *old = pool->memo;
	size_t i, oldcap = pool->capmemo;

	if (pool->capmemo > 0) {
		i = memo_slot(pool->memo, pool->capmemo, sql);
		if (pool->memo[i].sql == sql)
			return pool->memo[i].hash;
	}
	if (2 * (pool->nmemo + 1) > pool->capmemo) {
		pool->capmemo = oldcap > 0 ? 2 * oldcap : 64;
		pool->memo = xcalloc(pool->capmemo, sizeof(*pool->memo));
		for (size_t j = 0; j < oldcap; j++)
			if (old[j].sql != NULL)
				pool->memo[memo_slot(pool->memo, pool->capmemo,
				                     old[j].sql)] = old[j];
		free(old);
	}
	i = memo_slot(pool->memo, pool->capmemo, sql);
	pool->memo[i].sql = sql;
	pool->memo[i].hash = sql_hash(sql);
	pool->nmemo++;
	pool->stats.hashed++;
	return pool->memo[i].hash;
}

static void
stmt_name(uint64_t hash, char out[32])
{
	snprintf(out, 32, "syncv3_%016" PRIx64, hash);
}

static bool
pconn_has_prepared(const struct pg_pconn *pc, uint64_t hash)
{
	for (size_t i = 0; i < pc->nprepared; i++)
		if (pc->prepared[i] == hash)
			return true;
	return false;
}

static void
pconn_watch(struct pg_pconn *pc, short what, event_callback_fn fn)
{
	if (pc->ev != NULL)
		event_free(pc->ev);
	pc->ev = event_new(pc->pool->base, PQsocket(pc->conn), what, fn, pc);
	event_add(pc->ev, NULL);
}

/*
 * A connection that was up is retried at once (a stale statement or a
 * restarted server costs no second); a failed connect attempt waits a
 * second, and with no connection up marks Postgres unreachable.
 */
static void
pconn_down(struct pg_pconn *pc, const char *why)
{
	struct pg_pool *pool = pc->pool;
	struct timeval tv = {1, 0};
	bool was_up = pc->state == PGC_IDLE || pc->state == PGC_BUSY;

	log_warnx_rl("postgres pool: %s: %s", why,
	    pc->conn ? PQerrorMessage(pc->conn) : "");
	if (pc->job != NULL) {
		/*
		 * From the loop: a send failure brings the connection down
		 * inside pg_pool_query, whose caller is not ready for its
		 * callback yet.
		 */
		pool_refuse(pool, pc->job);
		pc->job = NULL;
	}
	PQclear(pc->last);
	pc->last = NULL;
	pc->is_preparing = false;
	pc->cancel_ms = 0;
	/* A new connection starts with no prepared statements. */
	free(pc->prepared);
	pc->prepared = NULL;
	pc->nprepared = 0;
	if (pc->ev != NULL) {
		event_free(pc->ev);
		pc->ev = NULL;
	}
	PQfinish(pc->conn);
	pc->conn = NULL;
	pc->state = PGC_DOWN;
	if (was_up) {
		pool->nup--;
		tv.tv_sec = 0;
	} else if (pool->nup == 0 && !pool->is_down) {
		log_warnx("postgres pool: unreachable: failing queued work");
		pool->is_down = true;
		pool_fail_queue(pool);
	}
	evtimer_add(pc->retry, &tv);
}

static void pconn_exec(struct pg_pconn *pc, struct pg_job *job);

static void
pconn_add_prepared(struct pg_pconn *pc, uint64_t hash)
{
	pc->prepared =
	    xrealloc(pc->prepared, (pc->nprepared + 1) * sizeof(*pc->prepared));
	pc->prepared[pc->nprepared++] = hash;
}

/* The statement of the running job is prepared (or not): run it now. */
static void
prepare_done(struct pg_pconn *pc, struct pg_job *job, PGresult *res)
{
	pc->is_preparing = false;
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		log_warnx_rl("postgres pool: prepare: %s",
		    res ? PQresultErrorMessage(res) : "no result");
		PQclear(res);
		pc->job = NULL;
		pc->state = PGC_IDLE;
		job_finish(job, NULL);
		pool_dispatch(pc->pool);
		return;
	}
	PQclear(res);
	pconn_add_prepared(pc, job->hash);
	pconn_exec(pc, job);
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
	if (PQconsumeInput(pc->conn) == 0 ||
	    PQstatus(pc->conn) == CONNECTION_BAD) {
		pconn_down(pc, "consume input");
		pool_dispatch(pc->pool);
		return;
	}
	while (!PQisBusy(pc->conn)) {
		if ((r = PQgetResult(pc->conn)) == NULL) {
			/* The job is complete. */
			struct pg_job *job = pc->job;
			PGresult *last = pc->last;

			pc->last = NULL;
			if (pc->is_preparing && job != NULL) {
				prepare_done(pc, job, last);
				return;
			}
			/*
			 * A job answered early whose prepare went through
			 * anyway: the server has the statement, and preparing
			 * it again would fail.
			 */
			if (pc->is_preparing &&
			    PQresultStatus(last) == PGRES_COMMAND_OK)
				pconn_add_prepared(pc, pc->prep_hash);
			pc->is_preparing = false;
			pc->cancel_ms = 0;
			pc->job = NULL;
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
			if (pg_is_stale(last)) {
				/* Start over on a fresh connection. */
				PQclear(last);
				pconn_down(pc, "prepared statements went stale");
				return;
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
		pc->pool->nup++;
		if (pc->pool->is_down)
			log_info("postgres pool: reconnected");
		pc->pool->is_down = false;
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
	pc->since_ms = now_ms();
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
pconn_flush(struct pg_pconn *pc)
{
	if (PQflush(pc->conn) == 1)
		pconn_watch(pc, EV_READ | EV_WRITE | EV_PERSIST, pconn_io_cb);
}

static void
pconn_exec(struct pg_pconn *pc, struct pg_job *job)
{
	char name[32];

	stmt_name(job->hash, name);
	if (PQsendQueryPrepared(pc->conn, name, job->nparams,
	    (const char *const *)job->params, NULL, NULL, 0) == 0) {
		pconn_down(pc, "send query");
		return;
	}
	pconn_flush(pc);
}

static void
pconn_send(struct pg_pconn *pc, struct pg_job *job)
{
	char name[32];

	pc->job = job;
	pc->state = PGC_BUSY;
	if (pconn_has_prepared(pc, job->hash)) {
		pconn_exec(pc, job);
		return;
	}
	stmt_name(job->hash, name);
	pc->is_preparing = true;
	pc->prep_hash = job->hash;
	if (PQsendPrepare(pc->conn, name, job->sql, job->nparams, NULL) == 0) {
		pconn_down(pc, "send prepare");
		return;
	}
	pconn_flush(pc);
}

/*
 * A job with less time left than this is refused rather than sent: it
 * would most likely be cancelled at its deadline, after costing the
 * server the work anyway, while the ones queued behind it wait.
 */
static long long
pool_min_left(const struct pg_pool *pool)
{
	return pool->timeout_ms / 10;
}

static void
pool_dispatch(struct pg_pool *pool)
{
	struct pg_job *job;
	long long now = now_ms();

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
			if (job->deadline_ms != 0 &&
			    job->deadline_ms - now < pool_min_left(pool)) {
				log_warnx_rl(
				    "postgres pool: statement refused: "
				    "too close to its deadline");
				pool->stats.timed_out++;
				pool_refuse(pool, job);
				continue;
			}
			pconn_send(pc, job);
		}
	}
}

/* Calls back, from the loop, every job that was refused or timed out. */
static void
pool_fail_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pg_pool *pool = arg;
	struct pg_jobq q;
	struct pg_job *job;

	(void)fd;
	(void)what;
	/* callbacks may queue (and so refuse) more: take the list first */
	TAILQ_INIT(&q);
	TAILQ_CONCAT(&q, &pool->failq, entry);
	while ((job = TAILQ_FIRST(&q)) != NULL) {
		TAILQ_REMOVE(&q, job, entry);
		job_finish(job, NULL);
	}
}

static void
pool_refuse(struct pg_pool *pool, struct pg_job *job)
{
	TAILQ_INSERT_TAIL(&pool->failq, job, entry);
	event_active(pool->fail_ev, EV_TIMEOUT, 0);
}

/* Postgres is unreachable: nothing queued would be answered in time. */
static void
pool_fail_queue(struct pg_pool *pool)
{
	struct pg_job *job;

	while ((job = TAILQ_FIRST(&pool->queue)) != NULL) {
		TAILQ_REMOVE(&pool->queue, job, entry);
		pool->pending--;
		pool->stats.refused++;
		pool_refuse(pool, job);
	}
}

/* A live server answers a cancel in milliseconds: this is a hung one. */
static long long
pool_grace(const struct pg_pool *pool)
{
	return pool->timeout_ms < 100 ? 100 : pool->timeout_ms;
}

/*
 * The running job is past its deadline: answer it now and ask the server
 * to stop the statement, keeping the connection and its prepared
 * statements. libpq 15 (Debian 12) has no non-blocking cancel
 * (PQcancelStart is libpq 17) and keeps the cancel key to itself, so this
 * is PQcancel: it blocks the loop for one connect, a 16-byte write and
 * the server's close (2-4 ms measured on a local unix socket, the
 * postmaster forking for the request), at most once per connection and
 * deadline; a thread would break the api's one-thread rule. The
 * connection then drains the statement's error as usual.
 */
static void
pconn_cancel(struct pg_pconn *pc, long long now)
{
	PGcancel *cn;
	char err[256];
	int ok = 0;

	pool_refuse(pc->pool, pc->job);
	pc->job = NULL;
	if ((cn = PQgetCancel(pc->conn)) != NULL) {
		ok = PQcancel(cn, err, sizeof(err));
		PQfreeCancel(cn);
	}
	if (!ok) {
		pconn_down(pc, "cancel");
		return;
	}
	/* how long the loop was blocked, should a server be slow to it */
	log_warnx_rl("postgres pool: statement deadline passed: cancelled "
	             "in %lld ms",
	             now_ms() - now);
	pc->pool->stats.cancelled++;
	pc->cancel_ms = now;
}

/*
 * Fails queued jobs past their deadline (the queue is in deadline order),
 * cancels running jobs past it (dropping connections that then do not
 * answer), and gives up on
 * connect attempts that hang (libpq enforces no timeout on
 * PQconnectPoll).
 */
static void
pool_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pg_pool *pool = arg;
	struct pg_job *job;
	long long now = now_ms();

	(void)fd;
	(void)what;
	while ((job = TAILQ_FIRST(&pool->queue)) != NULL &&
	    job->deadline_ms != 0 && now >= job->deadline_ms) {
		TAILQ_REMOVE(&pool->queue, job, entry);
		pool->pending--;
		pool->stats.timed_out++;
		pool_refuse(pool, job);
	}
	for (int i = 0; i < pool->n; i++) {
		struct pg_pconn *pc = &pool->conns[i];

		if (pc->state == PGC_BUSY && pc->job != NULL &&
		    pc->job->deadline_ms != 0 && now >= pc->job->deadline_ms) {
			pool->stats.timed_out++;
			pconn_cancel(pc, now);
		} else if (pc->state == PGC_BUSY && pc->job == NULL &&
		           pc->cancel_ms != 0 &&
		           now - pc->cancel_ms >= pool_grace(pool))
			pconn_down(pc, "no answer after cancel");
		else if (pc->state == PGC_CONNECTING && pool->timeout_ms > 0 &&
		         now - pc->since_ms >= pool->timeout_ms)
			pconn_down(pc, "connect timed out");
	}
	pool_dispatch(pool);
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
	TAILQ_INIT(&pool->failq);
	TAILQ_INIT(&pool->lsnq);
	pool->lsn_tick = event_new(base, -1, EV_PERSIST, lsn_tick_cb, pool);
	pool->fail_ev = event_new(base, -1, 0, pool_fail_cb, pool);
	pool->tick = event_new(base, -1, EV_PERSIST, pool_tick_cb, pool);
	for (int i = 0; i < pool->n; i++) {
		struct pg_pconn *pc = &pool->conns[i];

		pc->pool = pool;
		pc->retry = evtimer_new(base, pconn_retry_cb, pc);
		pconn_start(pc);
	}
	return pool;
}

void
pg_pool_set_limits(struct pg_pool *pool, int max_queue, long long timeout_ms)
{
	/* deadlines are checked at a quarter of their length (10-250 ms) */
	long long ms = timeout_ms / 4 < 10 ? 10 : timeout_ms / 4;
	struct timeval tv;

	if (ms > 250)
		ms = 250;
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	pool->max_queue = max_queue > 0 ? max_queue : 0;
	pool->timeout_ms = timeout_ms > 0 ? timeout_ms : 0;
	event_del(pool->tick);
	if (pool->timeout_ms > 0)
		event_add(pool->tick, &tv);
}

static struct pg_job *
job_new(struct pg_pool *pool, const char *sql, int nparams,
        const char *const *params, pg_cb cb, void *arg)
{
	struct pg_job *job = xcalloc(1, sizeof(*job));

	job->sql = sql;
	job->hash = stmt_hash(pool, sql);
	job->nparams = nparams;
	job->params = xcalloc((size_t)nparams + 1, sizeof(char *));
	for (int i = 0; i < nparams; i++)
		job->params[i] = params[i] ? xstrdup(params[i]) : NULL;
	job->cb = cb;
	job->arg = arg;
	return job;
}

/* Queues job on pool, within its limits; its deadline is the pool's. */
static void
pool_enqueue(struct pg_pool *pool, struct pg_job *job)
{
	job->deadline_ms =
	    pool->timeout_ms > 0 ? now_ms() + pool->timeout_ms : 0;
	if (pool->is_down ||
	    (pool->max_queue > 0 && pool->pending >= pool->max_queue)) {
		log_warnx_rl("postgres pool: %s: statement refused",
		    pool->is_down ? "unreachable" : "queue full");
		pool->stats.refused++;
		pool_refuse(pool, job);
		return;
	}
	TAILQ_INSERT_TAIL(&pool->queue, job, entry);
	pool->pending++;
	pool_dispatch(pool);
}

struct pg_job *
pg_pool_query(struct pg_pool *pool, const char *sql, int nparams,
              const char *const *params, pg_cb cb, void *arg)
{
	struct pg_job *job = job_new(pool, sql, nparams, params, cb, arg);

	pool_enqueue(pool, job);
	return job;
}

/* --- reads on a replica ------------------------------------------------ */

#define LSN_TICK_MS 2 /* while reads wait: how often to ask the replica */

static void
lsn_route(struct pg_pool *rp, struct pg_job *job, bool is_replica)
{
	TAILQ_REMOVE(&rp->lsnq, job, entry);
	rp->nlsnq--;
	if (is_replica)
		rp->stats.read_replica++;
	else
		rp->stats.read_primary++;
	pool_enqueue(is_replica ? rp : rp->primary, job);
}

/*
 * Sends on each waiting read the replica has caught up with, and to the
 * primary each that waited its bound (or all of them, when the replica
 * cannot say how far it is); keeps the tick while any wait.
 */
static void
lsn_release(struct pg_pool *rp, bool is_lost)
{
	struct pg_job *job, *next;
	long long now = now_ms();

	for (job = TAILQ_FIRST(&rp->lsnq); job != NULL; job = next) {
		next = TAILQ_NEXT(job, entry);
		if (job->is_cancelled || job->min_lsn <= rp->replay_lsn)
			lsn_route(rp, job, true);
		else if (is_lost || now >= job->lsn_until_ms)
			lsn_route(rp, job, false);
	}
	if (rp->nlsnq == 0)
		event_del(rp->lsn_tick);
}

static void
lsn_probed_cb(PGresult *res, void *arg)
{
	struct pg_pool *rp = arg;

	rp->is_probing = false;
	if (rp->is_freeing)
		return;
	if (res != NULL && PQntuples(res) == 1) {
		/* NULL: not in recovery, so nothing is left to replay */
		int64_t v = PQgetisnull(res, 0, 0)
		                ? INT64_MAX
		                : strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		if (v > rp->replay_lsn)
			rp->replay_lsn = v;
	}
	lsn_release(rp, res == NULL);
}

static void
lsn_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pg_pool *rp = arg;

	(void)fd;
	(void)what;
	lsn_release(rp, false);
	if (rp->nlsnq == 0 || rp->is_probing)
		return;
	rp->is_probing = true;
	pool_enqueue(rp, job_new(rp,
	                         "SELECT (pg_last_wal_replay_lsn() - '0/0')"
	                         "::bigint",
	                         0, NULL, lsn_probed_cb, rp));
}

void
pg_pool_set_replica(struct pg_pool *replica, struct pg_pool *primary,
                    long long wait_ms)
{
	replica->primary = primary;
	replica->lsn_wait_ms = wait_ms;
}

struct pg_job *
pg_pool_query_read(struct pg_pool *rp, int64_t min_lsn, const char *sql,
                   int nparams, const char *const *params, pg_cb cb, void *arg)
{
	struct pg_job *job;
	struct timeval tv = {0, LSN_TICK_MS * 1000};

	if (rp->primary == NULL)
		return pg_pool_query(rp, sql, nparams, params, cb, arg);
	if (!pg_pool_is_up(rp)) {
		rp->stats.read_primary++;
		return pg_pool_query(rp->primary, sql, nparams, params, cb,
		                     arg);
	}
	job = job_new(rp, sql, nparams, params, cb, arg);
	if (min_lsn <= rp->replay_lsn) {
		rp->stats.read_replica++;
		pool_enqueue(rp, job);
		return job;
	}
	rp->stats.read_waited++;
	job->min_lsn = min_lsn;
	job->lsn_until_ms = now_ms() + rp->lsn_wait_ms;
	TAILQ_INSERT_TAIL(&rp->lsnq, job, entry);
	if (rp->nlsnq++ == 0) {
		event_add(rp->lsn_tick, &tv);
		lsn_tick_cb(-1, 0, rp);
	}
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

bool
pg_pool_is_up(const struct pg_pool *pool)
{
	return pool->nup > 0 && !pool->is_down;
}

void
pg_pool_get_stats(const struct pg_pool *pool, struct pg_pool_stats *st)
{
	*st = pool->stats;
	st->pending = pool->pending;
	st->up = pool->nup;
}

void
pg_pool_free(struct pg_pool *pool)
{
	struct pg_job *job;

	if (pool == NULL)
		return;
	pool->is_freeing = true;
	for (int i = 0; i < pool->n; i++) {
		struct pg_pconn *pc = &pool->conns[i];

		if (pc->job != NULL)
			job_finish(pc->job, NULL);
		PQclear(pc->last);
		free(pc->prepared);
		if (pc->ev != NULL)
			event_free(pc->ev);
		event_free(pc->retry);
		PQfinish(pc->conn);
	}
	TAILQ_CONCAT(&pool->failq, &pool->queue, entry);
	TAILQ_CONCAT(&pool->failq, &pool->lsnq, entry);
	while ((job = TAILQ_FIRST(&pool->failq)) != NULL) {
		TAILQ_REMOVE(&pool->failq, job, entry);
		job_finish(job, NULL);
	}
	event_free(pool->fail_ev);
	event_free(pool->tick);
	event_free(pool->lsn_tick);
	free(pool->conns);
	free(pool->conninfo);
	free(pool->memo);
	free(pool);
}
