/*
 * Which accumulator is active (issue #15): the one whose writer
 * connection holds the writer lock. Every accumulator starts as a
 * standby: connected and migrated, bound to nothing, it tries the lock
 * every WAIT_MS from the loop, and ends the session of a holder whose
 * liveness row (syncv3_accumulator, migration 009) has expired. Once it
 * holds the lock it binds its PUB (notify) and ROUTER (ingest), serves,
 * and renews the row every SYNCV3_ACC_TAKEOVER_MS / 4 from this loop
 * through an asynchronous pool connection, so a loop that stops turning
 * stops renewing. A writer that finds itself replaced (a renewal matches
 * no row, or the store could not get its lock back after a reconnect)
 * unbinds everything and is a standby again.
 *
 * Pollers and apis connect to every accumulator's endpoints and so
 * follow whichever one is bound (publish.c, notices.c): a standby has
 * nothing bound, so nothing reaches it.
 */
#include <inttypes.h>
#include <stdlib.h>

#include "accumulator.h"
#include "pg.h"
#include "pg_lit.h"
#include "util.h"

#define WAIT_MS 100 /* a standby tries the lock this often */

struct active {
	struct event_base *base;
	void *zctx;
	const struct acc_config *cfg;
	struct store *st;
	struct notify *nt;
	struct ingest *in;
	struct acc_prom *ap;
	struct pg_pool *live;   /* the renewals, active only */
	struct event *ev_wait;  /* standby: the next try */
	struct event *ev_renew; /* active: the next renewal */
	bool is_renewing;       /* a renewal is in flight */
	long long renew_us;     /* when it was sent */
	bool is_demoting;       /* teardown scheduled */
	bool is_stopping;
};

static void active_standby(struct active *a);

static void
arm(struct event *ev, long long ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

	evtimer_add(ev, &tv);
}

/* Drops the writer's sockets, threads and pool, keeping the store. */
static void
active_teardown(struct active *a)
{
	evtimer_del(a->ev_renew);
	prom_free(a->ap);
	ingest_free(a->in);
	notify_free(a->nt);
	pg_pool_free(a->live);
	a->ap = NULL;
	a->in = NULL;
	a->nt = NULL;
	a->live = NULL;
	a->is_renewing = false;
}

/* Deferred from the callback that found out (ingest's or the pool's). */
static void
demote_cb(evutil_socket_t fd, short what, void *arg)
{
	struct active *a = arg;

	(void)fd;
	(void)what;
	active_teardown(a);
	a->is_demoting = false;
	if (a->is_stopping) {
		event_base_loopexit(a->base, NULL);
		return;
	}
	store_free(a->st);
	/* a fresh session: whatever the old one held, it holds no more */
	if ((a->st = store_new(a->cfg->db, a->cfg->ingest,
	                       a->cfg->takeover_ms)) == NULL)
		fatalx("store: cannot reconnect to %s", a->cfg->db);
	active_standby(a);
}

static void
active_demote(void *arg)
{
	struct active *a = arg;

	if (a->is_demoting)
		return;
	a->is_demoting = true;
	log_warnx("active: another accumulator is the writer; standing by");
	event_base_once(a->base, -1, EV_TIMEOUT, demote_cb, a, NULL);
}

static void
renewed_cb(PGresult *res, void *arg)
{
	struct active *a = arg;

	a->is_renewing = false;
	if (res == NULL) {
		/* the writer's session may be fine; a standby decides */
		log_warnx_rl("active: liveness renewal failed after %lld ms",
		             (now_us() - a->renew_us) / 1000);
		return;
	}
	log_debug("active: liveness renewed in %lld ms",
	          (now_us() - a->renew_us) / 1000);
	if (PQntuples(res) == 0)
		active_demote(a);
}

static void
renew_cb(evutil_socket_t fd, short what, void *arg)
{
	struct active *a = arg;
	char gen[PG_I64_LEN], ms[PG_I64_LEN];
	const char *p[2] = {pg_i64(gen, store_generation(a->st)),
	                    pg_i64(ms, a->cfg->takeover_ms)};

	(void)fd;
	(void)what;
	arm(a->ev_renew, a->cfg->takeover_ms / 4);
	if (a->is_renewing || a->is_demoting)
		return;
	a->is_renewing = true;
	a->renew_us = now_us();
	(void)pg_pool_query(a->live,
	                    "UPDATE syncv3_accumulator SET expires = now() + "
	                    "make_interval(secs => $2::bigint / 1000.0) WHERE "
	                    "generation = $1::bigint RETURNING 1",
	                    2, p, renewed_cb, a);
}

/* The lock is ours: bind, serve, renew. */
static void
active_begin(struct active *a)
{
	const struct acc_config *cfg = a->cfg;

	a->live = pg_pool_new(a->base, cfg->db, 1);
	pg_pool_set_limits(a->live, 4, cfg->takeover_ms / 2);
	if ((a->nt = notify_new(a->base, a->zctx, cfg->notices)) == NULL)
		fatalx("notify: cannot bind %s", cfg->notices);
	notify_set_pos(a->nt, store_pos(a->st));
	if ((a->in = ingest_new(a->base, a->zctx, cfg, a->st, a->nt,
	                        active_demote, a)) == NULL)
		fatalx("ingest: cannot bind %s", cfg->ingest);
	if (cfg->prom[0] != '\0' &&
	    (a->ap = prom_new(a->base, cfg->prom, a->in, a->nt)) == NULL)
		fatalx("SYNCV3_PROM: cannot listen on %s", cfg->prom);
	arm(a->ev_renew, cfg->takeover_ms / 4);
}

static void
wait_cb(evutil_socket_t fd, short what, void *arg)
{
	struct active *a = arg;

	(void)fd;
	(void)what;
	if (a->is_stopping)
		return;
	switch (store_take_writer(a->st)) {
	case 1:
		active_begin(a);
		return;
	case -1:
		log_warnx_rl("active: cannot try the writer lock");
		break;
	}
	arm(a->ev_wait, WAIT_MS);
}

static void
active_standby(struct active *a)
{
	log_info("active: standing by for the writer lock");
	event_active(a->ev_wait, EV_TIMEOUT, 0);
}

struct active *
active_new(struct event_base *base, void *zctx, const struct acc_config *cfg)
{
	struct active *a = xcalloc(1, sizeof(*a));

	a->base = base;
	a->zctx = zctx;
	a->cfg = cfg;
	if ((a->st = store_new(cfg->db, cfg->ingest, cfg->takeover_ms)) ==
	    NULL) {
		free(a);
		return NULL;
	}
	a->ev_wait = evtimer_new(base, wait_cb, a);
	a->ev_renew = evtimer_new(base, renew_cb, a);
	active_standby(a);
	return a;
}

/* SIGTERM: a writer finishes what it queued (ingest), a standby leaves. */
void
active_stop(struct active *a)
{
	a->is_stopping = true;
	if (a->in != NULL && !a->is_demoting)
		ingest_stop(a->in);
	else if (!a->is_demoting)
		event_base_loopexit(a->base, NULL);
}

void
active_free(struct active *a)
{
	if (a == NULL)
		return;
	active_teardown(a);
	store_free(a->st);
	event_free(a->ev_wait);
	event_free(a->ev_renew);
	free(a);
}
