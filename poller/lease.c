/*
 * lease.c: which devices this poller holds (DESIGN.md contract 4), on one
 * Postgres connection with the blocking pg_* helpers; the statements are
 * in lease_sql.c, with the lock order that keeps them from ever
 * deadlocking with the accumulator. Every query here is
 * short (an indexed UPDATE or a count), so the loop is never held for long
 * even with thousands of devices; the batched statements (claim, heartbeat,
 * state flush) touch many rows in one round trip instead of one each.
 *
 * Timers: claim (every second, and at once on NOTIFY syncv3_devices),
 * heartbeat (a third of the lease: renews, notices lost devices, replaced
 * tokens and idle devices, sheds devices above the fair share) and flush
 * (poll_state writes, batched), and liveness (live.c, every
 * SYNCV3_TAKEOVER_MS / 4: renews our row, stops every device when it
 * cannot, claims at once when a dead poller still holds leases). The live
 * pollers, for the fair share, are the liveness rows not expired, so a
 * dead or frozen poller stops counting within SYNCV3_TAKEOVER_MS.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crypto.h"
#include "log.h"
#include "pg.h"
#include "pg_lit.h"
#include "poller.h"
#include "util.h"

#define LEASE_CLAIM_BATCH 1000
#define LEASE_FLUSH_BATCH 2000
#define LEASE_FLUSH_MS 200

static void notify_cb(evutil_socket_t, short, void *);
static void release_device(struct device *);
static int stop_device(struct device *, enum dev_state, const char *);

/*
 * (Re)establishes the session: LISTEN and its event, and server-side TCP
 * keepalives, so that if our host dies without closing the connection
 * Postgres drops the session, and the id lock with it, within about 8 s
 * (idle 5 s, then 3 probes 1 s apart) instead of the system's two hours;
 * a restart under our id waits for that. The id lock (live_lock) is
 * taken by pg_ok.
 */
static int
session_setup(struct poller *p)
{
	if (p->pg_ev != NULL) {
		event_free(p->pg_ev);
		p->pg_ev = NULL;
	}
	p->has_id_lock = false;
	if (pg_exec(p->pg, "lease",
	            "SET tcp_keepalives_idle = 5; "
	            "SET tcp_keepalives_interval = 1; "
	            "SET tcp_keepalives_count = 3") == -1 ||
	    pg_exec(p->pg, "lease", "LISTEN " PROTO_PG_DEVICES_CHANNEL) == -1 ||
	    pg_exec(p->pg, "lease", "LISTEN " PROTO_PG_CATCHUP_CHANNEL) == -1)
		return -1;
	p->pg_ev = event_new(p->base, PQsocket(p->pg), EV_READ | EV_PERSIST,
	                     notify_cb, p);
	event_add(p->pg_ev, NULL);
	return 0;
}

/*
 * The connection is up and holds our id lock. A new session may find the
 * lock taken (another process began under our id meanwhile): then we are
 * not ok, and our liveness lapses for want of renewals.
 */
static bool
pg_ok(struct poller *p)
{
	if (PQstatus(p->pg) != CONNECTION_OK &&
	    (pg_check_reset(p->pg) || session_setup(p) == -1))
		return false;
	if (live_lock(p) == 1) {
		log_warnx_rl("lease: poller id %s is held by another process",
		             p->cfg.poller_id);
		return false;
	}
	return p->has_id_lock;
}

/* PROTO_PG_CATCHUP_CHANNEL: "<user_id> <pos>"; a bad one is dropped. */
static void
catchup_notice(struct poller *p, const char *extra)
{
	const char *sp = strrchr(extra, ' ');
	char *user_id, *end;
	long long pos;

	if (sp == NULL || sp == extra)
		goto bad;
	pos = strtoll(sp + 1, &end, 10);
	if (*end != '\0' || pos <= 0)
		goto bad;
	user_id = xstrndup(extra, (size_t)(sp - extra));
	device_catchup(p, user_id, pos);
	free(user_id);
	return;
bad:
	log_warnx_rl("lease: bad catch-up notice \"%s\"", extra);
}

static void
notify_cb(evutil_socket_t fd, short what, void *arg)
{
	struct poller *p = arg;
	PGnotify *n;
	bool got = false;

	(void)fd;
	(void)what;
	if (PQconsumeInput(p->pg) == 0) {
		log_warnx_rl("lease: %s", PQerrorMessage(p->pg));
		event_del(p->pg_ev);
		return; /* the next claim resets the connection */
	}
	while ((n = PQnotifies(p->pg)) != NULL) {
		if (strcmp(n->relname, PROTO_PG_CATCHUP_CHANNEL) == 0)
			catchup_notice(p, n->extra);
		else
			got = true;
		PQfreemem(n);
	}
	if (got && !p->is_stopping)
		event_active(p->claim_now_ev, EV_TIMEOUT, 0);
}

static void
update_share(struct poller *p)
{
	char idle[PG_I64_LEN];
	const char *params[1] = {idle};
	PGresult *r;

	pg_i64(idle, p->cfg.idle_secs);
	if ((r = lease_q(p, LS_SHARE, 1, params)) == NULL)
		return;
	p->share = policy_share(atoll(PQgetvalue(r, 0, 1)),
	                        atoll(PQgetvalue(r, 0, 0)), p->cfg.max_devices);
	PQclear(r);
}

static void
release_one(struct poller *p, const char *user_id, const char *device_id)
{
	const char *params[3] = {p->cfg.poller_id, user_id, device_id};

	PQclear(lease_q(p, LS_RELEASE, 3, params));
}

static void
claim_row(struct poller *p, PGresult *r, int i)
{
	const char *user_id = PQgetvalue(r, i, 0);
	const char *device_id = PQgetvalue(r, i, 1);
	char *token;
	struct device *d;

	if (device_find(p, user_id, device_id) != NULL)
		return; /* ours already (our lease lapsed and came back) */
	if ((token = token_decrypt(p->cfg.secret, PQgetvalue(r, i, 2))) ==
	    NULL) {
		log_warnx_rl("device %s/%s: cannot decrypt its token (is "
		             "SYNCV3_SECRET right?); released",
		             user_id, device_id);
		release_one(p, user_id, device_id);
		return;
	}
	d = device_add(p, user_id, device_id, token, PQgetvalue(r, i, 3),
	               PQgetvalue(r, i, 4));
	/* docs/DESIGN.md, "Sibling devices" */
	d->is_sibling_first = p->cfg.sibling_wait_ms > 0 &&
	                      d->since[0] == '\0' &&
	                      PQgetvalue(r, i, 5)[0] == 't';
	d->catchup = strtoll(PQgetvalue(r, i, 6), NULL, 10);
	if (PQgetvalue(r, i, 7)[0] == 't')
		device_cover_wait(d);
	log_debug("device %s/%s: claimed, since \"%s\"%s", user_id, device_id,
	          d->since, d->is_sibling_first ? ", sibling first" : "");
	if (d->is_sibling_first) {
		/*
		 * Its first body follows within milliseconds, and a poll
		 * state sent ahead of it took a transaction of its own in
		 * the accumulator first, on the new device's path (issue
		 * #13). The next flush writes the same row.
		 */
		d->ps = DEV_STATE_POLLING;
		device_mark_dirty(d);
	} else
		device_set_ps(d, DEV_STATE_POLLING, NULL);
	device_start(d);
}

/*
 * Claims unleased devices up to our fair share, at most
 * LEASE_CLAIM_BATCH a round, in one statement that computes the share
 * too (LS_CLAIM); a full batch below the share re-arms claim_now_ev so a
 * big backlog is taken in steps without holding the loop. A round that claims
 * nothing leaves p->share to the heartbeat, which sheds by it.
 */
static void
claim_cb(evutil_socket_t fd, short what, void *arg)
{
	struct poller *p = arg;
	char batch[PG_I64_LEN], idle[PG_I64_LEN], lease[PG_I64_LEN];
	char held[PG_I64_LEN], max[PG_I64_LEN];
	const char *params[6] = {
	    p->cfg.poller_id, batch, idle, lease, held, max};
	long long held_before = (long long)p->ndevices;
	PGresult *r;
	int n;

	(void)fd;
	(void)what;
	if (p->is_stopping || p->is_lapsed || !pg_ok(p))
		return;
	pg_i64(batch, LEASE_CLAIM_BATCH);
	pg_i64(idle, p->cfg.idle_secs);
	pg_i64(lease, p->cfg.lease_secs);
	pg_i64(held, (long long)p->ndevices);
	pg_i64(max, p->cfg.max_devices);
	if ((r = lease_q(p, LS_CLAIM, 6, params)) == NULL)
		return;
	if ((n = PQntuples(r)) == 0) {
		log_debug("lease: holding %zu: nothing to claim", p->ndevices);
		PQclear(r);
		return;
	}
	p->share = strtoll(PQgetvalue(r, 0, 8), NULL, 10);
	for (int i = 0; i < n; i++)
		claim_row(p, r, i);
	PQclear(r);
	log_info("lease: claimed %d devices (holding %zu, share %lld)", n,
	         p->ndevices, p->share);
	/* more may be waiting: continue on the next turn */
	if (policy_claim_more(n, held_before, p->share, LEASE_CLAIM_BATCH))
		event_active(p->claim_now_ev, EV_TIMEOUT, 0);
}

/* A new token was stored for a device we hold (contract 5). */
static void
token_replaced(struct poller *p, struct device *d)
{
	const char *params[3] = {d->user_id, d->device_id, p->cfg.poller_id};
	PGresult *r;
	char *token;

	r = lease_q(p, LS_TOKEN, 3, params);
	if (r == NULL || PQntuples(r) != 1) {
		PQclear(r);
		return;
	}
	if ((token = token_decrypt(p->cfg.secret, PQgetvalue(r, 0, 0))) !=
	    NULL) {
		log_info("device %s/%s: new token", d->user_id, d->device_id);
		device_replace_token(d, token, PQgetvalue(r, 0, 2),
		                     PQgetvalue(r, 0, 1));
		d->ps = DEV_STATE_NEW;
		device_set_ps(d, DEV_STATE_POLLING, NULL);
	}
	PQclear(r);
}

static void
drop_all(struct poller *p, const char *why)
{
	if (p->ndevices > 0)
		log_warnx("lease: %s; stopping all %zu devices", why,
		          p->ndevices);
	device_shutdown(p);
	device_init(p);
}

/*
 * Gives devices above our fair share back so a newer poller gets its part.
 * A device is not cut off mid-request: it is marked and released between
 * two polls (device_start), after its pending response is acked, so two
 * pollers never have requests in flight for it at once.
 */
static void
shed(struct poller *p)
{
	long long slack = p->share / 20 > 1 ? p->share / 20 : 1;
	long long n = (long long)(p->ndevices - p->nreleasing) - p->share;
	long long k = 0;
	struct device *d, *next;

	if (p->share <= 0 || n <= slack)
		return;
	for (d = TAILQ_FIRST(&p->devices); d != NULL && k < n; d = next) {
		next = TAILQ_NEXT(d, entry);
		if (d->is_releasing)
			continue;
		d->is_releasing = true;
		p->nreleasing++;
		k++;
		if (d->cycle == DEV_BACKOFF || d->cycle == DEV_WAITING)
			release_device(d);
	}
	log_info("lease: releasing %lld devices above our share %lld", k,
	         p->share);
}

/* Stops polling d and gives its lease back; d is dropped. */
static void
release_device(struct device *d)
{
	struct poller *p = d->p;

	if (d->cycle == DEV_WAITING) {
		TAILQ_REMOVE(&p->waiting, d, waitq);
		d->cycle = DEV_BACKOFF;
	}
	if (pg_ok(p))
		release_one(p, d->user_id, d->device_id);
	log_debug("device %s/%s: released", d->user_id, d->device_id);
	device_drop(d);
}

static void
hb_row(struct poller *p, PGresult *r, int i, unsigned gen)
{
	const char *user_id = PQgetvalue(r, i, 0);
	const char *device_id = PQgetvalue(r, i, 1);
	struct device *d = device_find(p, user_id, device_id);

	if (d == NULL) { /* leased to us but not polled: hand it back */
		release_one(p, user_id, device_id);
		return;
	}
	d->hb_gen = gen;
	if (strcmp(PQgetvalue(r, i, 4), "t") != 0) {
		log_info("device %s/%s: unused for %llds; polling stopped",
		         user_id, device_id, p->cfg.idle_secs);
		device_set_ps(d, DEV_STATE_IDLE, "");
		if (stop_device(d, DEV_STATE_IDLE, "") == -1)
			log_warnx("device %s/%s: cannot release", user_id,
			          device_id);
		device_drop(d);
		return;
	}
	if (strcmp(PQgetvalue(r, i, 2), d->fp) != 0)
		token_replaced(p, d);
}

/*
 * Renews every lease we hold in one statement. Its rows say which devices
 * are still ours (a device missing from them was taken over: stopped),
 * idle, or have a new token; leases not renewed within lease_secs are
 * assumed gone, so every device is dropped rather than polled twice.
 */
static void
hb_cb(evutil_socket_t fd, short what, void *arg)
{
	struct poller *p = arg;
	char lease[PG_I64_LEN], idle[PG_I64_LEN];
	const char *params[3] = {p->cfg.poller_id, lease, idle};
	struct device *d, *next;
	unsigned gen = ++p->hb_gen;
	PGresult *r;
	int n;

	(void)fd;
	(void)what;
	if (p->is_stopping || p->is_lapsed)
		return;
	pg_i64(lease, p->cfg.lease_secs);
	pg_i64(idle, p->cfg.idle_secs);
	if (!pg_ok(p) || (r = lease_q(p, LS_HEARTBEAT, 3, params)) == NULL) {
		if (now_ms() - p->hb_ok_ms > p->cfg.lease_secs * 1000)
			drop_all(p, "leases not renewed in time");
		return;
	}
	p->hb_ok_ms = now_ms();
	n = PQntuples(r);
	for (int i = 0; i < n; i++)
		hb_row(p, r, i, gen);
	PQclear(r);
	for (d = TAILQ_FIRST(&p->devices); d != NULL; d = next) {
		next = TAILQ_NEXT(d, entry);
		if (d->hb_gen != gen) {
			log_warnx("device %s/%s: lease lost to another "
			          "poller; polling stopped",
			          d->user_id, d->device_id);
			device_drop(d);
		}
	}
	update_share(p);
	shed(p);
}

/*
 * Writes the queued poll states (device_mark_dirty) in one statement, at
 * most LEASE_FLUSH_BATCH a time. Rows the accumulator has locked are
 * skipped by the statement and come back in its result: they are queued
 * again for the next flush instead of waiting on the lock.
 */
void
lease_flush(struct poller *p)
{
	const char *u[LEASE_FLUSH_BATCH], *dv[LEASE_FLUSH_BATCH];
	const char *s[LEASE_FLUSH_BATCH], *e[LEASE_FLUSH_BATCH];
	const char *fp[LEASE_FLUSH_BATCH];
	char *arr[5];
	struct device *d;
	size_t n = 0;
	PGresult *r;

	TAILQ_FOREACH(d, &p->dirty, dirtyq)
	{
		if (n == LEASE_FLUSH_BATCH)
			break;
		u[n] = d->user_id;
		dv[n] = d->device_id;
		s[n] = dev_state_name(d->ps);
		e[n] = d->error;
		fp[n++] = d->fp;
	}
	if (n == 0 || !pg_ok(p))
		return;
	arr[0] = pg_text_array(u, n);
	arr[1] = pg_text_array(dv, n);
	arr[2] = pg_text_array(s, n);
	arr[3] = pg_text_array(e, n);
	arr[4] = pg_text_array(fp, n);
	const char *params[6] = {p->cfg.poller_id, arr[0], arr[1],
	                         arr[2],           arr[3], arr[4]};
	r = lease_q(p, LS_FLUSH, 6, params);
	if (r != NULL) {
		for (size_t i = 0; i < n; i++) {
			d = TAILQ_FIRST(&p->dirty);
			TAILQ_REMOVE(&p->dirty, d, dirtyq);
			d->is_dirty = false;
		}
		/* Rows locked just now (an accumulator batch): next time. */
		for (int i = 0; i < PQntuples(r); i++)
			if ((d = device_find(p, PQgetvalue(r, i, 0),
			                     PQgetvalue(r, i, 1))) != NULL)
				device_mark_dirty(d);
		if (PQntuples(r) > 0)
			log_debug("lease: %d poll states left for the next "
			          "flush (rows busy)",
			          PQntuples(r));
	}
	PQclear(r);
	for (int i = 0; i < 5; i++)
		free(arr[i]);
}

static void
flush_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	lease_flush(arg);
}

/* Records a final state (expired, idle) and gives the lease back. */
static int
stop_device(struct device *d, enum dev_state state, const char *error)
{
	struct poller *p = d->p;
	const char *params[6] = {
	    d->user_id, d->device_id,     dev_state_name(state),
	    error,      p->cfg.poller_id, d->fp};
	PGresult *r;

	if (!pg_ok(p))
		return -1;
	if ((r = lease_q(p, LS_STOP, 6, params)) == NULL)
		return -1;
	PQclear(r);
	return 0;
}

/*
 * The one value of statement id ($1 user, $2 device) about d's row, as a
 * new string; NULL when Postgres could not tell.
 */
static char *
device_value(struct device *d, enum lease_stmt_id id)
{
	struct poller *p = d->p;
	const char *params[2] = {d->user_id, d->device_id};
	PGresult *r;
	char *v = NULL;

	if (!pg_ok(p))
		return NULL;
	r = lease_q(p, id, 2, params);
	if (r != NULL && PQntuples(r) == 1)
		v = xstrdup(PQgetvalue(r, 0, 0));
	PQclear(r);
	return v;
}

/* After a nack: the accumulator's committed since is the truth. */
static int
since_reload(struct device *d)
{
	char *since = device_value(d, LS_SINCE);

	if (since == NULL)
		return -1;
	free(d->since);
	d->since = since;
	return 0;
}

/* Whether the accumulator counts d's initial sync as stored. */
static int
synced(struct device *d)
{
	char *v = device_value(d, LS_SYNCED);
	int rc = v == NULL ? -1 : v[0] == 't';

	free(v);
	return rc;
}

/*
 * Our liveness lapsed (lease.c's reaction to live_renew): every device
 * stops at once; our leases stay until the others take them over (our row
 * has expired, or soon will) or we come back.
 */
static void
lapse(struct poller *p, const char *why)
{
	drop_all(p, why);
	p->is_lapsed = true;
}

/*
 * After a lapse: once we hold our id again and may begin (live_begin),
 * the leases nobody took are given back and claimed afresh, so what we
 * poll is exactly what the claim hands us.
 */
static void
recover(struct poller *p)
{
	const char *params[1] = {p->cfg.poller_id};

	if (!pg_ok(p) || live_begin(p) != 0)
		return;
	PQclear(lease_q(p, LS_RELEASE_ALL, 1, params));
	p->is_lapsed = false;
	p->hb_ok_ms = now_ms();
	log_info("lease: liveness back; claiming again");
	event_active(p->claim_now_ev, EV_TIMEOUT, 0);
}

/* Every takeover_ms / 4: renew our row, or stop, or take a dead one's. */
static void
live_cb(evutil_socket_t fd, short what, void *arg)
{
	struct poller *p = arg;
	bool was_late;

	(void)fd;
	(void)what;
	if (p->is_stopping)
		return;
	if (p->is_lapsed) {
		recover(p);
		return;
	}
	/*
	 * Past the deadline nothing may be in flight (live.c) before we
	 * know whether the row outlived it; the devices wait for the answer.
	 */
	was_late = !live_may_poll(p);
	if (was_late) {
		log_warnx("lease: liveness renewal late (%lld ms after the "
		          "last good one); requests stopped",
		          now_ms() - p->live_ok_ms);
		device_pause_all(p);
	}
	switch (pg_ok(p) ? live_renew(p) : LIVE_FAILED) {
	case LIVE_OK:
		break;
	case LIVE_PEER_DEAD:
		event_active(p->claim_now_ev, EV_TIMEOUT, 0);
		break;
	case LIVE_LOST:
		lapse(p, "liveness lost");
		return;
	case LIVE_FAILED:
		if (!live_may_poll(p))
			lapse(p, "liveness not renewed in time");
		return;
	}
	if (was_late) {
		log_info("lease: liveness kept; polling again");
		device_resume_all(p);
	}
}

/*
 * Startup: waits for our id (another process holds it: same
 * SYNCV3_POLLER_ID twice, or the previous run still exiting) and for a
 * previous incarnation's row to expire, both with the loop not yet
 * running; SIGTERM meanwhile just ends the process.
 */
static void
live_start(struct poller *p)
{
	long long ms;
	int rc, n = 0;

	while ((rc = live_lock(p)) != 0) {
		if (rc == -1)
			fatalx("lease: cannot lock poller id %s",
			       p->cfg.poller_id);
		if (n++ % 240 == 0) /* once a minute */
			log_warnx("lease: poller id %s is held by another "
			          "live process; waiting for it to end",
			          p->cfg.poller_id);
		usleep(250 * 1000);
	}
	while ((ms = live_begin(p)) != 0) {
		if (ms == -1)
			fatalx("lease: cannot record poller %s",
			       p->cfg.poller_id);
		log_info("lease: a previous run of %s may poll for %lld ms "
		         "more; waiting",
		         p->cfg.poller_id, ms);
		usleep((useconds_t)ms * 1000 + 10000);
	}
}

static struct event *
periodic(struct poller *p, long long ms, event_callback_fn cb)
{
	struct event *ev = event_new(p->base, -1, EV_PERSIST, cb, p);
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

	event_add(ev, &tv);
	return ev;
}

/*
 * Connects (waiting for Postgres and the schema: the poller may start
 * before both), gives back the leases an earlier run under the same id
 * left, installs the device owner hooks for device.c and starts the
 * claim, heartbeat and flush timers with one claim at once.
 */
void
lease_init(struct poller *p)
{
	const char *params[1] = {p->cfg.poller_id};

	TAILQ_INIT(&p->dirty);
	p->owner.release = release_device;
	p->owner.reload_since = since_reload;
	p->owner.stop = stop_device;
	p->owner.may_poll = live_may_poll;
	p->owner.is_synced = synced;
	if ((p->pg = pg_connect_wait(p->cfg.db, 3600)) == NULL)
		fatalx("lease: cannot connect to postgres");
	if (pg_wait_schema(p->pg, pg_schema_version, 0) == -1)
		fatalx("lease: schema not available");
	if (session_setup(p) == -1)
		fatalx("lease: cannot set up the session");
	live_start(p);
	/* Leases of an earlier run under the same id are ours to retake. */
	PQclear(lease_q(p, LS_RELEASE_ALL, 1, params));
	p->hb_ok_ms = now_ms();
	p->claim_ev = periodic(p, 1000, claim_cb);
	/*
	 * Activating the persistent timer by hand would push its next run
	 * one period further each time, so immediate claims have their own
	 * event.
	 */
	p->claim_now_ev = event_new(p->base, -1, 0, claim_cb, p);
	p->hb_ev = periodic(p, p->cfg.lease_secs * 1000 / 3, hb_cb);
	p->flush_ev = periodic(p, LEASE_FLUSH_MS, flush_cb);
	p->live_ev = periodic(p, p->cfg.takeover_ms / 4, live_cb);
	event_active(p->claim_now_ev, EV_TIMEOUT, 0);
}

/* Gives every lease back (clean shutdown); devices are already stopped. */
void
lease_shutdown(struct poller *p)
{
	const char *params[1] = {p->cfg.poller_id};
	PGresult *r;

	if (p->pg != NULL && PQstatus(p->pg) == CONNECTION_OK) {
		r = lease_q(p, LS_RELEASE_ALL, 1, params);
		if (r != NULL)
			log_info("lease: released %s devices", PQcmdTuples(r));
		PQclear(r);
		live_end(p);
	}
	if (p->claim_ev)
		event_free(p->claim_ev);
	if (p->claim_now_ev)
		event_free(p->claim_now_ev);
	if (p->hb_ev)
		event_free(p->hb_ev);
	if (p->flush_ev)
		event_free(p->flush_ev);
	if (p->pg_ev)
		event_free(p->pg_ev);
	if (p->live_ev)
		event_free(p->live_ev);
	p->claim_ev = p->claim_now_ev = p->hb_ev = p->flush_ev = p->pg_ev =
	    p->live_ev = NULL;
	PQfinish(p->pg);
	p->pg = NULL;
}
